"""The arrival sensor over a scripted sequence of landings."""

from __future__ import annotations

import json

import dagster as dg

from reckit_assets.core.ingest import landing
from reckit_assets.core.io.frames import read_frame
from reckit_assets.definitions import defs


def _tick(lake, instance, cursor):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=lake.resources(), definitions=defs
    )
    result = defs.get_sensor_def("landing_arrival_sensor")(context)
    if isinstance(result, dg.SkipReason):
        return [], cursor
    return result.run_requests, result.cursor


def test_new_incomplete_relanded_and_processed_days(simulated):
    instance = dg.DagsterInstance.ephemeral()

    # 1. four complete days land: one request each, keyed by day and marker signature
    requests, cursor = _tick(simulated, instance, None)
    assert [r.partition_key for r in requests] == [
        "2026-10-01",
        "2026-10-02",
        "2026-10-03",
        "2026-10-04",
    ]
    assert len({r.run_key for r in requests}) == 4
    assert all(r.job_name in (None, "daily_pipeline") for r in requests)

    # 2. nothing new: no request
    assert _tick(simulated, instance, cursor)[0] == []

    # 3. an incomplete day (events and users only): not requested until items lands
    events = read_frame(simulated.landing, "events/dt=2026-10-04/part-00000.parquet")
    users = read_frame(simulated.landing, "users/dt=2026-10-04/part-00000.parquet")
    items = read_frame(simulated.landing, "items/dt=2026-10-04/part-00000.parquet")
    landing.write_partition(simulated.landing, "events", "2026-10-05", events)
    landing.write_partition(simulated.landing, "users", "2026-10-05", users)
    requests, cursor = _tick(simulated, instance, cursor)
    assert requests == []
    landing.write_partition(simulated.landing, "items", "2026-10-05", items)
    requests, cursor = _tick(simulated, instance, cursor)
    assert [r.partition_key for r in requests] == ["2026-10-05"]

    # 4. a re-landed day (its marker rewritten): requested once more, with a new run key
    first_key = json.loads(cursor)["2026-10-02"]
    simulated.landing.write_bytes(landing.marker_key("events", "2026-10-02"), b"relanded")
    requests, cursor = _tick(simulated, instance, cursor)
    assert [r.partition_key for r in requests] == ["2026-10-02"]
    assert requests[0].run_key != f"2026-10-02:{first_key}"
    assert _tick(simulated, instance, cursor)[0] == []

    # 5. a complete day that is not a partition yet (the future): left for later, not lost
    for table, df in (("events", events), ("users", users), ("items", items)):
        landing.write_partition(simulated.landing, table, "2099-01-01", df)
    requests, cursor = _tick(simulated, instance, cursor)
    assert requests == []
    assert "2099-01-01" not in json.loads(cursor)


def test_daily_schedule_targets_the_previous_day_and_is_off_by_default():
    schedule = defs.get_schedule_def("daily_pipeline_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    context = dg.build_schedule_context(
        scheduled_execution_time=__import__("datetime").datetime(2026, 10, 6, 2, 0)
    )
    requests = list(schedule.evaluate_tick(context).run_requests)
    assert [r.partition_key for r in requests] == ["2026-10-05"]
