"""Distribution drift between two partitions: PSI for dense features, Jensen-Shannon for
categorical ones (conventions: PSI < 0.1 none, 0.1-0.25 moderate, > 0.25 significant)."""

from __future__ import annotations

import numpy as np
import pandas as pd

_EPS = 1e-6


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index with quantile bins of ``expected``."""
    expected = np.asarray(expected, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    expected = expected[np.isfinite(expected)]
    actual = actual[np.isfinite(actual)]
    if len(expected) == 0 or len(actual) == 0:
        return 0.0
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1)
    e = np.maximum(e / e.sum(), _EPS)
    a = np.maximum(a / a.sum(), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def js_divergence(expected: pd.Series, actual: pd.Series) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two categorical distributions."""
    p = expected.value_counts(normalize=True)
    q = actual.value_counts(normalize=True)
    idx = p.index.union(q.index)
    p = p.reindex(idx, fill_value=0.0).to_numpy()
    q = q.reindex(idx, fill_value=0.0).to_numpy()
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    m = (p + q) / 2

    def kl(x: np.ndarray, y: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / y[mask])))

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def feature_drift(
    previous: pd.DataFrame, current: pd.DataFrame, dense: list[str], categorical: list[str]
) -> dict[str, float]:
    """Drift score per feature (PSI for dense, JS for categorical)."""
    out = {}
    for col in dense:
        out[col] = round(psi(previous[col].to_numpy(), current[col].to_numpy()), 6)
    for col in categorical:
        out[col] = round(js_divergence(previous[col], current[col]), 6)
    return out
