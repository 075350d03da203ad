"""Benchmark: one day's raw logs -> training samples, per step, and validation vs DuckDB.

For each scale (impressions per day), in fresh processes:

1. simulate 8 days (``--days``) into a temporary landing zone (own process, untimed);
2. build the days before the last (untimed: the feature window), then time the last through every data
   step -- landing checks, validation, daily activity, point-in-time features, samples (with their
   drift and row-count checks), behaviour sequences -- each published to local Parquet, recording
   seconds and peak RSS per step (a sampler thread reads /proc every 5 ms);
3. the validate step side by side with an independent DuckDB SQL implementation of the same
   semantics on the same landed files, alternating, DuckDB on the same number of threads; asserts
   identical rows (every column) and label counts.

    python bench/data_layer.py                       # 1M impressions/day
    python bench/data_layer.py 1000000 5000000 10000000 --repeats 3

4. every step of the last day again, each in a fresh process (as the pipeline's executor runs
   them), with that process's own wall, CPU and peak RSS (``wait4``): the per-step memory a
   deployment sizes pods by, free of what earlier steps left in this process's allocator.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DAYS = [f"2026-10-0{d}" for d in range(1, 9)]  # --days N keeps the first N
THREADS = 2  # the CI-class machine's cores


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _hwm_mb() -> float:
    """This process's peak resident memory (``VmHWM``: reset by exec, unlike ``ru_maxrss``,
    which a child started by fork + exec inherits from its parent)."""
    return _status_mb("VmHWM")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


class PeakRss:
    """Peak resident memory of this process between start() and stop(), sampled every 5 ms."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._running = False

    def _loop(self) -> None:
        while self._running:
            self.peak = max(self.peak, _rss_mb())
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self.peak = _rss_mb()
        self._running = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def config(impressions: int, days: int):
    from reckit_assets.simulation.simulate import SimulationConfig

    return SimulationConfig(
        start=DAYS[0],
        days=days,
        n_users=max(3000, impressions // 20),
        n_items=max(600, impressions // 100),
        impressions_per_day=impressions,
        seed=7,
    )


def simulate(impressions: int, root: str, days: int, replicas: int = 1) -> None:
    """Land ``days`` simulated days. With ``replicas`` > 1 the simulator runs at
    ``impressions / replicas`` and each day's users and events are landed ``replicas`` times with
    suffixed user, request and event ids: as many distinct users, requests and events as a
    simulation at full scale, same catalog, for a fraction of the simulator's time."""
    import polars as pl

    from reckit_assets.core.io.frames import frame_to_parquet_bytes
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.simulation.simulate import write_simulation

    landing = LocalStorage(f"{root}/landing")
    write_simulation(config(impressions // replicas, days), landing, LocalStorage(f"{root}/oracle"))
    if replicas == 1:
        return
    suffixed = {"events": ["event_id", "user_id", "request_id"], "users": ["user_id"]}
    for table, columns in suffixed.items():
        for dt in DAYS[:days]:
            key = f"{table}/dt={dt}/part-00000.parquet"
            one = pl.read_parquet(landing.read_bytes(key))
            many = pl.concat(
                one.with_columns(pl.col(c) + f".{k}" for c in columns) for k in range(replicas)
            )
            landing.write_bytes(key, frame_to_parquet_bytes(many))


DUCKDB_VALIDATE = """
COPY (
WITH raw AS (
    SELECT * FROM read_parquet($files, filename = true, file_row_number = true)
),
typed AS (
    SELECT nullif(trim(event_id), '') AS event_id, ts::TIMESTAMPTZ AS ts,
           nullif(trim(user_id), '') AS user_id, nullif(trim(item_id), '') AS item_id,
           nullif(trim(event_type), '') AS event_type,
           nullif(trim(request_id), '') AS request_id, position::BIGINT AS position,
           nullif(trim(device), '') AS device, nullif(trim(model_version), '') AS model_version,
           filename, file_row_number
    FROM raw
),
usable AS (
    SELECT * FROM typed
    WHERE event_id IS NOT NULL AND user_id IS NOT NULL AND item_id IS NOT NULL
      AND request_id IS NOT NULL AND event_type IN ('impression', 'click', 'conversion')
),
unique_events AS (  -- the first copy of an event id, in file-name then row order
    SELECT * FROM usable
    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY filename, file_row_number) = 1
),
in_day AS (
    SELECT * FROM unique_events WHERE ts >= $start::TIMESTAMPTZ AND ts < $end::TIMESTAMPTZ
),
impressions AS (  -- one row per (request_id, item_id): the earliest, then the smallest event id
    SELECT * FROM in_day WHERE event_type = 'impression'
    QUALIFY row_number() OVER (PARTITION BY request_id, item_id ORDER BY ts, event_id) = 1
),
clicks AS (SELECT DISTINCT request_id, item_id FROM in_day WHERE event_type = 'click'),
conversions AS (SELECT DISTINCT request_id, item_id FROM in_day WHERE event_type = 'conversion')
SELECT i.request_id, i.ts, i.user_id, i.item_id, coalesce(i.position, -1)::INTEGER AS position,
       coalesce(i.device, 'unknown') AS device, i.model_version,
       (c.request_id IS NOT NULL OR v.request_id IS NOT NULL)::TINYINT AS clicked,
       (v.request_id IS NOT NULL)::TINYINT AS converted
FROM impressions i
LEFT JOIN clicks c ON c.request_id = i.request_id AND c.item_id = i.item_id
LEFT JOIN conversions v ON v.request_id = i.request_id AND v.item_id = i.item_id
ORDER BY i.ts, position
) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
"""


def duckdb_validate(root: str, dt: str, out: str) -> float:
    """The DuckDB reference for one day; returns its wall-clock seconds."""
    import duckdb

    files = sorted(str(p) for p in Path(f"{root}/landing/events/dt={dt}").glob("*.parquet"))
    start = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        DUCKDB_VALIDATE.format(out=out),
        {"files": files, "start": f"{dt} 00:00:00+00", "end": f"{_next(dt)} 00:00:00+00"},
    )
    con.close()
    return time.perf_counter() - start


def _next(dt: str) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(dt) + timedelta(days=1)).isoformat()


def _steps(root: str, days: list[str]) -> dict:
    """The data steps of one day, by name, each publishing to the root's warehouse."""
    from reckit_assets.core.ingest.quality import Thresholds
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.steps import data as steps

    landing, store = LocalStorage(f"{root}/landing"), LocalStorage(f"{root}/warehouse")
    limits = Thresholds()

    def validate(dt: str) -> None:
        for asset, artifact in steps.validate(landing, store, dt).items():
            warehouse.publish(store, asset, dt, artifact)

    def samples(dt: str) -> None:
        warehouse.publish(store, steps.SAMPLES, dt, steps.samples(store, dt, limits).artifact)

    return {
        "landing_checks": lambda dt: warehouse.publish(
            store, steps.LANDED, dt, steps.check_landing(landing, dt, limits).artifact
        ),
        "validate": validate,
        "activity": lambda dt: warehouse.publish(
            store, steps.ACTIVITY, dt, steps.activity(store, dt)
        ),
        "features": lambda dt: warehouse.publish(
            store, steps.FEATURES, dt, steps.features(store, dt, days[0])
        ),
        "samples": samples,
        "sequences": lambda dt: warehouse.publish(
            store, steps.SEQUENCES, dt, steps.sequences(store, dt)
        ),
    }


def isolated(impressions: int, root: str, days: list[str]) -> dict:
    """Each step of the last day again, one fresh process per step, as the pipeline's executor
    runs them: wall seconds (interpreter start and imports included), CPU seconds and peak RSS of
    that process alone (``wait4``'s rusage), so no step is charged for memory an earlier step
    left in the allocator."""
    out = {}
    for name in _steps(root, days):
        t = time.perf_counter()
        proc = subprocess.Popen(
            [
                *(sys.executable, __file__, str(impressions), "--step", name, "--run", root),
                *("--days", str(len(days))),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        printed = proc.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"step {name} failed in its own process")
        out[name] = {
            "seconds": round(time.perf_counter() - t, 2),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(json.loads(printed.strip().splitlines()[-1])["vm_hwm_mb"]),
        }
    return out


def run(impressions: int, root: str, repeats: int, days: list[str]) -> dict:
    # isort: off
    import reckit_assets  # noqa: F401  (first: it configures polars' allocator, as the pipeline)
    import polars as pl

    # isort: on

    from reckit_assets.core.io import warehouse
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.steps import data as steps

    store = LocalStorage(f"{root}/warehouse")

    step_fns = _steps(root, days)
    validate = step_fns["validate"]
    # The window days, built in date order as the pipeline does (untimed): the data gate's
    # references are the passing days before dt, and a day whose earlier days were never checked
    # is refused (the reference must not depend on build order).
    for dt in days[:-1]:
        for name in ("landing_checks", "validate", "activity", "features", "samples"):
            step_fns[name](dt)
    dt = days[-1]
    base_rss = _rss_mb()
    timings, cpu, peaks = {}, {}, {}
    with PeakRss() as whole:
        for name, fn in step_fns.items():
            with PeakRss() as peak:
                t, c = time.perf_counter(), time.process_time()
                fn(dt)
                timings[name] = time.perf_counter() - t
                cpu[name] = time.process_time() - c
            peaks[name] = peak.peak
    rows = warehouse.manifest(store, steps.SAMPLES, dt)["rows"]

    # Validate vs DuckDB, alternating, same landed files; the first pair above warmed caches.
    ours, theirs = [timings["validate"]], []
    ours_cpu, theirs_cpu = [cpu["validate"]], []
    out = f"{root}/duckdb_validated.parquet"
    for k in range(repeats):
        c = time.process_time()
        theirs.append(duckdb_validate(root, dt, out))
        theirs_cpu.append(time.process_time() - c)
        if k + 1 < repeats:
            t, c = time.perf_counter(), time.process_time()
            validate(dt)
            ours.append(time.perf_counter() - t)
            ours_cpu.append(time.process_time() - c)
    key = ["request_id", "item_id"]
    mine = warehouse.read_polars(store, steps.EVENTS, dt).sort(key)
    ref = pl.read_parquet(out).sort(key)
    ref = ref.with_columns(pl.col("ts").cast(mine.schema["ts"]))  # DuckDB writes microseconds
    same = mine.equals(ref)
    assert same, "DuckDB reference and the validate step disagree"
    info = warehouse.manifest(store, steps.EVENTS, dt)["info"]
    assert int(ref["clicked"].sum()) == info["clicks"] == int(mine["clicked"].sum())
    assert int(ref["converted"].sum()) == info["conversions"]
    return {
        "impressions_per_day": impressions,
        "days": len(days),
        "validated_rows": mine.height,
        "clicks": info["clicks"],
        "conversions": info["conversions"],
        "sample_rows": rows,
        "seconds": round(sum(timings.values()), 2),
        "steps_s": {k: round(v, 2) for k, v in timings.items()},
        "cpu_seconds": round(sum(cpu.values()), 2),
        "steps_cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "steps_peak_rss_mb": {k: round(v) for k, v in peaks.items()},
        "peak_rss_mb": round(whole.peak),
        "rss_before_timed_day_mb": round(base_rss),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "validate_s": [round(x, 2) for x in ours],
        "duckdb_validate_s": [round(x, 2) for x in theirs],
        "validate_vs_duckdb": round(statistics.median(ours) / statistics.median(theirs), 2),
        "validate_cpu_s": [round(x, 2) for x in ours_cpu],
        "duckdb_validate_cpu_s": [round(x, 2) for x in theirs_cpu],
        "validate_vs_duckdb_cpu": round(
            statistics.median(ours_cpu) / statistics.median(theirs_cpu), 2
        ),
        "load_average": os.getloadavg(),
        "identical_rows_to_duckdb": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scales", nargs="*", type=int, default=[1_000_000])
    parser.add_argument("--repeats", type=int, default=3, help="DuckDB/ours alternations")
    parser.add_argument(
        "--days", type=int, default=8, help="simulated days (the last is timed; default 8)"
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="simulate 1/R of the rows and land them R times"
    )
    parser.add_argument("--simulate", metavar="ROOT")
    parser.add_argument("--run", metavar="ROOT")
    parser.add_argument("--step", help="with --run: run this one step of the last day, only")
    args = parser.parse_args()
    if args.step:
        _steps(args.run, DAYS[: args.days])[args.step](DAYS[: args.days][-1])
        print(json.dumps({"vm_hwm_mb": _hwm_mb()}))
        return
    if args.simulate:
        simulate(args.scales[0], args.simulate, args.days, args.replicas)
        return
    if args.run:
        days = DAYS[: args.days]
        result = run(args.scales[0], args.run, args.repeats, days)
        result["isolated_steps"] = isolated(args.scales[0], args.run, days)
        print(json.dumps(result))
        return
    env = {**os.environ, "POLARS_MAX_THREADS": str(THREADS)}
    results = []
    for n in args.scales:
        with tempfile.TemporaryDirectory(prefix="reckit-bench-") as root:
            t = time.perf_counter()
            subprocess.run(
                [
                    *(sys.executable, __file__, str(n), "--simulate", root),
                    *("--days", str(args.days), "--replicas", str(args.replicas)),
                ],
                check=True,
                env=env,
            )
            print(
                f"simulated {n:,}/day x {args.days} days in {time.perf_counter() - t:.0f} s",
                flush=True,
            )
            out = subprocess.run(
                [
                    *(sys.executable, __file__, str(n), "--run", root),
                    *("--repeats", str(args.repeats), "--days", str(args.days)),
                ],
                check=True,
                stdout=subprocess.PIPE,  # the figures; errors go to this process's stderr
                text=True,
                env=env,
            ).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    print(
        f"\n{'impressions/day':>16} {'samples':>11} {'seconds':>8} {'CPU s':>7} {'peak MB':>8} "
        f"{'validate s':>10} {'DuckDB s':>9} {'ratio':>6} {'CPU ratio':>9}"
    )
    for r in results:
        print(
            f"{r['impressions_per_day']:>16,} {r['sample_rows']:>11,} {r['seconds']:>8} "
            f"{r['cpu_seconds']:>7} {r['peak_rss_mb']:>8} "
            f"{statistics.median(r['validate_s']):>10.2f} "
            f"{statistics.median(r['duckdb_validate_s']):>9.2f} {r['validate_vs_duckdb']:>6} "
            f"{r['validate_vs_duckdb_cpu']:>9}"
        )
    print("\neach step in its own fresh process (as the executor runs them):")
    for r in results:
        steps_ = r["isolated_steps"]
        print(
            f"{r['impressions_per_day']:>16,}: "
            + ", ".join(
                f"{k} {v['seconds']} s / {v['cpu_seconds']} CPU-s / {v['peak_rss_mb']} MB"
                for k, v in steps_.items()
            )
            + f"; max peak {max(v['peak_rss_mb'] for v in steps_.values())} MB"
        )
    if len(results) > 1:
        small = results[0]
        for r in results[1:]:
            print(
                f"time ratio {r['impressions_per_day']:,}/{small['impressions_per_day']:,}: "
                f"{r['seconds'] / small['seconds']:.1f} (rows ratio "
                f"{r['sample_rows'] / small['sample_rows']:.1f})"
            )


if __name__ == "__main__":
    main()
