"""The code location loads, and its graph is what we mean it to be (a snapshot)."""

from __future__ import annotations

import dagster as dg

from reckit_assets.definitions import defs

EXPECTED_DEPS = {
    "landed_logs": set(),
    "validated_events": {"landed_logs"},
    "user_profiles": {"landed_logs"},
    "item_catalog": {"landed_logs"},
    "daily_activity": {"validated_events", "item_catalog"},
    "point_in_time_features": {"daily_activity"},
    "training_samples": {
        "validated_events",
        "user_profiles",
        "item_catalog",
        "point_in_time_features",
    },
    "behaviour_sequences": {"validated_events"},
}
EXPECTED_BLOCKING_CHECKS = {
    "landed_logs": {
        "landing_contract",
        "duplicate_rate",
        "out_of_day_rate",
        "orphan_click_rate",
        "click_rate_bounds",
    },
    "training_samples": {"row_count_change", "feature_drift"},
}


def test_definitions_load_with_every_job_sensor_and_schedule():
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("daily_pipeline") is not None
    assert {s.name for s in defs.sensors} == {
        "landing_arrival_sensor",
        "retraining_sensor",
        "run_failure_alert",
    }
    assert {s.name for s in defs.schedules} == {"daily_pipeline_schedule"}


def test_asset_graph_snapshot():
    graph = defs.resolve_asset_graph()
    deps = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    for asset, parents in EXPECTED_DEPS.items():
        assert deps[asset] == parents, asset
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.code_version, f"{key.to_user_string()} has no code_version"
        assert node.partitions_def is not None


def test_data_checks_are_blocking():
    checks: dict[str, set[str]] = {}
    graph = defs.resolve_asset_graph()
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).blocking, key
        checks.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
    for asset, names in EXPECTED_BLOCKING_CHECKS.items():
        assert checks[asset] == names


def test_window_mapping_reads_the_seven_days_before():
    graph = defs.resolve_asset_graph()
    features = dg.AssetKey("point_in_time_features")
    mapping = graph.get_partition_mapping(features, dg.AssetKey("daily_activity"))
    partitions = graph.get(features).partitions_def
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        partitions.subset_with_partition_keys(["2026-10-10"]), partitions, partitions
    ).partitions_subset.get_partition_keys()
    assert list(upstream) == [f"2026-10-0{d}" for d in range(3, 10)]


def test_data_assets_backfill_a_range_in_one_run():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.group_name in ("ingest", "features", "samples"):
            policy = node.backfill_policy
            assert policy is not None and policy.max_partitions_per_run is None, key
