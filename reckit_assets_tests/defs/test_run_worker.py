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


def _run_args(job: str) -> str:
    """A run's serialized ExecuteRunArgs, as a launcher passes it to the run's process."""
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._grpc.types import ExecuteRunArgs
    from dagster_shared.serdes import serialize_value

    repository = RepositoryPythonOrigin(
        executable_path=sys.executable,
        code_pointer=ModuleCodePointer("reckit_assets.definitions", "defs", None),
    )
    origin = JobPythonOrigin(job_name=job, repository_origin=repository)
    return serialize_value(ExecuteRunArgs(job_origin=origin, run_id="r1", instance_ref=None))


@pytest.mark.parametrize(
    ("argv", "job"),
    [
        (
            [DAGSTER, "job", "execute", "-m", "reckit_assets.definitions", "-j", "daily_pipeline"],
            "daily_pipeline",
        ),
        (["dagster", "job", "execute", "--job", "retraining_job"], "retraining_job"),
        (["dagster", "job", "execute", "--job=monitoring_job"], "monitoring_job"),
        # `python -m dagster`, as Dagster's own launchers may start it
        (
            ["/x/site-packages/dagster/__main__.py", "job", "execute", "-j", "daily_pipeline"],
            "daily_pipeline",
        ),
        ([DAGSTER, "api", "execute_run", _run_args("daily_pipeline")], "daily_pipeline"),
        ([DAGSTER, "api", "resume_run", _run_args("retraining_job")], "retraining_job"),
    ],
)
def test_the_job_a_run_executing_command_runs_is_read_from_its_arguments(argv, job):
    assert run_worker.job_to_execute(argv, process=object()) == job


@pytest.mark.parametrize(
    "argv",
    [
        [DAGSTER, "dev"],
        [DAGSTER, "api", "grpc", "-m", "reckit_assets.definitions"],
        [DAGSTER, "code-server", "start"],
        [DAGSTER, "job", "launch", "-j", "daily_pipeline"],  # hands the run to the launcher
        [DAGSTER, "asset", "materialize", "--select", "xgboost_candidate"],  # the asset job
        [DAGSTER, "job", "execute", "-m", "reckit_assets.definitions"],  # no job named
        [DAGSTER, "api", "execute_run", "not json"],
        ["dagster-daemon", "run"],
        ["pytest", "job", "execute", "-j", "daily_pipeline"],
        [],
    ],
)
def test_processes_that_serve_the_code_location_or_cannot_tell_the_job_give_none(argv):
    assert run_worker.job_to_execute(argv, process=object()) is None


def _code_server_run_args(job: str) -> str:
    """What a code server's StartRun passes its run process: the run's ExecuteExternalJobArgs."""
    from dagster._core.remote_origin import (
        GrpcServerCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._grpc.types import ExecuteExternalJobArgs
    from dagster_shared.serdes import serialize_value

    location = GrpcServerCodeLocationOrigin(host="localhost", port=4000, location_name="reckit")
    repository = RemoteRepositoryOrigin(location, "__repository__")
    origin = RemoteJobOrigin(repository_origin=repository, job_name=job)
    return serialize_value(
        ExecuteExternalJobArgs(job_origin=origin, run_id="r1", instance_ref=None)
    )


def test_a_code_servers_run_process_is_recognised_by_its_target_and_arguments():
    # What `dagster api grpc` starts for a run launched from the UI, a sensor or a schedule: a
    # spawn child whose argv is the code server's own and whose first argument is the run's.
    spawn = multiprocessing.get_context("spawn")
    grpc_argv = [DAGSTER, "api", "grpc"]
    args = [_code_server_run_args("daily_pipeline"), None, None, None]
    child = spawn.Process(target=start_run_in_subprocess, args=args)
    assert run_worker.job_to_execute(grpc_argv, child) == "daily_pipeline"
    assert run_worker.job_to_execute(grpc_argv, spawn.Process(target=print, args=args)) is None


def test_the_jobs_with_model_steps_are_those_that_need_the_model_processes():
    from reckit_assets.definitions import defs

    needing = {
        job.name
        for job in defs.resolve_all_job_defs()
        if any("model_processes" in node.required_resource_keys for node in job.graph.node_defs)
    }
    # The implicit asset job (a selection from the UI) has every asset: its job name says nothing.
    assert needing - {"__ASSET_JOB"} == run_worker.JOBS_WITH_MODEL_STEPS


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


def test_nothing_starts_for_a_run_without_model_steps_or_outside_a_run():
    start = run_worker.start_model_server_early
    assert not start({}, argv=["pytest"], process=object())
    assert not start({}, argv=[DAGSTER, "job", "execute", "-j", "monitoring_job"], process=object())
    multiprocess = {"RECKIT_STEP_EXECUTOR": "multiprocess"}
    assert not start(multiprocess, argv=[DAGSTER, "job", "execute", "-j", "daily_pipeline"])
    assert not run_worker.started_early()


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
