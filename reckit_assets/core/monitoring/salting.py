"""Which users a canary gets: a stable bucket per user, salted per model and per release.

Unsalted (``sha256(user_id)``), the same first 5% of users would be the canary of every model and
every release: they would carry every regression, and their behaviour would drift away from the
rest. Salting with ``<model>/<release>`` (the release is the canary's version) makes each
release's canary an independent draw of users, while a given user stays in or out of one
release's canary for its whole life (and, the share only growing, a user once in stays in).
"""

from __future__ import annotations

import hashlib


def canary_bucket(user_id: str, model: str, release: str) -> float:
    """The user's position in [0, 1) for ``release`` of ``model``; same inputs, same bucket, in
    every process (sha256, not Python's per-process salted ``hash``)."""
    key = f"{model}\x1f{release}\x1f{user_id}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64


def in_canary(user_id: str, model: str, release: str, share: float) -> bool:
    """True for the ``share`` of users whose bucket for this release is below it."""
    return canary_bucket(user_id, model, release) < share
