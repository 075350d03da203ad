"""Trivial baselines every real model must beat by a clear margin.

- :class:`ItemCTRPrior` ranks by the item's smoothed historical CTR (the ``item_ctr`` feature):
  what "sort by popularity-adjusted CTR" would give with no model at all.
- :class:`PopularityRecommender` answers "what comes next" with the most clicked items,
  whatever the anchor: the bar item2vec has to clear.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from reckit_assets.core.training.base import (
    ArtifactError,
    json_bytes,
    read_json,
    require_columns,
)

CTR_PRIOR_FILE = "item_ctr_prior.json"
POPULARITY_FILE = "popularity.json"


class ItemCTRPrior:
    """Ranker whose score is the ``item_ctr`` feature itself."""

    kind = "item_ctr_prior"
    column = "item_ctr"

    def params(self) -> dict:
        return {"column": self.column}

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        require_columns(frame, [self.column], "ItemCTRPrior.predict")
        values = frame[self.column].to_numpy(dtype=np.float64, na_value=np.nan)
        # item_ctr is already a smoothed probability; a missing one gets the mean of the batch.
        fill = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
        return np.clip(np.nan_to_num(values, nan=fill), 0.0, 1.0)

    def files(self) -> dict[str, bytes]:
        return {CTR_PRIOR_FILE: json_bytes({"kind": self.kind, **self.params()})}

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> ItemCTRPrior:
        meta = read_json(files, CTR_PRIOR_FILE, cls.kind)
        if not isinstance(meta, dict) or meta.get("column") != cls.column:
            raise ArtifactError(f"{cls.kind} {CTR_PRIOR_FILE}: unexpected content {meta!r}")
        return cls()


class PopularityRecommender:
    """Next-item baseline: the globally most clicked items, anchor excluded."""

    kind = "popularity"

    def __init__(self, ranked: list[tuple[str, int]] | None = None) -> None:
        self.ranked = list(ranked or [])  # (item_id, clicks), most clicked first

    def fit(self, corpus: list[list[str]]) -> PopularityRecommender:
        counts = Counter(str(i) for session in corpus for i in session)
        # Ties broken by id so the ranking (and the artifact) is deterministic.
        self.ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return self

    def params(self) -> dict:
        return {}

    def similar(self, item_id: str, k: int = 10) -> list[tuple[str, float]]:
        total = sum(c for _, c in self.ranked) or 1
        out = [(i, c / total) for i, c in self.ranked[: k + 1] if i != item_id]
        return out[:k]

    def top_k(self, anchors: Sequence[str], k: int) -> list[list[str]]:
        head = [i for i, _ in self.ranked[: k + 1]]
        return [[i for i in head if i != a][:k] for a in anchors]

    def files(self) -> dict[str, bytes]:
        return {POPULARITY_FILE: json_bytes([[i, c] for i, c in self.ranked])}

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> PopularityRecommender:
        ranked = read_json(files, POPULARITY_FILE, cls.kind)
        if not isinstance(ranked, list):
            raise ArtifactError(f"{cls.kind} {POPULARITY_FILE}: expected [[item_id, clicks], ...]")
        return cls([(str(i), int(c)) for i, c in ranked])
