"""The code location: assembles every domain's definitions. Environment is chosen once here."""

from __future__ import annotations

import dagster as dg

from reckit_assets.defs.evaluation.assets import EVALUATIONS
from reckit_assets.defs.features import assets as feature_assets
from reckit_assets.defs.ingest import assets as ingest_assets
from reckit_assets.defs.ingest.sensors import landing_arrival_sensor
from reckit_assets.defs.jobs import daily_pipeline, daily_schedule
from reckit_assets.defs.release.assets import REGISTRATIONS
from reckit_assets.defs.resources import build_resources
from reckit_assets.defs.samples import assets as sample_assets
from reckit_assets.defs.training.assets import CANDIDATES
from reckit_assets.settings import Settings, load_settings

# One process per step (a step's memory is returned when it ends; training cannot take the data
# steps down with it), but forked from a server that has already imported the code location and
# the ML stack: a step starts in milliseconds instead of re-importing dagster, polars, torch,
# xgboost and gensim (~2-6 s each). bench/orchestration.py measures the difference. Kubernetes
# (prod) replaces this with one pod per step.
PRELOADED_MODULES = ["reckit_assets.definitions", "torch", "xgboost", "gensim"]
STEP_EXECUTOR = dg.multiprocess_executor.configured(
    {
        "max_concurrent": 2,
        "start_method": {"forkserver": {"preload_modules": PRELOADED_MODULES}},
    }
)


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            *dg.load_assets_from_modules([ingest_assets, feature_assets, sample_assets]),
            *CANDIDATES,
            *EVALUATIONS,
            *REGISTRATIONS,
        ],
        jobs=[daily_pipeline],
        schedules=[daily_schedule],
        sensors=[landing_arrival_sensor],
        resources=build_resources(settings),
        executor=STEP_EXECUTOR,
    )


defs = build_defs(load_settings())
