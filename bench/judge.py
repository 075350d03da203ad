"""Calibration of the canary judge: A/A false rollbacks, power against real drops, days to verdict.

Each simulated canary runs at the demo's traffic (3,000 users with heavy-tailed activity,
~30,000 impressions a day, CTR ~5% with user-level heterogeneity: Beta(2, 38) per user). Users
are split by a uniform hash bucket below the canary's share, which follows the judge's schedule
(5 -> 10 -> 25 -> 50%). The real ``judge`` is called once per simulated day on the cumulative
window, exactly as the release asset calls it, until a terminal verdict (promote, rollback, or
expiry at ``max_days``). Errors, latency and score drift are drawn identically in both arms, so
the guardrails are exercised on clean data too.

The judge compares the arms within each day and combines the days (``daily=``), as the release
asset does. ``--shock DAY:FACTOR`` multiplies every user's CTR, in both arms, from that day on (a
holiday, a drift): a change common to both arms that the share's ramp must not turn into a
canary effect. Reported for contrast: the judge on the window's sums (pooled, as before the
within-day comparison), and a naive daily two-sided z-test at the same alpha on the same data
(what "peeking" at a fixed-horizon test gives).

    python bench/judge.py [--canaries 1000] [--power-canaries 500] [--seed 1]
    python bench/judge.py --shock 4:0.8 --power-canaries 0     # A/A with a common -20% on day 4
    python bench/judge.py --impressions 10000 --users 1000     # a small site
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import numpy as np
from scipy import stats

from reckit_assets.core.monitoring.judge import (
    INCONCLUSIVE,
    PROMOTE,
    ROLLBACK,
    ArmMetrics,
    CanaryState,
    JudgeConfig,
    judge,
    log_ctr_variance,
)

USERS = 3000
IMPRESSIONS_PER_DAY = 30_000
MEAN_CTR = 0.05
IMPRESSIONS_PER_REQUEST = 12


def _arm(version: str, window: tuple[str, str], i, c, requests: int, errors: int, rng):
    keep = i > 0
    i, c = i[keep], c[keep]
    return ArmMetrics(
        version=version,
        window=window,
        users=int(keep.sum()),
        impressions=int(i.sum()),
        clicks=int(c.sum()),
        sum_imp_sq=float(i @ i),
        sum_clk_sq=float(c @ c),
        sum_imp_clk=float(i @ c),
        requests=requests,
        errors=errors,
        latency_p99_ms=float(12.0 * rng.lognormal(0, 0.05)),
        score_psi=float(abs(rng.normal(0.02, 0.01))),
    )


def run(
    n: int,
    drop: float,
    cfg: JudgeConfig,
    seed: int,
    users: int = USERS,
    impressions: int = IMPRESSIONS_PER_DAY,
    shock: tuple[int, float] | None = None,
) -> dict:
    """``n`` canaries whose canary arm has CTR x (1 - drop); returns outcome rates and days."""
    rng = np.random.default_rng([seed, round(drop * 1000)])
    activity = rng.lognormal(0.0, 1.0, (n, users))
    rate = activity / activity.sum(axis=1, keepdims=True) * impressions
    p_user = rng.beta(2.0, 2.0 / MEAN_CTR - 2.0, (n, users))
    bucket = rng.random((n, users))
    acc = {arm: (np.zeros((n, users)), np.zeros((n, users))) for arm in ("c", "p")}
    requests = {arm: np.zeros(n) for arm in ("c", "p")}
    errors = {arm: np.zeros(n) for arm in ("c", "p")}
    share = np.full(n, cfg.share_schedule[0])
    days_at_share = np.zeros(n, dtype=int)
    outcome = np.full(n, "", dtype=object)
    decided_on = np.zeros(n, dtype=int)
    naive_rejected = np.zeros(n, dtype=bool)
    pooled_rolled_back = np.zeros(n, dtype=bool)
    daily: list[list] = [[] for _ in range(n)]
    z_crit = stats.norm.ppf(1 - cfg.alpha / 2)
    active = np.ones(n, dtype=bool)
    for day in range(1, cfg.max_days + 1):
        in_canary = bucket < share[:, None]
        imps = rng.poisson(rate)
        p = np.where(in_canary, p_user * (1 - drop), p_user)
        if shock is not None and day >= shock[0]:
            p = p * shock[1]  # common to both arms
        clicks = rng.binomial(imps, p)
        day_users = {}
        for s in np.flatnonzero(active):
            daily[s].append(
                tuple(
                    _arm(arm, (f"d{day}", f"d{day}"), imps[s] * m[s], clicks[s] * m[s], 0, 0, rng)
                    for arm, m in (("c", in_canary), ("p", ~in_canary))
                )
            )
        for arm, mask in (("c", in_canary), ("p", ~in_canary)):
            acc[arm][0][:] += imps * mask
            acc[arm][1][:] += clicks * mask
            req = rng.poisson((imps * mask).sum(axis=1) / IMPRESSIONS_PER_REQUEST)
            requests[arm] += req
            errors[arm] += rng.binomial(req, 0.002)
            day_users[arm] = ((imps > 0) & mask).sum(axis=1)
        days_at_share += 1
        for s in np.flatnonzero(active):
            arms = {
                arm: _arm(
                    arm,
                    ("d1", f"d{day}"),
                    acc[arm][0][s],
                    acc[arm][1][s],
                    int(requests[arm][s]),
                    int(errors[arm][s]),
                    rng,
                )
                for arm in ("c", "p")
            }
            state = CanaryState(
                float(share[s]),
                int(days_at_share[s]),
                day,
                int(day_users["c"][s]),
                int(day_users["p"][s]),
            )
            v = judge(arms["c"], arms["p"], state, cfg, daily=daily[s])
            pooled_rolled_back[s] |= judge(arms["c"], arms["p"], state, cfg).decision == ROLLBACK
            c, pr = arms["c"], arms["p"]
            if min(c.clicks, pr.clicks) > 0 and min(c.users, pr.users) > 1:
                z = math.log(c.ctr / pr.ctr) / math.sqrt(log_ctr_variance(c) + log_ctr_variance(pr))
                naive_rejected[s] |= z < -z_crit
            terminal = v.decision in (PROMOTE, ROLLBACK) or (
                v.decision == INCONCLUSIVE and day >= cfg.max_days
            )
            if terminal:
                outcome[s] = "expired" if v.decision == INCONCLUSIVE else v.decision
                decided_on[s] = day
                active[s] = False
            elif v.next_share is not None and v.next_share != share[s]:
                share[s] = v.next_share
                days_at_share[s] = 0
    outcome[outcome == ""] = "expired"
    decided_on[decided_on == 0] = cfg.max_days

    def rate_ci(k: int) -> list[float]:
        ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
        return [round(k / n, 4), round(ci.low, 4), round(ci.high, 4)]

    out = {"canaries": n, "relative_drop": drop}
    for name in (ROLLBACK, PROMOTE, "expired"):
        k = int((outcome == name).sum())
        out[f"{name}_rate"] = rate_ci(k)
        days = decided_on[outcome == name]
        out[f"{name}_median_days"] = float(np.median(days)) if len(days) else None
    out["median_days_to_verdict"] = float(np.median(decided_on))
    out["naive_daily_ztest_rollback_rate"] = rate_ci(int(naive_rejected.sum()))
    out["pooled_judge_ever_rollback_rate"] = rate_ci(int(pooled_rolled_back.sum()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--power-canaries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--impressions", type=int, default=IMPRESSIONS_PER_DAY)
    parser.add_argument("--shock", default=None, help="DAY:FACTOR, common to both arms")
    args = parser.parse_args()
    cfg = JudgeConfig()
    shock = None
    if args.shock:
        day, factor = args.shock.split(":")
        shock = (int(day), float(factor))
    t0 = time.perf_counter()
    common = {"users": args.users, "impressions": args.impressions, "shock": shock}
    results = [run(args.canaries, 0.0, cfg, args.seed, **common)]
    for drop in (0.05, 0.10, 0.30) if args.power_canaries else ():
        results.append(run(args.power_canaries, drop, cfg, args.seed, **common))
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python "
                f"{platform.python_version()}",
                "traffic": {
                    "users": args.users,
                    "impressions_per_day": args.impressions,
                    "common_shock": args.shock,
                    "mean_ctr": MEAN_CTR,
                    "user_ctr": "Beta(2, 38)",
                },
                "config": cfg.model_dump(),
                "results": results,
                "seconds": round(time.perf_counter() - t0, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
