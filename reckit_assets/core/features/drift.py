"""Distribution drift of the training samples vs a reference, accounting for sample size.

Each feature gets a test (is the shift real?) and an effect size (does it matter?):

- dense: two-sample Kolmogorov-Smirnov p-value (``scipy.stats.ks_2samp``) and the Wasserstein-1
  distance (``scipy.stats.wasserstein_distance``) divided by the pooled standard deviation.
  Unlike PSI with quantile bins, W1 does not jump when a point mass (e.g. the smoothing prior every
  unseen item gets, which moves a little each day) crosses a bin edge.
- categorical: chi-square test of the 2 x K contingency table (``scipy.stats.chi2_contingency``)
  and the Jensen-Shannon divergence (base 2, in [0, 1]).

The check (``quality.drift``) flags a feature only when both are beyond their limits, and only
informs (a warning with every figure, read by the retraining path): a new population is the
world changing, a reason to retrain, not a corrupt day. It blocks only on a **collapse**: a
feature that varied over the reference days is constant today (a broken join or a default filled
everywhere), which no change of population produces.

Samples are not independent: an item's features repeat over all its impressions, a user's over
all of theirs. The p-values are therefore computed over the **units** a feature belongs to (one
value per item for item features, per user for user features, per (user, category) for the
user x category ones; :data:`UNITS`), not over rows, so a few dozen users cannot look like
thousands of independent observations. The effect size stays per row: what the model sees.
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


# The columns identifying the unit a feature's value belongs to (see the module docstring);
# features not listed (position, device) vary per impression: the row is the unit.
UNITS: dict[str, tuple[str, ...]] = {
    "item_ctr": ("item_id",),
    "item_cvr": ("item_id",),
    "item_price": ("item_id",),
    "item_impressions_7d": ("item_id",),
    "item_category": ("item_id",),
    "user_age": ("user_id",),
    "user_gender": ("user_id",),
    "user_ctr": ("user_id",),
    "user_impressions_7d": ("user_id",),
    "user_region": ("user_id",),
    "user_category_ctr": ("user_id", "item_category"),
    "user_category_impressions_7d": ("user_id", "item_category"),
    "cross_age_x_ctr": ("user_id", "item_id"),
    "cross_gender_x_price": ("user_id", "item_id"),
}
COLLAPSE_MIN_ROWS = 100  # fewer rows today: too few to call a constant feature a collapse


def unit_columns() -> list[str]:
    return sorted({c for cols in UNITS.values() for c in cols})


def _units(frame: pd.DataFrame, col: str) -> pd.Series:
    """One value per unit of ``col`` (the first seen: a unit's feature is constant in a day)."""
    keys = [k for k in UNITS.get(col, ()) if k in frame.columns]
    if not keys:
        return frame[col]
    return frame.drop_duplicates(keys)[col]


def dense_drift(
    reference: np.ndarray,
    current: np.ndarray,
    reference_units: np.ndarray | None = None,
    current_units: np.ndarray | None = None,
) -> FeatureDrift:
    """Effect size over rows; the KS test over units when given (else over rows)."""
    ref = np.asarray(reference, dtype="float64")
    cur = np.asarray(current, dtype="float64")
    ref, cur = _sample(ref[np.isfinite(ref)], 1), _sample(cur[np.isfinite(cur)], 2)
    if len(ref) == 0 or len(cur) == 0:
        return FeatureDrift("dense", 0.0, 1.0, len(ref), len(cur))
    collapsed = (
        len(cur) >= COLLAPSE_MIN_ROWS and float(np.ptp(cur)) == 0.0 and float(np.ptp(ref)) > 0.0
    )
    # The pooled spread: a reference concentrated on a point mass (most users unseen, all at
    # the prior) would otherwise turn a modest move into a huge standardized one.
    scale = float(np.std(np.concatenate([ref, cur])))
    if scale == 0.0:
        scale = max(abs(float(np.mean(ref))), 1e-9)
    effect = float(stats.wasserstein_distance(ref, cur)) / scale
    ref_u = ref if reference_units is None else _finite(reference_units)
    cur_u = cur if current_units is None else _finite(current_units)
    p = (
        float(stats.ks_2samp(ref_u, cur_u, method="asymp").pvalue)
        if len(ref_u) and len(cur_u)
        else 1.0
    )
    return FeatureDrift("dense", effect, p, len(ref_u), len(cur_u), collapsed)


def _finite(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype="float64")
    return v[np.isfinite(v)]


def _counts(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    p_counts = reference.astype("string").fillna("<null>").value_counts()
    q_counts = current.astype("string").fillna("<null>").value_counts()
    idx = p_counts.index.union(q_counts.index)
    p = p_counts.reindex(idx, fill_value=0).to_numpy(dtype="float64")
    q = q_counts.reindex(idx, fill_value=0).to_numpy(dtype="float64")
    return p, q


def categorical_drift(
    reference: pd.Series,
    current: pd.Series,
    reference_units: pd.Series | None = None,
    current_units: pd.Series | None = None,
) -> FeatureDrift:
    """Jensen-Shannon over rows; the chi-square test over units when given (else rows)."""
    p, q = _counts(reference, current)
    if p.sum() == 0 or q.sum() == 0:
        return FeatureDrift("categorical", 0.0, 1.0, int(p.sum()), int(q.sum()))
    js = float(jensenshannon(p / p.sum(), q / q.sum(), base=2) ** 2)
    collapsed = q.sum() >= COLLAPSE_MIN_ROWS and (q > 0).sum() == 1 and (p > 0).sum() > 1
    if reference_units is not None and current_units is not None:
        pu, qu = _counts(reference_units, current_units)
    else:
        pu, qu = p, q
    p_value = _chi2_pvalue(pu, qu) if pu.sum() and qu.sum() else 1.0
    return FeatureDrift("categorical", js, p_value, int(pu.sum()), int(qu.sum()), collapsed)


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
    """Test and effect size per feature, current day vs the pooled reference days. Frames that
    carry the unit columns (:func:`unit_columns`) are tested over units; the reference's units
    are per reference day (a unit seen on several days counts once per day)."""
    ref_days = reference.get("_day")
    out = {}

    def units(frame: pd.DataFrame, col: str, by_day: pd.Series | None) -> pd.Series | None:
        keys = [k for k in UNITS.get(col, ()) if k in frame.columns]
        if not keys:
            return None
        if by_day is not None:
            return frame.assign(_day=by_day).drop_duplicates([*keys, "_day"])[col]
        return _units(frame, col)

    for col in dense:
        ru, cu = units(reference, col, ref_days), units(current, col, None)
        out[col] = dense_drift(
            reference[col].to_numpy(),
            current[col].to_numpy(),
            None if ru is None else ru.to_numpy(),
            None if cu is None else cu.to_numpy(),
        )
    for col in categorical:
        ru, cu = units(reference, col, ref_days), units(current, col, None)
        out[col] = categorical_drift(reference[col], current[col], ru, cu)
    return out
