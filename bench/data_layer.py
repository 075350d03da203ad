"""Benchmark: one day's raw logs -> training samples at 100k and 1M impressions per day.

Each scale runs in a fresh process (so peak RSS is that scale's own): it simulates 8 days, builds
the first 7 days' activity (untimed: the feature window), then times day 8 through every data
step: landing checks, validation, daily activity, point-in-time features, samples (with drift and
row-count checks) and behaviour sequences, each published to local Parquet.

    python bench/data_layer.py            # both scales, prints a table
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time

SCALES = (100_000, 1_000_000)


def one_scale(impressions: int) -> dict:
    from reckit_assets.core.ingest.quality import Thresholds
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.steps import data as steps
    from reckit_assets.simulation.simulate import SimulationConfig, write_simulation

    root = tempfile.mkdtemp(prefix="reckit-bench-")
    landing, store = LocalStorage(f"{root}/landing"), LocalStorage(f"{root}/warehouse")
    config = SimulationConfig(
        start="2026-10-01",
        days=8,
        n_users=max(3000, impressions // 20),
        n_items=max(600, impressions // 100),
        impressions_per_day=impressions,
        seed=7,
    )
    write_simulation(config, landing, LocalStorage(f"{root}/oracle"))
    days = [f"2026-10-0{d}" for d in range(1, 9)]
    limits = Thresholds()

    def run_day(dt: str) -> dict[str, float]:
        timings = {}
        t = time.perf_counter()
        warehouse.publish(
            store, steps.LANDED, dt, steps.check_landing(landing, dt, limits).artifact
        )
        timings["landing_checks"] = time.perf_counter() - t
        t = time.perf_counter()
        for asset, artifact in steps.validate(landing, store, dt).items():
            warehouse.publish(store, asset, dt, artifact)
        timings["validate"] = time.perf_counter() - t
        t = time.perf_counter()
        warehouse.publish(store, steps.ACTIVITY, dt, steps.activity(store, dt))
        timings["activity"] = time.perf_counter() - t
        t = time.perf_counter()
        warehouse.publish(store, steps.FEATURES, dt, steps.features(store, dt, days[0]))
        timings["features"] = time.perf_counter() - t
        t = time.perf_counter()
        result = steps.samples(store, dt, limits)
        warehouse.publish(store, steps.SAMPLES, dt, result.artifact)
        timings["samples"] = time.perf_counter() - t
        t = time.perf_counter()
        warehouse.publish(store, steps.SEQUENCES, dt, steps.sequences(store, dt))
        timings["sequences"] = time.perf_counter() - t
        return timings

    for dt in days[:-1]:
        run_day(dt)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    timings = run_day(days[-1])
    rows = warehouse.manifest(store, steps.SAMPLES, days[-1])["rows"]
    return {
        "impressions_per_day": impressions,
        "sample_rows": rows,
        "seconds": round(sum(timings.values()), 2),
        "steps": {k: round(v, 2) for k, v in timings.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_rss_before_timed_day_mb": round(rss_before / 1024),
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(one_scale(int(sys.argv[2]))))
        return
    results = []
    for n in SCALES:
        out = (
            subprocess.run(
                [sys.executable, __file__, "--one", str(n)],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        results.append(json.loads(out))
    print(f"{'impressions/day':>16} {'rows':>9} {'seconds':>8} {'peak RSS MB':>12}  steps (s)")
    for r in results:
        print(
            f"{r['impressions_per_day']:>16,} {r['sample_rows']:>9,} {r['seconds']:>8} "
            f"{r['peak_rss_mb']:>12}  {r['steps']}"
        )
    small, big = results
    print(
        f"time ratio 1M/100k: {big['seconds'] / small['seconds']:.1f} (rows ratio "
        f"{big['sample_rows'] / small['sample_rows']:.1f})"
    )


if __name__ == "__main__":
    main()
