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
# `dagster <group> <command>`s whose process executes a run's steps itself (not `dev`, `api grpc`,
# `code-server` or the daemon, which load the code location to serve it).
RUN_COMMANDS = {
    ("job", "execute"),
    ("asset", "materialize"),
    ("api", "execute_run"),
    ("api", "resume_run"),
}
# What a code server executes a launched run in (from the UI, a sensor, a schedule, a backfill):
# a `spawn` child of `dagster api grpc` whose target is this function, with the server's argv.
RUN_IN_CODE_SERVER = ("dagster._grpc.impl", "start_run_in_subprocess")


def models_isolated(env: Mapping[str, str]) -> bool:
    """Whether the model steps compute in processes of their own (the run's steps share one)."""
    name = env.get("RECKIT_ENV") or "local"
    kind = env.get("RECKIT_STEP_EXECUTOR") or DEFAULT_STEP_EXECUTOR.get(name)
    return kind == "in_process"


def executes_a_run(argv: Sequence[str] | None = None, process: Any = None) -> bool:
    """Whether this process loads the code location in order to execute a run in it."""
    argv = sys.argv if argv is None else argv
    if argv and Path(argv[0]).name == "dagster" and tuple(argv[1:3]) in RUN_COMMANDS:
        return True
    target = getattr(process or multiprocessing.current_process(), "_target", None)
    found = (getattr(target, "__module__", None), getattr(target, "__name__", None))
    return found == RUN_IN_CODE_SERVER


def start_model_server_early(
    env: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
    process: Any = None,
) -> bool:
    """Start the model servers now if this process is about to execute a run whose model steps
    fork from them. Returns whether it started them."""
    if models_isolated(os.environ if env is None else env) and executes_a_run(argv, process):
        isolation.start()
        return True
    return False
