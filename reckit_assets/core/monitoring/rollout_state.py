"""The canary rollout state: one JSON object per model beside the registry, at
``<model>/rollout/canary.json`` (``version``, ``started``: first day of canary traffic, ``share``,
``share_since``).

Written by the release stage (rollout.py), read by the service to route the salted canary bucket
(salting.py) at the judge's share. Kept apart from rollout.py so that readers do not import the
judge's statistics (scipy): the service starts ~0.7 s faster.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING

from reckit_assets.core.io.storage import Storage

if TYPE_CHECKING:
    from reckit_assets.core.monitoring.judge import CanaryState


@dataclass
class Rollout:
    model: str
    version: str
    started: str  # first day of canary traffic
    share: float
    share_since: str

    def state(self, dt: str, day_users_canary: int, day_users_production: int) -> CanaryState:
        from reckit_assets.core.monitoring.judge import CanaryState  # the judge's side only

        day = date.fromisoformat(dt)
        return CanaryState(
            share=self.share,
            days_at_share=(day - date.fromisoformat(self.share_since)).days + 1,
            days_running=(day - date.fromisoformat(self.started)).days + 1,
            day_users_canary=day_users_canary,
            day_users_production=day_users_production,
        )


def _key(model: str) -> str:
    return f"{model}/rollout/canary.json"


def read_rollout(storage: Storage, model: str) -> Rollout | None:
    if not storage.exists(_key(model)):
        return None
    data = json.loads(storage.read_bytes(_key(model)))
    return Rollout(**data) if data else None


def write_rollout(storage: Storage, model: str, rollout: Rollout | None) -> None:
    body = asdict(rollout) if rollout else {}
    storage.write_bytes(_key(model), json.dumps(body, sort_keys=True).encode())
