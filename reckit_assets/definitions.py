"""The code location: assembles every stage's definitions. Settings and config are read once here.

``build_defs(settings)`` takes where things live from ``settings`` and the graph's shape
(partitions, training window) from the project config file; nothing below reads the
environment at import.
"""

from __future__ import annotations

from reckit_assets.defs import run_worker

# First, before the imports below (~1.2 s): a process about to execute a run starts its model
# server now, so that it imports the ML stack meanwhile (see defs/run_worker.py).
run_worker.start_model_server_early()

import dagster as dg

from reckit_assets.config import ReckitConfig, load_config
from reckit_assets.defs.environments import environment_for
from reckit_assets.defs.evaluation import assets as evaluation
from reckit_assets.defs.features import assets as features
from reckit_assets.defs.ingest import assets as ingest
from reckit_assets.defs.ingest import landing_zone
from reckit_assets.defs.ingest.sensors import build_arrival_sensor
from reckit_assets.defs.jobs import (
    RUN_LOGGERS,
    build_daily_job,
    build_daily_schedule,
    build_monitoring_job,
    build_retraining_job,
)
from reckit_assets.defs.monitoring import assets as monitoring
from reckit_assets.defs.monitoring import evidence
from reckit_assets.defs.monitoring.sensors import build_retraining_sensor, run_failure_alert
from reckit_assets.defs.partitions import structure_for
from reckit_assets.defs.release import assets as release
from reckit_assets.defs.release import summary as day_summary
from reckit_assets.defs.samples import assets as samples
from reckit_assets.defs.training import assets as training
from reckit_assets.defs.training import tuning as tuning_assets
from reckit_assets.settings import Settings, load_settings


def build_defs(settings: Settings, config: ReckitConfig | None = None) -> dg.Definitions:
    config = config or load_config(settings.config_file).config
    s = structure_for(config)
    daily, retraining = build_daily_job(), build_retraining_job()
    tuning_job = tuning_assets.build_job()
    # Resources and executor come from the environment (RECKIT_ENV: local | prod), chosen once.
    environment = environment_for(settings)
    return dg.Definitions(
        assets=[
            *landing_zone.build(s),
            *ingest.build(s),
            *features.build(s),
            *samples.build(s),
            *training.build(s),
            *tuning_assets.build(s),
            *evaluation.build(s),
            *release.build(s),
            *monitoring.build(s),
            *evidence.build(s),
            *day_summary.build(s),
        ],
        jobs=[daily, build_monitoring_job(), retraining, tuning_job],
        schedules=[build_daily_schedule(daily), tuning_assets.build_schedule(tuning_job)],
        sensors=[
            build_arrival_sensor(s, daily, config.arrival),
            build_retraining_sensor(s, retraining, config.guard),
            run_failure_alert,
            landing_zone.build_sensor(),
            day_summary.build_sensor(daily.name),
        ],
        resources=environment.resources,
        executor=environment.executor,
        loggers=RUN_LOGGERS,
    )


defs = build_defs(load_settings())
