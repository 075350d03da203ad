"""Benchmark: off-policy CTR estimates of a candidate ranker against the simulator's truth.

Each simulated day (``simulate_day``: the slates users are shown and each item's true click
probability at every position, position-based with -0.25 logit per position), a logging policy
("production": the true logit plus N(0, 1) noise per item) orders every slate; on a share
``epsilon`` of slates it shows a uniformly random order instead (exploration). Clicks are drawn
from the true probabilities at the shown positions. A candidate ("the true logit plus N(0, 0.7)
noise", a better ranker) is estimated from that log by ``core.evaluation.off_policy`` (IPS,
SNIPS, DR with production's scores as the reward model) and compared with its true CTR on the
same slates (exact, from the probabilities). Reported per epsilon and estimator over the days:
the 95% CI's coverage of the truth (with its Clopper-Pearson interval), bias, standard deviation,
mean CI half-width; and what exploring costs: the logging policy's expected CTR with
exploration against without.

    python bench/off_policy.py [--days 40] [--impressions 30000] [--epsilons 0.05 0.1 0.2]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from statsmodels.stats.proportion import proportion_confint

from reckit_assets.core.evaluation.off_policy import (
    ESTIMATORS,
    MIN_EVIDENCE_CLICKS,
    estimate,
    propensities,
)
from reckit_assets.simulation.simulate import SimulationConfig, simulate_day

POSITION_SLOPE = 0.25  # the simulator's position effect (logit per position)
LOGGING_NOISE, CANDIDATE_NOISE = 1.0, 0.7


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _positions(slate: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Each row's position (0 = first) when its slate is ordered by descending score."""
    order = np.lexsort((-score, slate))
    position = np.empty(len(slate), dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(slate[order])) + 1]
    sizes = np.diff(np.r_[starts, len(slate)])
    position[order] = np.arange(len(slate)) - np.repeat(starts, sizes)
    return position


def one_day(config: SimulationConfig, day: int, epsilon: float, seed: int) -> dict:
    oracle = simulate_day(config, day).oracle
    rng = np.random.default_rng([seed, day, int(epsilon * 1000)])
    slate = oracle["request_id"].factorize()[0]
    base = np.log(oracle["p_click"] / (1 - oracle["p_click"])).to_numpy()
    base = base + POSITION_SLOPE * oracle["position"].to_numpy()  # the item's logit at position 0
    size = np.bincount(slate)[slate]
    logging_score = base + rng.normal(0, LOGGING_NOISE, len(base))
    candidate_score = base + rng.normal(0, CANDIDATE_NOISE, len(base))
    logging_pos = _positions(slate, logging_score)
    target_pos = _positions(slate, candidate_score)
    explored = (rng.random(slate.max() + 1) < epsilon)[slate]
    random_pos = _positions(slate, rng.random(len(slate)))
    shown = np.where(explored, random_pos, logging_pos)
    clicked = rng.random(len(base)) < _sigmoid(base - POSITION_SLOPE * shown)
    p = propensities(logging_pos, target_pos, size, epsilon)
    reward = _sigmoid(logging_score - POSITION_SLOPE * target_pos)  # production's predictions
    found = estimate(
        slate, shown, clicked, target_pos, p, reward_model=reward, logging_position=logging_pos
    )
    truth = float(np.mean(_sigmoid(base - POSITION_SLOPE * target_pos)))
    # Expected CTR of what users see: the logging order, or a random one on explored slates
    # (an item's click probability averaged over the slate's positions).
    by_order = _sigmoid(base - POSITION_SLOPE * logging_pos)
    k = np.arange(size.max())
    averaged = np.array(
        [np.mean(_sigmoid(b - POSITION_SLOPE * k[:n])) for b, n in zip(base, size, strict=True)]
    )
    return {
        "truth": truth,
        "estimates": found,
        "ctr_logged": float(np.mean((1 - epsilon) * by_order + epsilon * averaged)),
        "ctr_no_exploration": float(np.mean(by_order)),
        "impressions": len(base),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--impressions", type=int, default=30_000)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    config = SimulationConfig(
        start="2026-10-01", days=args.days, impressions_per_day=args.impressions, seed=args.seed
    )
    print(
        f"{args.days} simulated days, {args.impressions:,} impressions/day, seed {args.seed}; "
        f"logging = true logit + N(0, {LOGGING_NOISE}), candidate = + N(0, {CANDIDATE_NOISE}); "
        "95% CIs\n"
    )
    print(
        "| epsilon | estimator | coverage | coverage 95% CI | bias | sd | mean half-width "
        "| candidate true CTR | exploration cost | evidence clicks (median) "
        f"| coverage with >= {MIN_EVIDENCE_CLICKS} | coverage with fewer |"
    )
    print("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for epsilon in args.epsilons:
        days = [one_day(config, d, epsilon, args.seed) for d in range(args.days)]
        truth = statistics.mean(d["truth"] for d in days)
        cost = statistics.mean(d["ctr_logged"] / d["ctr_no_exploration"] - 1 for d in days)
        for name in ESTIMATORS:
            est = [d["estimates"][name] for d in days]
            errors = [e.value - d["truth"] for e, d in zip(est, days, strict=True)]
            covered = sum(e.covers(d["truth"]) for e, d in zip(est, days, strict=True))
            low, high = proportion_confint(covered, len(days), alpha=0.05, method="beta")
            print(
                f"| {epsilon:.2f} | {name} | {covered}/{len(days)} ({covered / len(days):.0%}) "
                f"| [{low:.0%}, {high:.0%}] | {statistics.mean(errors):+.5f} "
                f"| {statistics.stdev(errors):.5f} "
                f"| {statistics.mean((e.ci_high - e.ci_low) / 2 for e in est):.5f} "
                f"| {truth:.4f} | {cost:+.2%} "
                f"| {statistics.median(e.evidence_clicks for e in est):.0f} "
                f"| {_share([e.covers(d['truth']) for e, d in zip(est, days, strict=True) if e.reliable])} "
                f"| {_share([e.covers(d['truth']) for e, d in zip(est, days, strict=True) if not e.reliable])} |"
            )


def _share(hits: list[bool]) -> str:
    return f"{sum(hits)}/{len(hits)}" if hits else "-"


if __name__ == "__main__":
    main()
