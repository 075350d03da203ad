"""Offline metrics for click models: AUC, logloss, GAUC, calibration, slices, bootstrap CIs.

Plain numpy/pandas (scipy for the normal tail) so evaluation, the release gate and monitoring
compute metrics the same way. The bootstraps resample whole users (or sessions): their rows are
correlated, so resampling rows would understate the variance.
Everything is vectorized: a 100k-row holdout with a 200-replicate bootstrap takes about a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

LOGLOSS_EPS = 1e-7
METRICS = ("auc", "logloss")


def _as_arrays(
    labels: Sequence | np.ndarray, scores: Sequence | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels has {y.size} rows but scores has {s.size}")
    if y.size and not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0/1")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} non-finite values")
    return y, s


def _tie_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of ``scores`` and the start index of each run of equal scores in that order."""
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return order, starts


def _weighted_auc(y_sorted: np.ndarray, w: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """AUC for each row of weights ``w`` (replicates, rows) over rows pre-sorted by score.

    Mann-Whitney with ties counted half: sum over positives of the negative weight below them
    plus half the negative weight tied with them, over W+ x W-.
    """
    pos = np.add.reduceat(w * y_sorted, starts, axis=1)
    neg = np.add.reduceat(w * (1.0 - y_sorted), starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    num = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def auc(labels: Sequence | np.ndarray, scores: Sequence | np.ndarray) -> float:
    """Area under the ROC curve (ties count half). Raises if only one class is present."""
    y, s = _as_arrays(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(f"AUC needs both classes; got {n_pos} positives in {y.size} rows")
    order, starts = _tie_groups(s)
    return float(_weighted_auc(y[order], np.ones((1, y.size)), starts)[0])


def logloss(
    labels: Sequence | np.ndarray, scores: Sequence | np.ndarray, eps: float = LOGLOSS_EPS
) -> float:
    """Mean binary cross-entropy; probabilities clipped to [eps, 1-eps] so a 0/1 score is finite."""
    y, s = _as_arrays(labels, scores)
    if y.size == 0:
        raise ValueError("logloss of zero rows")
    return float(_row_logloss(y, s, eps).mean())


def _row_logloss(y: np.ndarray, s: np.ndarray, eps: float = LOGLOSS_EPS) -> np.ndarray:
    p = np.clip(s, eps, 1.0 - eps)
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def gauc(
    labels: Sequence | np.ndarray, scores: Sequence | np.ndarray, users: Sequence | np.ndarray
) -> float:
    """Group AUC: sum_u n_u * AUC_u / sum_u n_u over users whose rows hold both classes.

    Users with only clicks or only non-clicks carry no ranking information and are skipped;
    NaN when no user qualifies.
    """
    stats = gauc_stats(labels, scores, users)
    return stats["gauc"]


def gauc_stats(
    labels: Sequence | np.ndarray, scores: Sequence | np.ndarray, users: Sequence | np.ndarray
) -> dict:
    """GAUC plus how many users (and their rows) it was computed over."""
    y, s = _as_arrays(labels, scores)
    users = np.asarray(users)
    if users.shape[0] != y.size:
        raise ValueError(f"users has {users.shape[0]} rows but labels has {y.size}")
    frame = pd.DataFrame({"u": users, "y": y, "s": s})
    # Average rank within the user handles ties exactly like the global AUC.
    frame["r"] = frame.groupby("u", sort=False)["s"].rank(method="average")
    frame["ry"] = frame["r"] * frame["y"]
    g = frame.groupby("u", sort=False).agg(
        n=("y", "size"), pos=("y", "sum"), rank_pos=("ry", "sum")
    )
    g = g[(g["pos"] > 0) & (g["pos"] < g["n"])]
    if g.empty:
        return {"gauc": float("nan"), "users": 0, "rows": 0}
    neg = g["n"] - g["pos"]
    auc_u = (g["rank_pos"] - g["pos"] * (g["pos"] + 1) / 2) / (g["pos"] * neg)
    value = float((g["n"] * auc_u).sum() / g["n"].sum())
    return {"gauc": value, "users": len(g), "rows": int(g["n"].sum())}


def calibration(labels: Sequence | np.ndarray, scores: Sequence | np.ndarray) -> dict:
    """Mean predicted probability, observed rate and their ratio (1.0 = calibrated on average)."""
    y, s = _as_arrays(labels, scores)
    if y.size == 0:
        raise ValueError("calibration of zero rows")
    predicted, observed = float(s.mean()), float(y.mean())
    ratio = predicted / observed if observed > 0 else float("nan")
    return {"mean_predicted": predicted, "observed": observed, "ratio": ratio}


def _summary(y: np.ndarray, s: np.ndarray, users: np.ndarray) -> dict:
    both = 0 < y.sum() < y.size
    g = gauc_stats(y, s, users)
    return {
        "rows": int(y.size),
        "positives": int(y.sum()),
        "auc": auc(y, s) if both else None,
        "logloss": logloss(y, s),
        "gauc": g["gauc"] if g["users"] else None,
        "gauc_users": g["users"],
        "calibration": calibration(y, s),
    }


def ranking_report(
    frame: pd.DataFrame,
    scores: Sequence | np.ndarray,
    label_column: str = "label",
    user_column: str = "user_id",
) -> dict:
    """Overall metrics plus slices by new/returning user and by device.

    ``frame`` holds the label, ``user_id``, ``device`` and ``is_new_user`` of each scored row.
    A slice with one class only reports ``auc: None`` instead of failing the whole report.
    """
    missing = [c for c in (label_column, user_column, "device", "is_new_user") if c not in frame]
    if missing:
        raise ValueError(f"ranking_report: frame lacks columns {missing}")
    y, s = _as_arrays(frame[label_column].to_numpy(), scores)
    users = frame[user_column].to_numpy()
    report = _summary(y, s, users)
    slices: dict[str, dict] = {}
    new = frame["is_new_user"].to_numpy().astype(bool)
    for name, mask in (("new_users", new), ("returning_users", ~new)):
        if mask.any():
            slices[name] = _summary(y[mask], s[mask], users[mask])
    device = frame["device"].astype("string").fillna("").to_numpy()
    for value in sorted(set(device.tolist())):
        mask = device == value
        slices[f"device={value}"] = _summary(y[mask], s[mask], users[mask])
    report["slices"] = slices
    return report


def bootstrap_diff(
    labels: Sequence | np.ndarray,
    cand: Sequence | np.ndarray,
    base: Sequence | np.ndarray,
    groups: Sequence | np.ndarray,
    metric: str = "auc",
    n: int = 200,
    seed: int = 7,
    level: float = 0.95,
) -> dict:
    """``metric(cand) - metric(base)`` with a percentile CI from resampling groups (users).

    Rows of one user are correlated, so whole users are drawn with replacement; a replicate is
    the per-row weight "how many times was this row's user drawn", which lets all replicates be
    computed with a few array operations instead of re-slicing frames ``n`` times.
    """
    if metric not in METRICS:
        raise ValueError(f"bootstrap_diff: metric must be one of {METRICS}, got {metric!r}")
    y, c = _as_arrays(labels, cand)
    _, b = _as_arrays(labels, base)
    if metric == "logloss":
        return bootstrap_mean_diff(
            _row_logloss(y, c), _row_logloss(y, b), groups, n=n, seed=seed, level=level
        )
    counts, codes = _group_counts(groups, y.size, n, seed)
    point = auc(y, c) - auc(y, b)
    oc, sc = _tie_groups(c)
    ob, sb = _tie_groups(b)
    diffs = np.empty(n)
    chunk = max(1, 4_000_000 // max(y.size, 1))  # bound memory: chunk x rows floats
    codes_c, codes_b, y_c, y_b = codes[oc], codes[ob], y[oc], y[ob]
    for lo in range(0, n, chunk):
        part = counts[lo : lo + chunk]
        diffs[lo : lo + chunk] = _weighted_auc(y_c, part[:, codes_c], sc) - _weighted_auc(
            y_b, part[:, codes_b], sb
        )
    return _interval(point, diffs, level)


def bootstrap_mean_diff(
    cand_values: Sequence | np.ndarray,
    base_values: Sequence | np.ndarray,
    groups: Sequence | np.ndarray,
    n: int = 200,
    seed: int = 7,
    level: float = 0.95,
) -> dict:
    """``mean(cand_values) - mean(base_values)`` (paired rows) with a CI from resampling groups.

    Used for logloss (per-row losses) and next-item hit rate / recall (per-pair values, grouped
    by session). Same replicates for the same (groups, n, seed) as :func:`bootstrap_diff`.
    """
    vc = np.asarray(cand_values, dtype=np.float64).ravel()
    vb = np.asarray(base_values, dtype=np.float64).ravel()
    if vc.shape != vb.shape:
        raise ValueError(f"cand_values has {vc.size} rows but base_values has {vb.size}")
    if vc.size == 0:
        raise ValueError("bootstrap of zero rows")
    counts, codes = _group_counts(groups, vc.size, n, seed)
    n_groups = counts.shape[1]
    sum_c = np.bincount(codes, weights=vc, minlength=n_groups)
    sum_b = np.bincount(codes, weights=vb, minlength=n_groups)
    rows = np.bincount(codes, minlength=n_groups).astype(np.float64)
    point = (sum_c.sum() - sum_b.sum()) / rows.sum()
    diffs = (counts @ sum_c - counts @ sum_b) / (counts @ rows)
    return _interval(point, diffs, level)


def _group_counts(
    groups: Sequence | np.ndarray, size: int, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """counts[r, g]: times group g was drawn in replicate r (a multinomial draw of n_groups),
    and each row's group code."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(groups)), sort=True)
    if codes.shape[0] != size:
        raise ValueError(f"groups has {codes.shape[0]} rows but labels has {size}")
    n_groups = len(uniques)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n, n_groups))
    counts = np.zeros((n, n_groups), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(n), n_groups), draws.ravel()), 1.0)
    return counts, codes


def _interval(point: float, diffs: np.ndarray, level: float) -> dict:
    """Normal interval point ± z x the bootstrap standard error of the replicates ``diffs``.

    Not the percentile interval: with a few hundred replicates, its 2.5% endpoint rests on a
    handful of draws (Monte Carlo sd ~0.19 standard errors at 200 replicates), while the
    standard error's own error is ~1/sqrt(2 n) (~0.07 SE at the bound with 400 replicates).
    The percentile bounds are kept for reference (``pct_low`` / ``pct_high``)."""
    from scipy import stats

    diffs = diffs[np.isfinite(diffs)]
    alpha = (1.0 - level) / 2.0
    if diffs.size > 1:
        p_low, p_high = np.quantile(diffs, [alpha, 1.0 - alpha])
        se = float(diffs.std(ddof=1))
        z = float(stats.norm.ppf(1.0 - alpha))
        low, high = point - z * se, point + z * se
    else:
        low = high = se = p_low = p_high = float("nan")
    return {
        "diff": float(point),
        "ci_low": float(low),
        "ci_high": float(high),
        "se": se,
        "pct_low": float(p_low),
        "pct_high": float(p_high),
        "replicates": int(diffs.size),
        "level": level,
        "interval": "normal (bootstrap SE)",
    }


def p_below(estimate: dict, bound: float) -> float:
    """One-sided p-value for H0 "true diff >= bound" against H1 "true diff < bound".

    Normal approximation with the bootstrap standard error (scipy's normal CDF): small when the
    estimate lies well below ``bound``. A zero standard error gives 0 or 1.
    """
    from scipy.stats import norm

    diff, se = estimate["diff"], estimate["se"]
    if not np.isfinite(diff) or not np.isfinite(se):
        return 1.0
    if se == 0:
        return 0.0 if diff < bound else 1.0
    return float(norm.cdf((diff - bound) / se))
