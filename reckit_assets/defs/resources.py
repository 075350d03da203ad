"""Resources: where data lives (from settings) and the project config every run loads."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg

from reckit_assets.core.io.storage import Storage
from reckit_assets.core.io.uri import storage_from_uri
from reckit_assets.core.training import isolation
from reckit_assets.defs import run_worker
from reckit_assets.defs.config import ProjectConfig
from reckit_assets.settings import Settings

T = TypeVar("T")

# The run's log line when the servers were started as the code location loaded (defs/run_worker.py)
EARLY_START = "model servers started as the code location loaded,"


class ReckitStorage(dg.ConfigurableResource):
    """The landing zone (read only), the warehouse of pipeline artifacts, and the registry."""

    landing_uri: str
    warehouse_uri: str
    registry_uri: str

    def landing(self) -> Storage:
        return storage_from_uri(self.landing_uri)

    def warehouse(self) -> Storage:
        return storage_from_uri(self.warehouse_uri)

    def registry(self) -> Storage:
        return storage_from_uri(self.registry_uri)


class Monitoring(dg.ConfigurableResource):
    """Where served traffic is observed: the service's feedback log and the Prometheus server
    that scrapes it (empty: not configured), and the ranking models whose canaries are judged."""

    feedback_uri: str = ""
    prometheus_url: str = ""
    models: str = "xgboost"  # comma-separated rankers whose canaries are judged
    # JSON {dt: [start, end]} (unix seconds): when a day was served, where that is not the
    # calendar day (the closed-loop simulation serves a simulated day in minutes).
    service_windows: str = ""

    def service_window(self, dt: str) -> tuple[float, float] | None:
        found = json.loads(self.service_windows).get(dt) if self.service_windows else None
        return (float(found[0]), float(found[1])) if found else None

    def model_names(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]

    def feedback(self) -> Storage:
        return storage_from_uri(self.feedback_uri)


class ModelProcesses(dg.ConfigurableResource):
    """Where the model steps (training, evaluation) compute.

    ``isolate``: in a process of their own, forked from a model server that imported the ML
    stack (the environment sets it where a run's steps share one process, see
    ``core/training/isolation.py``); otherwise in the step's own process (a pod, a process per
    step, or a test).
    """

    isolate: bool = False

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if not self.isolate:
            return
        loading = isolation.loading_for()
        isolation.start()  # imports torch & co. while the data steps compute
        if context.log is None:
            return
        if run_worker.started_early():
            context.log.info(f"{EARLY_START} {loading:.1f} s ago")
        elif loading is None:
            context.log.info("model servers started with the run's resources")
        else:
            context.log.info(f"model servers already running, started {loading:.1f} s ago")

    def call(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        what: str,
        log: Callable[[str], None] | None = None,
        uses_torch: bool = False,
        **kwargs: Any,
    ) -> T:
        """``fn(*args, **kwargs)`` (with ``log=`` when given) here or in its own process,
        forked from the model server, or the torch one (see ``isolation.call``)."""
        if self.isolate:
            return isolation.call(fn, *args, what=what, log=log, uses_torch=uses_torch, **kwargs)
        return fn(*args, **kwargs, **({"log": log} if log is not None else {}))


def build_resources(
    settings: Settings, isolate_models: bool = False
) -> dict[str, dg.ConfigurableResource]:
    return {
        "storage": ReckitStorage(
            landing_uri=settings.landing_uri,
            warehouse_uri=settings.warehouse_uri,
            registry_uri=settings.registry_uri,
        ),
        "project": ProjectConfig(file=settings.config_file),
        "monitoring": Monitoring(
            feedback_uri=settings.feedback_uri, prometheus_url=settings.prometheus_url
        ),
        "model_processes": ModelProcesses(isolate=isolate_models),
    }
