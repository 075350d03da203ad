"""Arrival sensor: requests each complete day until a run of it succeeds, in dependency order.

A day is complete when its three tables carry ``_SUCCESS``. The cursor (JSON) keeps, per day:
its marker signature, a state, the attempts made for the current landing, the next allowed
attempt time, and the last run's outcome::

    landing    folders seen, markers incomplete: re-read every tick until complete
    due        needs a run (new, re-landed, a dependant of a re-landed day, or a failed run
               waiting out its backoff)
    requested  a run was requested: its outcome is looked up on the instance every tick (the
               run tagged with this request, or a successful run of the partition since)
    succeeded  a run for it succeeded (a manual one counts too)
    gave_up    ``max_attempts`` runs failed for this landing; a re-landing starts over

Invariants:
- A day is requested only when no earlier day within its dependency window (the feature window
  and the training window, whichever is longer) is due or requested: a day that landed before
  the day it depends on waits for it, then runs.
- A day that lands or re-lands after later days ran marks those later days (within the window)
  due again, since their features and models read it.
- Run keys are ``<dt>:<signature>:r<n>`` with n counting every request ever made for the day, so
  Dagster's forever-deduplication never swallows a retry.
- Each tick lists only the date folders from ``recheck_days`` before the newest seen
  (``listed_through``) onwards, one listing per table, plus three marker stats per listed day,
  per incomplete day and per day not yet succeeded: its cost does not grow with the age of the
  landing zone. A day landing or re-landing further back than the recheck window is not
  noticed; run such a day by hand.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from reckit_assets.core.ingest import waivers
from reckit_assets.core.ingest.arrival import ArrivalPolicy
from reckit_assets.core.ingest.landing import day_signature, landed_days_after
from reckit_assets.defs.jobs import SENSOR_RUN_PRIORITY
from reckit_assets.defs.partitions import Structure
from reckit_assets.defs.resources import ReckitStorage

CURSOR_FORMAT = 2
PENDING = ("due", "requested")


def build_arrival_sensor(
    s: Structure,
    daily_pipeline: UnresolvedAssetJobDefinition,
    policy: ArrivalPolicy | None = None,
):
    """The sensor for this code location's partitions and daily job."""
    policy = policy or ArrivalPolicy()
    job_name = daily_pipeline.name

    def landing_arrival_sensor(context: dg.SensorEvaluationContext, storage: ReckitStorage):
        return evaluate_arrivals(context, storage, s, job_name, policy)

    return dg.sensor(
        name="landing_arrival_sensor",
        job=daily_pipeline,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Requests the daily pipeline for each complete day until a run of it succeeds "
            f"(backoff, at most {policy.max_attempts} attempts per landing), in dependency "
            "order; a re-landed day also re-requests the later days whose windows read it."
        ),
    )(landing_arrival_sensor)


def _day(dt: str, days: int) -> str:
    return (date.fromisoformat(dt) + timedelta(days=days)).isoformat()


def _load(cursor: str | None) -> dict:
    if not cursor:
        return {"format": CURSOR_FORMAT, "listed_through": None, "days": {}}
    doc = json.loads(cursor)
    if doc.get("format") == CURSOR_FORMAT:
        return doc
    # The first cursor format was {dt: signature} of requested days: their outcome is unknown,
    # so they count as requested long ago and any run of the partition decides.
    days = {
        dt: {"sig": sig, "state": "requested", "attempts": 1, "requests": 1, "requested_at": 0}
        for dt, sig in doc.items()
    }
    return {"format": CURSOR_FORMAT, "listed_through": max(days, default=None), "days": days}


def _in_flight(instance: dg.DagsterInstance, entry: dict) -> bool:
    """Whether the run of this request exists and has not finished (queued or running)."""
    if not entry.get("run_key"):
        return False
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={"reckit/request": entry["run_key"]}), limit=5
    )
    return any(not r.dagster_run.is_finished for r in records)


def _outcome(instance: dg.DagsterInstance, job_name: str, dt: str, entry: dict):
    """The finished run that decides a requested day, or None while none has finished.

    First the run of this very request (tag ``reckit/request`` = its run key); failing that, a
    SUCCESS of any run of the job for the partition created since the request (someone ran the
    day by hand). A failed manual run does not count against the sensor's attempts.
    """

    def finished(filters: dg.RunsFilter):
        records = instance.get_run_records(filters=filters, limit=20)
        done = [r for r in records if r.dagster_run.is_finished]
        return max(done, key=lambda r: r.create_timestamp, default=None)

    if entry.get("run_key"):
        own = finished(dg.RunsFilter(tags={"reckit/request": entry["run_key"]}))
        if own is not None:
            return own
    since = entry.get("requested_at", 0)
    other = finished(
        dg.RunsFilter(
            job_name=job_name,
            tags={"dagster/partition": dt},
            statuses=[dg.DagsterRunStatus.SUCCESS],
            created_after=datetime.fromtimestamp(since, tz=UTC) if since else None,
        )
    )
    return other


def evaluate_arrivals(
    context: dg.SensorEvaluationContext,
    storage: ReckitStorage,
    s: Structure,
    job_name: str,
    policy: ArrivalPolicy | None = None,
    now: float | None = None,
):
    policy = policy or ArrivalPolicy()
    now = time.time() if now is None else now
    log = context.log
    state = _load(context.cursor)
    days: dict[str, dict] = state["days"]
    window = max(s.feature_window_days, s.training_window_days)
    recheck = policy.recheck_days if policy.recheck_days is not None else window
    landing = storage.landing()

    def mark_due(dt: str, why: str) -> None:
        entry = days[dt]
        entry.update(state="due", why=why, attempts=0, next_at=0)

    # 1. discovery: the date folders of the recheck window and after (new days, late days,
    #    re-landings), plus re-reads of incomplete and unfinished days
    previous = state["listed_through"]
    listed = landed_days_after(landing, _day(previous, -(recheck + 1)) if previous else None)
    newest = max([*listed, previous or ""]) or None
    # Days before the first partition never become partitions: not tracked at all.
    candidates = {d for d in listed if d >= s.first_day}
    candidates |= {dt for dt, e in days.items() if e["state"] != "succeeded"}
    store = storage.warehouse()
    # One listing per tick: the days that have waivers at all (``reckit data accept``).
    waived_days = waivers.days_with_waivers(store)
    for dt in sorted(candidates | (waived_days & {d for d in days if d >= s.first_day})):
        sig = day_signature(landing, dt)
        # An operator's waiver changes the day as a re-landing does.
        waived = waivers.signature(store, dt) if sig is not None and dt in waived_days else ""
        sig = f"{sig}+w{waived}" if waived else sig
        entry = days.get(dt)
        if sig is None:
            if entry is None or entry["state"] != "landing":
                days[dt] = {**(entry or {}), "state": "landing", "sig": None}
            continue
        if entry is not None and entry.get("sig") == sig:
            continue
        relanded = entry is not None and entry.get("sig") is not None
        newly_waived = relanded and waived and entry["sig"].split("+w")[0] == sig.split("+w")[0]
        days[dt] = {**(entry or {"requests": 0}), "sig": sig}
        mark_due(dt, "waived" if newly_waived else "re-landed" if relanded else "landed")
        later = [
            d
            for d, e in days.items()
            if dt < d <= _day(dt, window) and e.get("sig") and e["state"] != "landing"
        ]
        for d in later:
            why = "waived" if newly_waived else "re-landed" if relanded else "landed late"
            mark_due(d, f"reads {dt} ({why})")
        if later:
            log.info(f"{dt} {days[dt]['why']}: its dependants {later} will run again after it")
    state["listed_through"] = newest

    # 2. outcomes of requested runs, looked up on the instance
    for dt, entry in sorted(days.items()):
        if entry["state"] != "requested":
            continue
        record = _outcome(context.instance, job_name, dt, entry)
        if record is None:
            waited = now - entry.get("requested_at", 0)
            if waited > policy.lost_after_seconds and not _in_flight(context.instance, entry):
                entry.update(state="due", why="requested but no run finished", next_at=0)
                log.warning(f"{dt}: no finished run since its request; requesting it again")
            continue
        run = record.dagster_run
        entry["last_run"], entry["last_status"] = run.run_id, run.status.value
        if run.status == dg.DagsterRunStatus.SUCCESS:
            entry["state"] = "succeeded"
            continue
        if entry["attempts"] >= policy.max_attempts:
            entry["state"] = "gave_up"
            log.warning(
                f"{dt}: run {run.run_id} {run.status.value}; gave up after "
                f"{entry['attempts']}/{policy.max_attempts} attempts (re-land the day or run it "
                "by hand)"
            )
            continue
        wait = policy.backoff(entry["attempts"])
        entry.update(state="due", why=f"run {run.status.value}", next_at=now + wait)
        log.info(
            f"{dt}: run {run.run_id} {run.status.value} (attempt {entry['attempts']}/"
            f"{policy.max_attempts}); retry in {wait:.0f}s"
        )

    # 3. requests, oldest first, each after the days it reads
    valid = set(s.daily.get_partition_keys(dynamic_partitions_store=context.instance))
    requests, waiting = [], []
    for dt in sorted(d for d, e in days.items() if e["state"] == "due"):
        entry = days[dt]
        if dt not in valid:
            waiting.append(f"{dt} (not a partition yet)")
            continue
        if now < entry.get("next_at", 0):
            waiting.append(f"{dt} (backoff until {datetime.fromtimestamp(entry['next_at'], UTC)})")
            continue
        before = [
            d
            for d, e in days.items()
            if _day(dt, -window) <= d < dt and e["state"] in PENDING and d in valid
        ]
        if before:
            waiting.append(f"{dt} (after {before[-1]})")
            continue
        entry["attempts"] = entry.get("attempts", 0) + 1
        entry["requests"] = entry.get("requests", 0) + 1
        run_key = f"{dt}:{entry['sig']}:r{entry['requests']}"
        entry.update(state="requested", requested_at=now, run_key=run_key)
        requests.append(
            dg.RunRequest(
                partition_key=dt,
                run_key=run_key,
                tags={
                    "reckit/landing_signature": entry["sig"],
                    "reckit/trigger": "arrival",
                    "reckit/request": run_key,
                    "reckit/why": entry["why"][:200],
                    "reckit/attempt": f"{entry['attempts']}/{policy.max_attempts}",
                    "dagster/priority": SENSOR_RUN_PRIORITY,  # manual launches go first
                },
            )
        )
        log.info(f"requesting {dt} ({entry['why']}), attempt {entry['attempts']}")
    if waiting:
        log.info(f"due but waiting: {waiting}")

    # 4. forget succeeded days that left the recheck window (nothing reads them any more)
    keep_from = _day(newest, -(recheck + window)) if newest else ""
    for dt in [d for d, e in days.items() if d < keep_from and e["state"] == "succeeded"]:
        del days[dt]
    cursor = json.dumps(state, sort_keys=True)
    if not requests:
        return dg.SensorResult(
            run_requests=[],
            cursor=cursor,
            skip_reason=dg.SkipReason(
                "nothing to request" + (f"; waiting: {', '.join(waiting)}" if waiting else "")
            ),
        )
    return dg.SensorResult(run_requests=requests, cursor=cursor)
