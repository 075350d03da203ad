"""Benchmark: one day of every step through Dagster's configured executor vs the bare functions.

Simulates 4 days at the simulator's default scale, builds days 1-3 (untimed), copies that state,
then runs day 4 -- all 16 steps of the daily job (landing checks, validation, activity, features,
online snapshot, samples, sequences, and train/evaluate/register for each of the three models) --
twice on identical copies, alternating:

* **dagster**: ``dagster job execute`` of ``daily_pipeline`` for the partition, with the code
  location's configured executor (``reckit_assets.definitions``: the local default runs a run's
  steps in its own process and the model steps in processes forked from a model server) and a
  SQLite DAGSTER_HOME that already exists, as a deployment's does;
* **direct**: a fresh ``python`` process calling the same ``core.steps`` functions in order.

``--executors in_process multiprocess`` times the other local choice (``RECKIT_STEP_EXECUTOR``:
a process per step) in the same run. Every way is timed as a whole process (interpreter start
and imports included), so the ratio is the price of orchestration. Wall time and the CPU time of
the whole process tree are reported: on a shared machine the CPU ratio is the steadier one.

    python bench/orchestration.py [--repeats 2] [--keep DIR] [--executors in_process ...]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAYS = ["2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04"]


def run_direct(root: str, dt: str) -> None:
    """Every step of the daily job for ``dt``, by calling the core functions the assets call, with
    the same computations (the training curves, reliability diagrams and staleness check that
    the model assets add as metadata included), without Dagster."""
    import json

    from reckit_assets.config import load_config
    from reckit_assets.core.evaluation import plots
    from reckit_assets.core.features import online
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.release import staleness
    from reckit_assets.core.release.registry import Registry
    from reckit_assets.core.steps import data as steps
    from reckit_assets.core.steps import models as model_steps

    landing = LocalStorage(f"{root}/landing")
    store = LocalStorage(f"{root}/warehouse")
    registry_store = LocalStorage(f"{root}/registry")
    config = load_config(env={"RECKIT_PARTITIONS_START": DAYS[0]}, use_default_file=False)
    limits = config.config.data_quality
    check = steps.check_landing(landing, dt, limits, store=store, first_day=DAYS[0])
    warehouse.publish(store, steps.LANDED, dt, check.artifact, quarantined=not check.passed)
    for asset, artifact in steps.validate(landing, store, dt).items():
        warehouse.publish(store, asset, dt, artifact)
    warehouse.publish(store, steps.ACTIVITY, dt, steps.activity(store, dt))
    warehouse.publish(store, steps.FEATURES, dt, steps.features(store, dt, DAYS[0]))
    online.publish(registry_store, dt, steps.online_snapshot(store, dt, DAYS[0]))
    result = steps.samples(store, dt, limits, first_day=DAYS[0])
    warehouse.publish(store, steps.SAMPLES, dt, result.artifact, quarantined=not result.passed)
    warehouse.publish(store, steps.SEQUENCES, dt, steps.sequences(store, dt))
    registry = Registry(registry_store)
    window = config.config.training
    trained, passed = [], []
    for kind in model_steps.KINDS:
        try:
            model_steps.usable_window(store, kind, dt, window.window_days, DAYS[0], window.min_days)
            artifact = model_steps.train_candidate(
                store,
                kind,
                dt,
                config.values()[kind],
                window.window_days,
                DAYS[0],
                window.min_days,
            )
        except model_steps.NotEnoughDataError:  # the asset emits no output: nothing downstream
            continue
        warehouse.publish(store, model_steps.candidate_asset(kind), dt, artifact)
        info = artifact.info
        plots.training_curve_markdown(info["history"], info["best_iteration"], f"{kind} dt={dt}")
        staleness.staleness(
            registry, kind, dt, DAYS[0], window.window_days, config.config.release, "trained"
        )
        trained.append(kind)
    for kind in trained:
        rules = config.config.gate
        artifact, outcomes = model_steps.evaluate(store, registry, kind, dt, rules)
        warehouse.publish(store, model_steps.evaluation_asset(kind), dt, artifact)
        plots.reliability_markdown(json.loads(artifact.blobs["report.json"]))
        if all(o.passed for o in outcomes):  # the gate is a blocking check in Dagster
            passed.append(kind)
    for kind in passed:
        model_steps.register(store, registry, kind, dt, by="bench")


def _env(root: str) -> dict[str, str]:
    return {
        **os.environ,
        "RECKIT_DATA_DIR": root,
        "RECKIT_PARTITIONS_START": DAYS[0],
        "DAGSTER_HOME": f"{root}/dagster_home",
    }


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _become_subreaper() -> None:
    """Orphaned descendants (the executor's forkserver and the steps it forked outlive the run
    process by a moment) are re-parented to this process, so their CPU time is counted."""
    import ctypes

    pr_set_child_subreaper = 36
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def _reap_all() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process tree) of one command."""
    start, cpu = time.perf_counter(), _cpu_of_children()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    _reap_all()
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return took, _cpu_of_children() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--direct", nargs=2, metavar=("ROOT", "DT"))
    parser.add_argument("--prepare", metavar="ROOT")
    parser.add_argument("--keep", metavar="DIR", help="keep (or reuse) days 1-3 here")
    parser.add_argument(
        "--executors",
        nargs="+",
        default=["in_process"],
        choices=["in_process", "multiprocess"],
        help="RECKIT_STEP_EXECUTOR values to time (the first is the configured default)",
    )
    args = parser.parse_args()
    if args.direct:
        run_direct(*args.direct)
        return
    if args.prepare:
        from reckit_assets.core.io.storage import LocalStorage
        from reckit_assets.simulation.simulate import SimulationConfig, write_simulation

        root = args.prepare
        config = SimulationConfig(start=DAYS[0], days=len(DAYS))
        write_simulation(config, LocalStorage(f"{root}/landing"), LocalStorage(f"{root}/oracle"))
        for dt in DAYS[:-1]:
            run_direct(root, dt)
        # The instance's SQLite storage exists before the timed run, as in any deployment.
        from dagster import DagsterInstance

        from reckit_assets.dagster_home import init_home

        DagsterInstance.from_config(str(init_home(Path(root, "dagster_home"))))
        return

    from reckit_assets.dagster_home import init_home

    bin_dir = Path(sys.executable).parent
    _become_subreaper()
    with tempfile.TemporaryDirectory(prefix="reckit-orch-") as tmp:
        base = args.keep or f"{tmp}/base"
        if not Path(base, "warehouse").exists():
            subprocess.run([sys.executable, __file__, "--prepare", base], check=True)
        ways = [*(f"dagster {kind}" for kind in args.executors), "direct"]
        times: dict[str, list[float]] = {way: [] for way in ways}
        cpu: dict[str, list[float]] = {way: [] for way in ways}
        for k in range(args.repeats):
            for way in ways if k % 2 == 0 else ways[::-1]:
                root = f"{tmp}/{way.replace(' ', '-')}-{k}"
                shutil.copytree(base, root)
                env = _env(root)
                init_home(Path(env["DAGSTER_HOME"]))
                if way.startswith("dagster"):
                    env["RECKIT_STEP_EXECUTOR"] = way.split()[1]
                if way == "direct":
                    cmd = [sys.executable, __file__, "--direct", root, DAYS[-1]]
                else:
                    cmd = [
                        str(bin_dir / "dagster"),
                        "job",
                        "execute",
                        "-m",
                        "reckit_assets.definitions",
                        "-j",
                        "daily_pipeline",
                        "--tags",
                        f'{{"dagster/partition": "{DAYS[-1]}"}}',
                    ]
                wall, used = _timed(cmd, env)
                times[way].append(wall)
                cpu[way].append(used)
                print(f"{way:>20} run {k + 1}: {wall:.1f} s wall, {used:.1f} s CPU", flush=True)
                shutil.rmtree(root)
    print(f"\nday {DAYS[-1]}, 16 steps, default scale, median of {args.repeats}:")
    for label, values in (("wall", times), ("CPU", cpu)):
        direct = statistics.median(values["direct"])
        for way in ways[:-1]:
            dagster = statistics.median(values[way])
            print(
                f"  {label:>4}: {way} {dagster:.1f} s, direct {direct:.1f} s, "
                f"ratio {dagster / direct:.2f}x (target <= 1.2x)"
            )


if __name__ == "__main__":
    main()
