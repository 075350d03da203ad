"""A shadow version's day on live traffic, judged from the day's served decisions.

The service scored a share of the day's rankings with the registry's ``shadow`` version too
(``serving/shadow.py``), off the request's path: users saw the served model's order only. From
those rows (``served_decisions`` with ``shadow_version``):

- **errors**: rankings the shadow failed to score (NaN scores) over rankings handed to it;
- **scores valid**: every score a probability in [0, 1];
- **latency**: the 99th percentile of its time per ranking (the service measured it);
- **score shift**: PSI of its live scores against its own scores on its offline holdout (the
  distribution it was released with), over deciles of the offline scores;
- **agreement with the served model**: mean Kendall tau per ranking (``scipy.stats.kendalltau``)
  and the share of rankings with the same first item;
- **off-policy CTR**: its own order from its live scores, estimated from the logged clicks and
  propensities (IPS, SNIPS; ``core.evaluation.off_policy``), next to the served CTR.

The day passes when there were at least ``min_rankings`` and errors, validity, latency and score
shift are within ``ShadowRules``; the release stage then moves a shadow to canary
(``release.new_version_alias: shadow``). Not enough rankings is "not judged yet", never a pass.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import kendalltau

from reckit_assets.core.evaluation import off_policy
from reckit_assets.core.monitoring.online import psi_counts
from reckit_assets.core.release.registry import CANARY, SHADOW, Registry

PASSED, FAILED, NOT_JUDGED = "passed", "failed", "not judged"


class ShadowRules(BaseModel):
    """A shadow day's limits: the ``shadow`` section of reckit.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_rankings: int = Field(200, ge=1)  # fewer: not judged (the shadow waits another day)
    max_error_share: float = Field(0.001, ge=0, le=1)
    max_latency_p99_ms: float = Field(50.0, gt=0)
    max_score_psi: float = Field(0.25, ge=0)  # the service's own score-PSI alert level


def judge_shadow(
    rows: pd.DataFrame, offline_scores: np.ndarray | None, rules: ShadowRules, confidence: float
) -> dict:
    """The day's figures and verdict for the one shadow version in ``rows`` (served decisions
    the shadow scored). ``offline_scores``: its scores on its offline holdout (None: unknown,
    the shift is not judged)."""
    rankings = int(rows["request_id"].nunique()) if "request_id" in rows else 0
    out: dict = {"rankings": rankings, "rows": len(rows), "checks": {}}
    if rankings == 0:
        return out | {"verdict": NOT_JUDGED, "why": "no ranking was scored by the shadow"}
    failed = rows.groupby("request_id")["shadow_score"].apply(lambda s: bool(s.isna().any()))
    ok = rows[~rows["request_id"].map(failed)]
    scores = ok["shadow_score"].to_numpy(float)
    latency = rows.groupby("request_id")["shadow_latency_ms"].first().to_numpy(float)
    out["error_share"] = float(failed.mean())
    out["scores_out_of_range"] = int(np.sum((scores < 0) | (scores > 1)))
    out["latency_p99_ms"] = float(np.nanpercentile(latency, 99)) if len(latency) else None
    out["score_psi"] = None
    if offline_scores is not None and len(offline_scores) and len(scores):
        edges = np.unique(np.quantile(offline_scores, np.linspace(0.1, 0.9, 9)))
        out["score_psi"] = psi_counts(
            np.bincount(np.searchsorted(edges, offline_scores), minlength=len(edges) + 1),
            np.bincount(np.searchsorted(edges, scores), minlength=len(edges) + 1),
        )
    taus, same_first = [], []
    for _, g in ok.groupby("request_id", sort=False):
        if len(g) >= 2:
            tau = kendalltau(g["shadow_score"], g["score"]).statistic
            if np.isfinite(tau):
                taus.append(tau)
        same_first.append(g["shadow_score"].idxmax() == g["score"].idxmax())
    out["kendall_tau_mean"] = float(np.mean(taus)) if taus else None
    out["same_first_item_share"] = float(np.mean(same_first)) if same_first else None
    out["served_ctr"] = float(ok["clicked"].mean()) if len(ok) else None
    out["off_policy"] = _off_policy(ok, confidence)
    checks = {
        "errors": out["error_share"] <= rules.max_error_share,
        "scores_valid": out["scores_out_of_range"] == 0,
        "latency": out["latency_p99_ms"] is not None
        and out["latency_p99_ms"] <= rules.max_latency_p99_ms,
        "score_shift": out["score_psi"] is None or out["score_psi"] <= rules.max_score_psi,
    }
    out["checks"] = checks
    if not all(checks.values()):
        bad = [k for k, v in checks.items() if not v]
        return out | {"verdict": FAILED, "why": _why(out, bad, rules)}
    if rankings < rules.min_rankings:
        return out | {
            "verdict": NOT_JUDGED,
            "why": f"{rankings} rankings scored (shadow.min_rankings: {rules.min_rankings})",
        }
    return out | {"verdict": PASSED, "why": f"{rankings} rankings scored within every limit"}


def _why(out: dict, bad: list[str], rules: ShadowRules) -> str:
    text = {
        "errors": lambda: (
            f"errors on {100 * out['error_share']:.2f}% of rankings "
            f"(shadow.max_error_share: {100 * rules.max_error_share:g}%)"
        ),
        "scores_valid": lambda: f"{out['scores_out_of_range']} scores outside [0, 1]",
        "latency": lambda: (
            f"p99 {out['latency_p99_ms']} ms per ranking "
            f"(shadow.max_latency_p99_ms: {rules.max_latency_p99_ms:g})"
        ),
        "score_shift": lambda: (
            f"score PSI {out['score_psi']:.3f} vs its offline holdout "
            f"(shadow.max_score_psi: {rules.max_score_psi:g})"
        ),
    }
    return "; ".join(text[k]() for k in bad)


def _off_policy(rows: pd.DataFrame, confidence: float) -> dict | None:
    """The shadow's CTR under its own order, from the logged propensities (IPS, SNIPS)."""
    if rows["request_id"].nunique() < 2:
        return None
    order = rows.assign(_s=-rows["shadow_score"]).sort_values(
        ["request_id", "_s", "policy_position"], kind="stable"
    )
    target = order.groupby("request_id").cumcount().reindex(rows.index).to_numpy()
    p = off_policy.propensities(
        rows["policy_position"].to_numpy(),
        target,
        rows["slate_size"].to_numpy(),
        rows["exploration_share"].to_numpy(float),
    )
    if np.any(p <= 0):
        return {"reason": "no exploration: its order is not supported by the logged traffic"}
    found = off_policy.estimate(
        rows["request_id"].to_numpy(),
        rows["position"].to_numpy(),
        rows["clicked"].to_numpy(float),
        target,
        p,
        confidence=confidence,
        logging_position=rows["policy_position"].to_numpy(),
    )
    return {k: v.as_dict() for k, v in found.items()}


def release_shadow(registry: Registry, model: str, judged: dict | None, by: str) -> dict:
    """Apply the day's shadow verdict through the registry (audited moves, compare-and-swap):
    a passed shadow becomes the canary when no canary is being judged (it waits otherwise); a
    failed one is cleared (never served); not judged yet, it stays. Resumable: a run killed
    between the two moves (canary set, shadow not yet cleared) finishes them on its rerun."""
    shadow = registry.alias(model, SHADOW)
    if shadow is None:
        return {"action": "none"}
    canary = registry.alias(model, CANARY)
    if canary == shadow:
        registry.set_alias(model, SHADOW, None, by, "shadow moved to canary", expected=shadow)
        return {"action": "to canary", "version": shadow}
    if judged is None or judged.get("version") != shadow:
        return {"action": "waiting", "version": shadow, "why": "no judged day for it yet"}
    verdict, why = judged["verdict"], judged["why"]
    if verdict == FAILED:
        move = registry.set_alias(
            model, SHADOW, None, by, f"shadow day failed: {why}", expected=shadow
        )
        return {"action": "rejected", "version": shadow, "why": why, "move": move.as_dict()}
    if verdict != PASSED:
        return {"action": "waiting", "version": shadow, "why": why}
    if canary is not None:
        return {"action": "waiting", "version": shadow, "why": f"canary {canary} is being judged"}
    registry.set_alias(model, CANARY, shadow, by, f"shadow day passed: {why}", expected=None)
    registry.set_alias(model, SHADOW, None, by, "shadow moved to canary", expected=shadow)
    return {"action": "to canary", "version": shadow, "why": why}
