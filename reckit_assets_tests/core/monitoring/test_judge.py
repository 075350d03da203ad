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


def _ramp(ctr_by_day: list[float], shares: list[float], users_per_day: int, seed: int):
    """An A/A canary whose share ramps 5% -> 50% while CTR changes for BOTH arms on some days
    (a common shock): per-day arms and the window's pooled arms."""
    daily, pooled_c, pooled_p = [], [], []
    for d, (ctr, share) in enumerate(zip(ctr_by_day, shares, strict=True)):
        n_c = max(int(users_per_day * share), 3)
        c = arm("c", n_c, ctr, seed * 100 + 2 * d)
        p = arm("p", users_per_day - n_c, ctr, seed * 100 + 2 * d + 1)
        daily.append((c, p))
        pooled_c.append(c)
        pooled_p.append(p)

    def total(arms: list[ArmMetrics], version: str) -> ArmMetrics:
        return ArmMetrics(
            version=version,
            window=WINDOW,
            users=sum(a.users for a in arms),
            impressions=sum(a.impressions for a in arms),
            clicks=sum(a.clicks for a in arms),
            sum_imp_sq=sum(a.sum_imp_sq for a in arms),
            sum_clk_sq=sum(a.sum_clk_sq for a in arms),
            sum_imp_clk=sum(a.sum_imp_clk for a in arms),
            requests=sum(a.requests for a in arms),
            errors=sum(a.errors for a in arms),
            latency_p99_ms=12.0,
            score_psi=0.02,
        )

    return daily, total(pooled_c, "c"), total(pooled_p, "p")


def test_a_common_shock_during_the_ramp_is_not_read_as_a_canary_effect():
    """Simpson's paradox: CTR falls 20% for both arms on day 4 while the canary's share grows.
    Summed over the window the canary looks worse; compared at the same daily mix it does not."""
    ctrs = [0.06, 0.06, 0.06, 0.048, 0.048]
    shares = [0.05, 0.10, 0.25, 0.50, 0.50]
    pooled_rollbacks = stratified_rollbacks = 0
    for seed in range(20):
        daily, c, p = _ramp(ctrs, shares, 6000, seed)
        s = state(share=0.5, days_at_share=2, days_running=5)
        pooled = judge(c, p, s)
        within = judge(c, p, s, daily=daily)
        pooled_rollbacks += pooled.decision == ROLLBACK
        stratified_rollbacks += within.decision == ROLLBACK
        assert abs(within.figures["relative_ctr_change"]) < 0.06
        assert within.figures["days_compared"] == 5
        assert within.figures["ctr_ratio_pooled"] < 0.96  # the sums mislead
    assert pooled_rollbacks >= 10  # the pooled comparison fails most A/A canaries...
    assert stratified_rollbacks == 0  # ...the within-day one none


def test_a_real_regression_is_still_caught_within_days():
    daily, c, p = _ramp([0.06] * 4, [0.1, 0.25, 0.5, 0.5], 6000, 3)
    worse = [
        (replace(a, clicks=int(a.clicks * 0.7), sum_clk_sq=a.sum_clk_sq * 0.49), b)
        for a, b in daily
    ]
    v = judge(c, p, state(share=0.5), daily=worse)
    assert v.decision == ROLLBACK and "same daily mix" in v.reasons[0]


def test_too_little_data_still_steps_the_share_up_after_bake():
    small = judge(
        arm("c", 40, 0.05, 5, imps_per_user=3),
        arm("p", 800, 0.05, 6),
        state(0.05, 1, 1, users=(50, 950)),
    )
    assert small.decision == INCONCLUSIVE and small.next_share == 0.10
    not_baked = judge(
        arm("c", 40, 0.05, 5, imps_per_user=3),
        arm("p", 800, 0.05, 6),
        state(0.05, 0, 1, users=(50, 950)),
    )
    assert not_baked.next_share is None
    expired = judge(
        arm("c", 40, 0.05, 5, imps_per_user=3),
        arm("p", 800, 0.05, 6),
        state(0.05, 1, 14, users=(50, 950)),
    )
    assert expired.next_share is None and "expired" in expired.reasons[-1]


# -- the production guard: today vs its trailing days -------------------------------------------


def _days_of(ctrs: list[float], users: int, seed: int) -> list[ArmMetrics]:
    return [arm("prod", users, c, seed * 1000 + k) for k, c in enumerate(ctrs)]


def test_guard_counts_day_to_day_variance_and_tests_against_its_margins():
    """At 300k impressions a day (15k users x 20) with a 5% day-to-day CTR swing and no real
    change, the pooled z-test asked for retraining on ~18% of days; the guard asks almost never.
    A real 30% drop still rolls back and retrains."""
    from reckit_assets.core.monitoring.rollout import GuardConfig, compare_with_baseline

    cfg = GuardConfig()
    rng = np.random.default_rng(5)
    retrains = rollbacks = 0
    for seed in range(60):
        ctrs = list(0.05 * np.exp(rng.normal(0, 0.05, 8)))  # 5% day-to-day swing
        days = _days_of(ctrs, 15000, seed)
        today, trailing = days[-1], days[:-1]
        pooled = trailing[0]  # only for its window and the "no traffic" test
        r = compare_with_baseline(today, pooled, cfg, trailing)
        retrains += r.retrain
        rollbacks += r.rollback
        assert "day-to-day sd" in r.figures["basis"]
    assert retrains <= 2 and rollbacks == 0
    days = _days_of([0.05] * 7 + [0.035], 15000, 99)  # -30% today
    r = compare_with_baseline(days[-1], days[0], cfg, days[:-1])
    assert r.rollback and r.retrain
    assert "beyond rollback_ctr_drop 20% is significant" in r.reasons[0]
    # A drop smaller than the rollback margin is never a rollback, however significant.
    days = _days_of([0.05] * 7 + [0.044], 15000, 98)  # -12%
    r = compare_with_baseline(days[-1], days[0], cfg, days[:-1])
    assert not r.rollback and r.retrain
