"""The code location: assembles every domain's definitions. Environment is chosen once here."""

from __future__ import annotations

import dagster as dg

from reckit_assets.defs.evaluation.assets import EVALUATIONS
from reckit_assets.defs.features import assets as feature_assets
from reckit_assets.defs.ingest import assets as ingest_assets
from reckit_assets.defs.ingest.sensors import landing_arrival_sensor
from reckit_assets.defs.jobs import daily_pipeline, daily_schedule, monitoring_job, retraining_job
from reckit_assets.defs.monitoring.assets import ASSETS as MONITORING
from reckit_assets.defs.monitoring.sensors import retraining_sensor, run_failure_alert
from reckit_assets.defs.release.assets import REGISTRATIONS
from reckit_assets.defs.resources import build_resources
from reckit_assets.defs.samples import assets as sample_assets
from reckit_assets.defs.training.assets import CANDIDATES
from reckit_assets.settings import Settings, load_settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            *dg.load_assets_from_modules([ingest_assets, feature_assets, sample_assets]),
            *CANDIDATES,
            *EVALUATIONS,
            *REGISTRATIONS,
            *MONITORING,
        ],
        jobs=[daily_pipeline, monitoring_job, retraining_job],
        schedules=[daily_schedule],
        sensors=[landing_arrival_sensor, retraining_sensor, run_failure_alert],
        resources=build_resources(settings),
        executor=dg.multiprocess_executor.configured({"max_concurrent": 2}),
    )


defs = build_defs(load_settings())
