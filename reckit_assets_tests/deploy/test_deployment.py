"""The ``prod`` deployment as separate processes: PostgreSQL, an S3 server, code server, webserver
and daemon, driven through the webserver's GraphQL API.

The one substitution: Kubernetes cannot run here, so the instance is ``deploy/dagster.yaml`` with
its ``run_launcher`` (K8sRunLauncher) removed, i.e. Dagster's default launcher (runs start in the
code server's container), and ``RECKIT_STEP_EXECUTOR=multiprocess`` replaces k8s_job_executor.
Everything else (Postgres storage, QueuedRunCoordinator with its lane limit, S3 compute logs,
pools, the code location's ``prod`` resources through dagster-aws) is the production file as is.

Run alone: ``pytest -m deploy reckit_assets_tests/deploy/test_deployment.py``.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from reckit_assets.core.ingest.landing import ready_days, write_partition
from reckit_assets.core.io.s3 import S3Storage
from reckit_assets.core.release.registry import Registry
from reckit_assets.settings import PROJECT_ROOT
from reckit_assets.simulation.simulate import SimulationConfig, simulate_day
from reckit_assets_tests.deploy.harness import (
    GraphQL,
    Service,
    free_port,
    postgres_server,
    wait_for,
)

pytestmark = pytest.mark.deploy

LOCATION = "reckit_assets"
LAKE, LOGS = "reckit-lake", "reckit-logs"
# A small world where all three first models pass their release gates with margin, measured
# in-process for exactly this config (the simulated world depends on `days`): on the 4th day,
# trained on 3 days, item2vec hit rate 0.167 vs popularity 0.137, DeepFM/XGBoost AUC 0.77.
# Days 1-3 train nothing (min_days=3): they build the window, as a first backfill would.
SIM = SimulationConfig(
    start="2026-10-01", days=5, n_users=1500, n_items=300, impressions_per_day=15000, seed=11
)
DAYS = [SIM.day(i) for i in range(SIM.days)]
RUN_DAYS, NEXT_DAY = DAYS[:4], DAYS[4]
# training.min_days=3 comes from the environment (RECKIT__TRAINING__MIN_DAYS below), as a
# deployment sets project config; launches carry no run config, like the sensor's.
RUN_CONFIG: dict = {}
BIN = Path(sys.executable).parent

SENSOR_SELECTOR = {
    "repositoryLocationName": LOCATION,
    "repositoryName": "__repository__",
    "sensorName": "landing_arrival_sensor",
}
SENSOR_QUERY = """
query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
  __typename ... on Sensor { sensorState { id status
    ticks(limit: 20) { status runIds skipReason timestamp } } }
  ... on PythonError { message } } }"""
LAUNCH = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId status } }
  ... on PythonError { message stack } ... on RunConfigValidationInvalid { errors { message } }
  ... on InvalidSubsetError { message } ... on PipelineNotFoundError { message } } }"""
RUN_QUERY = """
query($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
  runId status startTime endTime tags { key value } } } }"""


def _land(landing: S3Storage, day_index: int) -> None:
    day = simulate_day(SIM, day_index)
    for table, frame in (("users", day.users), ("items", day.items), ("events", day.events)):
        write_partition(landing, table, day.dt, frame)  # events last: markers complete the day


def _s3_keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture
def s3_server(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3")
    for bucket in (LAKE, LOGS):
        s3.create_bucket(Bucket=bucket)
    yield s3, env
    server.stop()


def _instance_yaml() -> str:
    config = yaml.safe_load((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    del config["run_launcher"]  # the substitution (see module docstring): default launcher
    return yaml.safe_dump(config, sort_keys=False)


def _stop_all(services: list[Service]) -> None:
    for service in reversed(services):
        service.stop()


def test_daily_runs_through_webserver_daemon_and_code_server(tmp_path, s3_server):
    s3, aws_env = s3_server
    landing = S3Storage(LAKE, "landing", client=s3)
    for index in range(len(RUN_DAYS)):
        _land(landing, index)

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(_instance_yaml())
    grpc_port, web_port = free_port(), free_port()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "grpc_server": {
                            "host": "127.0.0.1",
                            "port": grpc_port,
                            "location_name": LOCATION,
                        }
                    }
                ]
            }
        )
    )
    logs = tmp_path / "logs"
    logs.mkdir()

    with postgres_server() as pg:
        env = {
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "HOME": str(tmp_path),
            "PYTHONPATH": str(PROJECT_ROOT),
            "DAGSTER_HOME": str(home),
            **aws_env,
            "DAGSTER_PG_HOST": pg.host,
            "DAGSTER_PG_PORT": str(pg.port),
            "DAGSTER_PG_USER": pg.user,
            "DAGSTER_PG_PASSWORD": pg.password,
            "DAGSTER_PG_DB": pg.db_name,
            "RECKIT_COMPUTE_LOG_BUCKET": LOGS,
            "RECKIT_ENV": "prod",
            "RECKIT_STEP_EXECUTOR": "multiprocess",
            "RECKIT_LANDING_URI": f"s3://{LAKE}/landing",
            "RECKIT_WAREHOUSE_URI": f"s3://{LAKE}/warehouse",
            "RECKIT_REGISTRY_URI": f"s3://{LAKE}/registry",
            "RECKIT_PARTITIONS_START": SIM.start,
            "RECKIT__TRAINING__MIN_DAYS": "3",
        }
        services: list[Service] = []
        try:
            services.append(
                Service(
                    "code-server",
                    [
                        str(BIN / "dagster"),
                        "api",
                        "grpc",
                        "-m",
                        "reckit_assets.definitions",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(grpc_port),
                        "--location-name",
                        LOCATION,
                    ],
                    env,
                    logs,
                )
            )
            services.append(
                Service(
                    "webserver",
                    [
                        str(BIN / "dagster-webserver"),
                        "-w",
                        str(workspace),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(web_port),
                    ],
                    env,
                    logs,
                )
            )
            graphql = GraphQL(f"http://127.0.0.1:{web_port}/graphql")

            def sensor() -> dict:
                for service in services:
                    assert service.alive(), f"{service.name} died:\n{service.tail()}"
                out = graphql(SENSOR_QUERY, s=SENSOR_SELECTOR)["sensorOrError"]
                return out if out["__typename"] == "Sensor" else {}

            state = wait_for(sensor, 180, "webserver up with the code location loaded")
            # The sensor stays off while the first days are launched by hand (below), so that
            # those runs are the GraphQL launches and not its requests.
            stopped = graphql(
                "mutation($id: String) { stopSensor(id: $id) { __typename } }",
                id=state["sensorState"]["id"],
            )
            assert stopped["stopSensor"]["__typename"] == "StopSensorMutationResult"
            services.append(
                Service(
                    "daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], env, logs
                )
            )

            # --- Daily runs launched through the webserver; the daemon dequeues them.
            run_ids = []
            for dt in RUN_DAYS:
                launched = graphql(
                    LAUNCH,
                    p={
                        "selector": {
                            "repositoryLocationName": LOCATION,
                            "repositoryName": "__repository__",
                            "jobName": "daily_pipeline",
                        },
                        "runConfigData": RUN_CONFIG,
                        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": dt}]},
                    },
                )["launchRun"]
                assert launched["__typename"] == "LaunchRunSuccess", launched
                run_ids.append(launched["run"]["runId"])

            def finished() -> list[dict] | None:
                runs = [graphql(RUN_QUERY, id=r)["runOrError"] for r in run_ids]
                for service in services:
                    assert service.alive(), f"{service.name} died:\n{service.tail()}"
                done = all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs)
                return runs if done else None

            runs = wait_for(finished, 1800, f"runs {run_ids} to finish", interval=3)
            assert [r["status"] for r in runs] == ["SUCCESS"] * len(RUN_DAYS), (
                runs,
                services[0].tail(),
                services[2].tail(),
            )
            for run, dt in zip(runs, RUN_DAYS, strict=True):
                tags = {t["key"]: t["value"] for t in run["tags"]}
                assert tags["dagster/partition"] == dt
                assert tags["reckit/lane"] == "daily"
            # The lane's limit of 1 ran the days one after another, in launch order.
            for earlier, later in itertools.pairwise(runs):
                assert earlier["endTime"] <= later["startTime"]

            # --- Postgres holds the runs, their events and the materializations.
            rows = dict(pg.query("SELECT run_id, status FROM runs"))
            assert {r: rows.get(r) for r in run_ids} == dict.fromkeys(run_ids, "SUCCESS")
            materialized = {
                key
                for (key,) in pg.query(
                    "SELECT DISTINCT asset_key FROM event_logs "
                    "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND run_id = %s",
                    (run_ids[-1],),
                )
            }
            for name in ("training_samples", "xgboost_candidate", "deepfm_candidate",
                         "item2vec_candidate", "xgboost_registered", "deepfm_registered",
                         "item2vec_registered"):  # fmt: skip
                assert json.dumps([name]) in {k.replace(" ", "") for k in materialized}, (
                    name,
                    materialized,
                )
            (events,) = pg.query(
                "SELECT count(*) FROM event_logs WHERE run_id = %s", (run_ids[-1],)
            )
            assert events[0] > 50

            # --- Artifacts and registry versions on S3, compute logs on S3.
            warehouse_keys = _s3_keys(s3, LAKE, "warehouse/")
            assert any(
                f"dt={RUN_DAYS[-1]}" in k and "xgboost_candidate" in k for k in warehouse_keys
            )
            registry = Registry(S3Storage(LAKE, "registry", client=s3))
            for kind in ("xgboost", "deepfm", "item2vec"):
                versions = registry.versions(kind)
                assert versions, f"no {kind} version in s3://{LAKE}/registry"
                version = registry.aliases(kind)["production"]
                assert registry.manifest(kind, version)["version"] == version
            log_keys = _s3_keys(s3, LOGS)
            for run_id in run_ids:
                assert any(run_id in k for k in log_keys), f"no compute logs for run {run_id}"
            err_logs = [k for k in log_keys if run_ids[-1] in k and k.endswith(".err")]
            text = b"".join(s3.get_object(Bucket=LOGS, Key=k)["Body"].read() for k in err_logs)
            assert b"xgboost_candidate" in text or b"STEP_" in text, err_logs

            # --- The arrival sensor, running in the daemon, requests the next day once it lands.
            # Its cursor is what it would hold had it seen the launched days itself.
            cursor = json.dumps(ready_days(landing), sort_keys=True)
            assert sorted(json.loads(cursor)) == RUN_DAYS
            graphql(
                "mutation($s: SensorSelector!, $c: String) { setSensorCursor(sensorSelector: $s,"
                " cursor: $c) { __typename } }",
                s=SENSOR_SELECTOR,
                c=cursor,
            )
            started = graphql(
                "mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename } }",
                s=SENSOR_SELECTOR,
            )
            assert started["startSensor"]["__typename"] == "Sensor"

            def finished_ticks() -> list[dict]:
                return [t for t in sensor()["sensorState"]["ticks"] if t["status"] != "STARTED"]

            first = wait_for(finished_ticks, 120, "the sensor's first finished tick")
            assert [t["status"] for t in first] == ["SKIPPED"] and not first[0]["runIds"], first
            _land(landing, DAYS.index(NEXT_DAY))

            def requested() -> list[str]:
                ticks = sensor()["sensorState"]["ticks"]
                return [r for t in ticks if t["status"] == "SUCCESS" for r in t["runIds"]]

            new_runs = wait_for(requested, 150, f"a sensor run request for {NEXT_DAY}", interval=2)
            assert len(new_runs) == 1, new_runs
            run = graphql(RUN_QUERY, id=new_runs[0])["runOrError"]
            tags = {t["key"]: t["value"] for t in run["tags"]}
            assert tags["dagster/partition"] == NEXT_DAY
            assert tags["reckit/trigger"] == "arrival"
            assert tags["dagster/sensor_name"] == "landing_arrival_sensor"
            graphql(
                "mutation($id: String!) { terminateRun(runId: $id) { __typename } }",
                id=new_runs[0],
            )
        finally:
            _stop_all(services)
