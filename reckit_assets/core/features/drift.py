"""Distribution drift of the training samples vs a reference, accounting for sample size.

Each feature gets a test (is the shift real?) and an effect size (does it matter?):

- dense: two-sample Kolmogorov-Smirnov p-value (``scipy.stats.ks_2samp``) and the Wasserstein-1
  distance (``scipy.stats.wasserstein_distance``) divided by the pooled standard deviation.
  Unlike PSI with quantile bins, W1 does not jump when a point mass (e.g. the smoothing prior every
  unseen item gets, which moves a little each day) crosses a bin edge.
- categorical: chi-square test of the 2 x K contingency table (``scipy.stats.chi2_contingency``)
  and the Jensen-Shannon divergence (base 2, in [0, 1]).

The check (``quality.drift``) fails a feature only when both are beyond their limits. Samples are
not independent (an item's features repeat over its impressions), so the p-value overstates the
evidence on big days; the effect-size limit is what bounds false blocks there, and it was chosen
from measured clean days (bench/gates_data.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from reckit_assets.core.ingest.quality import FeatureDrift

MAX_ROWS = 200_000  # each side is subsampled (deterministically) beyond this


def _sample(values: np.ndarray, seed: int) -> np.ndarray:
    if len(values) <= MAX_ROWS:
        return values
    return np.random.default_rng(seed).choice(values, MAX_ROWS, replace=False)


def dense_drift(reference: np.ndarray, current: np.ndarray) -> FeatureDrift:
    ref = np.asarray(reference, dtype="float64")
    cur = np.asarray(current, dtype="float64")
    ref, cur = _sample(ref[np.isfinite(ref)], 1), _sample(cur[np.isfinite(cur)], 2)
    if len(ref) == 0 or len(cur) == 0:
        return FeatureDrift("dense", 0.0, 1.0, len(ref), len(cur))
    # The pooled spread: a reference concentrated on a point mass (most users unseen, all at
    # the prior) would otherwise turn a modest move into a huge standardized one.
    scale = float(np.std(np.concatenate([ref, cur])))
    if scale == 0.0:
        scale = max(abs(float(np.mean(ref))), 1e-9)
    effect = float(stats.wasserstein_distance(ref, cur)) / scale
    p = float(stats.ks_2samp(ref, cur, method="asymp").pvalue)
    return FeatureDrift("dense", effect, p, len(ref), len(cur))


def categorical_drift(reference: pd.Series, current: pd.Series) -> FeatureDrift:
    p_counts = reference.astype("string").fillna("<null>").value_counts()
    q_counts = current.astype("string").fillna("<null>").value_counts()
    idx = p_counts.index.union(q_counts.index)
    p = p_counts.reindex(idx, fill_value=0).to_numpy(dtype="float64")
    q = q_counts.reindex(idx, fill_value=0).to_numpy(dtype="float64")
    if p.sum() == 0 or q.sum() == 0:
        return FeatureDrift("categorical", 0.0, 1.0, int(p.sum()), int(q.sum()))
    js = float(jensenshannon(p / p.sum(), q / q.sum(), base=2) ** 2)
    return FeatureDrift("categorical", js, _chi2_pvalue(p, q), int(p.sum()), int(q.sum()))


def _chi2_pvalue(p: np.ndarray, q: np.ndarray) -> float:
    """Chi-square test of homogeneity, with categories whose expected count is below 5 pooled
    into one (the usual validity condition of the chi-square approximation)."""
    total = p.sum() + q.sum()
    expected_min = (p + q) * min(p.sum(), q.sum()) / total
    small = expected_min < 5
    columns = [np.vstack([p[~small], q[~small]])]
    if small.any():
        pooled = np.array([[p[small].sum()], [q[small].sum()]])
        if pooled.sum() * min(p.sum(), q.sum()) / total >= 5:
            columns.append(pooled)
    table = np.hstack(columns)
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(stats.chi2_contingency(table).pvalue)


def feature_drift(
    reference: pd.DataFrame, current: pd.DataFrame, dense: list[str], categorical: list[str]
) -> dict[str, FeatureDrift]:
    """Test and effect size per feature, current day vs the pooled reference days."""
    out = {}
    for col in dense:
        out[col] = dense_drift(reference[col].to_numpy(), current[col].to_numpy())
    for col in categorical:
        out[col] = categorical_drift(reference[col], current[col])
    return out
