"""The data gate's rules: each defect fails the check that names it; clean variation passes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reckit_assets.core.features.drift import categorical_drift, dense_drift, feature_drift
from reckit_assets.core.ingest import quality
from reckit_assets.core.ingest.quality import FeatureDrift, Reference, Thresholds
from reckit_assets.core.io.warehouse import MissingPartitionError
from reckit_assets.core.steps.data import reference

T = Thresholds()
DAYS = tuple(f"2026-10-0{d}" for d in range(1, 8))


def _ref(impressions: int = 10_000, clicks: int = 500, price: float = 20.0) -> Reference:
    stats = {
        "counts": {"impressions": impressions, "clicks": clicks},
        "medians": {"items.price": price, "users.age": 38.0},
        "rows": impressions,
    }
    return Reference("2026-10-08", days=DAYS, stats=(stats,) * len(DAYS))


def test_volume_compares_with_the_reference_median():
    assert quality.volume(7_000, _ref(), T, "events").passed  # a -30% weekday
    collapsed = quality.volume(100, _ref(), T, "events")
    assert not collapsed.passed
    assert "0.01x the median 10000" in collapsed.description
    assert "data_quality.max_volume_ratio" in collapsed.description
    assert collapsed.metadata["reference_days"] == ", ".join(DAYS)
    assert not quality.volume(50_000, _ref(), T, "events").passed  # a 5x spike
    assert not quality.volume(0, _ref(), T, "events").passed


def test_a_check_without_reference_passes_only_on_the_first_partition():
    first = Reference("2026-10-01", first_partition=True)
    assert quality.volume(10, first, T, "events").passed
    cut_off = Reference("2026-10-09", failed=DAYS)
    outcome = quality.volume(10_000, cut_off, T, "events")
    assert not outcome.passed
    assert "no passing day before 2026-10-09" in outcome.description
    assert "2026-10-07" in outcome.description
    assert "data_quality.reference_lookback_days" in outcome.description


def test_null_share_limits_required_and_optional_columns():
    ok = quality.null_shares(
        {"items.price": (0.2, 20, True), "events.model_version": (0.02, 2, False)}, T
    )
    assert ok.passed
    bad = quality.null_shares({"items.price": (0.6, 60, True)}, T)
    assert not bad.passed
    assert "required column `items.price` is null in 60 rows (60.0% > 35%" in bad.description
    assert "data_quality.max_null_rate" in bad.description
    optional = quality.null_shares({"events.model_version": (0.8, 80, False)}, T)
    assert not optional.passed and "data_quality.max_optional_null_rate" in optional.description


def test_value_range_catches_unit_changes():
    assert quality.value_range({"items.price": 23.0, "users.age": 37.0}, _ref(), T).passed
    cents = quality.value_range({"items.price": 20_000.0, "users.age": 38.0}, _ref(), T)
    assert not cents.passed
    assert "`items.price` median 20000 vs 20 (1000.00x)" in cents.description
    assert "users.age" not in cents.description.split(": ", 1)[1]
    months = quality.value_range({"items.price": 20.0, "users.age": 456.0}, _ref(), T)
    assert not months.passed and "`users.age`" in months.description


def test_unknown_event_types_are_counted_directly():
    from reckit_assets.core.ingest.events import EventCounts

    counts = EventCounts(raw_rows=900, unknown_event_type=300)
    outcome = quality.unknown_event_types(counts, T, "events/dt=x/a.parquet")
    assert not outcome.passed and "300 rows (33.3333%)" in outcome.description
    assert quality.unknown_event_types(EventCounts(raw_rows=900), T, "f").passed


def test_clicks_stopped_needs_an_implausible_gap():
    ref = Reference(
        "2026-10-08",
        days=DAYS,
        stats=({"counts": {"requests": 1000, "clicked_requests": 300}},) * len(DAYS),
    )  # 30% of requests get a click
    steady = quality.clicks_stopped([50] * 24, [15] * 24, ref, T)
    assert steady.passed
    # A quiet night hour: 5 requests, none clicked: P = 0.7^5 = 0.17 -> normal.
    quiet = quality.clicks_stopped([50] * 3 + [5] + [50] * 20, [15] * 3 + [0] + [15] * 20, ref, T)
    assert quiet.passed, quiet.description
    stopped = quality.clicks_stopped([50] * 24, [15] * 12 + [0] * 12, ref, T)
    assert not stopped.passed
    assert "no click from 12:00 to 23:59 UTC over 600 requests" in stopped.description
    assert "data_quality.clicks_stopped_alpha" in stopped.description


def test_drift_needs_significance_and_effect_size():
    rng = np.random.default_rng(0)
    big_ref, big_cur = rng.normal(0, 1, 50_000), rng.normal(0.03, 1, 50_000)
    small = dense_drift(np.linspace(-2, 2, 30), np.linspace(-1.6, 2.4, 30))  # +0.4
    tiny_shift = dense_drift(big_ref, big_cur)
    large = dense_drift(big_ref, rng.normal(1.0, 1, 50_000))
    assert small.p_value > 1e-4  # too few rows to be sure: never fires on 30 rows
    assert tiny_shift.p_value < 1e-3 and tiny_shift.effect < 0.1  # real but negligible
    assert large.p_value < 1e-10 and large.effect > 0.8  # 1 / sqrt(1.25): pooled std
    results = {"a": small, "b": tiny_shift, "c": large}
    outcome = quality.drift(results, _ref(), T)
    assert not outcome.passed
    assert "c: W1/std=" in outcome.description and "a:" not in outcome.description
    assert "b:" not in outcome.description
    assert quality.drift({"a": small, "b": tiny_shift}, _ref(), T).passed
    warming = quality.drift(results, _ref(), T, warming_up=True)
    assert warming.passed and "not enforced" in warming.description


def test_sparse_categories_do_not_fire():
    ref = pd.Series(["a"] * 500 + ["b"] * 500)
    cur = pd.Series(["a"] * 3 + ["b"] * 2 + ["rare"])  # a six-row day with a new category
    d = categorical_drift(ref, cur)
    assert d.p_value > T.drift_alpha
    collapse = categorical_drift(ref, pd.Series(["a"] * 1000))
    assert collapse.p_value < 1e-10 and collapse.effect > T.max_feature_js


def test_point_masses_moving_a_little_are_not_drift():
    # The smoothing prior every unseen item gets moves slightly each day: PSI's quantile bins
    # flip the whole mass across an edge; W1 sees the small move it is.
    rng = np.random.default_rng(1)
    ref = np.r_[np.full(6000, 0.0500), rng.beta(2, 30, 4000)]
    cur = np.r_[np.full(6000, 0.0502), rng.beta(2, 30, 4000)]
    frame = feature_drift(
        pd.DataFrame({"x": ref, "c": "a"}), pd.DataFrame({"x": cur, "c": "a"}), ["x"], ["c"]
    )
    assert frame["x"].effect < 0.05


def _status(states: dict[str, str]):
    return lambda d: (states.get(d, "absent"), {"counts": {"impressions": 1}})


def test_reference_is_defined_by_partitions_not_build_order():
    t = Thresholds(reference_days=3, reference_lookback_days=10)
    states = {f"2026-10-{d:02d}": "pass" for d in range(1, 10)}
    states["2026-10-09"] = "fail"
    states["2026-10-07"] = "fail"
    ref = reference("2026-10-10", "2026-10-01", t, _status(states))
    assert ref.days == ("2026-10-05", "2026-10-06", "2026-10-08")
    assert ref.failed == ("2026-10-07", "2026-10-09")
    assert ref.metadata()["reference_days"] == "2026-10-05, 2026-10-06, 2026-10-08"
    # A later day (built or not) never changes it; an undecided earlier day is an error.
    states["2026-10-11"] = "pass"
    assert reference("2026-10-10", "2026-10-01", t, _status(states)) == ref
    states["2026-10-08"] = "pending"
    with pytest.raises(MissingPartitionError, match="dt=2026-10-08 has landed but"):
        reference("2026-10-10", "2026-10-01", t, _status(states))


def test_reference_after_a_run_of_failed_days_is_empty_not_missing():
    t = Thresholds(reference_days=7, reference_lookback_days=7)
    states = {f"2026-10-{d:02d}": "fail" for d in range(2, 9)}
    states["2026-10-01"] = "pass"
    ref = reference("2026-10-09", "2026-10-01", t, _status(states))
    assert ref.empty and not ref.first_partition
    assert not quality.volume(100, ref, t, "events").passed
    first = reference("2026-10-01", "2026-10-01", t, _status(states))
    assert first.first_partition


def test_only_a_volume_collapse_blocks_a_swing_is_a_warning():
    t = Thresholds()
    ref = Reference("2026-10-09", days=("2026-10-08",), stats=({"counts": {"impressions": 1000}},))
    spike = quality.volume(4400, ref, t, "events")
    assert not spike.passed and not spike.blocking and "recorded as a warning" in spike.description
    dip = quality.volume(500, ref, t, "events")
    assert dip.passed  # 0.5x: within [1/2, 2]x
    collapse = quality.volume(50, ref, t, "events")
    assert collapse.blocks and "COLLAPSED" in collapse.description
    assert "data_quality.volume_collapse_ratio" in collapse.description
    rows = quality.row_count_change(
        5000, Reference("d", days=("c",), stats=({"rows": 1000},)), t, "s"
    )
    assert not rows.passed and not rows.blocking


def test_drift_informs_and_only_a_collapse_blocks():
    ref = Reference("2026-10-09", days=("2026-10-08",), stats=({},))
    t = Thresholds()
    shifted = quality.drift({"user_ctr": FeatureDrift("dense", 0.7, 1e-30, 80, 80)}, ref, t)
    assert not shifted.passed and not shifted.blocking
    assert shifted.metadata["drifted_features"] == "user_ctr"
    broken = quality.drift(
        {"item_ctr": FeatureDrift("dense", 2.0, 1e-30, 500, 500, collapsed=True)}, ref, t
    )
    assert broken.blocks and "collapsed" in broken.description


def test_drift_p_values_count_units_not_rows():
    """80 users with 50 impressions each: the user feature's test sees 80 values, not 4,000."""

    def day(shift: float, seed: int) -> pd.DataFrame:
        r = np.random.default_rng(seed)
        users = np.repeat([f"u{seed}-{k}" for k in range(80)], 50)
        per_user = np.repeat(r.normal(shift, 1, 80), 50)
        return pd.DataFrame({"user_id": users, "item_id": "i", "user_ctr": per_user})

    ref, cur = day(0.0, 1), day(0.3, 2)
    by_rows = feature_drift(
        ref.drop(columns=["user_id"]), cur.drop(columns=["user_id"]), ["user_ctr"], []
    )
    by_units = feature_drift(ref.assign(_day="d1"), cur, ["user_ctr"], [])
    assert by_units["user_ctr"].n_current == 80 and by_rows["user_ctr"].n_current == 4000
    assert by_units["user_ctr"].p_value > by_rows["user_ctr"].p_value * 1e6
