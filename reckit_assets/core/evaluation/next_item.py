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
    anchors: list[str] = []
    nexts: list[str] = []
    rests: list[set[str]] = []
    for seq in sequences:
        items = [str(i) for i in seq]
        for i in range(len(items) - 1):
            a, b = items[i], items[i + 1]
            if a == b:
                continue
            anchors.append(a)
            nexts.append(b)
            rests.append(set(items[i + 1 :]) - {a})
    return anchors, nexts, rests


def evaluate_next_item(
    model: NextItemRecommender, sequences: Iterable[Sequence[str]], k: int = 10
) -> dict:
    """Next-item metrics over held-out sessions.

    ``hit_rate@k``: share of pairs (a, b) whose b is among the top-k recommended for a.
    ``recall@k``: per pair, the share of the rest of the session (distinct items after a) found
    in that top-k, averaged over pairs. ``coverage``: share of anchors the model can answer for
    (unknown anchors count as misses, so a model cannot win by skipping hard cases).
    """
    anchors, nexts, rests = next_item_pairs(sequences)
    if not anchors:
        return {
            f"hit_rate@{k}": float("nan"),
            f"recall@{k}": float("nan"),
            "pairs": 0,
            "coverage": float("nan"),
        }
    recs = model.top_k(anchors, k)
    hits = np.array([b in set(r) for b, r in zip(nexts, recs, strict=True)], dtype=np.float64)
    recall = np.array(
        [len(rest & set(r)) / len(rest) for rest, r in zip(rests, recs, strict=True)],
        dtype=np.float64,
    )
    answered = np.array([len(r) > 0 for r in recs], dtype=np.float64)
    return {
        f"hit_rate@{k}": float(hits.mean()),
        f"recall@{k}": float(recall.mean()),
        "pairs": len(anchors),
        "coverage": float(answered.mean()),
    }
