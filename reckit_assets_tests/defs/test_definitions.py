"""The code location loads, and its graph is what we mean it to be (a snapshot)."""

from __future__ import annotations

import dagster as dg

from reckit_assets.core.io.warehouse import window as warehouse_window
from reckit_assets.definitions import defs

EXPECTED_DEPS = {
    "landing_zone": set(),
    "landed_logs": {"landing_zone"},
    "validated_events": {"landed_logs"},
    "user_profiles": {"landed_logs"},
    "item_catalog": {"landed_logs"},
    "daily_activity": {"validated_events", "item_catalog"},
    "point_in_time_features": {"daily_activity", "item_catalog"},
    "training_samples": {
        "validated_events",
        "user_profiles",
        "item_catalog",
        "point_in_time_features",
    },
    "behaviour_sequences": {"validated_events"},
    "online_features": {"daily_activity", "user_profiles", "item_catalog"},
    **{
        f"{kind}_candidate": {"behaviour_sequences" if kind == "item2vec" else "training_samples"}
        for kind in ("deepfm", "item2vec")
    },
    # the weekly study of the last week that ended before dt
    "xgboost_candidate": {"training_samples", "xgboost_tuning"},
    "xgboost_tuning": {"training_samples"},
    **{
        f"{kind}_evaluation": {
            f"{kind}_candidate",
            "behaviour_sequences" if kind == "item2vec" else "training_samples",
            # a ranker's off-policy CTR comes from the day's served decisions
            *(() if kind == "item2vec" else ("served_decisions",)),
        }
        for kind in ("xgboost", "deepfm", "item2vec")
    },
    **{f"{kind}_registered": {f"{kind}_evaluation"} for kind in ("xgboost", "deepfm", "item2vec")},
    "feedback_landing": set(),
    "online_metrics": {"feedback_landing"},
    "served_decisions": {"feedback_landing"},
    "serving_skew": {"served_decisions", "training_samples"},
    **{
        name: {"online_metrics", *(f"{k}_registered" for k in ("xgboost", "deepfm", "item2vec"))}
        for name in ("canary_release", "production_guard")
    },
    "shadow_evaluation": {
        "served_decisions",
        *(f"{k}_registered" for k in ("xgboost", "deepfm", "item2vec")),
    },
    "daily_summary": set(),
}
EXPECTED_DEPS["canary_release"] = EXPECTED_DEPS["canary_release"] | {"shadow_evaluation"}
EXPECTED_GROUPS = {
    "landing": {"landing_zone"},
    "ingest": {"landed_logs", "validated_events", "user_profiles", "item_catalog"},
    "features": {"daily_activity", "point_in_time_features", "online_features"},
    "samples": {"training_samples", "behaviour_sequences"},
    "models": {f"{k}_candidate" for k in ("xgboost", "deepfm", "item2vec")},
    "evaluation": {f"{k}_evaluation" for k in ("xgboost", "deepfm", "item2vec")},
    "registry": {f"{k}_registered" for k in ("xgboost", "deepfm", "item2vec")},
    "monitoring": {"feedback_landing", "online_metrics", "served_decisions", "serving_skew"},
    "release": {"canary_release", "production_guard", "shadow_evaluation"},
    "summary": {"daily_summary"},
    "tuning": {"xgboost_tuning"},
}
EXPECTED_BLOCKING_CHECKS = {
    "landed_logs": {
        "landing_contract",
        "duplicate_rate",
        "out_of_day_rate",
        "orphan_click_rate",
        "click_rate_bounds",
        "unknown_event_type_rate",
        "volume",
        "null_share",
        "value_range",
        "clicks_stopped",
    },
    "training_samples": {"row_count_change", "feature_drift"},
    **{
        f"{kind}_evaluation": {
            "holdout_usable",
            "distinct_from_production",
            "auc_vs_production",
            "logloss_vs_production",
            "slices_vs_production",
            "auc_vs_trivial_baseline",
            "logloss_vs_trivial_baseline",
            "production_out_of_time",
        }
        for kind in ("xgboost", "deepfm")
    },
    "item2vec_evaluation": {
        "holdout_usable",
        "distinct_from_production",
        "hit_rate_vs_production",
        "recall_vs_production",
        "hit_rate_vs_trivial_baseline",
        "recall_vs_trivial_baseline",
        "production_out_of_time",
    },
    "online_metrics": {"has_traffic", "figures_finite"},
    "serving_skew": {"features_match"},
}


def test_definitions_load_with_every_job_sensor_and_schedule():
    dg.Definitions.validate_loadable(defs)
    assert {j.name for j in defs.jobs} == {
        "daily_pipeline",
        "monitoring_job",
        "retraining_job",
        "tuning_job",
    }
    assert defs.resolve_job_def("daily_pipeline") is not None
    assert {s.name for s in defs.sensors} == {
        "landing_arrival_sensor",
        "retraining_sensor",
        "run_failure_alert",
        "landing_zone_observer",
        "daily_summary_sensor",
    }
    assert {s.name for s in defs.schedules} == {"daily_pipeline_schedule", "tuning_schedule"}
    # both off until switched on: sensors drive the daily runs
    for schedule in defs.schedules:
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert set(defs.resources) == {"storage", "project", "monitoring", "model_processes"}


def test_every_asset_and_group_is_in_the_snapshot():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(EXPECTED_DEPS)
    groups: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, set()).add(key.to_user_string())
    assert groups == EXPECTED_GROUPS


def test_asset_graph_snapshot():
    graph = defs.resolve_asset_graph()
    deps = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert deps == EXPECTED_DEPS
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if key.to_user_string() == "landing_zone":
            # The external head of the graph: observed, never materialized, one asset for all days.
            assert node.is_observable and not node.is_materializable
            assert node.partitions_def is None
            continue
        assert node.code_version, f"{key.to_user_string()} has no code_version"
        assert node.partitions_def is not None


# Informational checks: they warn or fail without stopping the run (a stale production is a
# reason to look, not to stop today's candidate).
# A failed shadow day is an outcome (the shadow is cleared), not a broken run.
NON_BLOCKING = {"production_staleness", "feedback_abuse", "shadow_day"}


def test_data_checks_are_blocking():
    checks: dict[str, set[str]] = {}
    informational: dict[str, set[str]] = {}
    graph = defs.resolve_asset_graph()
    for key in graph.asset_check_keys:
        if key.name in NON_BLOCKING:
            assert not graph.get_check_spec(key).blocking, key
            informational.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
            continue
        assert graph.get_check_spec(key).blocking, key
        checks.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
    assert checks == EXPECTED_BLOCKING_CHECKS
    assert informational == {
        **{
            f"{kind}_candidate": {"production_staleness"}
            for kind in ("xgboost", "deepfm", "item2vec")
        },
        "feedback_landing": {"feedback_abuse"},
        "shadow_evaluation": {"shadow_day"},
    }


def test_window_mapping_reads_the_long_window_before():
    """Features of dt read the 28 days before it (the long-window encodings; the 7-day
    statistics are its last days), never dt itself; days before the first partition do not
    exist and are not asked for."""
    graph = defs.resolve_asset_graph()
    features = dg.AssetKey("point_in_time_features")
    partitions = graph.get(features).partitions_def
    for upstream_key in ("daily_activity", "item_catalog"):
        mapping = graph.get_partition_mapping(features, dg.AssetKey(upstream_key))
        upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
            partitions.subset_with_partition_keys(["2026-10-10"]), partitions, partitions
        ).partitions_subset.get_partition_keys()
        first = partitions.get_first_partition_key()
        assert first <= "2026-10-09"
        expected = [d for d in warehouse_window("2026-10-10", 28) if d >= first]
        assert list(upstream) == expected, upstream_key


def test_data_assets_backfill_a_range_in_one_run():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.group_name in ("ingest", "features", "samples"):
            policy = node.backfill_policy
            assert policy is not None and policy.max_partitions_per_run is None, key
