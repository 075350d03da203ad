"""Day d's features never see day d's labels, and missing window days are errors."""

from __future__ import annotations

import pandas as pd
import pytest

from reckit_assets.core.ingest import landing
from reckit_assets.core.ingest.quality import Thresholds
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.frames import read_frame, to_arrow
from reckit_assets.core.steps import data as steps
from reckit_assets_tests.conftest import FIRST_DAY, days


def _build(lake, through: int) -> None:
    for dt in days(through):
        warehouse.publish(
            lake.warehouse,
            steps.LANDED,
            dt,
            steps.check_landing(lake.landing, dt, Thresholds()).artifact,
        )
        for asset, art in steps.validate(lake.landing, lake.warehouse, dt).items():
            warehouse.publish(lake.warehouse, asset, dt, art)
        warehouse.publish(lake.warehouse, steps.ACTIVITY, dt, steps.activity(lake.warehouse, dt))
        warehouse.publish(
            lake.warehouse, steps.FEATURES, dt, steps.features(lake.warehouse, dt, FIRST_DAY)
        )
        # Samples compare with the earlier days' samples: build them in date order too.
        result = steps.samples(lake.warehouse, dt, Thresholds(), first_day=FIRST_DAY)
        warehouse.publish(
            lake.warehouse, steps.SAMPLES, dt, result.artifact, quarantined=not result.passed
        )


def _versions(lake, asset: str) -> dict[str, str]:
    return {dt: warehouse.manifest(lake.warehouse, asset, dt)["data_version"] for dt in days(4)}


def _data(artifact: warehouse.Artifact) -> pd.DataFrame:
    """The samples as published (the step builds them as a Polars frame)."""
    return to_arrow(artifact.frames["data"]).to_pandas()


def test_features_of_day_d_ignore_day_d_labels(simulated):
    _build(simulated, 4)
    before = _versions(simulated, steps.FEATURES)
    samples_before = steps.samples(simulated.warehouse, "2026-10-03", Thresholds()).artifact

    # Re-land day 3 with half of its clicks removed: its labels change, nothing else does.
    key = "events/dt=2026-10-03/part-00000.parquet"
    events = read_frame(simulated.landing, key)
    clicks = events.index[events["event_type"] == "click"]
    landing.write_partition(simulated.landing, "events", "2026-10-03", events.drop(clicks[::2]))
    _build(simulated, 4)
    after = _versions(simulated, steps.FEATURES)

    assert after["2026-10-03"] == before["2026-10-03"]  # day 3 features: unchanged
    assert after["2026-10-02"] == before["2026-10-02"]
    assert after["2026-10-04"] != before["2026-10-04"]  # day 4 sees day 3's (new) labels
    samples_after = steps.samples(simulated.warehouse, "2026-10-03", Thresholds()).artifact
    feats = ["item_ctr", "user_ctr", "item_cvr", "cross_age_x_ctr"]
    before_frame, after_frame = _data(samples_before), _data(samples_after)
    pd.testing.assert_frame_equal(before_frame[feats], after_frame[feats])
    assert after_frame["label"].sum() < before_frame["label"].sum()


def test_missing_window_day_is_an_error_naming_the_days(simulated):
    _build(simulated, 2)
    simulated.warehouse.delete_prefix(warehouse.prefix(steps.ACTIVITY, "2026-10-01"))
    with pytest.raises(warehouse.MissingPartitionError, match="2026-10-01"):
        steps.features(simulated.warehouse, "2026-10-03", FIRST_DAY)


def test_first_day_has_cold_start_features_only(simulated):
    _build(simulated, 1)
    out = _data(steps.samples(simulated.warehouse, FIRST_DAY, Thresholds()).artifact)
    assert out["is_new_item"].all() and out["is_new_user"].all()
    assert out["item_ctr"].nunique() == 1  # everyone gets the prior


def test_reading_a_partition_being_rewritten_fails_instead_of_mixing(simulated):
    _build(simulated, 1)
    key = warehouse.prefix(steps.ACTIVITY, FIRST_DAY) + "/items.parquet"
    simulated.warehouse.write_bytes(key, b"half-written new bytes")
    with pytest.raises(warehouse.ChangedPartitionError, match="does not match its manifest"):
        warehouse.read(simulated.warehouse, steps.ACTIVITY, FIRST_DAY, "items")


def test_samples_of_day_d_use_the_profiles_serving_had_end_of_d_minus_1(simulated):
    d1, d2, d3 = days(3)
    users2 = read_frame(simulated.landing, f"users/dt={d2}/part-00000.parquet")
    users1 = read_frame(simulated.landing, f"users/dt={d1}/part-00000.parquet")
    events2 = read_frame(simulated.landing, f"events/dt={d2}/part-00000.parquet")
    events3 = read_frame(simulated.landing, f"events/dt={d3}/part-00000.parquet")
    # A user active on days 2 and 3 whose profile changes on day 2 (age 99 from day 2 on).
    both = set(events2["user_id"]) & set(events3["user_id"]) & set(users1["user_id"])
    changed = sorted(both)[0]
    old_age = float(users1.loc[users1["user_id"] == changed, "age"].iloc[0])
    simulated.landing.delete_prefix(f"users/dt={d2}")  # test setup: a re-export of day 2
    landing.write_partition(
        simulated.landing,
        "users",
        d2,
        users2.assign(age=users2["age"].mask(users2["user_id"] == changed, 99.0)),
    )
    _build(simulated, 3)

    s2 = warehouse.read(simulated.warehouse, steps.SAMPLES, d2)
    s3 = warehouse.read(simulated.warehouse, steps.SAMPLES, d3)
    assert set(s2.loc[s2["user_id"] == changed, "user_age"]) == {old_age}  # as serving on d2
    assert set(s3.loc[s3["user_id"] == changed, "user_age"]) == {99.0}  # visible from d3 on
    info = warehouse.manifest(simulated.warehouse, steps.SAMPLES, d2)["info"]
    assert info["profiles_from"] == f"users {d1}, items {d1}"
    # Users who signed up on day 2 are unknown to day 2's samples, as they were to serving.
    signed_up_d2 = set(users2["user_id"]) - set(users1["user_id"])
    new_rows = s2[s2["user_id"].isin(signed_up_d2)]
    assert len(new_rows) and (new_rows["user_age"] == 0.0).all()
