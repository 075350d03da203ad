"""Benchmark: the release gate's false-block rate (A/A) and catch rate (degraded candidates).

Simulates days with the simulator, builds samples with the data steps, then for each trial
trains XGBoost candidates on the 6 days before a holdout day and runs the gate's report and
rules (``core.evaluation.report`` + ``core.evaluation.gate``) exactly as ``evaluate`` does, in
both modes (``bootstrap``, the default, and reckit's ``ratio``) on the same report:

- **A/A**: production and candidate are XGBoost with different seeds on the same data.
- **shuffled labels**: the candidate is trained on the window with its labels permuted.
- **strong feature dropped**: the candidate is trained without ``user_category_ctr``.
- **AUC regression 0.01 / 0.02**: the A/A candidate's scores with logit noise whose strength
  was calibrated on another day to cost that much AUC (so the regression is real, not
  measured on the holdout itself).
- **worse than trivial**: a candidate with AUC below the item-CTR prior's (noise calibrated
  to 0.01 below it), with and without a production version; and shuffled labels without one.

A trial is blocked when any rule fails. Prints one table.

    python bench/gates_release.py            # default scale: 30,000 impressions/day
    BENCH_TRIALS=10 BENCH_SIM='{"impressions_per_day": 10000}' python bench/gates_release.py
    BENCH_PAIRS=8 python bench/gates_release.py   # A/A and regressions only: all pairs of 8 seeds

``BENCH_SECONDS`` stops starting trials after that many seconds and prints what was measured.
``BENCH_AA_ONLY=1`` runs independent A/A trials and the 0.01 / 0.02 regressions only (the
deterministic failure scenarios are skipped): the run that gives the A/A rate its weight.
``BENCH_REPORTS=FILE`` saves every report; ``python bench/gates_release.py --rejudge FILE``
judges them again with the current rules (no training).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np

FIRST = "2026-10-01"
WINDOW = 6


def prepare(root: str, days: int) -> list[str]:
    from reckit_assets.core.ingest.quality import Thresholds
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.steps import data as steps
    from reckit_assets.simulation.simulate import SimulationConfig, write_simulation

    landing, store = LocalStorage(f"{root}/landing"), LocalStorage(f"{root}/warehouse")
    config = SimulationConfig(
        start=FIRST, days=days, **json.loads(os.environ.get("BENCH_SIM", "{}"))
    )
    write_simulation(config, landing, LocalStorage(f"{root}/oracle"))
    for d in config.dates:
        warehouse.publish(
            store, steps.LANDED, d, steps.check_landing(landing, d, Thresholds()).artifact
        )
        for asset, art in steps.validate(landing, store, d).items():
            warehouse.publish(store, asset, d, art)
        warehouse.publish(store, steps.ACTIVITY, d, steps.activity(store, d))
        warehouse.publish(store, steps.FEATURES, d, steps.features(store, d, FIRST))
        warehouse.publish(store, steps.SAMPLES, d, steps.samples(store, d, Thresholds()).artifact)
    return config.dates


class Scores:
    """A 'model' whose predictions were computed once (each model predicts each holdout once)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def predict(self, frame) -> np.ndarray:
        assert len(frame) == len(self.scores)
        return self.scores


def noisy(p: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Scores with N(0, sigma) logit noise: a candidate of known, lower quality."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    noise = np.random.default_rng(seed).normal(0.0, sigma, len(p))
    return 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + noise)))


def calibrate_sigma(scores: np.ndarray, labels: np.ndarray, target_auc: float) -> float:
    """Logit noise strength whose mean AUC (over 5 draws) on a calibration day is the target."""
    from reckit_assets.core.evaluation.metrics import auc

    def mean_auc(sigma: float) -> float:
        return float(np.mean([auc(labels, noisy(scores, sigma, s)) for s in range(5)]))

    lo, hi = 0.0, 8.0
    for _ in range(18):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_auc(mid) > target_auc else (lo, mid)
    return (lo + hi) / 2


# scenario -> release outcome (released / held / rejected / broken) -> trials, bootstrap mode
OUTCOMES: dict[str, dict[str, int]] = {}


def table(results: dict, deltas: dict, failures: dict) -> None:
    """One row per scenario; the CI is Clopper-Pearson (statsmodels) on the blocked count."""
    from statsmodels.stats.proportion import proportion_confint

    print(
        "| scenario | trials | mean AUC diff vs production | blocked (bootstrap, default) "
        "| 95% CI of that rate | release outcomes (bootstrap) | blocked (ratio, reckit) "
        "| failing rules (bootstrap) |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---|")
    for scenario, by_mode in results.items():
        n = len(by_mode["bootstrap"])
        d = deltas.get(scenario)
        cells = [
            f"{sum(by_mode[m])}/{n} ({sum(by_mode[m]) / n:.0%})" for m in ("bootstrap", "ratio")
        ]
        rules_hit = ", ".join(
            f"{k} {v}" for k, v in sorted(failures.get(scenario, {}).get("bootstrap", {}).items())
        )
        mean = f"{np.mean(d):+.4f}" if d else "–"
        low, high = proportion_confint(sum(by_mode["bootstrap"]), n, method="beta")
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES.get(scenario, {}).items()))
        print(
            f"| {scenario} | {n} | {mean} | {cells[0]} | [{low:.0%}, {high:.0%}] | "
            f"{kinds or '–'} | {cells[1]} | {rules_hit or '–'} |"
        )
    sys.stdout.flush()


def main() -> None:
    import pandas as pd

    from reckit_assets.core.evaluation import gate
    from reckit_assets.core.evaluation import outcomes as gate_outcomes
    from reckit_assets.core.evaluation import production as gate_production
    from reckit_assets.core.evaluation import report as evaluation
    from reckit_assets.core.evaluation.metrics import auc
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.steps import data as steps
    from reckit_assets.core.training.baselines import ItemCTRPrior
    from reckit_assets.core.training.xgb_ranker import XGBParams, train_xgb

    trials = int(os.environ.get("BENCH_TRIALS", "40"))
    n_estimators = int(os.environ.get("BENCH_TREES", "80"))
    holdouts = int(os.environ.get("BENCH_HOLDOUTS", "3"))
    started = time.perf_counter()
    root = tempfile.mkdtemp(prefix="bench-gates-release-")
    dates = prepare(root, WINDOW + holdouts + 1)
    store = LocalStorage(f"{root}/warehouse")
    frames = {d: warehouse.read(store, steps.SAMPLES, d) for d in dates}
    prep_s = time.perf_counter() - started
    # Holdout days: the last ``holdouts``; the day before the first one calibrates the noise.
    calib_day, holdout_days = dates[-holdouts - 1], dates[-holdouts:]

    def window(dt: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        i = dates.index(dt)
        days = dates[i - WINDOW : i]
        return pd.concat([frames[d] for d in days[:-1]], ignore_index=True), frames[days[-1]]

    def train(dt: str, seed: int, **change):
        tr, va = window(dt)
        if change.get("shuffle"):
            rng = np.random.default_rng(seed)
            tr, va = tr.copy(), va.copy()
            tr["label"] = rng.permutation(tr["label"].to_numpy())
            va["label"] = rng.permutation(va["label"].to_numpy())
        cols = tuple(c for c in XGBParams().feature_columns if c != change.get("drop"))
        params = XGBParams(n_estimators=n_estimators, seed=seed, feature_columns=cols)
        return train_xgb(tr, va, params)[0]

    rules = {"bootstrap": gate.GateRules(), "ratio": gate.GateRules(mode="ratio")}
    prior = ("item_ctr_prior", ItemCTRPrior())
    results: dict[str, dict[str, list[bool]]] = {}
    failures: dict[str, dict[str, dict[str, int]]] = {}
    deltas: dict[str, list[float]] = {}

    def judge(scenario: str, holdout, cand, prod) -> None:
        report = evaluation.ranker_report(
            holdout, ("candidate", cand), ("production", prod) if prod else None, prior
        )
        state = (
            gate_production.ProductionState("present", "production")
            if prod
            else gate_production.ProductionState("never")
        )
        report["production_state"] = state.as_dict()
        if os.environ.get("BENCH_REPORTS"):  # for re-judging under other rules, offline
            with open(os.environ["BENCH_REPORTS"], "a") as out:
                out.write(json.dumps({"scenario": scenario, "report": report}, default=float))
                out.write("\n")
        report["identity"] = gate_production.identity(
            "candidate", "c", {"f": "1"}, "cpu", "x", state
        )
        if prod:
            deltas.setdefault(scenario, []).append(
                report["candidate"]["auc"] - report["production"]["auc"]
            )
        for mode, r in rules.items():
            outcomes = gate.ranker_gate(report, r)
            blocked = [o.name for o in outcomes if not o.passed]
            results.setdefault(scenario, {}).setdefault(mode, []).append(bool(blocked))
            if mode == "bootstrap":
                decided = gate_outcomes.decide(outcomes)[0]
                kinds = OUTCOMES.setdefault(scenario, {})
                kinds[decided] = kinds.get(decided, 0) + 1
            for name in blocked:
                counts = failures.setdefault(scenario, {}).setdefault(mode, {})
                counts[name] = counts.get(name, 0) + 1

    # Noise levels, calibrated once on a day no trial is judged on.
    calib = frames[calib_day]
    calib_scores, calib_y = train(calib_day, 10_000).predict(calib), calib["label"].to_numpy()
    calib_auc = auc(calib_y, calib_scores)
    prior_auc = auc(calib_y, ItemCTRPrior().predict(calib))
    sigma = {
        "regression_0.01": calibrate_sigma(calib_scores, calib_y, calib_auc - 0.01),
        "regression_0.02": calibrate_sigma(calib_scores, calib_y, calib_auc - 0.02),
        "worse_than_trivial": calibrate_sigma(calib_scores, calib_y, prior_auc - 0.01),
    }
    print(
        f"calibration day {calib_day}: XGBoost AUC {calib_auc:.4f}, item-CTR prior "
        f"{prior_auc:.4f}; logit noise sigma {json.dumps({k: round(v, 3) for k, v in sigma.items()})}",
        flush=True,
    )

    degraded_every = max(1, trials // 10)  # deterministic failures: fewer trials suffice
    budget = float(os.environ.get("BENCH_SECONDS", "1e9"))
    done = 0
    pairs = int(os.environ.get("BENCH_PAIRS", "0"))
    # Independent A/A trials (two fresh seeds each) and the small regressions only: what the
    # false-block rate's confidence interval needs, without the deterministic failure cases.
    aa_only = bool(os.environ.get("BENCH_AA_ONLY"))
    if pairs:
        # Cheaper A/A: ``pairs`` seeds per holdout day, every pair of them judged (pairs share
        # models, so trials are not independent; each is still a valid A/A comparison).
        trials = 0
        for dt in holdout_days:
            holdout = frames[dt]
            models = [train(dt, 100 + i).predict(holdout) for i in range(pairs)]
            for i in range(pairs):
                for j in range(i + 1, pairs):
                    if time.perf_counter() - started > budget:
                        break
                    prod, cand_p = Scores(models[i]), models[j]
                    judge("A/A (different seeds)", holdout, Scores(cand_p), prod)
                    for name in ("regression_0.01", "regression_0.02"):
                        judge(
                            f"AUC {name.replace('_', ' ')}",
                            holdout,
                            Scores(noisy(cand_p, sigma[name], 1000 * i + j)),
                            prod,
                        )
                    done += 1
                    trials += 1
                    print(f"pair {done} done ({time.perf_counter() - started:.0f} s)", flush=True)
            if os.environ.get("BENCH_PARTIAL"):
                table(results, deltas, failures)
    for t in range(trials if not pairs else 0):
        if time.perf_counter() - started > budget:
            print(f"time budget of {budget:.0f} s reached after {done} trials", flush=True)
            break
        dt = holdout_days[t % len(holdout_days)]
        holdout = frames[dt]
        prod = Scores(train(dt, 2 * t + 1).predict(holdout))
        cand_p = train(dt, 2 * t + 2).predict(holdout)
        judge("A/A (different seeds)", holdout, Scores(cand_p), prod)
        for name in ("regression_0.01", "regression_0.02"):
            judge(
                f"AUC {name.replace('_', ' ')}",
                holdout,
                Scores(noisy(cand_p, sigma[name], t)),
                prod,
            )
        if not aa_only:
            awful = Scores(noisy(cand_p, sigma["worse_than_trivial"], t))
            judge("worse than trivial (production exists)", holdout, awful, prod)
            judge("worse than trivial (first model)", holdout, awful, None)
        if t % degraded_every == 0 and not aa_only:
            shuffled = Scores(train(dt, 2 * t + 2, shuffle=True).predict(holdout))
            judge("shuffled labels", holdout, shuffled, prod)
            judge("shuffled labels (first model)", holdout, shuffled, None)
            dropped = train(dt, 2 * t + 2, drop="user_category_ctr").predict(holdout)
            judge("strong feature dropped (user_category_ctr)", holdout, Scores(dropped), prod)
        done += 1
        print(f"trial {done}/{trials} done ({time.perf_counter() - started:.0f} s)", flush=True)
        if os.environ.get("BENCH_PARTIAL"):
            table(results, deltas, failures)

    rows_per_day = int(np.mean([len(frames[d]) for d in holdout_days]))
    print()
    print(
        f"Release gate: {done} trials, holdout days {', '.join(holdout_days)} "
        f"(~{rows_per_day} rows each), XGBoost n_estimators={n_estimators}, "
        f"{rules['bootstrap'].bootstrap_samples} bootstrap resamples; data prep {prep_s:.0f} s, "
        f"total {time.perf_counter() - started:.0f} s"
    )
    print()
    table(results, deltas, failures)
    sys.stdout.flush()


def rejudge(path: str) -> None:
    """Judge the reports saved by a run (``BENCH_REPORTS``) again with the current rules."""
    from reckit_assets.core.evaluation import gate
    from reckit_assets.core.evaluation import production as gate_production

    rules = {"bootstrap": gate.GateRules(), "ratio": gate.GateRules(mode="ratio")}
    results: dict = {}
    failures: dict = {}
    deltas: dict = {}
    with open(path) as lines:
        for line in lines:
            row = json.loads(line)
            scenario, report = row["scenario"], row["report"]
            state = gate_production.ProductionState(**report["production_state"])
            report["identity"] = gate_production.identity(
                "candidate", "c", {"f": "1"}, "cpu", "x", state
            )
            if report.get("production"):
                deltas.setdefault(scenario, []).append(
                    report["candidate"]["auc"] - report["production"]["auc"]
                )
            for mode, r in rules.items():
                blocked = [o.name for o in gate.ranker_gate(report, r) if not o.passed]
                results.setdefault(scenario, {}).setdefault(mode, []).append(bool(blocked))
                for name in blocked if mode == "bootstrap" else []:
                    counts = failures.setdefault(scenario, {}).setdefault(mode, {})
                    counts[name] = counts.get(name, 0) + 1
    table(results, deltas, failures)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rejudge"]:
        rejudge(sys.argv[2])
    else:
        main()
