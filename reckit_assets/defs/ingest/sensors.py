"""Arrival sensor: a day whose three tables all carry _SUCCESS gets one run.

The cursor remembers each day's marker signature. A processed day is not requested again; a
re-landed day (markers rewritten) is requested once more, with a run key built from the new
signature, since Dagster deduplicates run keys forever.
"""

import json

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from reckit_assets.core.ingest.landing import ready_days
from reckit_assets.defs.jobs import SENSOR_RUN_PRIORITY
from reckit_assets.defs.partitions import Structure
from reckit_assets.defs.resources import ReckitStorage


def build_arrival_sensor(s: Structure, daily_pipeline: UnresolvedAssetJobDefinition):
    """The sensor for this code location's partitions and daily job."""
    return dg.sensor(
        name="landing_arrival_sensor",
        job=daily_pipeline,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests the daily pipeline for each newly complete (or re-landed) day.",
    )(_arrival(s))


def _arrival(s: Structure):
    def landing_arrival_sensor(context: dg.SensorEvaluationContext, storage: ReckitStorage):
        return evaluate_arrivals(context, storage, s.daily)

    return landing_arrival_sensor


def evaluate_arrivals(
    context: dg.SensorEvaluationContext,
    storage: ReckitStorage,
    daily: dg.DailyPartitionsDefinition,
):
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    valid = set(daily.get_partition_keys(dynamic_partitions_store=context.instance))
    requests, skipped = [], []
    for dt, signature in ready_days(storage.landing()).items():
        if seen.get(dt) == signature:
            continue
        if dt not in valid:
            # Not a partition (yet): before the first day, or today/future. Left for later.
            skipped.append(dt)
            continue
        requests.append(
            dg.RunRequest(
                partition_key=dt,
                run_key=f"{dt}:{signature}",
                tags={
                    "reckit/landing_signature": signature,
                    "reckit/trigger": "arrival",
                    "dagster/priority": SENSOR_RUN_PRIORITY,  # manual launches go first
                },
            )
        )
        seen[dt] = signature
    if skipped:
        context.log.info(f"ready but not (yet) partitions, left for later: {skipped}")
    if not requests:
        return dg.SkipReason("no new or re-landed complete day")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))
