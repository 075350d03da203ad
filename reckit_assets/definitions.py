"""The code location: assembles every stage's definitions. Settings and config are read once here.

``build_defs(settings)`` takes where things live from ``settings`` and the graph's shape
(partitions, training window) from the project config file; nothing below reads the
environment at import.
"""

from __future__ import annotations

import dagster as dg

from reckit_assets.config import ReckitConfig, load_config
from reckit_assets.defs.evaluation import assets as evaluation
from reckit_assets.defs.features import assets as features
from reckit_assets.defs.ingest import assets as ingest
from reckit_assets.defs.ingest import landing_zone
from reckit_assets.defs.ingest.sensors import build_arrival_sensor
from reckit_assets.defs.jobs import RUN_LOGGERS, build_daily_job, build_daily_schedule
from reckit_assets.defs.partitions import structure_for
from reckit_assets.defs.release import assets as release
from reckit_assets.defs.resources import build_resources
from reckit_assets.defs.samples import assets as samples
from reckit_assets.defs.training import assets as training
from reckit_assets.settings import Settings, load_settings


def build_defs(settings: Settings, config: ReckitConfig | None = None) -> dg.Definitions:
    config = config or load_config(settings.config_file).config
    s = structure_for(config)
    daily = build_daily_job()
    return dg.Definitions(
        assets=[
            *landing_zone.build(s),
            *ingest.build(s),
            *features.build(s),
            *samples.build(s),
            *training.build(s),
            *evaluation.build(s),
            *release.build(s),
        ],
        jobs=[daily],
        schedules=[build_daily_schedule(daily)],
        sensors=[build_arrival_sensor(s, daily), landing_zone.build_sensor()],
        resources=build_resources(settings),
        executor=dg.multiprocess_executor.configured({"max_concurrent": 2}),
        loggers=RUN_LOGGERS,
    )


defs = build_defs(load_settings())
