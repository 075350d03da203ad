"""Next-item evaluation for similarity recommenders (item2vec, popularity), model-agnostic."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np


class NextItemRecommender(Protocol):
    """What next-item evaluation needs: top-k candidates for many anchors at once."""

    def top_k(self, anchors: Sequence[str], k: int) -> list[list[str]]: ...


def next_item_pairs(
    sequences: Iterable[Sequence[str]],
) -> tuple[list[str], list[str], list[set[str]]]:
    """(anchor, next item, rest of the session) for each consecutive pair of each session.

    A pair whose next item is the anchor again (a re-click) is left out: neither a similarity
    model nor popularity may recommend the anchor itself, so it could never be a hit.
    """
    anchors, nexts, rests, _ = _pairs(sequences)
    return anchors, nexts, rests


def _pairs(
    sequences: Iterable[Sequence[str]],
) -> tuple[list[str], list[str], list[set[str]], list[int]]:
    anchors: list[str] = []
    nexts: list[str] = []
    rests: list[set[str]] = []
    sessions: list[int] = []
    for s, seq in enumerate(sequences):
        items = [str(i) for i in seq]
        for i in range(len(items) - 1):
            a, b = items[i], items[i + 1]
            if a == b:
                continue
            anchors.append(a)
            nexts.append(b)
            rests.append(set(items[i + 1 :]) - {a})
            sessions.append(s)
    return anchors, nexts, rests, sessions


def next_item_values(
    model: NextItemRecommender, sequences: Sequence[Sequence[str]], k: int = 10
) -> dict[str, np.ndarray]:
    """Per-pair ``hit`` (0/1), ``recall`` and ``answered``, with each pair's ``session`` index.

    The paired bootstrap of the release gate resamples sessions over these arrays; their means
    are :func:`evaluate_next_item`'s metrics.
    """
    anchors, nexts, rests, sessions = _pairs(sequences)
    recs = model.top_k(anchors, k) if anchors else []
    return {
        "hit": np.array([b in set(r) for b, r in zip(nexts, recs, strict=True)], dtype=np.float64),
        "recall": np.array(
            [len(rest & set(r)) / len(rest) for rest, r in zip(rests, recs, strict=True)],
            dtype=np.float64,
        ),
        "answered": np.array([len(r) > 0 for r in recs], dtype=np.float64),
        "session": np.array(sessions, dtype=np.int64),
    }


def summarize(values: dict[str, np.ndarray], k: int) -> dict:
    """:func:`evaluate_next_item`'s metrics from :func:`next_item_values`' arrays."""
    if not values["hit"].size:
        return {
            f"hit_rate@{k}": float("nan"),
            f"recall@{k}": float("nan"),
            "pairs": 0,
            "coverage": float("nan"),
        }
    return {
        f"hit_rate@{k}": float(values["hit"].mean()),
        f"recall@{k}": float(values["recall"].mean()),
        "pairs": int(values["hit"].size),
        "coverage": float(values["answered"].mean()),
    }


def evaluate_next_item(
    model: NextItemRecommender, sequences: Iterable[Sequence[str]], k: int = 10
) -> dict:
    """Next-item metrics over held-out sessions.

    ``hit_rate@k``: share of pairs (a, b) whose b is among the top-k recommended for a.
    ``recall@k``: per pair, the share of the rest of the session (distinct items after a) found
    in that top-k, averaged over pairs. ``coverage``: share of anchors the model can answer for
    (unknown anchors count as misses, so a model cannot win by skipping hard cases).
    """
    return summarize(next_item_values(model, list(sequences), k), k)
