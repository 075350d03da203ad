"""Feedback -> landing: attribution, reckit's event shape, write-once landing, salting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reckit_assets.core.ingest.landing import marker_key, read_landed
from reckit_assets.core.io.frames import frame_to_parquet_bytes, parquet_bytes_to_frame
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.monitoring.feedback import (
    FeedbackLandingError,
    attribute,
    from_reckit_events,
    land_feedback,
)
from reckit_assets.core.monitoring.online import per_user, summarize, with_alias
from reckit_assets.core.monitoring.salting import canary_bucket, in_canary

DT = "2026-10-05"


def ev(eid, minute, user, item, kind, req, version="xgb-v1", position=0, alias=None):
    row = {
        "event_id": eid,
        "ts": pd.Timestamp(DT, tz="UTC") + pd.Timedelta(minutes=minute),
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "request_id": req,
        "position": position,
        "device": "ios",
        "model_version": version,
    }
    if alias is not None:
        row["alias"] = alias
    return row


def log_frame() -> pd.DataFrame:
    rows = [
        ev("e1", 1, "u1", "i1", "impression", "r1"),
        ev("e2", 1, "u1", "i2", "impression", "r1", position=1),
        ev("e3", 2, "u1", "i1", "click", "r1"),
        ev("e3", 2, "u1", "i1", "click", "r1"),  # client retry: same event id
        ev("e4", 3, "u2", "i9", "click", "r2"),  # no impression of (r2, i9)
        ev("e5", 4, "u3", "i1", "impression", "r3", version=None),
        ev("e6", 4, "u3", "i1", "impression", "r4", version="unknown"),
        ev("e7", 60 * 25, "u1", "i3", "impression", "r5"),  # tomorrow
    ]
    return pd.DataFrame(rows)


def test_only_attributable_feedback_is_landed_and_the_rest_is_counted_by_reason():
    out = attribute(log_frame(), DT)
    assert sorted(out.landed["event_id"]) == ["e1", "e2", "e3"]
    assert out.counts["duplicates"] == 1
    assert out.counts["unattributable"] == 4
    assert out.counts["unattributable_no_served_impression"] == 1
    assert out.counts["unattributable_no_model_version"] == 2
    assert out.counts["unattributable_out_of_day"] == 1
    assert set(out.apart["reason"]) == {
        "no_served_impression",
        "no_model_version",
        "out_of_day",
    }


def test_reckit_event_shape_is_mapped_and_attributed_to_the_served_impression():
    served = pd.DataFrame([ev("e1", 10, "u1", "i1", "impression", "r1", position=3)])
    t = int((pd.Timestamp(DT, tz="UTC") + pd.Timedelta(minutes=11)).timestamp())
    records = [
        {"user_id": "u1", "item_id": "i1", "scene": "home", "type": "like", "timestamp": t},
        {"user_id": "u1", "item_id": "i1", "type": "skip", "timestamp": t},
        {"user_id": "u1", "item_id": "i1", "type": "dislike", "timestamp": t},
        {"user_id": "u7", "item_id": "i1", "type": "click", "timestamp": t},  # never served
        {
            "user_id": "u8",
            "item_id": "i2",
            "type": "conversion",
            "timestamp": t,
            "extras": {"request_id": "rX", "model_version": "xgb-v2"},
        },
    ]
    rows, counts = from_reckit_events(records, served)
    assert counts == {
        "reckit_events": 5,
        "reckit_negative": 2,
        "reckit_unknown_type": 0,
        "reckit_matched": 2,
    }
    like = rows[rows["user_id"] == "u1"].iloc[0]
    assert like["event_type"] == "click"  # like -> click
    assert like["request_id"] == "r1" and like["model_version"] == "xgb-v1"
    assert like["position"] == 3 and like["device"] == "ios"
    assert like["ts"] == pd.Timestamp(t * 1000, unit="ms", tz="UTC")  # seconds -> ms
    assert pd.isna(rows[rows["user_id"] == "u7"].iloc[0]["request_id"])
    assert rows[rows["user_id"] == "u8"].iloc[0]["model_version"] == "xgb-v2"
    # A reckit click matched to the impression is attributable; the unmatched one is kept apart.
    both = attribute(pd.concat([served, rows], ignore_index=True), DT)
    assert set(both.landed["user_id"]) == {"u1"}
    assert both.counts["unattributable_no_model_version"] == 1


def write_log(root, frame, name="serving-h-1-a-000001.parquet"):
    store = LocalStorage(root / "feedback")
    store.write_bytes(f"events/dt={DT}/{name}", frame_to_parquet_bytes(frame))
    return store


def test_landing_is_in_the_contract_format_write_once_and_idempotent(tmp_path):
    feedback = write_log(tmp_path, log_frame())
    landing, apart = LocalStorage(tmp_path / "landing"), LocalStorage(tmp_path / "wh")
    first = land_feedback(feedback, landing, apart, DT)
    assert first["created"] and first["attributable"] == 3
    assert landing.exists(marker_key("events", DT))
    landed = read_landed(landing, "events", DT)
    assert not landed.issues and len(landed.frame) == 3
    kept = parquet_bytes_to_frame(apart.read_bytes(f"unattributed/dt={DT}/part-00000.parquet"))
    assert len(kept) == 4
    before = (tmp_path / "landing" / "events" / f"dt={DT}" / "feedback-00000.parquet").read_bytes()
    again = land_feedback(feedback, landing, apart, DT)
    assert not again["created"] and again["sha256"] == first["sha256"]
    # New feedback for an already-landed day is refused, and the landed bytes stay as they were.
    write_log(tmp_path, pd.DataFrame([ev("e9", 5, "u5", "i5", "impression", "r9")]), "late.parquet")
    with pytest.raises(FeedbackLandingError, match="never modified"):
        land_feedback(feedback, landing, apart, DT)
    after = (tmp_path / "landing" / "events" / f"dt={DT}" / "feedback-00000.parquet").read_bytes()
    assert after == before


def test_foreign_files_in_the_partition_are_refused(tmp_path):
    feedback = write_log(tmp_path, log_frame())
    landing = LocalStorage(tmp_path / "landing")
    landing.write_bytes(f"events/dt={DT}/export.parquet", b"x")
    with pytest.raises(FeedbackLandingError, match="did not write"):
        land_feedback(feedback, landing, LocalStorage(tmp_path / "wh"), DT)


def test_online_counts_per_version_and_alias_with_user_level_se():
    rows = []
    rng = np.random.default_rng(3)
    for u in range(300):
        version = "v2" if u % 4 == 0 else "v1"
        for k in range(int(rng.integers(1, 30))):
            req, item = f"r{u}-{k}", f"i{k}"
            rows.append(ev(f"e{u}-{k}", 1, f"u{u}", item, "impression", req, version))
            if rng.random() < (0.3 if u % 2 else 0.02):  # very different users
                rows.append(ev(f"c{u}-{k}", 2, f"u{u}", item, "click", req, version))
    events = with_alias(attribute(pd.DataFrame(rows), DT).landed, {"v1": "production"})
    out = summarize(per_user(events)).set_index("model_version")
    assert out.loc["v2", "alias"] == "unknown" and out.loc["v1", "alias"] == "production"
    v1 = out.loc["v1"]
    assert v1["impressions"] + out.loc["v2", "impressions"] == sum(
        r["event_type"] == "impression" for r in rows
    )
    assert v1["ctr_se_user"] > 1.5 * v1["ctr_se_binomial"]


def test_salted_canaries_of_two_models_overlap_no_more_than_chance():
    users = [f"u{i}" for i in range(20_000)]
    share = 0.10
    a = np.array([in_canary(u, "xgboost", "xgboost-2026-10-05-aaaa", share) for u in users])
    b = np.array([in_canary(u, "deepfm", "deepfm-2026-10-05-bbbb", share) for u in users])
    c = np.array([in_canary(u, "xgboost", "xgboost-2026-10-09-cccc", share) for u in users])
    for other in (b, c):  # another model, another release of the same model
        both = int((a & other).sum())
        # Independent draws: overlap ~ Binomial(n, share^2); a shared bucket would give n*share.
        assert stats.binomtest(both, len(users), share * share).pvalue > 0.001
        assert both < 0.2 * a.sum()
    assert 0.09 < a.mean() < 0.11
    assert canary_bucket("u1", "xgboost", "r") == canary_bucket("u1", "xgboost", "r")


def test_online_counts_each_shown_item_once_whoever_reported_it():
    """The service logs every served position as an impression; a client reporting the same
    impression (another event id) or clicking twice must not inflate the online counts."""
    from reckit_assets.core.monitoring.online import per_user

    ts = pd.Timestamp("2026-10-05T10:00:00Z")
    rows = [
        # (event_id, request, item, type, seconds after ts)
        ("s-served-1", "r1", "i1", "impression", 0),  # served-time log
        ("c-client-1", "r1", "i1", "impression", 2),  # the client's own report of it
        ("s-served-2", "r1", "i2", "impression", 0),
        ("c-click-1", "r1", "i1", "click", 5),
        ("c-click-2", "r1", "i1", "click", 9),  # a second click on the same shown item
        ("s-served-3", "r2", "i1", "impression", 0),  # another request: another impression
    ]
    events = pd.DataFrame(
        {
            "event_id": [r[0] for r in rows],
            "request_id": [r[1] for r in rows],
            "item_id": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
            "ts": [ts + pd.Timedelta(seconds=r[4]) for r in rows],
            "user_id": "u1",
            "model_version": "v1",
            "alias": "production",
        }
    )
    counts = per_user(events).iloc[0]
    assert (counts["impressions"], counts["clicks"]) == (3, 1)
