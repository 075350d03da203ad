"""Benchmark: what one weekly XGBoost study costs, and what it finds, at the simulator's defaults.

The week is the 7 days before `bench/models.py`'s holdout (days 2-8 of the simulator at its
defaults): the study fits on the first five, early-stops on the sixth and scores on the seventh
(out of time), exactly as the `xgboost_tuning` asset does (`core.steps.models.tune_week`).
Then the day-9 candidate is trained twice, with the configured parameters and with the study's,
and both are scored on the holdout day, so the study's gain is also measured on a day it never saw.

    python bench/tuning.py                  # 24 trials (the default `tuning.trials`)
    python bench/tuning.py --trials 8 --root DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.models import FIRST, HOLDOUT, prepare  # noqa: E402


def main() -> None:
    from reckit_assets.core.evaluation import metrics
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.steps import data as steps
    from reckit_assets.core.training import tuning
    from reckit_assets.core.training.xgb_ranker import XGBParams, train_xgb

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None)
    parser.add_argument("--trials", type=int, default=tuning.TuningConfig().trials)
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="reckit-tuning-")
    if not Path(root, "warehouse").exists():
        prepare(root)
    store = LocalStorage(f"{root}/warehouse")
    week = warehouse.window(HOLDOUT, 7, FIRST)
    frames = {d: warehouse.read(store, steps.SAMPLES, d) for d in week}
    config = replace(tuning.TuningConfig(), trials=args.trials)
    started = time.perf_counter()
    study = tuning.tune(frames, XGBParams(), config, week[0])
    seconds = time.perf_counter() - started
    rows = sum(len(f) for f in frames.values())
    print(f"study over {week[0]}..{week[-1]} ({rows} rows), {args.trials} trials: {seconds:.1f}s")
    print(json.dumps(study.info(), default=str, indent=1))

    train = pd.concat([frames[d] for d in week[:-1]], ignore_index=True)
    valid, test = frames[week[-1]], warehouse.read(store, steps.SAMPLES, HOLDOUT)
    tuned = XGBParams(**{**asdict(XGBParams()), **study.best_params})
    for name, params in (("configured", XGBParams()), ("tuned", tuned)):
        t = time.perf_counter()
        model, _ = train_xgb(train, valid, params)
        p = model.predict(test)
        print(
            f"holdout {HOLDOUT} {name}: AUC {metrics.auc(test['label'], p):.4f} logloss "
            f"{metrics.logloss(test['label'], p):.5f} (train {time.perf_counter() - t:.1f}s)"
        )


if __name__ == "__main__":
    main()
