"""Benchmark: each model's holdout quality next to the oracle and the trivial baseline, and its
training time and peak memory, on the simulator at default scale.

Simulates 9 days at the defaults (`reckit simulate`), runs the data steps, then for day 9 (the
holdout; training window = the 7 days before, the last of them the validation split) trains and
evaluates each model in its own process, so peak RSS is that model's own.

    python bench/models.py
    BENCH_DAYS=29 python bench/models.py     # holdout day 29: the 28-day window full
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta

FIRST = "2026-10-01"
# BENCH_DAYS=29: the holdout is day 29, with a full 28-day window behind its long-window
# features (the default 9 days leave that window 8 days long).
DAYS = int(os.environ.get("BENCH_DAYS", "9"))
HOLDOUT = (date.fromisoformat(FIRST) + timedelta(days=DAYS - 1)).isoformat()


def prepare(root: str) -> None:
    from reckit_assets.core.ingest.quality import Thresholds
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.steps import data as steps
    from reckit_assets.simulation.simulate import SimulationConfig, write_simulation

    landing, store = LocalStorage(f"{root}/landing"), LocalStorage(f"{root}/warehouse")
    config = SimulationConfig(
        start=FIRST, days=DAYS, **json.loads(os.environ.get("BENCH_SIM", "{}"))
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
        warehouse.publish(store, steps.SEQUENCES, d, steps.sequences(store, d))


def one_model(root: str, kind: str) -> dict:
    from reckit_assets.core.evaluation import gate, metrics
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.io.frames import read_frame
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.release.registry import Registry
    from reckit_assets.core.steps import models as model_steps

    store = LocalStorage(f"{root}/warehouse")
    t = time.perf_counter()
    artifact = model_steps.train_candidate(store, kind, HOLDOUT, {}, 7, FIRST)
    train_s = time.perf_counter() - t
    warehouse.publish(store, model_steps.candidate_asset(kind), HOLDOUT, artifact)
    t = time.perf_counter()
    evaluation, _ = model_steps.evaluate(
        store, Registry(LocalStorage(f"{root}/registry-{kind}")), kind, HOLDOUT, gate.GateRules()
    )
    eval_s = time.perf_counter() - t
    report = json.loads(evaluation.blobs["report.json"])
    out = {
        "model": kind,
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "gate_passed": report["passed"],
    }
    if kind == "item2vec":
        k = report["k"]
        out.update(
            hit_rate=report["candidate"][f"hit_rate@{k}"],
            popularity_hit_rate=report["baseline"][f"hit_rate@{k}"],
            recall=report["candidate"][f"recall@{k}"],
            popularity_recall=report["baseline"][f"recall@{k}"],
        )
        return out
    holdout = warehouse.read(store, "training_samples", HOLDOUT)
    oracle = read_frame(LocalStorage(f"{root}/oracle"), f"oracle/dt={HOLDOUT}/part-00000.parquet")
    joined = holdout[["request_id", "item_id", "label"]].merge(
        oracle[["request_id", "item_id", "p_click"]],
        on=["request_id", "item_id"],
        how="left",
        validate="one_to_one",
    )
    out.update(
        auc=report["candidate"]["auc"],
        logloss=report["candidate"]["logloss"],
        gauc=report["candidate"]["gauc"],
        baseline_auc=report["baseline"]["auc"],
        baseline_logloss=report["baseline"]["logloss"],
        oracle_auc=metrics.auc(joined["label"], joined["p_click"]),
        oracle_logloss=metrics.logloss(joined["label"], joined["p_click"]),
    )
    return out


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(one_model(sys.argv[2], sys.argv[3])))
        return
    root = tempfile.mkdtemp(prefix="reckit-bench-models-")
    t = time.perf_counter()
    prepare(root)
    print(f"simulated and prepared {DAYS} days at default scale in {time.perf_counter() - t:.1f} s")
    rows = []
    for kind in ("xgboost", "deepfm", "item2vec"):
        out = subprocess.run(
            [sys.executable, __file__, "--one", root, kind],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    total = sum(r["train_s"] + r["eval_s"] for r in rows)
    for r in rows:
        if r["model"] == "item2vec":
            print(
                f"item2vec  hit_rate@10 {r['hit_rate']:.4f} vs popularity {r['popularity_hit_rate']:.4f} "
                f"({r['hit_rate'] / max(r['popularity_hit_rate'], 1e-9):.2f}x); recall@10 "
                f"{r['recall']:.4f} vs {r['popularity_recall']:.4f}"
            )
        else:
            print(
                f"{r['model']:<8}  AUC {r['auc']:.4f} (oracle {r['oracle_auc']:.4f}, gap "
                f"{r['oracle_auc'] - r['auc']:.4f}; item-CTR prior {r['baseline_auc']:.4f})  "
                f"logloss {r['logloss']:.4f} (oracle {r['oracle_logloss']:.4f}; prior "
                f"{r['baseline_logloss']:.4f})  GAUC {r['gauc']:.4f}"
            )
        print(
            f"          train {r['train_s']} s, evaluate {r['eval_s']} s, peak RSS {r['peak_rss_mb']} MB, "
            f"first-model gate {'passed' if r['gate_passed'] else 'FAILED'}"
        )
    print(f"one day's train + evaluation of all three models: {total:.1f} s")


if __name__ == "__main__":
    main()
