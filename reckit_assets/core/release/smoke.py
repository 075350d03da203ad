"""Load a model version and score a small synthetic batch: finite, in range, or it is refused.

Used before a rollback moves production and by the inference service before a swap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reckit_assets.core.features.spec import FEATURES
from reckit_assets.core.training.base import Model, load_model


class SmokeTestError(RuntimeError):
    pass


def smoke_batch(rows: int = 8) -> pd.DataFrame:
    """Rows of every spec feature: defaults, plus varied values so a constant model shows."""
    data = {}
    for k, feature in enumerate(FEATURES):
        if feature.kind == "dense":
            data[feature.name] = np.linspace(0.0, 1.0 + k, rows)
        else:
            data[feature.name] = [f"smoke-{feature.name}-{i}" for i in range(rows)]
    return pd.DataFrame(data)


def smoke_test(kind: str, files: dict[str, bytes]) -> Model:
    """The loaded model, or :class:`SmokeTestError` saying what went wrong."""
    try:
        model = load_model(kind, files)
    except Exception as exc:
        raise SmokeTestError(f"{kind}: does not load: {exc}") from exc
    if hasattr(model, "predict"):
        scores = np.asarray(model.predict(smoke_batch()), dtype="float64")
        if scores.shape != (8,) or not np.isfinite(scores).all():
            raise SmokeTestError(f"{kind}: smoke batch gave non-finite or misshaped scores")
        if (scores < 0).any() or (scores > 1).any():
            raise SmokeTestError(f"{kind}: smoke batch scores outside [0, 1]")
    elif hasattr(model, "similar"):
        items = list(getattr(model, "items", None) or [])
        if not items:
            raise SmokeTestError(f"{kind}: no item vectors")
        similar = model.similar(items[0], 5)
        if not similar or not all(np.isfinite(score) for _, score in similar):
            raise SmokeTestError(f"{kind}: similar() gave no finite neighbours")
    return model
