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

import numpy as np
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

    baseline_days: int = Field(7, ge=1)  # trailing days of the same production version
    # One-sided test, per day, that the CTR dropped by MORE than the margin (rollback or retrain)
    # vs the trailing days, with their day-to-day variance (Student t, baseline days - 1 df).
    alpha: float = Field(0.01, gt=0, lt=1)
    rollback_ctr_drop: float = Field(0.20, gt=0, lt=1)  # relative drop that rolls back
    retrain_ctr_drop: float = Field(0.05, gt=0, lt=1)  # relative drop that requests retraining
    max_error_rate_increase: float = Field(0.01, ge=0)  # absolute, vs baseline: rollback
    max_latency_p99_ratio: float = Field(1.5, gt=1)  # vs baseline: rollback
    max_score_psi: float = Field(0.25, gt=0)  # production scores vs offline holdout: retrain
    cooldown_days: int = Field(3, ge=0)  # no second retraining request within this many days
    # Days the version must have served as production before the guard decides anything: with
    # fewer, its day-to-day variance is unknown and a new version's first days would be judged
    # on sampling noise alone.
    min_baseline_days: int = Field(3, ge=2)


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
    # A step up also follows an inconclusive look that was short of data only (the judge sets
    # next_share then; never for a broken split or missing figures).
    if verdict.decision in (CONTINUE, INCONCLUSIVE) and verdict.next_share not in (
        None,
        rollout.share,
    ):
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


def _drop_beyond(theta: float, se: float, margin: float, df: int | None) -> float:
    """p-value of H0 "the relative drop is at most ``margin``" (theta >= log(1 - margin)) against
    a larger drop: Student t with ``df`` degrees of freedom (normal when None)."""
    if not se > 0:
        return math.nan
    z = (theta - math.log(1 - margin)) / se
    return float(stats.t.cdf(z, df) if df else stats.norm.cdf(z))


def compare_with_baseline(
    today: ArmMetrics | None,
    baseline: ArmMetrics | None,
    config: GuardConfig,
    daily: list[ArmMetrics] | None = None,
) -> Regression:
    """Has production's CTR today dropped by more than a margin vs its trailing days?

    theta = log CTR today - mean of the trailing days' daily log CTRs (``daily``; the pooled
    ``baseline`` when fewer than 2 days). Its standard error counts the **day-to-day** variance:
    the trailing days' own spread of log CTR (which holds their sampling noise too), never below
    today's user-level sampling variance, times (1 + 1/k): a prediction interval for one new day
    (Student t, k - 1 df). Each decision tests against its margin, not "any drop": rollback when
    a drop beyond ``rollback_ctr_drop`` is significant at ``alpha``, retraining beyond
    ``retrain_ctr_drop``. Plus error-rate and latency guardrails. No data: neither, said so."""
    if today is None or baseline is None or min(today.clicks, baseline.clicks) < 1:
        return Regression(False, False, ["no production traffic to compare"], {})
    if min(today.users, baseline.users) < 2:
        return Regression(False, False, ["too few users to compare"], {})
    days = [d for d in (daily or []) if d.clicks >= 1 and d.users >= 2]
    if daily is not None and len(days) < config.min_baseline_days:
        return Regression(
            False,
            False,
            [
                f"{len(days)} day(s) of this version as production < min_baseline_days "
                f"{config.min_baseline_days}: its day-to-day variance is unknown yet"
            ],
            {"baseline_days_used": len(days)},
        )
    today_var = log_ctr_variance(today)
    if len(days) >= 2:
        logs = np.log([d.ctr for d in days])
        k = len(logs)
        spread = max(float(np.var(logs, ddof=1)), today_var)
        theta = math.log(today.ctr) - float(logs.mean())
        se, df = math.sqrt(spread * (1 + 1 / k) + today_var), k - 1
        basis = f"{k} trailing days (day-to-day sd {math.sqrt(spread):.3f} on log CTR)"
    else:
        theta = math.log(today.ctr / baseline.ctr)
        se, df = math.sqrt(today_var + log_ctr_variance(baseline)), None
        basis = "the trailing window pooled (fewer than 2 days: sampling variance only)"
    p = _drop_beyond(theta, se, 0.0, df)
    p_rollback = _drop_beyond(theta, se, config.rollback_ctr_drop, df)
    p_retrain = _drop_beyond(theta, se, config.retrain_ctr_drop, df)
    drop = -math.expm1(theta)
    figures = {
        "version": today.version,
        "ctr_today": today.ctr,
        "ctr_baseline": baseline.ctr,
        "relative_drop": drop,
        "p_value": p,
        "p_drop_beyond_rollback": p_rollback,
        "p_drop_beyond_retrain": p_retrain,
        "se_log_ctr": se,
        "basis": basis,
        "baseline_window": list(baseline.window),
        "score_psi": today.score_psi,
    }
    reasons, rollback, retrain = [], False, False
    if p_rollback < config.alpha:
        rollback = True
        reasons.append(
            f"CTR {today.ctr:.4f} vs trailing {baseline.ctr:.4f} (-{drop:.1%}): a drop beyond "
            f"rollback_ctr_drop {config.rollback_ctr_drop:.0%} is significant (p={p_rollback:.2g}"
            f" < {config.alpha}; vs {basis})"
        )
    if p_retrain < config.alpha:
        retrain = True
        reasons.append(
            f"CTR down {drop:.1%}: a drop beyond retrain_ctr_drop {config.retrain_ctr_drop:.0%} "
            f"is significant (p={p_retrain:.2g} < {config.alpha}; vs {basis})"
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
