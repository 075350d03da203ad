"""The operator's page of a day: ``daily_summary``, recorded (without a run) when a day's run ends.

One materialization per finished ``daily_pipeline`` run, on the run's partition: the run's
status, the data gate's outcome (passed, blocked by which checks, waived, warnings) and each
model's release outcome (released / held / rejected / broken) with its key figures, from
``core.steps.summary`` (what ``reckit report`` prints). Green runs that released nothing read
"held" here, next to the figures that say why; red ones say what broke.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from reckit_assets.core.release.registry import Registry
from reckit_assets.core.steps import summary
from reckit_assets.defs.partitions import Structure
from reckit_assets.defs.resources import ReckitStorage

SUMMARY = "daily_summary"
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def build(s: Structure) -> list[dg.AssetSpec]:
    return [
        dg.AssetSpec(
            SUMMARY,
            # Its own group: recorded by a sensor (no run), so no job's group selection holds it.
            group_name="summary",
            partitions_def=s.daily,
            code_version="1",
            kinds={"markdown"},
            description="What happened to the day, recorded when its daily run ends: the run's "
            "status, the data gate (passed / blocked / waived, warnings) and each model's release "
            "outcome (released, held: nothing better today, rejected: shown worse, broken) with "
            "its figures. Also `reckit report --from D --to D`.",
        )
    ]


def _materialization(storage: ReckitStorage, dt: str, status: str) -> dg.AssetMaterialization:
    day = summary.day_summary(storage.warehouse(), Registry(storage.registry()), dt)
    table = summary.markdown(
        {"days": [day], "production": summary.production(Registry(storage.registry()))},
        {dt: status},
    )
    return dg.AssetMaterialization(
        asset_key=SUMMARY,
        partition=dt,
        metadata={
            "run": status,
            "data": day["data"],
            "warnings": day["warnings"] or "none",
            **{f"{kind}": f"{m['outcome']}: {m['figures']}" for kind, m in day["models"].items()},
            "summary": dg.MetadataValue.md(table),
        },
    )


def build_sensor(job_name: str = "daily_pipeline") -> dg.SensorDefinition:
    @dg.sensor(
        name="daily_summary_sensor",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Records the daily_summary of a day (no run) each time a daily_pipeline run "
        "of it finishes.",
    )
    def daily_summary_sensor(context: dg.SensorEvaluationContext, storage: ReckitStorage):
        since = float(context.cursor or 0.0)
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(
                job_name=job_name,
                statuses=FINISHED,
                updated_after=datetime.fromtimestamp(since, tz=UTC) if since else None,
            ),
            limit=100,
        )
        fresh = sorted(
            (r for r in records if r.update_timestamp.timestamp() > since),
            key=lambda r: r.update_timestamp,
        )
        events = [
            _materialization(
                storage, r.dagster_run.tags["dagster/partition"], r.dagster_run.status.value
            )
            for r in fresh
            if "dagster/partition" in r.dagster_run.tags
        ]
        if not fresh:
            return dg.SkipReason("no daily run finished since the last summary")
        cursor = str(max(r.update_timestamp.timestamp() for r in fresh))
        return dg.SensorResult(asset_events=events, cursor=cursor)

    return daily_summary_sensor
