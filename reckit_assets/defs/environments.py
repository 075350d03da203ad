"""Where the code location runs: the one place that chooses resources and executor.

``RECKIT_ENV`` is read once, when the definitions load; nothing else branches on it.

``local`` (default)  the embedded default: storage URIs as settings give them (local folders),
                     no server needed. The steps of a run share its process (the in-process
                     executor); the model steps (training, evaluation) still compute in a process
                     of their own, forked from model servers that import the ML stack from the
                     moment the run's process loads the code location (``defs/run_worker.py``,
                     ``core/training/isolation.py``).
``prod``             landing, warehouse and registry on S3 through a dagster-aws ``S3Resource``
                     (the storage layer takes its boto3 client from it); every step its own
                     Kubernetes pod (``k8s_job_executor``) with per-step settings from
                     :class:`K8sSteps`. Instance storage, run launcher, run coordinator and
                     compute logs are the instance's business: ``deploy/dagster.yaml``.

Variables read by ``prod`` (none is a secret; AWS credentials reach boto3 from the environment):

``AWS_ENDPOINT_URL``         boto3's own variable: an S3-compatible server (MinIO, a loopback
                             test server); unset = AWS. ``AWS_DEFAULT_REGION`` likewise.
``RECKIT_STEP_EXECUTOR``     ``k8s`` (default) or ``multiprocess``: where there is no cluster
                             (the compose stack, the deployment test), steps run as processes;
                             ``in_process`` as ``local`` does. ``local`` reads it too:
                             ``in_process`` (default) or ``multiprocess`` (a process per step,
                             two at a time: worth it with more cores than two)
``RECKIT_K8S_STEPS``         YAML overriding :class:`K8sSteps` (deploy/helm/dagster-values.yaml
                             sets it on the code location; run and step pods inherit it), or
``RECKIT_K8S_STEPS_FILE``    a file holding that YAML. Read once at import: op tags are part of
                             the definitions and must be the same in every process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from pydantic import BaseModel, Field

from reckit_assets.core.steps.models import IMPORT_ORDER
from reckit_assets.defs.resources import build_resources
from reckit_assets.defs.run_worker import DEFAULT_STEP_EXECUTOR, models_isolated
from reckit_assets.settings import Settings

ENVIRONMENTS = ("local", "prod")
STEP_EXECUTORS = ("k8s", "multiprocess", "in_process")
K8S_CONFIG_TAG = "dagster-k8s/config"


class PodSize(BaseModel):
    """Kubernetes requests/limits of one step's container (quantities as Kubernetes writes them)."""

    cpu: str
    memory: str
    cpu_limit: str | None = None  # None: no CPU limit (throttling hurts more than sharing)
    memory_limit: str


class GpuPool(BaseModel):
    """Where GPU steps go: a node pool that only they may use (tainted, selected by label)."""

    gpus: int = 1  # nvidia.com/gpu per DeepFM pod
    node_selector: dict[str, str] = Field(default_factory=lambda: {"reckit.io/pool": "gpu"})
    taint_key: str = "nvidia.com/gpu"  # toleration for the pool's NoSchedule taint
    taint_value: str | None = None  # None: tolerate the key with operator Exists
    taint_effect: str = "NoSchedule"


class K8sSteps(BaseModel):
    """Per-step pod settings of the ``prod`` executor. Defaults are sized for 10M impressions/day.

    Data steps: docs/benchmarks.md measures 1.24 GB peak RSS for all data steps of one 1M-
    impression day in one process, linear in rows; 10M gives ~12 GB, so 12Gi requested and 16Gi
    as the limit leave headroom for skewed days. Model steps read 7 days of samples.
    """

    data: PodSize = PodSize(cpu="2", memory="12Gi", memory_limit="16Gi")
    models: PodSize = PodSize(cpu="4", memory="16Gi", memory_limit="24Gi")
    deepfm: PodSize = PodSize(cpu="4", memory="16Gi", memory_limit="24Gi")
    gpu_pool: GpuPool = GpuPool()
    max_concurrent_pods: int = 8  # pods of one run at a time (k8s_job_executor max_concurrent)
    job_namespace: str | None = None  # None: the run launcher's namespace

    @classmethod
    def load(cls, env: dict[str, str] | None = None) -> K8sSteps:
        """Defaults, overridden by YAML in RECKIT_K8S_STEPS (inline) or RECKIT_K8S_STEPS_FILE."""
        env = os.environ if env is None else env
        if env.get("RECKIT_K8S_STEPS"):
            source, text = "RECKIT_K8S_STEPS", env["RECKIT_K8S_STEPS"]
        elif env.get("RECKIT_K8S_STEPS_FILE"):
            source = f"RECKIT_K8S_STEPS_FILE={env['RECKIT_K8S_STEPS_FILE']}"
            try:
                text = Path(env["RECKIT_K8S_STEPS_FILE"]).read_text()
            except OSError as exc:
                raise ValueError(f"{source}: cannot read it: {exc}") from exc
        else:
            return cls()
        try:
            raw = yaml.safe_load(text) or {}
            return cls.model_validate(raw)
        except (yaml.YAMLError, ValueError) as exc:
            raise ValueError(f"{source}: invalid step settings: {exc}") from exc


def _container_resources(size: PodSize, gpus: int = 0) -> dict[str, Any]:
    limits: dict[str, Any] = {"memory": size.memory_limit}
    if size.cpu_limit:
        limits["cpu"] = size.cpu_limit
    if gpus:
        limits["nvidia.com/gpu"] = gpus
    return {"requests": {"cpu": size.cpu, "memory": size.memory}, "limits": limits}


def step_k8s_config(steps: K8sSteps, step: str) -> dict[str, Any]:
    """The ``dagster-k8s/config`` value for one step (a model candidate asset or a data step)."""
    if step == "deepfm_candidate":
        pool = steps.gpu_pool
        toleration: dict[str, Any] = {"key": pool.taint_key, "effect": pool.taint_effect}
        if pool.taint_value is None:
            toleration["operator"] = "Exists"
        else:
            toleration.update(operator="Equal", value=pool.taint_value)
        return {
            "container_config": {"resources": _container_resources(steps.deepfm, pool.gpus)},
            "pod_spec_config": {
                "node_selector": dict(pool.node_selector),
                "tolerations": [toleration],
            },
        }
    if step.endswith("_candidate"):
        return {"container_config": {"resources": _container_resources(steps.models)}}
    return {"container_config": {"resources": _container_resources(steps.data)}}


# Read once at import: op tags are part of the definitions, identical in every process.
K8S_STEPS = K8sSteps.load()


def k8s_op_tags(step: str) -> dict[str, str]:
    """Op tags carrying this step's pod settings; only ``k8s_job_executor`` reads them."""
    return {K8S_CONFIG_TAG: json.dumps(step_k8s_config(K8S_STEPS, step), sort_keys=True)}


# Model steps (training, evaluation) start after the ready data steps. Where they fork from the
# model servers (the steps of a run in one process), those of the models whose libraries take
# longest to import go last (item2vec: gensim; XGBoost; DeepFM: torch, ~2.5 s): the data steps
# run while the servers import, and by the time a model's steps start its server has loaded what
# it needs. Elsewhere (a process or a pod per step) every model step has the same priority, so
# executors that run steps side by side may start DeepFM, the longest, as soon as it is ready.
# Read when the definitions build, from the environment every process of a deployment shares.
def model_step_tags(kind: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    if not models_isolated(os.environ if env is None else env):
        return {"dagster/priority": "-1"}
    return {"dagster/priority": str(-1 - IMPORT_ORDER.index(kind))}


@dataclass(frozen=True)
class Environment:
    name: str
    resources: dict[str, Any]
    executor: dg.ExecutorDefinition


# One process per step, forked from a server that has already imported the code location and
# the ML stack (not a fresh interpreter re-importing dagster, polars, torch, xgboost and gensim).
# Still ~1 s of Dagster work per step (instance, plan, resources) where a data step computes in
# 0.1-0.4 s, so only where there is no cluster and more than two cores (bench/orchestration.py).
PRELOADED_MODULES = ["reckit_assets.definitions", "torch", "xgboost", "gensim"]
STEP_EXECUTOR = dg.multiprocess_executor.configured(
    {
        "max_concurrent": 2,
        "start_method": {"forkserver": {"preload_modules": PRELOADED_MODULES}},
    }
)


# The steps of a run in the run's own process, one after the other; the model steps isolated by
# the ``model_processes`` resource instead (see ``core/training/isolation.py``).
SHARED_PROCESS_EXECUTOR = dg.in_process_executor


PROCESS_EXECUTORS = {"multiprocess": STEP_EXECUTOR, "in_process": SHARED_PROCESS_EXECUTOR}


def _step_executor(env: dict[str, str], default: str, allowed: tuple[str, ...]) -> str:
    kind = env.get("RECKIT_STEP_EXECUTOR") or default
    if kind not in allowed:
        raise ValueError(f"RECKIT_STEP_EXECUTOR={kind!r}: expected one of {allowed}")
    return kind


def _local(settings: Settings, env: dict[str, str]) -> Environment:
    kind = _step_executor(env, DEFAULT_STEP_EXECUTOR["local"], tuple(PROCESS_EXECUTORS))
    resources = build_resources(settings, isolate_models=kind == "in_process")
    return Environment(name="local", resources=resources, executor=PROCESS_EXECUTORS[kind])


def _prod(settings: Settings, env: dict[str, str]) -> Environment:
    not_s3 = {
        var: uri
        for var, uri in (
            ("RECKIT_LANDING_URI", settings.landing_uri),
            ("RECKIT_WAREHOUSE_URI", settings.warehouse_uri),
            ("RECKIT_REGISTRY_URI", settings.registry_uri),
        )
        if not uri.startswith("s3://")
    }
    if not_s3:
        raise ValueError(
            f"RECKIT_ENV=prod keeps data on S3, but {len(not_s3)} location(s) are not s3:// URIs: "
            + ", ".join(f"{var}={uri!r}" for var, uri in not_s3.items())
            + " (set them to s3://bucket/prefix)"
        )
    # Imported here: dagster_aws costs seconds of import time in every local step process.
    from dagster_aws.s3 import S3Resource

    from reckit_assets.defs.s3_storage import S3ReckitStorage

    # Shown in the UI's resource view; compute logs and serving read the same variables.
    s3 = S3Resource(
        endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
        region_name=env.get("AWS_DEFAULT_REGION") or None,
    )
    kind = _step_executor(env, DEFAULT_STEP_EXECUTOR["prod"], STEP_EXECUTORS)
    resources = build_resources(settings, isolate_models=kind == "in_process")
    resources["s3"] = s3
    resources["storage"] = S3ReckitStorage(
        landing_uri=settings.landing_uri,
        warehouse_uri=settings.warehouse_uri,
        registry_uri=settings.registry_uri,
        s3=s3,
    )
    if kind in PROCESS_EXECUTORS:
        return Environment(name="prod", resources=resources, executor=PROCESS_EXECUTORS[kind])
    from dagster_k8s import k8s_job_executor

    config: dict[str, Any] = {
        "max_concurrent": K8S_STEPS.max_concurrent_pods,
        # Default for every step (the data steps); model steps override it by op tag.
        "step_k8s_config": step_k8s_config(K8S_STEPS, "data"),
    }
    if K8S_STEPS.job_namespace:
        config["job_namespace"] = K8S_STEPS.job_namespace
    executor = k8s_job_executor.configured(config, name="k8s_steps")
    return Environment(name="prod", resources=resources, executor=executor)


def environment_for(settings: Settings, env: dict[str, str] | None = None) -> Environment:
    """The resources and executor of the environment named by RECKIT_ENV (default ``local``)."""
    env = dict(os.environ if env is None else env)
    name = env.get("RECKIT_ENV") or "local"
    if name == "local":
        return _local(settings, env)
    if name == "prod":
        return _prod(settings, env)
    raise ValueError(f"RECKIT_ENV={name!r}: expected one of {ENVIRONMENTS}")
