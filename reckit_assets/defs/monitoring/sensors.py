"""Monitoring-driven retraining and failure alerts.

``retraining_sensor`` reads each new day's ``production_guard`` record (the statistically tested
CTR drop vs production's trailing baseline, and score drift vs the offline holdout). A day that
asks for retraining gets one ``retraining_job`` run for that partition (train on the 7 days
before it, gate on it), tagged with the reason; then nothing more for ``cooldown_days`` days, so
a lasting regression cannot start a retraining storm. The cursor holds the last day read and
the last day a retraining was requested (days are read in date order, as published); run keys are the model, the day and the record's data
version (Dagster deduplicates run keys forever, so a re-evaluated day with a new record can ask
again).
"""

import json
from datetime import date

import dagster as dg

from reckit_assets.core.io import warehouse
from reckit_assets.core.monitoring.rollout import GuardConfig
from reckit_assets.defs.partitions import Structure
from reckit_assets.defs.resources import ReckitStorage

GUARD = "production_guard"
REASON_TAG = "reckit/retrain_reason"


def build_retraining_sensor(
    s: Structure, retraining_job, guard: GuardConfig | None = None
) -> dg.SensorDefinition:
    """The retraining sensor for this code location's partitions and retraining job; its
    cooldown is ``guard.cooldown_days`` of the project config (read when the location loads)."""
    cooldown = (guard or GuardConfig()).cooldown_days

    def retraining_sensor(context: dg.SensorEvaluationContext, storage: ReckitStorage):
        return evaluate_retraining(context, storage, s.daily, cooldown)

    return dg.sensor(
        name="retraining_sensor",
        job=retraining_job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests a retraining run when production's online CTR drops significantly "
        "against its trailing baseline or its scores drift (with a cooldown).",
    )(retraining_sensor)


def evaluate_retraining(
    context: dg.SensorEvaluationContext,
    storage: ReckitStorage,
    daily: dg.DailyPartitionsDefinition,
    cooldown: int | None = None,
):
    cursor = json.loads(context.cursor) if context.cursor else {}
    last_seen, last_request = cursor.get("last_seen"), cursor.get("last_request")
    cooldown = GuardConfig().cooldown_days if cooldown is None else cooldown
    store = storage.warehouse()
    valid = set(daily.get_partition_keys(dynamic_partitions_store=context.instance))
    published = sorted(
        info.key.split("/")[1].removeprefix("dt=")
        for info in store.list(GUARD)
        if info.key.endswith("/_manifest.json")
    )
    requests, notes = [], []
    for dt in published:
        if dt not in valid or (last_seen is not None and dt <= last_seen):
            continue
        found = warehouse.manifest(store, GUARD, dt)
        if found is None:
            continue
        last_seen = dt
        record = json.loads(warehouse.read_file(store, GUARD, dt, "guard.json"))
        wanted = {m: r for m, r in record.items() if r.get("retrain")}
        if not wanted:
            continue
        if last_request and (date.fromisoformat(dt) - date.fromisoformat(last_request)).days < (
            cooldown
        ):
            notes.append(f"{dt}: retraining wanted but in cooldown since {last_request}")
            continue
        reason = "; ".join(f"{m}: {', '.join(r['reasons'])}" for m, r in sorted(wanted.items()))
        requests.append(
            dg.RunRequest(
                partition_key=dt,
                run_key=f"retrain:{dt}:{found['data_version']}",
                tags={REASON_TAG: reason[:1000], "reckit/trigger": "monitoring"},
            )
        )
        last_request = dt
    for note in notes:
        context.log.info(note)
    new_cursor = json.dumps({"last_seen": last_seen, "last_request": last_request}, sort_keys=True)
    if not requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                "no new retraining signal" + (f" ({notes})" if notes else "")
            ),
            cursor=new_cursor,
        )
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)


@dg.run_failure_sensor(
    name="run_failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (to the log) on every failed run, with its job, partition and error.",
)
def run_failure_alert(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    error = context.failure_event.message if context.failure_event else "unknown error"
    context.log.error(
        f"ALERT: run {run.run_id} of {run.job_name} failed "
        f"(partition {run.tags.get('dagster/partition', '-')}, trigger "
        f"{run.tags.get('reckit/trigger', '-')}): {error}"
    )
