"""Every messy-data case is handled on purpose and counted."""

from __future__ import annotations

import pandas as pd

from reckit_assets.core.ingest import landing
from reckit_assets.core.ingest.events import validate_events
from reckit_assets.core.io.frames import read_frame
from reckit_assets_tests.conftest import FIRST_DAY as DT


def _land(lake, df: pd.DataFrame, dt: str = DT):
    landing.write_partition(lake.landing, "events", dt, df)
    return landing.read_landed(lake.landing, "events", dt)


def _clean_events(simulated) -> pd.DataFrame:
    return read_frame(simulated.landing, f"events/dt={DT}/part-00000.parquet")


def test_duplicates_orphans_and_out_of_day_are_dropped_and_counted(simulated):
    df = _clean_events(simulated)
    df = df.drop_duplicates("event_id")  # start from a known-clean frame
    df = df[
        df["ts"].between(
            pd.Timestamp(DT, tz="UTC"),
            pd.Timestamp(DT, tz="UTC") + pd.Timedelta(days=1),
            inclusive="left",
        )
    ]
    imps = df[df["event_type"] == "impression"]
    clicks = df[df["event_type"] == "click"]
    base_clicks = clicks.merge(imps[["request_id", "item_id"]], on=["request_id", "item_id"])
    df = df[
        (df["event_type"] != "click")
        | df.set_index(["request_id", "item_id"]).index.isin(
            base_clicks.set_index(["request_id", "item_id"]).index
        )
    ]
    n_clicks = len(base_clicks.drop_duplicates(["request_id", "item_id"]))

    dupes = df.head(7)
    orphan = (
        df[df["event_type"] == "click"]
        .head(3)
        .assign(event_id=lambda d: d["event_id"] + "-orphan", request_id="no-such-request")
    )
    late = (
        df[df["event_type"] == "impression"]
        .head(4)
        .assign(
            event_id=lambda d: d["event_id"] + "-late",
            ts=pd.Timestamp(DT, tz="UTC") + pd.Timedelta(hours=30),
        )
    )
    landed = _land(simulated, pd.concat([df, dupes, orphan, late], ignore_index=True), "2026-10-01")
    out, counts = validate_events(landed, DT)
    assert counts.duplicate_events == 7
    assert counts.orphan_clicks == 3
    assert counts.out_of_day == 4
    assert counts.clicks == n_clicks
    assert len(out) == counts.impressions == len(imps.drop_duplicates(["request_id", "item_id"]))
    assert not out.duplicated(["request_id", "item_id"]).any()
    assert out["ts"].min() >= pd.Timestamp(DT, tz="UTC")


def test_click_label_joins_by_request_and_item_and_conversion_implies_click(lake):
    ts = pd.Timestamp(DT, tz="UTC") + pd.Timedelta(hours=1)
    rows = [
        ("e1", ts, "u1", "i1", "impression", "r1", 0, "ios"),
        ("e2", ts, "u1", "i2", "impression", "r1", 1, "ios"),
        ("e3", ts + pd.Timedelta(seconds=3), "u1", "i2", "click", "r1", 1, "ios"),
        ("e4", ts + pd.Timedelta(seconds=4), "u1", "i2", "click", "r1", 1, "ios"),  # double click
        ("e5", ts, "u2", "i1", "impression", "r2", 0, "web"),
        ("e6", ts + pd.Timedelta(seconds=9), "u2", "i1", "conversion", "r2", 0, "web"),
        ("e7", ts, "u3", "i9", "impression", "r3", 0, "web"),  # single-event user, unseen item
    ]
    cols = [
        "event_id",
        "ts",
        "user_id",
        "item_id",
        "event_type",
        "request_id",
        "position",
        "device",
    ]
    landed = _land(lake, pd.DataFrame(rows, columns=cols))
    items = pd.DataFrame({"item_id": ["i1", "i2"], "category": ["a", "b"], "price": [1.0, 2.0]})
    out, counts = validate_events(landed, DT, items=items)
    labels = out.set_index(["request_id", "item_id"])[["clicked", "converted"]].to_dict("index")
    assert labels[("r1", "i1")] == {"clicked": 0, "converted": 0}
    assert labels[("r1", "i2")] == {"clicked": 1, "converted": 0}
    assert labels[("r2", "i1")] == {"clicked": 1, "converted": 1}
    assert counts.duplicate_clicks == 1
    assert counts.single_event_users == 2  # u2 and u3 have one impression each
    assert counts.items_not_in_catalog == 1
    assert counts.missing_optional_columns == ["model_version"]


def test_empty_day_validates_to_an_empty_table(lake):
    cols = {c.name: pd.Series(dtype="string") for c in landing.SCHEMAS["events"]}
    landed = _land(lake, pd.DataFrame(cols))
    out, counts = validate_events(landed, DT)
    assert len(out) == 0 and counts.raw_rows == 0 and counts.click_rate == 0.0
