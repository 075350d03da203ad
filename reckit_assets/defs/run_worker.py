"""What a process that loaded the code location to execute a run starts first: the model servers.

Where a run's steps share its process (``RECKIT_STEP_EXECUTOR=in_process``), the model steps
compute in processes forked from servers that import the model code, xgboost, gensim and torch
(``core/training/isolation.py``, ~3.5 s of imports). The run's resources would start them after
the code location, the instance, the run and its plan (~1-1.5 s later, bench/orchestration.py);
started here, as the code location starts loading, they import meanwhile. Code servers, the
webserver, the daemon and tests load the code location too, and start nothing.

Imports only the standard library, ``isolation`` (stdlib-only) and its package's ``__init__``
(dagster, which every process that loads the code location has imported already), because
``reckit_assets.definitions`` imports it before everything else.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reckit_assets.core.training import isolation

# Per RECKIT_ENV, the step executor when RECKIT_STEP_EXECUTOR is unset (defs/environments.py).
DEFAULT_STEP_EXECUTOR = {"local": "in_process", "prod": "k8s"}
# The jobs whose runs have model steps (test_run_worker.py checks this against the definitions:
# the jobs that need the ``model_processes`` resource). A run of another job (monitoring, an
# asset selection from the UI) starts nothing here; if it does have a model step, its resources
# start the servers, ~1-1.5 s later.
JOBS_WITH_MODEL_STEPS = frozenset({"daily_pipeline", "retraining_job", "tuning_job"})
# `dagster <group> <command>`s whose process executes a run's steps itself (not `dev`, `api grpc`,
# `code-server` or the daemon, which load the code location to serve it).
RUN_COMMANDS = {("job", "execute"), ("api", "execute_run"), ("api", "resume_run")}
# What a code server executes a launched run in (from the UI, a sensor, a schedule, a backfill):
# a `spawn` child of `dagster api grpc` whose target is this function, called with the run's
# serialized ExecuteRunArgs first, and with the server's argv.
RUN_IN_CODE_SERVER = ("dagster._grpc.impl", "start_run_in_subprocess")


def models_isolated(env: Mapping[str, str]) -> bool:
    """Whether the model steps compute in processes of their own (the run's steps share one)."""
    name = env.get("RECKIT_ENV") or "local"
    kind = env.get("RECKIT_STEP_EXECUTOR") or DEFAULT_STEP_EXECUTOR.get(name)
    return kind == "in_process"


def job_to_execute(argv: Sequence[str] | None = None, process: Any = None) -> str | None:
    """The job whose run this process loads the code location to execute; None if it loads it
    for something else (serving it, a test) or the job cannot be told before the run starts."""
    argv = list(sys.argv if argv is None else argv)
    target = getattr(process or multiprocessing.current_process(), "_target", None)
    if (getattr(target, "__module__", None), getattr(target, "__name__", None)) == (
        RUN_IN_CODE_SERVER
    ):
        return _job_of_run_args(process or multiprocessing.current_process(), None)
    if not argv or not _is_dagster(argv[0]) or tuple(argv[1:3]) not in RUN_COMMANDS:
        return None
    if argv[1] == "job":  # dagster job execute ... -j NAME
        for k, arg in enumerate(argv[3:], start=3):
            if arg in ("-j", "--job") and k + 1 < len(argv):
                return argv[k + 1]
            if arg.startswith("--job="):
                return arg.partition("=")[2]
        return None
    # dagster api execute_run|resume_run INPUT_JSON (or the variable click reads it from): the
    # run's ExecuteRunArgs
    serialized = argv[3] if len(argv) > 3 else os.environ.get("DAGSTER_EXECUTE_RUN_ARGS")
    return _job_of_run_args(None, serialized)


def _is_dagster(program: str) -> bool:
    path = Path(program)  # the `dagster` script, or `python -m dagster` (dagster/__main__.py)
    return path.name == "dagster" or (path.name == "__main__.py" and path.parent.name == "dagster")


def _job_of_run_args(process: Any, serialized: str | None) -> str | None:
    if process is not None:
        args = getattr(process, "_args", ())
        serialized = args[0] if args and isinstance(args[0], str) else None
    if not serialized:
        return None
    from dagster_shared.serdes import deserialize_value  # loaded already in these processes

    # ExecuteRunArgs (`dagster api execute_run`) or ExecuteExternalJobArgs (a code server's run):
    # both name the job in job_origin.
    try:
        return deserialize_value(serialized).job_origin.job_name
    except Exception:  # not ours to judge: the run itself reports bad arguments
        return None


def start_model_server_early(
    env: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
    process: Any = None,
) -> bool:
    """Start the model servers now if this process is about to execute a run with model steps
    that fork from them. Returns whether it started them."""
    global _started_early
    if not models_isolated(os.environ if env is None else env):
        return False
    if job_to_execute(argv, process) not in JOBS_WITH_MODEL_STEPS:
        return False
    isolation.start()
    _started_early = True
    return True


def started_early() -> bool:
    """Whether this process started the model servers as it loaded the code location."""
    return _started_early


_started_early = False
