"""Applying decisions: the canary rollout state, verdicts through the registry, production's own
regression check against its trailing baseline, and the retraining signal.

The rollout state itself (one JSON object per model beside the registry) is in rollout_state.py,
which the service reads without this module's statistics. The registry's alias log stays the
audit trail of every move: each move made here is ``by`` the judge or the guard, with the
verdict's figures as its reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from reckit_assets.core.monitoring.judge import (
    CONTINUE,
    INCONCLUSIVE,
    PROMOTE,
    ROLLBACK,
    ArmMetrics,
    JudgeConfig,
    Verdict,
    log_ctr_variance,
)
from reckit_assets.core.monitoring.rollout_state import (
    Rollout,
    read_rollout,
    write_rollout,
)
from reckit_assets.core.release.registry import CANARY, PRODUCTION, Registry


class GuardConfig(BaseModel):
    """Production's daily regression check and the retraining trigger."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    baseline_days: int = Field(3, ge=1)  # trailing days of the same production version
    alpha: float = Field(0.01, gt=0, lt=1)  # one-sided z test on log CTR ratio, per day
    rollback_ctr_drop: float = Field(0.20, gt=0, lt=1)  # relative drop that rolls back
    retrain_ctr_drop: float = Field(0.05, gt=0, lt=1)  # relative drop that requests retraining
    max_error_rate_increase: float = Field(0.01, ge=0)  # absolute, vs baseline: rollback
    max_latency_p99_ratio: float = Field(1.5, gt=1)  # vs baseline: rollback
    max_score_psi: float = Field(0.25, gt=0)  # production scores vs offline holdout: retrain
    cooldown_days: int = Field(3, ge=0)  # no second retraining request within this many days


def next_day(dt: str) -> str:
    return (date.fromisoformat(dt) + timedelta(days=1)).isoformat()


def days(first: str, last: str) -> list[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [(a + timedelta(days=k)).isoformat() for k in range((b - a).days + 1)]


def sync_rollout(
    registry: Registry, model: str, dt: str, config: JudgeConfig
) -> tuple[Rollout | None, bool]:
    """The rollout of the current canary, started (first share, traffic from tomorrow) when the
    canary alias points at a version without one. Returns (rollout, newly_started)."""
    canary = registry.alias(model, CANARY)
    current = read_rollout(registry.storage, model)
    if canary is None:
        if current is not None:
            write_rollout(registry.storage, model, None)
        return None, False
    if current is not None and current.version == canary:
        return current, False
    start = next_day(dt)
    rollout = Rollout(model, canary, start, config.share_schedule[0], start)
    write_rollout(registry.storage, model, rollout)
    return rollout, True


def apply_verdict(
    registry: Registry, rollout: Rollout, verdict: Verdict, dt: str, by: str, config: JudgeConfig
) -> dict:
    """Carry out a verdict through the registry (every alias move audited with the verdict's
    figures) and the rollout state. Returns what was done."""
    reason = json.dumps(
        {"verdict": verdict.decision, "reasons": verdict.reasons, "figures": verdict.figures},
        default=float,
        sort_keys=True,
    )
    model, storage = rollout.model, registry.storage
    if registry.alias(model, CANARY) != rollout.version:
        return {"action": "none", "why": "canary alias moved since the rollout started"}
    if verdict.decision == PROMOTE:
        to_prod = registry.set_alias(model, PRODUCTION, rollout.version, by, f"promote: {reason}")
        cleared = registry.set_alias(model, CANARY, None, by, f"promoted to production: {reason}")
        write_rollout(storage, model, None)
        return {"action": "promote", "moves": [to_prod.as_dict(), cleared.as_dict()]}
    if verdict.decision == ROLLBACK:
        cleared = registry.set_alias(model, CANARY, None, by, f"rollback: {reason}")
        write_rollout(storage, model, None)
        return {"action": "rollback", "moves": [cleared.as_dict()]}
    if verdict.decision == INCONCLUSIVE and verdict.figures.get("days_running", 0) >= (
        config.max_days
    ):
        cleared = registry.set_alias(model, CANARY, None, by, f"expired: {reason}")
        write_rollout(storage, model, None)
        return {"action": "expire", "moves": [cleared.as_dict()]}
    if verdict.decision == CONTINUE and verdict.next_share not in (None, rollout.share):
        stepped = Rollout(model, rollout.version, rollout.started, verdict.next_share, next_day(dt))
        write_rollout(storage, model, stepped)
        return {"action": "step", "share": [rollout.share, verdict.next_share]}
    return {"action": "hold"}


@dataclass
class Regression:
    """Production today vs its trailing baseline."""

    rollback: bool
    retrain: bool
    reasons: list[str]
    figures: dict


def compare_with_baseline(
    today: ArmMetrics | None, baseline: ArmMetrics | None, config: GuardConfig
) -> Regression:
    """One-sided z test (scipy.stats.norm) of log CTR today vs the trailing baseline, with
    user-level delta-method variances, plus error-rate and latency guardrails. No data: neither
    rollback nor retrain, and said so."""
    if today is None or baseline is None or min(today.clicks, baseline.clicks) < 1:
        return Regression(False, False, ["no production traffic to compare"], {})
    if min(today.users, baseline.users) < 2:
        return Regression(False, False, ["too few users to compare"], {})
    theta = math.log(today.ctr / baseline.ctr)
    se = math.sqrt(log_ctr_variance(today) + log_ctr_variance(baseline))
    p = float(stats.norm.cdf(theta / se)) if se > 0 else math.nan
    drop = -math.expm1(theta)
    figures = {
        "version": today.version,
        "ctr_today": today.ctr,
        "ctr_baseline": baseline.ctr,
        "relative_drop": drop,
        "p_value": p,
        "baseline_window": list(baseline.window),
        "score_psi": today.score_psi,
    }
    significant = p < config.alpha
    reasons, rollback, retrain = [], False, False
    if significant and drop > config.rollback_ctr_drop:
        rollback = True
        reasons.append(
            f"CTR {today.ctr:.4f} vs trailing {baseline.ctr:.4f} (-{drop:.1%} > "
            f"rollback_ctr_drop {config.rollback_ctr_drop:.0%}, p={p:.2g})"
        )
    if significant and drop > config.retrain_ctr_drop:
        retrain = True
        reasons.append(
            f"CTR down {drop:.1%} vs trailing baseline (> retrain_ctr_drop "
            f"{config.retrain_ctr_drop:.0%}, p={p:.2g} < {config.alpha})"
        )
    if today.requests and baseline.requests:
        er_t, er_b = today.errors / today.requests, baseline.errors / baseline.requests
        figures |= {"error_rate_today": er_t, "error_rate_baseline": er_b}
        if er_t - er_b > config.max_error_rate_increase:
            rollback = True
            reasons.append(f"error rate {er_t:.4f} vs trailing {er_b:.4f}")
    if today.latency_p99_ms and baseline.latency_p99_ms:
        ratio = today.latency_p99_ms / baseline.latency_p99_ms
        figures["latency_p99_ratio"] = ratio
        if ratio > config.max_latency_p99_ratio:
            rollback = True
            reasons.append(f"latency p99 {ratio:.2f}x trailing baseline")
    if today.score_psi is not None and today.score_psi > config.max_score_psi:
        retrain = True
        reasons.append(f"score drift PSI {today.score_psi:.3f} > max_score_psi")
    return Regression(rollback, retrain, reasons or ["no regression"], figures)


def guard_production(
    registry: Registry,
    model: str,
    regression: Regression,
    by: str,
    smoke: Callable[[str, dict[str, bytes]], None],
) -> dict:
    """Roll production back when it regressed: the registry verifies the target's hashes and
    ``smoke`` loads and scores it first (as the CLI does); a bad target leaves production put."""
    if not regression.rollback:
        return {"action": "none"}
    reason = json.dumps(
        {"reasons": regression.reasons, "figures": regression.figures}, default=float
    )
    move = registry.rollback(model, by, reason, smoke)
    return {"action": "rollback", "moves": [move.as_dict()]}


def concat_users(frames: list[pd.DataFrame]) -> pd.DataFrame:
    cols = ["model_version", "alias", "user_id", "impressions", "clicks", "conversions"]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
