"""The landing zone asset: observations list landed, in-flight and missing days."""

from __future__ import annotations

import dagster as dg

from reckit_assets.core.ingest import landing
from reckit_assets.core.io.frames import read_frame
from reckit_assets.definitions import defs
from reckit_assets.defs.ingest import landing_zone
from reckit_assets.defs.ingest.landing_zone import LANDING_ZONE
from reckit_assets_tests.defs.pipeline import STRUCTURE


def _tick(lake, instance, cursor):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=lake.resources(), definitions=defs
    )
    return defs.get_sensor_def("landing_zone_observer")(context)


def _copy_day(lake, src: str, dst: str, tables=("events", "users", "items")) -> None:
    for table in tables:
        frame = read_frame(lake.landing, f"{table}/dt={src}/part-00000.parquet")
        landing.write_partition(lake.landing, table, dst, frame)


def test_observer_records_landed_in_flight_and_missing_days_only_on_change(simulated):
    instance = dg.DagsterInstance.ephemeral()
    before = simulated.landing_digest()

    first = _tick(simulated, instance, None)
    (observation,) = first.asset_events
    assert observation.asset_key == dg.AssetKey(LANDING_ZONE)
    meta = observation.metadata
    assert meta["landed"].value == "4 day(s) landed, 2026-10-01 to 2026-10-04"
    assert meta["landed_days"].value == 4
    assert meta["last_landed_day"].value == "2026-10-04"
    for day in ("2026-10-01", "2026-10-04"):
        assert f"| {day} | landed | 3 |" in meta["days"].value

    # Nothing changed: no observation, the reason says what is there.
    again = _tick(simulated, instance, first.cursor)
    assert isinstance(again, dg.SkipReason) and "4 day(s) landed" in again.skip_message

    # 2026-10-06 complete, 2026-10-05 missing, 2026-10-07 in flight (no items yet).
    _copy_day(simulated, "2026-10-04", "2026-10-06")
    _copy_day(simulated, "2026-10-04", "2026-10-07", tables=("events", "users"))
    (later,) = _tick(simulated, instance, first.cursor).asset_events
    days = later.metadata["days"].value
    assert "| 2026-10-05 | missing | 0 |" in days
    assert "| 2026-10-06 | landed | 3 |" in days
    assert "| 2026-10-07 | in flight: no `_SUCCESS` on items | – |" in days
    assert later.metadata["landed"].value == (
        "5 day(s) landed, 2026-10-01 to 2026-10-06; not landed in between: 2026-10-05; "
        "in flight: 2026-10-07"
    )
    # The observer only lists: the landed files are untouched.
    assert {k: v for k, v in simulated.landing_digest().items() if k in before} == before


def test_observe_from_the_ui_records_the_same_inventory(simulated):
    instance = dg.DagsterInstance.ephemeral()
    # What the UI's "Observe" button runs: a job selecting the observable source.
    job = dg.Definitions(
        assets=landing_zone.build(STRUCTURE),
        jobs=[dg.define_asset_job("observe_landing", selection=[LANDING_ZONE])],
        resources=simulated.resources(),
    ).resolve_job_def("observe_landing")
    result = job.execute_in_process(instance=instance)
    assert result.success
    (event,) = result.get_asset_observation_events()
    meta = event.asset_observation_data.asset_observation.metadata
    assert meta["landed_days"].value == 4


def test_empty_landing_zone_says_so(lake):
    result = _tick(lake, dg.DagsterInstance.ephemeral(), None)
    (observation,) = result.asset_events
    assert observation.metadata["landed"].value == "no day has landed"
    assert observation.metadata["days"].value == "Nothing has landed yet."
