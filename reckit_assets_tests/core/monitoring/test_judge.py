"""Every verdict path of the canary judge, on per-user data drawn with a known truth."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from pydantic import ValidationError

from reckit_assets.core.monitoring.judge import (
    CONTINUE,
    INCONCLUSIVE,
    PROMOTE,
    ROLLBACK,
    ArmMetrics,
    CanaryState,
    JudgeConfig,
    confidence_sequence,
    judge,
    log_ctr_variance,
    msprt,
    user_stats,
)

WINDOW = ("2026-10-05", "2026-10-07")


def arm(
    version: str,
    users: int,
    ctr: float,
    seed: int,
    imps_per_user: float = 20.0,
    **extra,
) -> ArmMetrics:
    rng = np.random.default_rng(seed)
    imps = rng.poisson(imps_per_user, users) + 1
    p_user = rng.beta(2.0, 2.0 / ctr - 2.0, users)  # heterogeneous users, mean ctr
    clicks = rng.binomial(imps, p_user)
    fields = {
        "requests": users * 2,
        "errors": users // 500,
        "latency_p99_ms": 12.0,
        "score_psi": 0.02,
    } | extra
    return ArmMetrics(version=version, window=WINDOW, **user_stats(imps, clicks), **fields)


def state(share: float = 0.5, days_at_share: int = 2, days_running: int = 6, users=None):
    users = users or (500, 500)
    return CanaryState(share, days_at_share, days_running, *users)


def test_user_level_variance_exceeds_binomial_when_users_differ():
    a = arm("c", 2000, 0.05, 1)
    binomial = (1 - a.ctr) / (a.ctr * a.impressions)  # Var(log p) per impression
    # Design effect 1 + (m - 1) * ICC with ~21 impressions per user and ICC = 1/41 is ~1.5.
    assert log_ctr_variance(a) > 1.3 * binomial


def test_user_level_variance_matches_the_spread_of_repeated_draws():
    arms = [arm("c", 1000, 0.05, seed) for seed in range(300)]
    observed = np.var([math.log(a.ctr) for a in arms], ddof=1)
    predicted = np.mean([log_ctr_variance(a) for a in arms])
    assert predicted == pytest.approx(observed, rel=0.2)


def test_confidence_sequence_is_the_inversion_of_the_msprt():
    theta, v, tau, alpha = -0.08, 0.0009, 0.15, 0.05
    half = confidence_sequence(theta, v, tau, alpha)
    # At the interval's edge the likelihood ratio of (theta_hat - edge) is exactly 1/alpha.
    assert msprt(half, v, tau) == pytest.approx(1 / alpha, rel=1e-9)
    assert msprt(0.9 * half, v, tau) < 1 / alpha < msprt(1.1 * half, v, tau)


def test_clear_regression_is_rolled_back_with_its_figures():
    v = judge(arm("c", 3000, 0.035, 1), arm("p", 3000, 0.05, 2), state())
    assert v.decision == ROLLBACK
    assert "mSPRT" in v.reasons[0]
    assert v.figures["likelihood_ratio"] >= 20
    assert v.figures["ctr_canary"] < v.figures["ctr_production"]
    assert v.figures["ci_high"] < 0


def test_equal_arms_at_final_share_after_bake_are_promoted():
    v = judge(arm("c", 4000, 0.05, 3), arm("p", 4000, 0.05, 4), state(share=0.5))
    assert v.decision == PROMOTE, v.reasons
    assert v.figures["ci_low"] > -0.10


def test_equal_arms_before_final_share_continue_and_step_up():
    v = judge(arm("c", 4000, 0.05, 3), arm("p", 4000, 0.05, 4), state(share=0.10, users=(100, 900)))
    assert v.decision == CONTINUE
    assert v.next_share == 0.25


def test_no_step_up_before_bake_time():
    cfg = JudgeConfig(bake_days=2)
    v = judge(
        arm("c", 4000, 0.05, 3),
        arm("p", 4000, 0.05, 4),
        state(share=0.10, days_at_share=1, users=(100, 900)),
        cfg,
    )
    assert v.decision == CONTINUE and v.next_share == 0.10


def test_not_promoted_before_bake_time_at_final_share():
    cfg = JudgeConfig(bake_days=3)
    v = judge(arm("c", 4000, 0.05, 3), arm("p", 4000, 0.05, 4), state(days_at_share=2), cfg)
    assert v.decision == CONTINUE


@pytest.mark.parametrize("users", [10, 60])
def test_low_traffic_is_inconclusive_never_promote(users):
    v = judge(arm("c", users, 0.05, 5, imps_per_user=3), arm("p", 4000, 0.05, 6), state())
    assert v.decision == INCONCLUSIVE
    assert "too little data" in v.reasons[0] and "min_" in v.reasons[0]


def test_missing_arm_is_inconclusive():
    v = judge(None, arm("p", 4000, 0.05, 6), state())
    assert v.decision == INCONCLUSIVE and "no data for canary" in v.reasons[0]


@pytest.mark.parametrize(
    "field,value",
    [("latency_p99_ms", math.nan), ("latency_p99_ms", None), ("score_psi", None), ("clicks", -1)],
)
def test_nan_or_missing_figures_are_inconclusive(field, value):
    c = replace(arm("c", 4000, 0.05, 3), **{field: value})
    v = judge(c, arm("p", 4000, 0.05, 4), state())
    assert v.decision == INCONCLUSIVE
    assert f"canary.{field}" in v.reasons[0]


def test_different_windows_are_inconclusive():
    c = replace(arm("c", 4000, 0.05, 3), window=("2026-10-06", "2026-10-07"))
    v = judge(c, arm("p", 4000, 0.05, 4), state())
    assert v.decision == INCONCLUSIVE and "different windows" in v.reasons[0]


def test_sample_ratio_mismatch_is_inconclusive():
    v = judge(arm("c", 4000, 0.05, 3), arm("p", 4000, 0.05, 4), state(share=0.5, users=(300, 700)))
    assert v.decision == INCONCLUSIVE
    assert "sample-ratio mismatch" in v.reasons[0] and v.figures["srm_p"] < 1e-10


def test_split_matching_its_share_passes_srm():
    v = judge(arm("c", 4000, 0.05, 3), arm("p", 4000, 0.05, 4), state(share=0.25, users=(245, 755)))
    assert v.figures["srm_p"] > 0.01 and v.decision != INCONCLUSIVE


@pytest.mark.parametrize(
    "extra,needle",
    [
        ({"errors": 400}, "error rate"),
        ({"latency_p99_ms": 40.0}, "latency p99"),
        ({"score_psi": 0.6}, "score PSI"),
    ],
)
def test_guardrails_fail_a_canary_whatever_its_ctr(extra, needle):
    better = arm("c", 4000, 0.07, 3, **extra)  # CTR far better than production
    v = judge(better, arm("p", 4000, 0.05, 4), state())
    assert v.decision == ROLLBACK
    assert v.reasons[0].startswith("guardrail:") and needle in v.reasons[0]


def test_small_error_difference_is_not_a_guardrail_failure():
    v = judge(arm("c", 4000, 0.05, 3, errors=12), arm("p", 4000, 0.05, 4, errors=8), state())
    assert v.decision == PROMOTE


def test_latency_below_noise_floor_never_fails():
    c = arm("c", 4000, 0.05, 3, latency_p99_ms=4.0)
    v = judge(c, arm("p", 4000, 0.05, 4, latency_p99_ms=1.0), state())
    assert v.decision == PROMOTE


def test_expired_canary_is_inconclusive_never_promoted():
    # Too noisy to rule out a 10% drop: at max_days the canary expires.
    c, p = arm("c", 300, 0.05, 7, imps_per_user=8), arm("p", 300, 0.05, 8, imps_per_user=8)
    cfg = JudgeConfig(min_users=50, min_impressions=100, min_clicks=20)
    v = judge(c, p, state(days_running=14), cfg)
    assert v.decision == INCONCLUSIVE and "expired" in v.reasons[0]
    assert judge(c, p, state(days_running=3), cfg).decision == CONTINUE


def test_bad_schedule_is_refused_with_its_key():
    with pytest.raises(ValidationError, match="share_schedule"):
        JudgeConfig(share_schedule=(0.25, 0.1))


def test_verdict_summary_names_decision_and_figures():
    v = judge(arm("c", 3000, 0.035, 1), arm("p", 3000, 0.05, 2), state())
    text = v.summary()
    assert text.startswith("judge: rollback") and "likelihood_ratio" in text
