"""The arrival sensor against real runs on a real (ephemeral) Dagster instance.

A small daily job stands in for the pipeline: a day succeeds unless a fault is injected for it,
and only after the day before it was built (like features reading the previous days). The
sensor sees the outcome of each run through the instance, as it does in production.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import dagster as dg

from reckit_assets.core.features.spec import LONG_WINDOW_DAYS
from reckit_assets.core.ingest import landing
from reckit_assets.core.io.frames import read_frame
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.definitions import defs
from reckit_assets.defs.ingest.sensors import ArrivalPolicy, build_arrival_sensor, evaluate_arrivals
from reckit_assets.defs.resources import ReckitStorage
from reckit_assets_tests.conftest import days
from reckit_assets_tests.defs.pipeline import STRUCTURE

D1, D2, D3, D4 = days(4)
BUILT: list[str] = []  # days built by the stand-in job, in order


@dg.asset(partitions_def=STRUCTURE.daily)
def day_built(context, storage: ReckitStorage) -> None:
    dt, store = context.partition_key, storage.warehouse()
    if store.exists(f"faults/{dt}"):
        raise RuntimeError(f"injected fault for {dt}")
    before = (date.fromisoformat(dt) - timedelta(days=1)).isoformat()
    if dt > STRUCTURE.first_day and not store.exists(f"built/{before}"):
        raise RuntimeError(f"{dt} needs {before}, which is not built")
    store.write_bytes(f"built/{dt}", b"")
    BUILT.append(dt)


JOB = dg.define_asset_job("stand_in_daily", selection=[day_built])
POLICY = ArrivalPolicy(backoff_seconds=300, max_attempts=3)


class Harness:
    def __init__(self, lake) -> None:
        self.lake, self.instance, self.cursor, self.now = (
            lake,
            dg.DagsterInstance.ephemeral(),
            None,
            1e9,
        )
        self.resources = lake.resources()
        self.defs = dg.Definitions(assets=[day_built], jobs=[JOB], resources=self.resources)
        self.job = self.defs.resolve_job_def("stand_in_daily")
        BUILT.clear()

    def tick(self, policy: ArrivalPolicy = POLICY) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources=self.resources,
            definitions=self.defs,
        )
        result = evaluate_arrivals(
            context, self.resources["storage"], STRUCTURE, JOB.name, policy, now=self.now
        )
        self.cursor = result.cursor
        return list(result.run_requests or [])

    def run(self, requests: list[dg.RunRequest]) -> dict[str, bool]:
        out = {}
        for r in requests:
            result = self.job.execute_in_process(
                partition_key=r.partition_key,
                instance=self.instance,
                tags=r.tags,
                raise_on_error=False,
            )
            out[r.partition_key] = result.success
        return out

    def drain(self, ticks: int = 12) -> list[tuple[str, bool]]:
        """Tick and run what is requested until the sensor has nothing to request."""
        history = []
        for _ in range(ticks):
            requests = self.tick()
            if not requests:
                return history
            history += list(self.run(requests).items())
        raise AssertionError(f"still requesting after {ticks} ticks: {history}")

    def day(self, dt: str) -> dict:
        return json.loads(self.cursor)["days"][dt]

    def fault(self, dt: str, on: bool) -> None:
        if on:
            self.lake.warehouse.write_bytes(f"faults/{dt}", b"")
        else:
            (self.lake.warehouse.root / "faults" / dt).unlink()


def test_days_run_one_after_another_until_each_succeeds(simulated):
    h = Harness(simulated)
    assert h.drain() == [(D1, True), (D2, True), (D3, True), (D4, True)]
    assert all(h.day(d)["state"] == "succeeded" for d in (D1, D2, D3, D4))
    assert h.tick() == []


def test_a_failed_day_is_requested_again_with_backoff_and_succeeds_after_the_fix(simulated):
    h = Harness(simulated)
    h.fault(D2, True)
    assert h.drain() == [(D1, True), (D2, False)]
    # the failure is in the cursor, with its backoff; the later days wait for D2
    entry = h.day(D2)
    assert (entry["state"], entry["attempts"], entry["last_status"]) == ("due", 1, "FAILURE")
    assert entry["next_at"] == h.now + 300
    assert h.tick() == []
    h.now += 301
    h.fault(D2, False)  # the fix
    (retry,) = h.tick()
    assert retry.partition_key == D2 and retry.tags["reckit/attempt"] == "2/3"
    assert retry.run_key.endswith(":r2")  # a new key: Dagster would drop a reused one
    assert h.run([retry]) == {D2: True}
    assert h.drain() == [(D3, True), (D4, True)]
    assert BUILT == [D1, D2, D3, D4]


def test_a_day_that_keeps_failing_is_given_up_after_the_limit(simulated):
    h = Harness(simulated)
    h.fault(D1, True)
    for attempt in range(1, 4):
        (request,) = h.tick()
        assert request.partition_key == D1 and request.tags["reckit/attempt"] == f"{attempt}/3"
        assert h.run([request]) == {D1: False}
        after = h.tick()  # the failure is recorded; a retry waits out its backoff
        assert after == [] or attempt == 3
        h.now += 10_000
    assert h.day(D1)["state"] == "gave_up" and h.day(D1)["attempts"] == 3
    assert h.day(D1)["last_status"] == "FAILURE"
    # the days after it are no longer held back by it (they decide for themselves)
    assert [r.partition_key for r in after] == [D2]
    # a re-landing starts over
    h.fault(D1, False)
    simulated.landing.write_bytes(landing.marker_key("items", D1), b"relanded")
    (request,) = h.tick()
    assert request.partition_key == D1 and request.tags["reckit/why"] == "re-landed"


def test_a_relanded_day_requests_its_dependants_in_order(simulated):
    h = Harness(simulated)
    h.drain()
    BUILT.clear()
    simulated.landing.write_bytes(landing.marker_key("events", D2), b"relanded")
    (first,) = h.tick()
    assert first.partition_key == D2 and first.tags["reckit/why"] == "re-landed"
    assert h.day(D3)["state"] == h.day(D4)["state"] == "due"
    assert h.day(D4)["why"] == f"reads {D2} (re-landed)"
    assert h.day(D1)["state"] == "succeeded"  # earlier days do not read D2
    h.run([first])
    h.drain()
    assert BUILT == [D2, D3, D4]


def test_a_day_landing_before_the_day_it_depends_on_eventually_runs_in_order(simulated):
    held = {
        t: read_frame(simulated.landing, f"{t}/dt={D3}/part-00000.parquet") for t in landing.TABLES
    }
    for table in landing.TABLES:
        simulated.landing.delete_prefix(landing.partition_prefix(table, D3))
    h = Harness(simulated)
    # D4 landed before D3: it runs, fails (D3 missing) and backs off
    assert h.drain() == [(D1, True), (D2, True), (D4, False)]
    landing.write_partition(simulated.landing, "events", D3, held["events"])  # incomplete
    assert h.tick() == [] and h.day(D3)["state"] == "landing"
    for table in ("users", "items"):
        landing.write_partition(simulated.landing, table, D3, held[table])
    # D3 lands late: it runs first, then D4 (whose window reads D3) without waiting out its backoff
    assert h.drain() == [(D3, True), (D4, True)]
    assert BUILT == [D1, D2, D3, D4]
    assert h.day(D4)["why"] == f"reads {D3} (landed late)"


def test_a_tick_lists_date_folders_not_the_landing_zone(simulated, monkeypatch):
    h = Harness(simulated)
    h.drain()
    calls = []
    real = LocalStorage.list_prefixes

    def spy(self, prefix, start_after=""):
        calls.append((prefix, start_after))
        return real(self, prefix, start_after)

    def no_walk(self, prefix):
        raise AssertionError(f"the sensor walked {prefix!r}")

    monkeypatch.setattr(LocalStorage, "list", no_walk)
    monkeypatch.setattr(LocalStorage, "list_prefixes", spy)
    assert h.tick() == []
    # one child listing per table, from the recheck window (the features' 28-day window before
    # the newest day seen: a day re-landed within it changes later days' features)
    after = (date.fromisoformat(D4) - timedelta(days=LONG_WINDOW_DAYS + 1)).isoformat()
    assert sorted(calls) == sorted([*((t, f"dt={after}") for t in landing.TABLES), ("waivers", "")])


def test_the_project_sensor_requests_the_first_day_then_waits(simulated):
    instance = dg.DagsterInstance.ephemeral()
    sensor = defs.get_sensor_def("landing_arrival_sensor")
    context = dg.build_sensor_context(
        instance=instance, resources=simulated.resources(), definitions=defs
    )
    result = sensor(context)
    assert [r.partition_key for r in result.run_requests] == [D1]
    assert result.run_requests[0].job_name in (None, "daily_pipeline")
    # the day is requested but its run has not finished: nothing more (the rest come after it)
    again = sensor(
        dg.build_sensor_context(
            instance=instance,
            cursor=result.cursor,
            resources=simulated.resources(),
            definitions=defs,
        )
    )
    assert not again.run_requests and "waiting" in again.skip_reason.skip_message
    # a complete day in the future is kept for later, not lost
    events = read_frame(simulated.landing, f"events/dt={D4}/part-00000.parquet")
    for table in landing.TABLES:
        frame = (
            events
            if table == "events"
            else read_frame(simulated.landing, f"{table}/dt={D4}/part-00000.parquet")
        )
        landing.write_partition(simulated.landing, table, "2099-01-01", frame)
    later = sensor(
        dg.build_sensor_context(
            instance=instance,
            cursor=again.cursor,
            resources=simulated.resources(),
            definitions=defs,
        )
    )
    assert json.loads(later.cursor)["days"]["2099-01-01"]["state"] == "due"


def test_an_old_cursor_is_migrated_and_its_days_decided_by_their_runs(simulated):
    h = Harness(simulated)
    signatures = landing.ready_days(simulated.landing)
    h.cursor = json.dumps({d: signatures[d] for d in (D1, D2)})  # the first format
    assert h.run([dg.RunRequest(partition_key=D1)]) == {D1: True}  # D1 ran; D2's run was lost
    (request,) = h.tick()
    assert h.day(D1)["state"] == "succeeded"
    assert request.partition_key == D2 and h.day(D3)["state"] == "due"


def test_the_daily_schedule_targets_the_previous_day_and_is_off_by_default():
    schedule = defs.get_schedule_def("daily_pipeline_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    context = dg.build_schedule_context(
        scheduled_execution_time=__import__("datetime").datetime(2026, 10, 6, 2, 0)
    )
    requests = list(schedule.evaluate_tick(context).run_requests)
    assert [r.partition_key for r in requests] == ["2026-10-05"]


def test_the_sensor_is_built_with_its_policy():
    sensor = build_arrival_sensor(STRUCTURE, JOB, ArrivalPolicy(max_attempts=9))
    assert "at most 9 attempts" in sensor.description


def test_a_request_still_running_is_waited_for_and_a_lost_one_is_made_again(simulated):
    h = Harness(simulated)
    (first,) = h.tick()
    h.now += 2 * 3600  # past lost_after_seconds, but the run exists and is still running
    run = h.instance.create_run_for_job(
        h.job, tags={**first.tags, "dagster/partition": D1}, status=dg.DagsterRunStatus.STARTED
    )
    assert h.tick() == [] and h.day(D1)["state"] == "requested"
    h.instance.delete_run(run.run_id)  # the daemon never launched it (or it vanished)
    h.now += 2 * 3600
    (again,) = h.tick()
    assert again.partition_key == D1 and again.run_key.endswith(":r2")


def test_a_waiver_reruns_the_day_and_its_dependants(simulated):
    """A blocked day given up on: ``reckit data accept`` (a waiver) asks for it again, then for
    the days that read it, in order; the request says why."""
    from reckit_assets.core.ingest import waivers

    h = Harness(simulated)
    h.fault(D2, True)
    h.drain()
    for _ in range(3):
        h.now += 10_000
        h.run(h.tick())
    h.tick()
    assert h.day(D2)["state"] == "gave_up"
    BUILT.clear()
    h.fault(D2, False)
    waivers.accept(simulated.warehouse, D2, "volume", "ana", "a real promotion day")
    (request,) = h.tick()
    assert request.partition_key == D2 and request.tags["reckit/why"] == "waived"
    assert "+w" in request.tags["reckit/landing_signature"]
    assert h.day(D4)["why"] == f"reads {D2} (waived)"
    h.run([request])
    h.drain()
    assert BUILT[0] == D2 and set(BUILT) >= {D2, D3, D4}
