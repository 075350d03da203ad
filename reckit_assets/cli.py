"""``reckit``: the entry points that are not Dagster runs.

reckit simulate [--days N ...]     write simulated logs into the landing zone
reckit init-home                   create DAGSTER_HOME with the local dagster.yaml
reckit dev                         simulate (if the landing zone is empty) and start the UI
reckit materialize --from D [--to D]   run the daily pipeline for a range of days, recorded
                                   in the local instance (same as a UI backfill)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence

from reckit_assets.settings import PROJECT_ROOT, load_settings


def _simulate(args: argparse.Namespace) -> int:
    from reckit_assets.core.simulate import SimulationConfig, write_simulation
    from reckit_assets.core.storage import storage_from_uri

    settings = load_settings()
    config = SimulationConfig(
        start=args.start,
        days=args.days,
        n_users=args.users,
        n_items=args.items,
        impressions_per_day=args.impressions,
        seed=args.seed,
        drift_from=args.drift_from,
        messy=not args.clean,
    )
    landing = storage_from_uri(args.landing or settings.landing_uri)
    oracle = storage_from_uri(args.oracle or settings.oracle_uri)
    for day in write_simulation(config, landing, oracle):
        print(json.dumps(day, default=str))
    print(f"landed {args.days} day(s) under {landing.uri}; ground truth under {oracle.uri}")
    return 0


def _init_home(_: argparse.Namespace) -> int:
    from reckit_assets.dagster_home import init_home

    print(init_home())
    return 0


def _dev(args: argparse.Namespace) -> int:
    from reckit_assets.core.landing import ready_days
    from reckit_assets.core.storage import storage_from_uri
    from reckit_assets.dagster_home import init_home

    home = init_home()
    if not ready_days(storage_from_uri(load_settings().landing_uri)):
        _simulate(_SIM_DEFAULTS)
    os.environ["DAGSTER_HOME"] = str(home)
    # A shell may start us with SIGINT ignored; dagster dev must stop on Ctrl-C / SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    cmd = ["dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-p", str(args.port)]
    if args.host:
        cmd += ["-h", args.host]
    print(f"DAGSTER_HOME={home}; starting: {' '.join(cmd)}", flush=True)
    os.execvp(cmd[0], cmd)
    return 0  # pragma: no cover


def _materialize(args: argparse.Namespace) -> int:
    import dagster as dg

    from reckit_assets.dagster_home import init_home
    from reckit_assets.definitions import build_defs

    os.environ["DAGSTER_HOME"] = str(init_home())
    job = build_defs(load_settings()).resolve_job_def(args.job)
    end = args.to or args.start
    result = job.execute_in_process(
        instance=dg.DagsterInstance.get(),
        tags={
            "dagster/asset_partition_range_start": args.start,
            "dagster/asset_partition_range_end": end,
        },
        raise_on_error=False,
    )
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    for evaluation in failed:
        print(
            f"check failed: {evaluation.asset_key.to_user_string()}.{evaluation.check_name}: "
            f"{evaluation.description}"
        )
    print(f"{args.job} {args.start}..{end}: {'succeeded' if result.success else 'FAILED'}")
    return 0 if result.success else 1


_SIM_DEFAULTS = argparse.Namespace(
    start=load_settings().partitions_start,
    days=10,
    users=3000,
    items=600,
    impressions=30000,
    seed=7,
    drift_from=None,
    clean=False,
    landing=None,
    oracle=None,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reckit", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="write simulated logs into the landing zone")
    sim.add_argument("--start", default=_SIM_DEFAULTS.start, help="first day, YYYY-MM-DD")
    sim.add_argument("--days", type=int, default=_SIM_DEFAULTS.days)
    sim.add_argument("--users", type=int, default=_SIM_DEFAULTS.users)
    sim.add_argument("--items", type=int, default=_SIM_DEFAULTS.items)
    sim.add_argument(
        "--impressions", type=int, default=_SIM_DEFAULTS.impressions, help="impressions per day"
    )
    sim.add_argument("--seed", type=int, default=_SIM_DEFAULTS.seed)
    sim.add_argument("--drift-from", default=None, help="day from which preferences shift")
    sim.add_argument("--clean", action="store_true", help="inject no messy rows")
    sim.add_argument("--landing", default=None, help="landing URI (default from settings)")
    sim.add_argument("--oracle", default=None, help="ground-truth URI (default from settings)")
    sim.set_defaults(func=_simulate)

    home = sub.add_parser("init-home", help="create DAGSTER_HOME and its dagster.yaml")
    home.set_defaults(func=_init_home)

    dev = sub.add_parser("dev", help="simulate if needed, then start the Dagster UI")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--host", default=None)
    dev.set_defaults(func=_dev)

    mat = sub.add_parser("materialize", help="run a job for a day or a range of days")
    mat.add_argument("--from", dest="start", required=True, help="first day, YYYY-MM-DD")
    mat.add_argument("--to", default=None, help="last day (default: the first)")
    mat.add_argument("--job", default="daily_pipeline")
    mat.set_defaults(func=_materialize)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
