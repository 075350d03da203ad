"""Environment selection and the Kubernetes step Jobs it produces (fast: no server, no cluster).

The Job for a step is built by dagster_k8s's own functions, in the order K8sStepHandler applies
them (run launcher context, executor's step_k8s_config, the step's dagster-k8s/config tag); the
only thing not exercised is the API call that would submit it to a cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from reckit_assets.core.io.s3 import S3Storage
from reckit_assets.definitions import build_defs
from reckit_assets.defs import environments
from reckit_assets.defs.environments import K8sSteps, environment_for
from reckit_assets.settings import PROJECT_ROOT, load_settings

DEPLOY = PROJECT_ROOT / "deploy"
S3_ENV = {
    "RECKIT_LANDING_URI": "s3://lake/landing",
    "RECKIT_WAREHOUSE_URI": "s3://lake/warehouse",
    "RECKIT_REGISTRY_URI": "s3://lake/registry",
}
IMAGE = "registry.example.com/reckit/code:0.1.0"


def _prod_defs(monkeypatch, **extra: str) -> dg.Definitions:
    for key, value in {"RECKIT_ENV": "prod", **S3_ENV, **extra}.items():
        monkeypatch.setenv(key, value)
    return build_defs(load_settings())


def test_local_is_the_default_and_needs_no_server(monkeypatch):
    monkeypatch.delenv("RECKIT_ENV", raising=False)
    monkeypatch.delenv("RECKIT_STEP_EXECUTOR", raising=False)
    env = environment_for(load_settings({}))
    assert env.name == "local"
    # The steps of a run share its process; the model steps get their own (isolate=True).
    assert env.executor.name == "in_process"
    assert set(env.resources) == {"storage", "project", "monitoring", "model_processes"}
    assert env.resources["model_processes"].isolate


def test_step_executor_choice_decides_model_isolation():
    local = environment_for(load_settings({}), {"RECKIT_STEP_EXECUTOR": "multiprocess"})
    assert local.executor.name == "multiprocess"
    assert not local.resources["model_processes"].isolate  # each step is its own process already
    prod = {"RECKIT_ENV": "prod", **S3_ENV}
    k8s = environment_for(load_settings(S3_ENV), prod)
    assert k8s.executor.name == "k8s_steps" and not k8s.resources["model_processes"].isolate
    shared = environment_for(load_settings(S3_ENV), {**prod, "RECKIT_STEP_EXECUTOR": "in_process"})
    assert shared.executor.name == "in_process" and shared.resources["model_processes"].isolate
    with pytest.raises(ValueError, match="RECKIT_STEP_EXECUTOR='k8s': expected one of") as err:
        environment_for(load_settings({}), {"RECKIT_STEP_EXECUTOR": "k8s"})
    assert "'in_process'" in str(err.value) and "'multiprocess'" in str(err.value)


def test_model_steps_go_last_by_import_cost_only_where_they_fork_from_the_model_servers(
    monkeypatch,
):
    from reckit_assets.defs.environments import model_step_tags

    monkeypatch.delenv("RECKIT_STEP_EXECUTOR", raising=False)
    monkeypatch.delenv("RECKIT_ENV", raising=False)

    def priorities(env: dict[str, str]) -> list[int]:
        kinds = ("item2vec", "xgboost", "deepfm")
        return [int(model_step_tags(kind, env)["dagster/priority"]) for kind in kinds]

    # The embedded default: DeepFM (torch) last, after the data steps (priority 0).
    assert priorities({}) == [-1, -2, -3]
    # A process or a pod per step: every model step alike, so DeepFM may start when it is ready.
    assert priorities({"RECKIT_STEP_EXECUTOR": "multiprocess"}) == [-1, -1, -1]
    assert priorities({"RECKIT_ENV": "prod"}) == [-1, -1, -1]
    # The definitions carry them.
    defs = build_defs(load_settings({}))
    graph = defs.resolve_asset_graph()
    for asset, priority in (("item2vec_candidate", "-1"), ("deepfm_evaluation", "-3")):
        node = graph.get(dg.AssetKey(asset)).assets_def.node_def
        assert node.tags["dagster/priority"] == priority


def test_prod_keeps_data_on_s3_through_the_dagster_aws_resource(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    env = environment_for(load_settings(S3_ENV), {"RECKIT_ENV": "prod", **S3_ENV})
    from dagster_aws.s3 import S3Resource

    assert isinstance(env.resources["s3"], S3Resource)
    storage = env.resources["storage"]
    assert storage.s3 is env.resources["s3"]
    registry = storage.registry()
    assert isinstance(registry, S3Storage)
    assert (registry.bucket, registry.prefix) == ("lake", "registry")
    assert env.executor.name == "k8s_steps"


def test_prod_refuses_local_paths_naming_the_variables():
    settings = load_settings({"RECKIT_DATA_DIR": "/srv/data"})
    with pytest.raises(ValueError) as err:
        environment_for(settings, {"RECKIT_ENV": "prod"})
    message = str(err.value)
    assert "3 location(s)" in message
    for var in ("RECKIT_LANDING_URI", "RECKIT_WAREHOUSE_URI", "RECKIT_REGISTRY_URI"):
        assert var in message


def test_unknown_environment_and_executor_are_refused():
    with pytest.raises(ValueError, match="RECKIT_ENV='staging'"):
        environment_for(load_settings({}), {"RECKIT_ENV": "staging"})
    with pytest.raises(ValueError, match="RECKIT_STEP_EXECUTOR='celery'"):
        environment_for(
            load_settings(S3_ENV),
            {"RECKIT_ENV": "prod", "RECKIT_STEP_EXECUTOR": "celery", **S3_ENV},
        )


def test_step_settings_come_from_yaml_and_bad_yaml_is_named(tmp_path):
    custom = K8sSteps.load(
        {"RECKIT_K8S_STEPS": "gpu_pool: {gpus: 2, node_selector: {pool: a100}}\n"}
    )
    assert custom.gpu_pool.gpus == 2 and custom.gpu_pool.node_selector == {"pool": "a100"}
    assert custom.data == K8sSteps().data  # untouched fields keep their defaults
    path = tmp_path / "steps.yaml"
    path.write_text("data: {cpu: 1}\n")  # memory missing
    with pytest.raises(ValueError, match=f"RECKIT_K8S_STEPS_FILE={path}: invalid"):
        K8sSteps.load({"RECKIT_K8S_STEPS_FILE": str(path)})


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: offline, user: {token: offline}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
"""


@pytest.fixture
def launcher(tmp_path, monkeypatch):
    """deploy/dagster.yaml's K8sRunLauncher, built from its config (a kubeconfig that points
    nowhere replaces the in-cluster one; nothing is sent to a cluster)."""
    from dagster._config import process_config, resolve_to_config_type
    from dagster_k8s import K8sRunLauncher

    for key, value in {
        "DAGSTER_K8S_JOB_NAMESPACE": "reckit",
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "dagster-instance",
        "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
        "DAGSTER_K8S_SERVICE_ACCOUNT": "dagster-runs",
    }.items():
        monkeypatch.setenv(key, value)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_launcher"]["config"]
    raw = {**raw, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    result = process_config(resolve_to_config_type(K8sRunLauncher.config_type()), raw)
    assert result.success, result.errors
    return K8sRunLauncher.from_config_value(None, result.value)


def _step_job(defs: dg.Definitions, launcher, step: str):
    """The V1Job k8s_job_executor would submit for ``step``: the merge K8sStepHandler does (run
    launcher, executor's step_k8s_config, the step's op tag), then dagster_k8s's builder."""
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_k8s_job_name,
        get_user_defined_k8s_config,
    )

    job = defs.resolve_job_def("daily_pipeline")
    executor_config = job.executor_def.apply_config_mapping({}).value["config"]
    run = DagsterRun(job_name=job.name, run_id="0f1e2d3c-0000-4000-8000-000000000000")
    context = (
        K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
        .merge(
            K8sContainerContext(
                run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
                    executor_config["step_k8s_config"]
                )
            )
        )
        .merge(
            K8sContainerContext(
                run_k8s_config=get_user_defined_k8s_config(
                    job.graph.node_named(step).definition.tags
                )
            )
        )
    )
    name = f"dagster-step-{get_k8s_job_name(run.run_id, step)}"
    return construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(IMAGE, launcher),
        args=["dagster", "api", "execute_step"],
        job_name=name,
        pod_name=name,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/op": step},
    ), executor_config


def test_deepfm_step_job_gets_the_gpu_node_and_data_steps_their_memory(monkeypatch, launcher):
    defs = _prod_defs(monkeypatch)
    job, executor_config = _step_job(defs, launcher, "deepfm_candidate")
    assert executor_config["max_concurrent"] == K8sSteps().max_concurrent_pods
    pod = job.spec.template.spec
    (container,) = pod.containers
    assert container.image == IMAGE
    assert [e.secret_ref.name for e in container.env_from if e.secret_ref] == ["reckit-aws"]
    assert {"name": "RECKIT_ENV", "value": "prod"} in [
        {"name": e.name, "value": e.value} for e in container.env
    ]
    assert str(container.resources.limits["nvidia.com/gpu"]) == "1"  # a quantity
    assert pod.node_selector == {"reckit.io/pool": "gpu"}
    (toleration,) = pod.tolerations
    assert (toleration.key, toleration.operator, toleration.effect) == (
        "nvidia.com/gpu",
        "Exists",
        "NoSchedule",
    )

    data_job, _ = _step_job(defs, launcher, "training_samples")
    data_pod = data_job.spec.template.spec
    (data_container,) = data_pod.containers
    assert data_container.resources.requests["memory"] == "12Gi"
    assert data_container.resources.limits == {"memory": "16Gi"}
    assert not data_pod.node_selector and not data_pod.tolerations

    xgb_job, _ = _step_job(defs, launcher, "xgboost_candidate")
    assert "nvidia.com/gpu" not in xgb_job.spec.template.spec.containers[0].resources.limits


def test_step_pod_settings_are_configurable(monkeypatch):
    """Op tags are read at import, so a new process sees the new settings (as every pod does)."""
    settings = "gpu_pool: {gpus: 2, node_selector: {cloud.google.com/gke-accelerator: nvidia-l4}}"
    code = (
        "import json; from reckit_assets.definitions import defs; "
        "node = defs.resolve_job_def('daily_pipeline').graph.node_named('deepfm_candidate'); "
        "print(node.definition.tags['dagster-k8s/config'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(PROJECT_ROOT),
            "RECKIT_K8S_STEPS": settings,
        },
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    config = json.loads(out.stdout.strip().splitlines()[-1])
    assert config["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert config["pod_spec_config"]["node_selector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4"
    }


def test_step_jobs_are_valid_kubernetes_objects(monkeypatch, launcher):
    import kubernetes_validate
    from kubernetes.client import ApiClient

    defs = _prod_defs(monkeypatch)
    for step in ("deepfm_candidate", "training_samples"):
        job, _ = _step_job(defs, launcher, step)
        body = ApiClient().sanitize_for_serialization(job)
        body.setdefault("apiVersion", "batch/v1")
        body.setdefault("kind", "Job")
        kubernetes_validate.validate(body, "1.37.0", strict=True)  # raises when invalid
        assert body["spec"]["template"]["spec"]["containers"], step
        # the validator does reject a Job that is not one (strict: unknown fields fail)
        broken = json.loads(json.dumps(body))
        broken["spec"]["template"]["spec"]["containers"][0]["gpuCount"] = 1
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, "1.37.0", strict=True)


def test_prod_and_compose_instance_files_are_valid_and_in_step(tmp_path):
    for path in (DEPLOY / "dagster.yaml", DEPLOY / "compose" / "dagster.yaml"):
        home = tmp_path / path.parent.name
        home.mkdir()
        (home / "dagster.yaml").write_text(path.read_text())
        dagster_instance_config(str(home))  # raises on any schema error
    prod = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    compose = yaml.safe_load((DEPLOY / "compose" / "dagster.yaml").read_text())
    assert prod.pop("run_launcher")["class"] == "K8sRunLauncher"
    assert compose == prod
    text = (DEPLOY / "dagster.yaml").read_text()
    assert "password: {env: DAGSTER_PG_PASSWORD}" in text  # secrets only from the environment


def test_serving_imports_without_dagster_and_its_image_lists_what_it_loads():
    """The serving image installs serving-requirements.txt and the project with --no-deps."""
    code = """
import importlib.abc, json, sys
class NoDagster(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "dagster" or name.startswith(("dagster.", "dagster_")):
            raise ImportError(f"serving must not import {name}")
sys.meta_path.insert(0, NoDagster())
import serving.app, serving.models, serving.state, serving.feedback
from reckit_assets.core.training.base import load_model
import xgboost, boto3, safetensors
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    requirements = {
        line.split("[")[0].strip().replace("-", "_")
        for line in (DEPLOY / "docker" / "serving-requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not {r for r in requirements if r.startswith("dagster")}
    # Import names of the listed distributions that serving actually loads.
    for module in (
        "fastapi",
        "numpy",
        "pandas",
        "pyarrow",
        "prometheus_client",
        "xgboost",
        "boto3",
    ):
        assert module in loaded
    dist_of = {"xgboost": "xgboost_cpu", "prometheus_client": "prometheus_client"}
    for module in (
        "fastapi",
        "numpy",
        "pandas",
        "pyarrow",
        "prometheus_client",
        "xgboost",
        "boto3",
    ):
        assert dist_of.get(module, module) in requirements, module
    dockerfile = (DEPLOY / "docker" / "serving.Dockerfile").read_text()
    assert "pip install --no-cache-dir --no-deps ." in dockerfile


def test_per_step_tags_do_not_change_the_local_graph(monkeypatch):
    """The local default runs the steps in the run's process; the pod tags are inert there."""
    monkeypatch.delenv("RECKIT_ENV", raising=False)
    monkeypatch.delenv("RECKIT_STEP_EXECUTOR", raising=False)
    defs = build_defs(load_settings())
    job = defs.resolve_job_def("daily_pipeline")
    assert job.executor_def.name == "in_process"
    tags = job.graph.node_named("deepfm_candidate").definition.tags
    assert json.loads(tags[environments.K8S_CONFIG_TAG])["pod_spec_config"]["node_selector"]
