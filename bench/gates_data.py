"""Benchmark: the data gate's false-block rate on clean data and its catch rate on defects.

Runs the core data steps (landing checks, validation, activity, features, samples with their
checks) day by day on local Parquet, as the Dagster assets do, without Dagster:

- clean simulated runs: several seeds at 10k and 100k impressions per day;
- realistic variations that must pass (defects.VARIATIONS), each a whole run at 10k;
- every defect class (defects.DEFECTS) injected into the last day of each clean run: it must
  be blocked, and by the check that names it.

A day counts as blocked when any of its blocking checks fails (or a step refuses it).

    python bench/gates_data.py                 # the full table (~10 min on 2 cores)
    python bench/gates_data.py --quick         # 1 seed per scale, 10k only
    python bench/gates_data.py --json out.json # also write every day's outcome
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reckit_assets.core.ingest.quality import Thresholds
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import LocalStorage, Storage
from reckit_assets.core.steps import data as steps
from reckit_assets.simulation.defects import (
    DEFECTS,
    VARIATIONS,
    Landed,
    apply_variation,
    inject_defect,
    land,
)
from reckit_assets.simulation.simulate import SimulationConfig, simulate_day

START = "2026-10-01"


def run_day(landing: Storage, store: Storage, dt: str, t: Thresholds) -> dict:
    """Every data step of one day; returns the failed checks (name -> description)."""
    failed: dict[str, str] = {}
    figures: dict[str, float] = {}
    try:
        res = steps.check_landing(landing, dt, t, store=store, first_day=START)
        warehouse.publish(store, steps.LANDED, dt, res.artifact)
        failed.update({o.name: o.description for o in res.outcomes if not o.passed})
        for o in res.outcomes:
            for k in ("ratio", "p_value"):
                if k in o.metadata:
                    figures[f"{o.name}.{k}"] = o.metadata[k]
        if res.passed:
            for asset, art in steps.validate(landing, store, dt).items():
                warehouse.publish(store, asset, dt, art)
            warehouse.publish(store, steps.ACTIVITY, dt, steps.activity(store, dt))
            warehouse.publish(store, steps.FEATURES, dt, steps.features(store, dt, START))
            sres = steps.samples(store, dt, t, first_day=START)
            warehouse.publish(store, steps.SAMPLES, dt, sres.artifact, quarantined=not sres.passed)
            failed.update({o.name: o.description for o in sres.outcomes if not o.passed})
            for o in sres.outcomes:
                if o.name == "feature_drift":
                    figures.update({k: v for k, v in o.metadata.items() if k.startswith("drift_")})
    except warehouse.MissingPartitionError as exc:
        failed["refused"] = str(exc)
    return {"dt": dt, "failed": failed, "figures": figures}


def sim_config(seed: int, scale: int, days: int, factor: float = 1.0) -> SimulationConfig:
    return SimulationConfig(
        start=START,
        days=days,
        n_users=max(3000, scale // 20),
        n_items=max(600, scale // 100),
        impressions_per_day=round(scale * factor),
        seed=seed,
    )


def landed_day(config: SimulationConfig, i: int) -> Landed:
    day = simulate_day(config, i)
    cols_u = ["user_id", "age", "gender", "region"]
    cols_i = ["item_id", "category", "price"]
    return Landed(day.events, day.users[cols_u], day.items[cols_i])


def run(
    root: Path, seed: int, scale: int, days: int, t: Thresholds, variation: str | None = None
) -> tuple[list[dict], Storage, Storage, Landed]:
    """One run of ``days`` days; returns per-day results, the storages and the last day."""
    landing, store = LocalStorage(root / "landing"), LocalStorage(root / "warehouse")
    factor = 1.3 if variation == "weekly_swing_30pct" else 1.0
    config = sim_config(seed, scale, days, factor)
    out, last = [], None
    for i in range(days):
        day = landed_day(config, i)
        if variation:
            day = apply_variation(day, variation, i, seed)
        land(landing, config.day(i), day)
        out.append(run_day(landing, store, config.day(i), t))
        last = day
    return out, landing, store, last


def defects(landing: Storage, store: Storage, last: Landed, dt: str, t: Thresholds) -> list[dict]:
    """Inject each defect into the last day (re-landed), rerun that day, restore it."""
    results = []
    for name, (what, expected) in DEFECTS.items():
        for table in ("events", "users", "items"):
            landing.delete_prefix(f"{table}/dt={dt}")  # benchmark setup, not the pipeline
        land(landing, dt, inject_defect(last, name, seed=1))
        r = run_day(landing, store, dt, t)
        results.append({"defect": name, "what": what, "expected": expected, **r})
    for table in ("events", "users", "items"):
        landing.delete_prefix(f"{table}/dt={dt}")
    land(landing, dt, last)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args()
    t = Thresholds()
    runs = (
        [(11, 10_000)]
        if args.quick
        else [(s, 10_000) for s in (11, 12, 13)] + [(s, 100_000) for s in (21, 22, 23)]
    )
    variations = [] if args.quick else list(VARIATIONS)
    tmp = Path(tempfile.mkdtemp(prefix="reckit-gates-"))
    report: dict = {"clean": [], "variations": [], "defects": []}
    started = time.perf_counter()
    try:
        for seed, scale in runs:
            days = args.days if scale <= 10_000 else min(args.days, 11)
            root = tmp / f"clean-{seed}-{scale}"
            res, landing, store, last = run(root, seed, scale, days, t)
            report["clean"] += [{"seed": seed, "scale": scale, **r} for r in res]
            dt = res[-1]["dt"]
            report["defects"] += [
                {"seed": seed, "scale": scale, **r} for r in defects(landing, store, last, dt, t)
            ]
            shutil.rmtree(root)
            print(f"  seed {seed} scale {scale}: {time.perf_counter() - started:.0f}s", flush=True)
        for v in variations:
            root = tmp / f"var-{v}"
            res, *_ = run(root, 31, 10_000, args.days, t, variation=v)
            report["variations"] += [{"variation": v, "scale": 10_000, **r} for r in res]
            shutil.rmtree(root)
            print(f"  variation {v}: {time.perf_counter() - started:.0f}s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


def print_table(report: dict) -> None:
    print("\nData gate: clean data (every day of every run; a block is any failed check)")
    print(f"{'set':<28}{'days':>6}{'blocked':>9}  failed checks")
    groups: dict[str, list[dict]] = {}
    for r in report["clean"]:
        groups.setdefault(f"clean {r['scale'] // 1000}k seed {r['seed']}", []).append(r)
    for r in report["variations"]:
        groups.setdefault(f"variation {r['variation']}", []).append(r)
    total = blocked_total = 0
    for name, rows in groups.items():
        blocked = [r for r in rows if r["failed"]]
        names = Counter(n for r in blocked for n in r["failed"])
        total += len(rows)
        blocked_total += len(blocked)
        print(f"{name:<28}{len(rows):>6}{len(blocked):>9}  {dict(names) or ''}")
    print(
        f"{'all clean + variations':<28}{total:>6}{blocked_total:>9}  "
        f"false-block rate {blocked_total / max(total, 1):.1%}"
    )
    print("\nData gate: injected defects (last day of each clean run)")
    print(f"{'defect':<28}{'runs':>6}{'blocked':>9}{'by named':>10}  expected check")
    by: dict[str, list[dict]] = {}
    for r in report["defects"]:
        by.setdefault(r["defect"], []).append(r)
    caught = named = n = 0
    for name, rows in by.items():
        b = sum(1 for r in rows if r["failed"])
        k = sum(1 for r in rows if rows[0]["expected"] in r["failed"])
        caught, named, n = caught + b, named + k, n + len(rows)
        print(f"{name:<28}{len(rows):>6}{b:>9}{k:>10}  {rows[0]['expected']}")
    print(
        f"{'all defects':<28}{n:>6}{caught:>9}{named:>10}  catch rate {caught / max(n, 1):.1%}, "
        f"by the named check {named / max(n, 1):.1%}"
    )


if __name__ == "__main__":
    main()
