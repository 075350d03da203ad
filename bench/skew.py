"""Benchmark: the ``serving_skew`` gate's false blocks on clean served days and its catch rate on
injected serving-side feature bugs.

Input: the output folder of a ``reckit loop`` run (its warehouse holds, per served day, the
service's decision log joined to the day's traffic, ``served_decisions``, with the feature vectors
the real service scored for a sample of rankings, and the day's ``training_samples``). Days the
loop itself served with a bug (``--skew-bug-on``) are left out of the clean set.

For every clean day the gate (``core.monitoring.decisions.skew`` with the configured
``SkewRules``) runs on the served vectors as logged (a block is a false block), then on the same
vectors with one bug injected, for every compared feature in turn:

- ``scaled x100``: the feature served 100x (a rate served as a percentage);
- ``scaled x1.1``: 10% off (a unit or normalisation slip);
- ``stale``: the entity's value from the day before (an online table that was not refreshed),
  from the previous day's samples (rows whose entity has no earlier value keep theirs);
- ``zero for new users``: 0.0 where the user is new (a default that differs from training's);
- ``x100 on 5% of rows`` / ``x100 on 0.5% of rows``: one replica or one code path serving wrong.

A bug is caught when the gate names the injected feature. An injection that changes no more than
``max_mismatch_share`` of the rows (e.g. zero for new users where training's default is 0, or a
stale value equal to today's) is no bug and is counted apart; the two deliberately small shares
are always counted (they show the limit's resolution). Reported per bug: caught / injected
(with a Clopper-Pearson 95% interval), and the clean days' false blocks.

    python bench/skew.py /tmp/loop16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from reckit_assets.core.io import warehouse  # noqa: E402
from reckit_assets.core.io.storage import LocalStorage  # noqa: E402
from reckit_assets.core.monitoring.decisions import (  # noqa: E402
    ASSET,
    FEATURE_PREFIX,
    SET_AT_SERVING,
    SkewRules,
    skew,
)
from serving.features import ITEM_COLUMNS, USER_COLUMNS  # noqa: E402

SAMPLES = "training_samples"


def _entity(feature: str) -> str | None:
    if feature in USER_COLUMNS:
        return "user_id"
    if feature in ITEM_COLUMNS:
        return "item_id"
    return None


def _stale(frame: pd.DataFrame, feature: str, before: pd.DataFrame | None) -> pd.Series | None:
    key = _entity(feature)
    if key is None or before is None or feature not in before:
        return None
    yesterday = before.drop_duplicates(key).set_index(key)[feature]
    old = frame[key].map(yesterday)
    return old.where(old.notna(), frame[FEATURE_PREFIX + feature])


def _bugs(frame: pd.DataFrame, feature: str, before: pd.DataFrame | None, rng) -> dict:
    col = FEATURE_PREFIX + feature
    served = frame[col]
    out = {"scaled x100": served * 100.0, "scaled x1.1": served * 1.1}
    stale = _stale(frame, feature, before)
    if stale is not None:
        out["stale"] = stale
    if "is_new_user" in frame:
        new = frame["is_new_user"].astype(float) > 0
        if new.any() and feature in USER_COLUMNS:
            out["zero for new users"] = served.where(~new, 0.0)
    for share in (0.05, 0.005):
        hit = rng.random(len(frame)) < share
        out[f"x100 on {share:.1%} of rows"] = served.where(~hit, served * 100.0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("loop_out", help="a `reckit loop --out` folder")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    import json

    root = Path(args.loop_out)
    store = LocalStorage(root / "data" / "warehouse")
    timeline = json.loads((root / "timeline.json").read_text())
    bugged = {d["dt"] for d in timeline["days"] if d.get("skew_bug")}
    rules = SkewRules()
    rng = np.random.default_rng(args.seed)
    days = sorted(
        k.key.split("dt=")[1].split("/")[0]
        for k in store.list(f"{ASSET}/")
        if k.key.endswith("manifest.json")
    )
    clean_days, false_blocks = [], []
    caught: dict[str, list[bool]] = {}
    noop: dict[str, int] = {}  # injections that changed too few rows to be a bug
    compared_rows = []
    previous = None
    for dt in days:
        samples = warehouse.read(store, SAMPLES, dt)
        decisions = warehouse.read(store, ASSET, dt)
        before, previous = previous, samples
        if dt in bugged or decisions.empty or not decisions["feature_logged"].any():
            continue
        logged = decisions[decisions["feature_logged"].astype(bool)].reset_index(drop=True)
        keys = samples[["request_id", "item_id", "is_new_user"]].astype({"request_id": str})
        logged = logged.merge(keys.drop_duplicates(["request_id", "item_id"]),
                              on=["request_id", "item_id"], how="left")  # fmt: skip
        report = skew(logged, samples, rules)
        clean_days.append(dt)
        compared_rows.append(report["compared"])
        if report["failing"]:
            false_blocks.append((dt, report["failing"]))
        features = [f["feature"] for f in report["features"] if f["feature"] not in SET_AT_SERVING]
        for feature in features:
            served = logged[FEATURE_PREFIX + feature].to_numpy(float)
            for bug, values in _bugs(logged, feature, before, rng).items():
                changed = ~np.isclose(values.to_numpy(float), served, equal_nan=True)
                if bug.endswith("of rows"):
                    pass  # a deliberately small share: counted whatever it changes
                elif changed.mean() <= rules.max_mismatch_share:
                    noop[bug] = noop.get(bug, 0) + 1  # e.g. a default training shares
                    continue
                injected = logged.assign(**{FEATURE_PREFIX + feature: values.to_numpy()})
                found = skew(injected, samples, rules)
                caught.setdefault(bug, []).append(feature in found["failing"])
    n = len(clean_days)
    lo, hi = proportion_confint(len(false_blocks), n, method="beta") if n else (0, 0)
    print(f"loop run: {root}; clean served days: {n} ({clean_days[0]} .. {clean_days[-1]})")
    print(
        f"rows compared per day: median {int(np.median(compared_rows))}, min {min(compared_rows)}"
    )
    print(f"rules: {rules.model_dump()}")
    print(
        f"false blocks on clean days: {len(false_blocks)} of {n} "
        f"(95% CI {lo:.3f}-{hi:.3f}) {false_blocks or ''}"
    )
    print()
    print(f"{'injected bug':<24} {'caught':>7} {'of':>5} {'rate':>6}  95% CI")
    for bug, hits in caught.items():
        k = int(np.sum(hits))
        lo, hi = proportion_confint(k, len(hits), method="beta")
        print(
            f"{bug:<24} {k:>7} {len(hits):>5} {k / len(hits):>6.1%}  {lo:.3f}-{hi:.3f}"
            + (
                f"  ({noop[bug]} more changed <= the limit's share of rows: not bugs)"
                if bug in noop
                else ""
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
