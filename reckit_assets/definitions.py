"""The code location: assembles every domain's definitions. Environment is chosen once here."""

from __future__ import annotations

import dagster as dg

from reckit_assets.defs.environments import environment_for
from reckit_assets.defs.evaluation.assets import EVALUATIONS
from reckit_assets.defs.features import assets as feature_assets
from reckit_assets.defs.ingest import assets as ingest_assets
from reckit_assets.defs.ingest.sensors import landing_arrival_sensor
from reckit_assets.defs.jobs import daily_pipeline, daily_schedule
from reckit_assets.defs.release.assets import REGISTRATIONS
from reckit_assets.defs.samples import assets as sample_assets
from reckit_assets.defs.training.assets import CANDIDATES
from reckit_assets.settings import Settings, load_settings


def build_defs(settings: Settings) -> dg.Definitions:
    # Resources and executor come from the environment (RECKIT_ENV: local | prod), chosen once.
    environment = environment_for(settings)
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
        resources=environment.resources,
        executor=environment.executor,
    )


defs = build_defs(load_settings())
