"""``reckit``: the entry points that are not Dagster runs.

reckit simulate [--days N ...]     write simulated logs into the landing zone
reckit init-home                   create DAGSTER_HOME with the local dagster.yaml
reckit dev [--days N ...]          simulate the N days up to yesterday (if the landing zone is
                                   empty) and start the UI
reckit materialize --from D [--to D]   run the daily pipeline for a range of days, recorded
                                   in the local instance (same as a UI backfill)
reckit config show [--json]        every effective setting and where it came from
reckit data accept --dt D --check C --reason R   waive one blocked check of one day (audited)
reckit report --from D [--to D]    per day: data gate, each model's release outcome, production
reckit loop --days 20 [--drift-from D] [--bad-canary-on D] [--skew-bug-on D] [--shadow-on D]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from reckit_assets.settings import PROJECT_ROOT, load_settings


def _simulate(args: argparse.Namespace) -> int:
    from reckit_assets.core.io.uri import storage_from_uri
    from reckit_assets.simulation.simulate import SimulationConfig, write_simulation

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


def _config(args: argparse.Namespace) -> int:
    import yaml

    from reckit_assets.config import ConfigError, describe, load_config

    overrides = None
    if args.run_config:
        # Preview a launch: the `ops: {asset: {config: {...}}}` part of a Dagster run config.
        text = Path(args.run_config).read_text()
        overrides = _overrides_from_run_config(yaml.safe_load(text) or {})
    try:
        effective = load_config(args.file, run_overrides=overrides)
    except ConfigError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    settings = load_settings()
    out = {
        "config_file": effective.file or "none (no reckit.yaml, RECKIT_CONFIG unset): defaults",
        "config_digest": effective.digest,
        **describe(effective),
        "storage": {
            name: {
                "value": getattr(settings, name),
                "source": f"environment {var}" if os.environ.get(var) else "default",
            }
            for name, var in (
                ("data_dir", "RECKIT_DATA_DIR"),
                ("landing_uri", "RECKIT_LANDING_URI"),
                ("warehouse_uri", "RECKIT_WAREHOUSE_URI"),
                ("registry_uri", "RECKIT_REGISTRY_URI"),
                ("oracle_uri", "RECKIT_ORACLE_URI"),
            )
        },
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(yaml.safe_dump(out, sort_keys=False), end="")
    return 0


_OP_SECTIONS = {
    "landed_logs": "data_quality",
    "training_samples": "data_quality",
    "xgboost_candidate": "xgboost",
    "deepfm_candidate": "deepfm",
    "item2vec_candidate": "item2vec",
    "xgboost_evaluation": "gate",
    "deepfm_evaluation": "gate",
    "item2vec_evaluation": "gate",
}


def _overrides_from_run_config(run_config: dict) -> dict:
    out: dict[str, dict] = {}
    for op, body in (run_config.get("ops") or {}).items():
        section = _OP_SECTIONS.get(op)
        if section is None:
            raise SystemExit(f"--run-config: ops.{op} has no project-config section")
        out.setdefault(section, {}).update((body or {}).get("config") or {})
    return out


def _init_home(_: argparse.Namespace) -> int:
    from reckit_assets.dagster_home import init_home

    print(init_home())
    return 0


def _dev(args: argparse.Namespace) -> int:
    """Simulate the ``--days`` days up to yesterday if nothing has landed, then run the UI.

    Partitions start at the first landed day unless ``partitions.start`` is configured, so the
    first screen shows full partitions up to yesterday, as production does (today's logs are not
    complete); a day that has not landed since shows as missing, truthfully.
    """
    from datetime import UTC, datetime, timedelta

    from reckit_assets.config import ConfigError, load_config
    from reckit_assets.core.ingest.landing import ready_days
    from reckit_assets.core.io.uri import storage_from_uri
    from reckit_assets.dagster_home import init_home

    home = init_home()
    settings = load_settings()
    try:
        effective = load_config(settings.config_file)
    except ConfigError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    start_configured = effective.source_of("partitions.start") != "default"
    landing = storage_from_uri(settings.landing_uri)
    if not ready_days(landing):
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        first = (
            effective.config.partitions.start
            if start_configured
            else (yesterday - timedelta(days=args.days - 1)).isoformat()
        )
        sizes = {k: getattr(args, k) for k in ("days", "impressions", "users", "items")}
        sim = argparse.Namespace(**{**vars(_SIM_DEFAULTS), **sizes, "start": first})
        _simulate(sim)
    if not start_configured and ready_days(landing):
        first = min(ready_days(landing))
        os.environ["RECKIT_PARTITIONS_START"] = first
        print(f"partitions start at the first landed day, {first} (partitions.start to change)")
    os.environ["DAGSTER_HOME"] = str(home)
    # The dagster next to this interpreter: the venv need not be activated.
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    cmd = [dagster, "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-p", str(args.port)]
    # The daemon logs every queue poll and sensor tick at INFO (a line every few seconds); the
    # runs' own INFO messages still print (RUN_LOGGERS), and the URL is printed here.
    cmd += ["--log-level", "warning"]
    if args.host:
        cmd += ["-h", args.host]
    # `dagster dev` says it is superseded by `dg dev`, which needs a dg workspace; it is not.
    os.environ["PYTHONWARNINGS"] = ",".join(
        w
        for w in (
            os.environ.get("PYTHONWARNINGS"),
            "ignore:Function `dev_command` is superseded:FutureWarning",
        )
        if w
    )
    print(f"DAGSTER_HOME={home}; starting: {' '.join(cmd)}", flush=True)
    print(
        f"Dagster UI on http://{args.host or '127.0.0.1'}:{args.port} once loaded; Ctrl-C stops it",
        flush=True,
    )
    return _run_until_interrupted(cmd)


def _run_until_interrupted(cmd: list[str]) -> int:
    """Run ``cmd``; Ctrl-C or SIGTERM stops it and counts as a normal exit (status 0).

    On a terminal, the command and this process form their own foreground process group, so a
    Ctrl-C reaches them and not a parent ``make``, which would otherwise report
    ``make: *** [demo] Interrupt``. The parent's group gets the terminal back before we exit.
    """
    import subprocess

    terminal = _own_terminal_foreground()
    # A shell may start us with SIGINT (and, in the background, SIGTERM) ignored, and an ignored
    # signal stays ignored in the command we start: both must reach it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    child = subprocess.Popen(cmd)
    stopping = False

    def _stop(signum, _frame):
        nonlocal stopping
        stopping = True
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, _stop)
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:
                stopping = True  # the child got the same Ctrl-C; wait for it to shut down
    finally:
        if terminal is not None:
            _give_back_terminal(*terminal)
    if stopping:
        print("stopped", flush=True)
        return 0
    return code


def _own_terminal_foreground() -> tuple[int, int] | None:
    """Become the terminal's foreground process group; (tty fd, previous group) to restore."""
    if not sys.stdin.isatty():
        return None
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
        previous = os.tcgetpgrp(tty)
        os.setpgid(0, 0)
        _give_back_terminal(tty, os.getpgrp(), close=False)
    except OSError:
        return None
    return tty, previous


def _give_back_terminal(tty: int, group: int, close: bool = True) -> None:
    # A background group that touches the terminal gets SIGTTOU; ignore it for this call.
    handler = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(tty, group)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, handler)
        if close:
            os.close(tty)


def _materialize(args: argparse.Namespace) -> int:
    """One run per day, oldest first: what the arrival sensor does, recorded in the instance."""
    from datetime import date, timedelta

    import dagster as dg

    from reckit_assets.config import load_config
    from reckit_assets.dagster_home import init_home
    from reckit_assets.definitions import build_defs

    os.environ["DAGSTER_HOME"] = str(init_home())
    settings = load_settings()
    job = build_defs(settings).resolve_job_def(args.job)
    first, last = date.fromisoformat(args.start), date.fromisoformat(args.to or args.start)
    start = load_config(settings.config_file).config.partitions.start
    if first.isoformat() < start:
        print(
            f"--from {first} is before the first partition {start} (partitions.start in "
            "reckit.yaml, or RECKIT_PARTITIONS_START): set it to the first landed day",
            file=sys.stderr,
        )
        return 2
    ok = True
    with dg.DagsterInstance.get() as instance:
        for k in range((last - first).days + 1):
            day = (first + timedelta(days=k)).isoformat()
            result = job.execute_in_process(
                instance=instance,
                partition_key=day,
                raise_on_error=False,
                tags={"reckit/trigger": "cli"},
            )
            for evaluation in result.get_asset_check_evaluations():
                if not evaluation.passed:
                    # A failure stops the run only when the check blocks and its severity is
                    # ERROR; anything else (drift, a held candidate, staleness) is a warning.
                    blocking = evaluation.severity == dg.AssetCheckSeverity.ERROR and bool(
                        getattr(evaluation, "blocking", True)
                    )
                    print(
                        f"{day} {'check FAILED' if blocking else 'warning'}: "
                        f"{evaluation.asset_key.to_user_string()}."
                        f"{evaluation.check_name}: {evaluation.description}"
                    )
            for event in result.all_events:
                if event.is_step_failure:
                    error = event.step_failure_data.error
                    if error and "DagsterAssetCheckFailedError" in (error.cls_name or ""):
                        continue  # the failed check is printed above
                    message = (error.message if error else "").strip().splitlines()
                    print(f"{day} step {event.step_key} FAILED: {' '.join(message)[:1000]}")
            print(f"{args.job} {day}: {'succeeded' if result.success else 'FAILED'}", flush=True)
            ok = ok and result.success
            if not result.success and not args.keep_going:
                break
    return 0 if ok else 1


def _loop(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reckit_assets.simulation.loop import LoopConfig, run_loop

    cfg = LoopConfig(
        out=Path(args.out),
        days=args.days,
        drift_from=args.drift_from,
        bad_canary_on=args.bad_canary_on,
        skew_bug_on=args.skew_bug_on,
        shadow_on=args.shadow_on,
        **({} if args.exploration is None else {"exploration": args.exploration}),
        users=args.users,
        items=args.items,
        impressions=args.impressions,
        seed=args.seed,
    )
    run_loop(cfg)
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _registry(args: argparse.Namespace) -> int:
    from reckit_assets.core.io.uri import storage_from_uri
    from reckit_assets.core.release.registry import PRODUCTION, Registry, RegistryError
    from reckit_assets.core.release.smoke import SmokeTestError, smoke_test

    registry = Registry(storage_from_uri(args.registry or load_settings().registry_uri))
    who = args.by or os.environ.get("USER") or "cli"
    try:
        if args.action == "list":
            for model in [args.model] if args.model else registry.models():
                aliases = registry.aliases(model)
                print(f"{model}: " + ", ".join(f"{a}={v}" for a, v in sorted(aliases.items())))
                for m in registry.versions(model):
                    tags = [a for a, v in aliases.items() if v == m["version"]]
                    auc = (m.get("metrics") or {}).get("candidate", {}).get("auc")
                    print(
                        f"  {m['version']}  dt={m.get('partition')}  created={m['created_at']}"
                        + (f"  auc={auc:.4f}" if isinstance(auc, float) else "")
                        + (f"  [{', '.join(sorted(tags))}]" if tags else "")
                        + ("  OVERRIDE" if m.get("override") else "")
                    )
        elif args.action == "show":
            manifest = registry.manifest(args.model, args.version)
            if manifest is None:
                raise RegistryError(f"{args.model} has no version {args.version!r}")
            print(json.dumps(manifest, indent=2, sort_keys=True))
        elif args.action == "history":
            for move in registry.history(args.model):
                print(json.dumps(move.as_dict(), sort_keys=True))
        elif args.action == "promote":
            files = registry.load_files(args.model, args.version)
            smoke_test(registry.manifest(args.model, args.version)["kind"], files)
            move = registry.set_alias(
                args.model, args.alias or PRODUCTION, args.version, who, args.reason
            )
            print(f"{args.model} {move.alias}: {move.from_version} -> {move.to_version}")
        elif args.action == "verify":
            problems = registry.verify(args.model)
            for problem in problems:
                print(f"PROBLEM {problem}")
            checked = [args.model] if args.model else registry.models()
            print(f"verified {len(checked)} model(s): {len(problems)} problem(s)")
            return 1 if problems else 0
        elif args.action == "rollback":
            move = registry.rollback(
                args.model, who, args.reason, smoke=lambda k, f: smoke_test(k, f)
            )
            print(f"{args.model} production rolled back: {move.from_version} -> {move.to_version}")
    except (RegistryError, SmokeTestError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    return 0


def _data(args: argparse.Namespace) -> int:
    """``reckit data accept`` (an audited waiver of one blocked check of one day) and
    ``reckit data waivers`` (every waiver)."""
    from reckit_assets.core.ingest import waivers
    from reckit_assets.core.io.uri import storage_from_uri

    store = storage_from_uri(load_settings().warehouse_uri)
    if args.action == "waivers":
        for w in waivers.all_waivers(store):
            if args.dt in (None, w.dt):
                print(f"{w.dt} {w.asset}.{w.check} by {w.by} at {w.at}: {w.reason}")
        return 0
    who = args.by or os.environ.get("USER") or "cli"
    try:
        w = waivers.accept(store, args.dt, args.check, who, args.reason, args.asset)
    except waivers.WaiverError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    print(
        f"waived {w.asset}.{w.check} for dt={w.dt} by {w.by} ({w.reason!r}); the arrival sensor "
        f"re-runs dt={w.dt} and the days that read it (or: reckit materialize --from {w.dt})"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    """Per day: the last run's status, the data gate, each model's release outcome."""
    from reckit_assets.core.io.uri import storage_from_uri
    from reckit_assets.core.release.registry import Registry
    from reckit_assets.core.steps import summary

    settings = load_settings()
    store = storage_from_uri(settings.warehouse_uri)
    registry = Registry(storage_from_uri(settings.registry_uri))
    result = summary.summaries(store, registry, args.start, args.to or args.start)
    status = _run_status(summary.days_between(args.start, args.to or args.start))
    if args.json:
        for day in result["days"]:
            day["run"] = status.get(day["dt"], "-")
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(summary.markdown(result, status), end="")
    return 0


def _run_status(days: list[str]) -> dict[str, str]:
    """The newest daily_pipeline run's status per day, from DAGSTER_HOME (if it has one)."""
    home = os.environ.get("DAGSTER_HOME")
    if not home or not (Path(home) / "dagster.yaml").exists():
        return {}
    import dagster as dg

    out = {}
    with dg.DagsterInstance.get() as instance:
        for dt in days:
            records = instance.get_run_records(
                filters=dg.RunsFilter(job_name="daily_pipeline", tags={"dagster/partition": dt}),
                limit=1,
            )
            if records:
                out[dt] = records[0].dagster_run.status.value
    return out


def _first_day() -> str:
    from reckit_assets.config import ConfigError, load_config

    try:
        return load_config().config.partitions.start
    except ConfigError:
        return "2026-10-01"  # `reckit config show` explains the problem


_SIM_DEFAULTS = argparse.Namespace(
    start=_first_day(),
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
    # Used only when the landing zone is empty: the simulated days end yesterday.
    dev.add_argument("--days", type=int, default=_SIM_DEFAULTS.days, help="days to simulate")
    dev.add_argument(
        "--impressions", type=int, default=_SIM_DEFAULTS.impressions, help="impressions per day"
    )
    dev.add_argument("--users", type=int, default=_SIM_DEFAULTS.users)
    dev.add_argument("--items", type=int, default=_SIM_DEFAULTS.items)
    dev.set_defaults(func=_dev)

    mat = sub.add_parser("materialize", help="run a job for a day or a range of days")
    mat.add_argument("--from", dest="start", required=True, help="first day, YYYY-MM-DD")
    mat.add_argument("--to", default=None, help="last day (default: the first)")
    mat.add_argument("--job", default="daily_pipeline")
    mat.add_argument("--keep-going", action="store_true", help="continue after a failed day")
    mat.set_defaults(func=_materialize)

    reg = sub.add_parser("registry", help="list, show, promote, roll back model versions")
    reg.add_argument("--registry", default=None, help="registry URI (default from settings)")
    reg.add_argument("--by", default=None, help="who acts (default $USER)")
    actions = reg.add_subparsers(dest="action", required=True)
    lst = actions.add_parser("list")
    lst.add_argument("model", nargs="?")
    show = actions.add_parser("show")
    show.add_argument("model")
    show.add_argument("version")
    hist = actions.add_parser("history", help="every alias move, oldest first")
    hist.add_argument("model")
    promote = actions.add_parser("promote", help="point an alias (production) at a version")
    promote.add_argument("model")
    promote.add_argument("version")
    promote.add_argument("--alias", default=None, help="default: production")
    promote.add_argument("--reason", required=True)
    verify = actions.add_parser(
        "verify", help="every version's files vs its manifest, every alias, the ledger (exit 1)"
    )
    verify.add_argument("model", nargs="?")
    rollback = actions.add_parser("rollback", help="production back to its previous version")
    rollback.add_argument("model")
    rollback.add_argument("--reason", required=True)
    reg.set_defaults(func=_registry)

    config = sub.add_parser("config", help="the effective project configuration")
    config_actions = config.add_subparsers(dest="action", required=True)
    show_config = config_actions.add_parser("show", help="every value and where it came from")
    show_config.add_argument("--json", action="store_true", help="JSON instead of YAML")
    show_config.add_argument(
        "--file", default=None, help="config file (default: RECKIT_CONFIG or reckit.yaml)"
    )
    show_config.add_argument("--run-config", default=None, help="preview a launch's run config")
    config.set_defaults(func=_config)
    loop = sub.add_parser(
        "loop", help="closed-loop simulation: world <-> real service <-> pipeline"
    )
    loop.add_argument("--days", type=int, default=20)
    loop.add_argument("--drift-from", type=int, default=None, help="day number drift starts")
    loop.add_argument("--bad-canary-on", type=int, default=None, help="day number of a bad canary")
    loop.add_argument(
        "--skew-bug-on",
        type=int,
        default=None,
        help="day number after which the service serves a mis-scaled online feature",
    )
    loop.add_argument(
        "--shadow-on",
        type=int,
        default=None,
        help="day number from which a released version scores live traffic in shadow first",
    )
    loop.add_argument(
        "--exploration",
        type=float,
        default=None,
        help="share of rankings the service serves in a random order (RECKIT_EXPLORATION_SHARE; "
        "default LoopConfig.exploration)",
    )
    loop.add_argument("--users", type=int, default=3000)
    loop.add_argument("--items", type=int, default=600)
    loop.add_argument("--impressions", type=int, default=30000, help="impressions per day")
    loop.add_argument("--seed", type=int, default=7)
    loop.add_argument("--out", default="loop_out", help="output folder (report, timeline, plot)")
    loop.set_defaults(func=_loop)

    data = sub.add_parser("data", help="waive a blocked data check of one day (audited)")
    data_actions = data.add_subparsers(dest="action", required=True)
    accept = data_actions.add_parser(
        "accept", help="accept one blocked check of one day: the day and its dependants re-run"
    )
    accept.add_argument("--dt", required=True, help="the day, YYYY-MM-DD")
    accept.add_argument("--check", required=True, help="e.g. volume, value_range, feature_drift")
    accept.add_argument("--asset", default=None, help="landed_logs or training_samples")
    accept.add_argument("--reason", required=True)
    accept.add_argument("--by", default=None, help="who accepts (default $USER)")
    listed = data_actions.add_parser("waivers", help="every waiver, oldest first")
    listed.add_argument("--dt", default=None)
    data.set_defaults(func=_data)

    report = sub.add_parser(
        "report", help="per day: run status, data gate, each model's release outcome"
    )
    report.add_argument("--from", dest="start", required=True)
    report.add_argument("--to", default=None)
    report.add_argument("--json", action="store_true")
    report.set_defaults(func=_report)

    sub.add_parser("serve", help="run the inference service (reckit serve --help)")

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        # The service owns its options (serving/cli.py); it never imports dagster.
        from serving.cli import main as serve

        return int(serve(argv[1:]))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
