"""The landing contract: what is read, what is reported, and that nothing is modified."""

from __future__ import annotations

import pandas as pd

from reckit_assets.core.ingest import landing
from reckit_assets.core.io.frames import read_frame
from reckit_assets_tests.conftest import FIRST_DAY as DT


def _events(simulated) -> pd.DataFrame:
    return read_frame(simulated.landing, f"events/dt={DT}/part-00000.parquet")


def test_simulated_day_meets_the_contract(simulated):
    for table in landing.TABLES:
        landed = landing.read_landed(simulated.landing, table, DT)
        assert landed.issues == []
        assert len(landed.frame) > 0
        assert landed.files[0]["key"] == f"{table}/dt={DT}/part-00000.parquet"


def test_missing_required_column_names_file_column_and_rows(lake):
    df = pd.DataFrame({"event_id": ["a", "b"], "user_id": ["u", "u"], "item_id": ["i", "j"]})
    landing.write_partition(lake.landing, "events", DT, df, part="broken")
    landed = landing.read_landed(lake.landing, "events", DT)
    missing = {i.column for i in landed.issues if i.problem == "is missing"}
    assert missing == {"ts", "event_type", "request_id", "position", "device"}
    issue = next(i for i in landed.issues if i.column == "ts")
    assert str(issue) == f"events/dt={DT}/broken.parquet: column `ts` is missing (2 rows)"


def test_null_ids_and_bad_types_are_counted(simulated):
    df = _events(simulated).head(50).copy()
    df.loc[:4, "user_id"] = None
    df["position"] = df["position"].astype(object)
    df.loc[10:12, "position"] = "top"
    # Parquet cannot hold the mixed column; a CSV export can.
    simulated.landing.write_bytes(
        "events/dt=2026-11-01/export.csv", df.to_csv(index=False).encode()
    )
    landed = landing.read_landed(simulated.landing, "events", "2026-11-01")
    problems = {(i.column, i.problem): i.count for i in landed.issues}
    assert problems[("user_id", "has null IDs")] == 5
    assert problems[("position", "is not int")] == 3


def test_csv_with_same_columns_is_accepted_and_ids_stay_strings(lake):
    csv = (
        "event_id,ts,user_id,item_id,event_type,request_id,position,device,extra\n"
        f"e1,{DT}T10:00:00Z,007,i1,impression,r1,0,ios,x\n"
        f"e2,{DT}T10:00:05Z,007,i1,click,r1,0,ios,y\n"
    )
    lake.landing.write_bytes(f"events/dt={DT}/export.csv", csv.encode())
    landed = landing.read_landed(lake.landing, "events", DT)
    assert landed.issues == []
    assert landed.frame["user_id"].tolist() == ["007", "007"]  # not the integer 7
    assert "extra" not in landed.frame.columns
    assert landed.missing_optional == ["model_version"]
    assert landed.frame["model_version"].isna().all()


def test_ready_days_need_all_three_markers_and_change_on_relanding(simulated):
    ready = landing.ready_days(simulated.landing)
    assert list(ready) == ["2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04"]
    simulated.landing.write_bytes("users/dt=2026-10-09/_SUCCESS", b"")
    assert "2026-10-09" not in landing.ready_days(simulated.landing)
    before = ready[DT]
    simulated.landing.write_bytes(landing.marker_key("items", DT), b"again")
    assert landing.ready_days(simulated.landing)[DT] != before


def test_epoch_millisecond_timestamps_in_csv_are_read(lake):
    ms = int(pd.Timestamp(f"{DT}T10:00:00Z").timestamp() * 1000)
    csv = (
        "event_id,ts,user_id,item_id,event_type,request_id,position,device\n"
        f"e1,{ms},u1,i1,impression,r1,0,ios\n"
    )
    lake.landing.write_bytes(f"events/dt={DT}/export.csv", csv.encode())
    landed = landing.read_landed(lake.landing, "events", DT)
    assert landed.issues == []
    assert landed.frame["ts"].iloc[0] == pd.Timestamp(f"{DT}T10:00:00Z")


def test_unknown_files_are_reported_and_in_flight_folders_ignored(simulated):
    simulated.landing.write_bytes(f"events/dt={DT}/000000_0", b"hive output")
    simulated.landing.write_bytes(f"events/dt={DT}/_temporary/0/task_1/part-1.parquet", b"torn")
    landed = landing.read_landed(simulated.landing, "events", DT)
    assert [f["key"] for f in landed.files] == [f"events/dt={DT}/part-00000.parquet"]
    [issue] = landed.issues
    assert issue.file == f"events/dt={DT}/000000_0" and "not .parquet or .csv" in issue.problem
