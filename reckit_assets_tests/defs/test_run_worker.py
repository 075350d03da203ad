"""The model servers start as a run's process loads the code location, and nowhere else."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._grpc.impl import start_run_in_subprocess

from reckit_assets.dagster_home import init_home
from reckit_assets.defs import run_worker
from reckit_assets.defs.resources import EARLY_START

DAGSTER = str(Path(sys.executable).parent / "dagster")


@pytest.mark.parametrize(
    "argv",
    [
        [DAGSTER, "job", "execute", "-m", "reckit_assets.definitions", "-j", "daily_pipeline"],
        ["dagster", "asset", "materialize", "--select", "landed_logs"],
        [DAGSTER, "api", "execute_run", "{}"],
        [DAGSTER, "api", "resume_run", "{}"],
    ],
)
def test_commands_that_execute_a_run_in_their_process_are_recognised(argv):
    assert run_worker.executes_a_run(argv, process=object())


@pytest.mark.parametrize(
    "argv",
    [
        [DAGSTER, "dev"],
        [DAGSTER, "api", "grpc", "-m", "reckit_assets.definitions"],
        [DAGSTER, "code-server", "start"],
        [DAGSTER, "job", "launch", "-j", "daily_pipeline"],  # hands the run to the launcher
        ["dagster-daemon", "run"],
        ["pytest", "job", "execute"],
        [],
    ],
)
def test_processes_that_serve_the_code_location_are_not(argv):
    assert not run_worker.executes_a_run(argv, process=object())


def test_a_code_servers_run_process_is_recognised_by_its_target():
    # What `dagster api grpc` starts for a run launched from the UI, a sensor or a schedule: a
    # spawn child whose argv is the code server's own.
    spawn = multiprocessing.get_context("spawn")
    grpc_argv = [DAGSTER, "api", "grpc"]
    assert run_worker.executes_a_run(grpc_argv, spawn.Process(target=start_run_in_subprocess))
    assert not run_worker.executes_a_run(grpc_argv, spawn.Process(target=print))


@pytest.mark.parametrize(
    ("env", "isolated"),
    [
        ({}, True),
        ({"RECKIT_ENV": "local", "RECKIT_STEP_EXECUTOR": "multiprocess"}, False),
        ({"RECKIT_ENV": "prod"}, False),  # a pod per step
        ({"RECKIT_ENV": "prod", "RECKIT_STEP_EXECUTOR": "in_process"}, True),
        ({"RECKIT_ENV": "staging"}, False),  # refused when the definitions build
    ],
)
def test_models_are_isolated_only_where_the_steps_share_the_runs_process(env, isolated):
    assert run_worker.models_isolated(env) is isolated


def test_nothing_starts_in_a_process_that_does_not_execute_a_run():
    assert not run_worker.start_model_server_early({}, argv=["pytest"], process=object())
    assert not run_worker.start_model_server_early(
        {"RECKIT_STEP_EXECUTOR": "multiprocess"}, argv=[DAGSTER, "job", "execute"]
    )


def test_a_run_executed_by_the_dagster_command_finds_its_model_servers_started(tmp_path):
    """The real path: `dagster job execute` loads the code location, which starts the servers;
    the run's resources then find them already importing and say so in the run's log."""
    home = init_home(tmp_path / "home")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RECKIT_DATA_DIR": str(tmp_path / "data"),  # empty: the run fails at its first step
        "RECKIT_PARTITIONS_START": "2026-10-01",
    }
    env.pop("RECKIT_STEP_EXECUTOR", None)
    env.pop("RECKIT_ENV", None)
    cmd = [DAGSTER, "job", "execute", "-m", "reckit_assets.definitions", "-j", "daily_pipeline"]
    cmd += ["--tags", json.dumps({"dagster/partition": "2026-10-01"})]
    subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        lines = [entry.user_message for entry in instance.all_logs(run.run_id)]
    assert any(line.startswith(EARLY_START) for line in lines), "\n".join(
        line for line in lines if line
    )
