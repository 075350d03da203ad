"""Benchmark: the release gate's A/A false-hold rate and power, for every model, by site size.

For one simulated site size (``--impressions`` a day; users and items scale with it), the data
steps build samples and sequences for a 6-day window and ``--holdouts`` holdout days. For each
model (XGBoost, DeepFM, item2vec) at its **default** hyperparameters, ``--seeds`` models are
trained on the window before each holdout day with different seeds; every pair of them is one
A/A trial (production = one seed, candidate = another, nothing else changed), judged by the
gate's report and rules exactly as ``evaluate`` does. Pairs share models, so trials are not
independent; each is still a valid A/A comparison.

Power (rankers): the candidate's scores with logit noise calibrated, on a day no trial is judged
on, to cost 0.01 / 0.02 AUC; item2vec: the candidate's vectors mixed with noise, calibrated the
same way to cost a fixed share of its hit rate.

Prints, per model and scenario: trials and release outcomes (released / held / rejected /
broken), with the Clopper-Pearson 95% CI of the rate that matters (A/A: held or worse; power:
rejected or held).

    python bench/gates_release_models.py --impressions 10000 --seeds 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gates_release import FIRST, Scores, calibrate_sigma, noisy, prepare

WINDOW = 6


def noisy_vectors(model, sigma: float, seed: int):
    """item2vec with N(0, sigma x its vectors' scale) noise added: a candidate of known, lower
    quality (the popularity prior kept)."""
    from reckit_assets.core.training.item2vec import Item2Vec, Item2VecParams

    rng = np.random.default_rng(seed)
    noise = rng.normal(0, sigma * float(np.std(model.vectors)), model.vectors.shape)
    return Item2Vec(
        model.items, model.vectors + noise, model.counts, Item2VecParams(**model.params())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=30000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--holdouts", type=int, default=2)
    parser.add_argument("--models", default="xgboost,deepfm,item2vec")
    args = parser.parse_args()

    import os

    import pandas as pd
    from statsmodels.stats.proportion import proportion_confint

    from reckit_assets.core.evaluation import gate
    from reckit_assets.core.evaluation import outcomes as gate_outcomes
    from reckit_assets.core.evaluation import production as gate_production
    from reckit_assets.core.evaluation import report as evaluation
    from reckit_assets.core.evaluation.metrics import auc
    from reckit_assets.core.features.sequences import corpus
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.steps import data as steps
    from reckit_assets.core.training.baselines import ItemCTRPrior, PopularityRecommender

    scale = args.impressions / 30000
    sim = {
        "impressions_per_day": args.impressions,
        "n_users": max(int(3000 * scale), 300),
        "n_items": max(int(600 * min(scale, 1.0) ** 0.5 * max(scale, 1.0) ** 0.25), 100),
    }
    os.environ["BENCH_SIM"] = json.dumps(sim)
    started = time.perf_counter()
    root = tempfile.mkdtemp(prefix="bench-gates-models-")
    dates = prepare(root, WINDOW + args.holdouts + 1)
    store = LocalStorage(f"{root}/warehouse")
    for d in dates:
        warehouse.publish(store, steps.SEQUENCES, d, steps.sequences(store, d))
    frames = {d: warehouse.read(store, steps.SAMPLES, d) for d in dates}
    seqs = {d: warehouse.read(store, steps.SEQUENCES, d) for d in dates}
    calib_day, holdout_days = dates[-args.holdouts - 1], dates[-args.holdouts :]
    print(
        f"site: {json.dumps(sim)}; holdout days {holdout_days} (~{len(frames[holdout_days[0]])} "
        f"rows, {sum(len(s) for s in corpus([seqs[holdout_days[0]]]))} next-item steps); "
        f"data prep {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    rules = gate.GateRules()
    outcomes: dict[tuple[str, str], list[str]] = {}
    failing: dict[tuple[str, str], dict[str, int]] = {}

    def _record(kind: str, scenario: str, rule_outcomes) -> None:
        outcomes.setdefault((kind, scenario), []).append(gate_outcomes.decide(rule_outcomes)[0])
        for o in rule_outcomes:
            if not o.passed:
                counts = failing.setdefault((kind, scenario), {})
                counts[o.name] = counts.get(o.name, 0) + 1

    def window(dt: str) -> list[str]:
        i = dates.index(dt)
        return dates[i - WINDOW : i]

    def train(kind: str, dt: str, seed: int):
        days = window(dt)
        if kind == "item2vec":
            from reckit_assets.core.training.item2vec import Item2VecParams, train_item2vec

            return train_item2vec(corpus([seqs[d] for d in days]), Item2VecParams(seed=seed))[0]
        tr = pd.concat([frames[d] for d in days[:-1]], ignore_index=True)
        va = frames[days[-1]]
        if kind == "xgboost":
            from reckit_assets.core.training.xgb_ranker import XGBParams, train_xgb

            return train_xgb(tr, va, XGBParams(seed=seed))[0]
        from reckit_assets.core.training.deepfm import DeepFMParams, train_deepfm

        return train_deepfm(tr, va, DeepFMParams(seed=seed))[0]

    def judge_ranker(scenario, kind, holdout, cand, prod) -> None:
        rep = evaluation.ranker_report(
            holdout, ("candidate", cand), ("production", prod), ("item_ctr_prior", ItemCTRPrior())
        )
        state = gate_production.ProductionState("present", "production")
        rep["production_state"] = state.as_dict()
        rep["identity"] = gate_production.identity("candidate", "c", {"f": "1"}, "cpu", "x", state)
        _record(kind, scenario, gate.ranker_gate(rep, rules))

    def judge_embedding(scenario, kind, dt, cand, prod) -> None:
        train_corpus = corpus([seqs[d] for d in window(dt)])
        rep = evaluation.embedding_report(
            corpus([seqs[dt]]),
            ("candidate", cand),
            ("production", prod),
            PopularityRecommender().fit(train_corpus),
        )
        state = gate_production.ProductionState("present", "production")
        rep["production_state"] = state.as_dict()
        rep["identity"] = gate_production.identity("candidate", "c", {"f": "1"}, "cpu", "x", state)
        rep["dt"] = dt
        _record(kind, scenario, gate.embedding_gate(rep, rules))

    for kind in args.models.split(","):
        t0 = time.perf_counter()
        if kind == "item2vec":
            from reckit_assets.core.evaluation.next_item import next_item_values

            calib = train(kind, calib_day, 10_000)
            steps_calib = corpus([seqs[calib_day]])

            def hit(model, sequences=steps_calib):
                return float(np.mean(next_item_values(model, sequences, 10)["hit"]))

            base_hit = hit(calib)
            lo, hi = 0.0, 8.0
            for _ in range(14):  # noise that costs 20% of the hit rate on the calibration day
                mid = (lo + hi) / 2
                lo, hi = (
                    (mid, hi) if hit(noisy_vectors(calib, mid, 1)) > 0.8 * base_hit else (lo, mid)
                )
            sigma = (lo + hi) / 2
            for dt in holdout_days:
                models = [train(kind, dt, 100 + i) for i in range(args.seeds)]
                for i, j in itertools.combinations(range(args.seeds), 2):
                    judge_embedding("A/A", kind, dt, models[j], models[i])
                    judge_embedding(
                        "hit rate -20%", kind, dt, noisy_vectors(models[j], sigma, i * 100 + j),
                        models[i],
                    )  # fmt: skip
        else:
            calib_frame = frames[calib_day]
            calib_scores = train(kind, calib_day, 10_000).predict(calib_frame)
            y = calib_frame["label"].to_numpy()
            base = auc(y, calib_scores)
            sigma = {
                "AUC -0.01": calibrate_sigma(calib_scores, y, base - 0.01),
                "AUC -0.02": calibrate_sigma(calib_scores, y, base - 0.02),
            }
            for dt in holdout_days:
                holdout = frames[dt]
                scores = [train(kind, dt, 100 + i).predict(holdout) for i in range(args.seeds)]
                for i, j in itertools.combinations(range(args.seeds), 2):
                    prod = Scores(scores[i])
                    judge_ranker("A/A", kind, holdout, Scores(scores[j]), prod)
                    for name, s in sigma.items():
                        noisy_scores = noisy(scores[j], s, 1000 * i + j)
                        judge_ranker(name, kind, holdout, Scores(noisy_scores), prod)
        print(f"{kind}: {time.perf_counter() - t0:.0f} s", flush=True)

    print()
    print(
        f"Release gate by site size: {args.impressions} impressions/day; {args.seeds} seeds per "
        f"holdout day x {args.holdouts} days (all pairs); default hyperparameters; "
        f"{rules.bootstrap_samples} bootstrap resamples; {FIRST} + {len(dates)} days simulated; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    print()
    print("| model | scenario | trials | released | held | rejected | broken | "
          "rate (95% CI) | failing rules |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---|---|")
    for (kind, scenario), got in outcomes.items():
        n = len(got)
        count = {k: got.count(k) for k in ("released", "held", "rejected", "broken")}
        if scenario == "A/A":
            hit, what = n - count["released"], "not released (false hold/reject)"
        else:
            hit, what = count["rejected"] + count["held"], "caught (rejected or held)"
        low, high = proportion_confint(hit, n, method="beta")
        print(
            f"| {kind} | {scenario} | {n} | {count['released']} | {count['held']} | "
            f"{count['rejected']} | {count['broken']} | {what}: {hit / n:.0%} "
            f"[{low:.0%}, {high:.0%}] | "
            + (
                ", ".join(f"{r} {c}" for r, c in sorted(failing.get((kind, scenario), {}).items()))
                or "–"
            )
            + " |"
        )


if __name__ == "__main__":
    main()
