"""The jobs: the daily pipeline (and its fallback schedule), monitoring, and retraining."""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

DAILY_GROUPS = ("ingest", "features", "samples", "models", "evaluation", "registry")
# Every run logs to the terminal at INFO: Dagster's default DEBUG console printed ~10 event lines
# per step (STEP_START, STEP_OUTPUT, ...), all of which stay in the run's log in the UI.
# `loggers: {console: {config: {log_level: DEBUG}}}` in a launch's run config brings them back.
RUN_LOGGERS = {"console": dg.colored_console_logger.configured({"log_level": "INFO"})}
# Runs the arrival sensor requests queue behind manual launches (the queue takes the highest
# dagster/priority first; a launch without the tag has 0), so a backlog never delays a person.
SENSOR_RUN_PRIORITY = "-1"


def build_daily_job() -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "daily_pipeline",
        selection=dg.AssetSelection.groups(*DAILY_GROUPS),
        description="Everything for one day: landed logs -> samples -> candidates -> gate -> "
        "registry. The arrival sensor, the schedule and manual launches run it for a partition.",
        tags={"reckit/lane": "daily"},
    )


def build_monitoring_job() -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "monitoring_job",
        selection=dg.AssetSelection.groups("monitoring", "release"),
        description="Served feedback -> landing, online metrics, the canary judge and the "
        "production guard for one day (after the day's traffic is complete).",
        tags={"reckit/lane": "monitoring"},
    )


def build_retraining_job() -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "retraining_job",
        selection=dg.AssetSelection.groups("models", "evaluation", "registry"),
        description="Train, gate and register the models for one day: what the retraining "
        "sensor requests when production regresses or drifts.",
        tags={"reckit/lane": "retraining"},
    )


def build_daily_schedule(job: UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    # Fallback for a missed sensor tick: 02:00 UTC, the previous day. Off until switched on.
    return dg.build_schedule_from_partitioned_job(
        job,
        name="daily_pipeline_schedule",
        hour_of_day=2,
        minute_of_hour=0,
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
