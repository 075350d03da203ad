"""Off-policy estimates of a candidate ranker's CTR from traffic a logging policy served.

The logging policy explores: on a share ``epsilon`` of requests it shows the slate in a uniformly
random order, otherwise in its own order. So the probability that item ``i`` of a slate of ``n``
was shown at position ``k`` is known exactly:

    p(i, k) = (1 - epsilon) * [the logging order puts i at k] + epsilon / n

Clicks follow a position-based model (an item's click probability depends on the item and on the
position it is shown at, not on the other items), which is how the simulator and most
recommendation click logs are modelled. A candidate's ranking puts item ``i`` at ``t(i)``; an
item shown at exactly ``t(i)`` is evidence of how it does there, weighted by ``1 / p(i, t(i))``:

- **IPS**: clicks per impression = sum over slates of ``sum_i w_i y_i`` over the impressions,
  ``w_i = [shown at t(i)] / p(i, t(i))``: unbiased while every ``p(i, t(i)) > 0``
  (``epsilon > 0``).
- **SNIPS**: the same, divided by the sum of the weights instead of the impressions (whose
  expected value it is): a little biased, much less variable.
- **DR** (doubly robust): a reward model's prediction ``r(i, t(i))`` plus the IPS-weighted
  residual ``w_i (y_i - r(i, t(i)))``: unbiased when the propensities are right, whatever the
  reward model; less variable when it is good.

Confidence intervals: slates are independent, so each estimate is a mean (IPS, DR) or a ratio of
means (SNIPS: delta method) of per-slate sums, with a normal interval (scipy's ``norm``). Given
the logging order, the interval is widened to at least the exact Poisson (Garwood, ``chi2``)
interval of the clicks on items the candidate moves (``evidence_clicks``) times their weight:
those few heavily weighted clicks decide the estimate, and with few of them the slates' spread
understates it (none observed: no spread at all).
Validated against the simulator's truth in ``bench/off_policy.py`` (coverage, bias, variance,
the CTR that exploring costs; docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm

ESTIMATORS = ("ips", "snips", "dr")
MIN_EVIDENCE_CLICKS = 30


@dataclass(frozen=True)
class Estimate:
    """A CTR estimate (clicks per impression) with its normal confidence interval."""

    name: str
    value: float
    std_error: float
    ci_low: float
    ci_high: float
    slates: int
    matched: int  # impressions shown where the candidate would show them: the evidence
    # Clicks on items the candidate moves (shown at its position only by exploration): the
    # rare, heavily weighted events its change is judged on; -1 when unknown. Below
    # MIN_EVIDENCE_CLICKS the normal interval is not to be trusted (docs/benchmarks.md).
    evidence_clicks: int = -1

    @property
    def reliable(self) -> bool:
        return self.evidence_clicks >= MIN_EVIDENCE_CLICKS

    def covers(self, truth: float) -> bool:
        return self.ci_low <= truth <= self.ci_high

    def as_dict(self) -> dict:
        return asdict(self) | {"reliable": self.reliable}


def propensities(
    logging_position: np.ndarray,
    target_position: np.ndarray,
    slate_size: np.ndarray,
    epsilon: float | np.ndarray,
) -> np.ndarray:
    """p(i, t(i)): the probability the logging policy showed each item where the candidate
    would (its own order, or a uniformly random one on a share ``epsilon`` of slates; one
    epsilon, or one per row)."""
    eps = np.asarray(epsilon, dtype=float)
    if not np.all((eps >= 0.0) & (eps <= 1.0)):
        raise ValueError(f"epsilon={epsilon}: expected a share in [0, 1]")
    same = np.asarray(logging_position) == np.asarray(target_position)
    return (1.0 - eps) * same + eps / np.asarray(slate_size, dtype=float)


def estimate(
    slate: np.ndarray,
    shown_position: np.ndarray,
    clicked: np.ndarray,
    target_position: np.ndarray,
    propensity: np.ndarray,
    reward_model: np.ndarray | None = None,
    confidence: float = 0.95,
    logging_position: np.ndarray | None = None,
) -> dict[str, Estimate]:
    """IPS, SNIPS and (with a reward model) DR estimates of the candidate's CTR.

    One row per logged impression: its ``slate`` (any integer id), the ``shown_position``, whether
    it was ``clicked``, the ``target_position`` the candidate gives the item and the logging
    policy's ``propensity`` of showing it there (:func:`propensities`). ``reward_model``: the
    predicted click probability of the item at its target position (for DR).
    ``logging_position``: where the logging policy's own order put each item (for
    ``evidence_clicks``).
    """
    slate = np.asarray(slate)
    p = np.asarray(propensity, dtype=float)
    y = np.asarray(clicked, dtype=float)
    matched = np.asarray(shown_position) == np.asarray(target_position)
    unsupported = int(np.sum(p <= 0))
    if unsupported:
        raise ValueError(
            f"{unsupported} of {len(p)} impressions: the logging policy never shows the item "
            "where the candidate would (propensity 0), so the candidate's CTR is not identified "
            "from this log; exploration (epsilon > 0) gives every position a chance"
        )
    w = np.where(matched, 1.0 / p, 0.0)
    _, groups = np.unique(slate, return_inverse=True)
    n_slates = int(groups.max()) + 1 if len(groups) else 0
    if n_slates < 2:
        raise ValueError(f"{n_slates} slates: at least 2 are needed for an interval")

    def per_slate(values: np.ndarray) -> np.ndarray:
        return np.bincount(groups, weights=values, minlength=n_slates)

    impressions = per_slate(np.ones_like(y))
    clicks_w, weights = per_slate(w * y), per_slate(w)
    z = float(norm.ppf(0.5 + confidence / 2))
    n_matched = int(matched.sum())
    evidence, widen = -1, None
    if logging_position is not None:
        moved = np.asarray(logging_position) != np.asarray(target_position)
        evidence = int(np.sum(matched & moved & (y > 0)))
        if moved.any():
            # The candidate's changes are judged on few, heavily weighted clicks (K): a count,
            # whose exact (Garwood) Poisson interval bounds what K could have been. With K small
            # the slates' spread says little (K = 0: no spread at all), so each interval is
            # widened to at least that count's interval times the weight a click there carries.
            alpha = 1.0 - confidence
            low = float(chi2.ppf(alpha / 2, 2 * evidence) / 2) if evidence else 0.0
            high = float(chi2.ppf(1 - alpha / 2, 2 * evidence + 2) / 2)
            weight = float(np.mean(1.0 / p[moved]))
            widen = ((evidence - low) * weight, (high - evidence) * weight)
    out = {
        "ips": _mean_ratio("ips", clicks_w, impressions, z, n_matched, fixed_denominator=True),
        "snips": _mean_ratio("snips", clicks_w, weights, z, n_matched, fixed_denominator=False),
    }
    if reward_model is not None:
        r = np.asarray(reward_model, dtype=float)
        dr = per_slate(r + w * (y - r))
        out["dr"] = _mean_ratio("dr", dr, impressions, z, n_matched, fixed_denominator=True)
    denominators = {"ips": impressions.sum(), "snips": weights.sum(), "dr": impressions.sum()}
    result = {}
    for k, v in out.items():
        v = replace(v, evidence_clicks=evidence)
        if widen is not None and denominators[k] > 0 and np.isfinite(v.value):
            v = replace(
                v,
                ci_low=min(v.ci_low, v.value - widen[0] / denominators[k]),
                ci_high=max(v.ci_high, v.value + widen[1] / denominators[k]),
            )
        result[k] = v
    return result


def _mean_ratio(
    name: str, num: np.ndarray, den: np.ndarray, z: float, matched: int, fixed_denominator: bool
) -> Estimate:
    """sum(num) / sum(den) over slates, with the standard error of a mean (the denominator is
    the fixed number of impressions) or of a ratio of means (delta method)."""
    s = len(num)
    mean_den = float(np.mean(den))
    if mean_den <= 0:
        nan = float("nan")
        return Estimate(name, nan, nan, nan, nan, s, matched)
    value = float(np.sum(num) / np.sum(den))
    if fixed_denominator:
        se = float(np.std(num, ddof=1) / np.sqrt(s) / mean_den)
    else:
        se = float(np.std(num - value * den, ddof=1) / np.sqrt(s) / mean_den)
    return Estimate(name, value, se, value - z * se, value + z * se, s, matched)


def ranker_estimates(
    decisions: pd.DataFrame,
    holdout: pd.DataFrame,
    predict: Callable[[pd.DataFrame], np.ndarray],
    confidence: float = 0.95,
) -> dict:
    """A candidate ranker's CTR estimated from the day's served decisions (the service's
    decision log with ``clicked``; ``core.monitoring.decisions``), next to the logging policy's
    realised CTR.

    The candidate ranks each logged slate by its scores of the slate's holdout rows (point-in-
    time features of the same ``(request_id, item_id)``, scored as the service does, at
    position 0); its reward model for DR is its own score of each item at its target position.
    Only complete slates are used (every logged item found in the holdout). Without exploration
    a candidate that would reorder a slate has no support there: the estimate is then refused
    (``reason``), never made up.
    """
    keys = ["request_id", "item_id"]
    out: dict = {"logged_rows": len(decisions), "confidence": confidence}
    if decisions.empty:
        return out | {"reason": "no served decisions for this day"}
    # What was served comes from the log; what the candidate scores, from the holdout only.
    served = ["position", "policy_position", "slate_size", "exploration_share", "explored",
              "clicked"]  # fmt: skip
    rows = (
        decisions[keys + served]
        .astype({"request_id": str, "item_id": str})
        .merge(
            holdout.drop(columns=[c for c in served if c in holdout and c != "position"])
            .rename(columns={"position": "position_sample"})
            .astype({"request_id": str, "item_id": str})
            .drop_duplicates(keys),
            on=keys,
            how="left",
            indicator=True,
        )
    )
    found = (rows["_merge"] == "both").groupby(rows["request_id"]).transform("all")
    complete = found & (
        rows.groupby("request_id")["item_id"].transform("size") == rows["slate_size"]
    )
    rows = rows[complete].drop(columns="_merge").reset_index(drop=True)
    out |= {"slates": int(rows["request_id"].nunique()), "rows": len(rows)}
    if out["slates"] < 2:
        return out | {"reason": f"{out['slates']} complete slates found in the holdout"}
    eps = rows["exploration_share"].to_numpy(float)
    out["exploration_share"] = float(np.mean(eps))
    out["explored_slates"] = int(rows.groupby("request_id")["explored"].first().sum())
    out["logged_ctr"] = float(rows["clicked"].mean())
    features = rows.assign(position=0)  # as the service scores: the ranking decides the slot
    score = np.asarray(predict(features), dtype=float)
    order = pd.DataFrame({"r": rows["request_id"], "s": -score, "p": rows["policy_position"]})
    target = order.sort_values(["r", "s", "p"], kind="stable").groupby("r").cumcount()
    target = target.reindex(order.index).to_numpy()
    reward = np.clip(np.asarray(predict(rows.assign(position=target)), dtype=float), 0.0, 1.0)
    p = propensities(rows["policy_position"].to_numpy(), target, rows["slate_size"].to_numpy(), eps)
    slate = rows["request_id"].to_numpy()
    shown = rows["position"].to_numpy()
    clicked = rows["clicked"].to_numpy(float)
    out["agreement"] = float(np.mean(target == rows["policy_position"].to_numpy()))
    if np.any(p <= 0):
        return out | {
            "reason": f"{int(np.sum(p <= 0))} of {len(p)} items would move where the logging "
            "policy never shows them (no exploration: RECKIT_EXPLORATION_SHARE = 0)"
        }
    policy = rows["policy_position"].to_numpy()
    found = estimate(slate, shown, clicked, target, p, reward, confidence, policy)
    out["candidate"] = {k: v.as_dict() for k, v in found.items()}
    out["evidence_clicks"] = found["snips"].evidence_clicks
    out["reliable"] = found["snips"].reliable
    own = rows["policy_position"].to_numpy()
    p_own = propensities(own, own, rows["slate_size"].to_numpy(), eps)
    out["logging_policy"] = {
        k: v.as_dict()
        for k, v in estimate(slate, shown, clicked, own, p_own, None, confidence).items()
    }
    return out
