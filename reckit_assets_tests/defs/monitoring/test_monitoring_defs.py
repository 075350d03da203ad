"""The monitoring/release layer in Dagster: the retraining sensor (requests, run keys, cooldown)
through build_sensor_context, and the canary judge applied through the registry by a real
materialization of ``canary_release`` over published online metrics."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import numpy as np
import pandas as pd

from reckit_assets.config import ReckitConfig
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.monitoring.rollout import Rollout, read_rollout, write_rollout
from reckit_assets.core.monitoring.salting import in_canary
from reckit_assets.core.release.registry import CANARY, PRODUCTION, Registry
from reckit_assets.definitions import defs
from reckit_assets.defs.config import ProjectConfig
from reckit_assets.defs.monitoring import assets as monitoring_assets
from reckit_assets.defs.monitoring.sensors import REASON_TAG
from reckit_assets.defs.partitions import structure_for
from reckit_assets.defs.resources import Monitoring, ReckitStorage

_BY_NAME = {
    a.key.to_user_string(): a for a in monitoring_assets.build(structure_for(ReckitConfig()))
}
feedback_landing = _BY_NAME["feedback_landing"]
online_metrics = _BY_NAME["online_metrics"]
canary_release = _BY_NAME["canary_release"]
production_guard = _BY_NAME["production_guard"]


def resources(root):
    return {
        "storage": ReckitStorage(
            landing_uri=str(root / "landing"),
            warehouse_uri=str(root / "warehouse"),
            registry_uri=str(root / "registry"),
        ),
        "monitoring": Monitoring(feedback_uri=str(root / "feedback")),
        "project": ProjectConfig(),
    }


def test_release_and_monitoring_groups_follow_the_registry():
    graph = defs.resolve_asset_graph()
    for name, group in (
        ("online_metrics", "monitoring"),
        ("canary_release", "release"),
        ("production_guard", "release"),
    ):
        assert graph.get(dg.AssetKey(name)).group_name == group
    parents = graph.get(dg.AssetKey("canary_release")).parent_keys
    assert dg.AssetKey("xgboost_registered") in parents
    assert dg.AssetKey("online_metrics") in parents
    assert defs.get_sensor_def("retraining_sensor") and defs.get_sensor_def("run_failure_alert")


def _guard(store, dt, retrain, reason="CTR down 12.0% vs trailing baseline"):
    record = {"xgboost": {"retrain": retrain, "reasons": [reason] if retrain else ["ok"]}}
    warehouse.publish(
        store,
        "production_guard",
        dt,
        warehouse.Artifact(blobs={"guard.json": json.dumps(record).encode()}),
    )


def _tick(root, instance, cursor):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=resources(root), definitions=defs
    )
    result = defs.get_sensor_def("retraining_sensor")(context)
    return list(result.run_requests or []), result.cursor


def test_retraining_sensor_requests_with_reason_and_respects_cooldown(tmp_path):
    store = LocalStorage(tmp_path / "warehouse")
    instance = dg.DagsterInstance.ephemeral()
    flags = {"2026-10-01": False, "2026-10-02": True, "2026-10-03": True, "2026-10-04": True}
    for dt, retrain in flags.items():
        _guard(store, dt, retrain)
    requests, cursor = _tick(tmp_path, instance, None)
    # Day 2 asks; days 3 and 4 ask too but are inside the 3-day cooldown.
    assert [r.partition_key for r in requests] == ["2026-10-02"]
    assert "CTR down 12.0%" in requests[0].tags[REASON_TAG]
    assert requests[0].tags["reckit/trigger"] == "monitoring"
    assert json.loads(cursor) == {"last_request": "2026-10-02", "last_seen": "2026-10-04"}
    # Nothing new: nothing requested, cursor unchanged.
    again, cursor2 = _tick(tmp_path, instance, cursor)
    assert again == [] and json.loads(cursor2) == json.loads(cursor)
    # After the cooldown, a new signal asks again, with its own run key.
    _guard(store, "2026-10-05", True, "score drift PSI 0.400 > max_score_psi")
    requests, cursor = _tick(tmp_path, instance, cursor)
    assert [r.partition_key for r in requests] == ["2026-10-05"]
    assert "score drift" in requests[0].tags[REASON_TAG]
    assert requests[0].run_key.startswith("retrain:2026-10-05:")
    # A later day inside the new cooldown is read but does not ask again.
    _guard(store, "2026-10-07", True)
    requests, cursor = _tick(tmp_path, instance, cursor)
    assert requests == [] and json.loads(cursor)["last_seen"] == "2026-10-07"


def test_retraining_cooldown_comes_from_the_project_config(tmp_path):
    from reckit_assets.core.monitoring.rollout import GuardConfig
    from reckit_assets.definitions import build_defs
    from reckit_assets.settings import load_settings

    store = LocalStorage(tmp_path / "warehouse")
    for dt in ("2026-10-02", "2026-10-03", "2026-10-04"):
        _guard(store, dt, True)
    config = ReckitConfig(guard=GuardConfig(cooldown_days=0))
    no_cooldown = build_defs(load_settings({"RECKIT_DATA_DIR": str(tmp_path)}), config)
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources(tmp_path),
        definitions=no_cooldown,
    )
    result = no_cooldown.get_sensor_def("retraining_sensor")(context)
    assert [r.partition_key for r in result.run_requests] == [
        "2026-10-02",
        "2026-10-03",
        "2026-10-04",
    ]


def test_retraining_sensor_starts_at_the_first_monitored_day(tmp_path):
    # Days before monitoring began (bootstrap) have no record: they are not waited for.
    store = LocalStorage(tmp_path / "warehouse")
    _guard(store, "2026-10-06", True)
    requests, cursor = _tick(tmp_path, dg.DagsterInstance.ephemeral(), None)
    assert [r.partition_key for r in requests] == ["2026-10-06"]
    assert json.loads(cursor) == {"last_request": "2026-10-06", "last_seen": "2026-10-06"}


def _registry(root):
    registry = Registry(LocalStorage(root / "registry"))
    for v in ("xgboost-2026-10-01-aaaa", "xgboost-2026-10-02-bbbb"):
        registry.register(
            "xgboost", v, {"x.bin": v.encode()}, {"kind": "xgboost", "partition": v[8:18]}
        )
    registry.set_alias("xgboost", PRODUCTION, "xgboost-2026-10-01-aaaa", "test", "first")
    registry.set_alias("xgboost", CANARY, "xgboost-2026-10-02-bbbb", "test", "registered")
    return registry


def _publish_day(store, dt, prod, canary, share, canary_ctr, seed):
    """Online metrics of a day as online_metrics publishes them (per-user rows + service)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(3000):
        user = f"u{u:05d}"
        arm = in_canary(user, "xgboost", canary, share)
        imps = int(rng.poisson(12))
        if imps == 0:
            continue
        ctr = canary_ctr if arm else 0.05
        rows.append(
            {
                "model_version": canary if arm else prod,
                "alias": CANARY if arm else PRODUCTION,
                "user_id": user,
                "impressions": imps,
                "clicks": int(rng.binomial(imps, ctr)),
                "conversions": 0,
            }
        )
    users = pd.DataFrame(rows)
    service = {
        v: {
            "requests": 5000,
            "errors": 2,
            "latency_p99_ms": 9.0,
            "score_bounds": [0.5, float("inf")],
            "score_counts": [10, 10],
        }
        for v in (prod, canary)
    }
    warehouse.publish(
        store,
        "online_metrics",
        dt,
        warehouse.Artifact(
            frames={"summary": users.head(0), "users": users},
            info={"service": service, "score_psi": {prod: 0.01, canary: 0.02}},
        ),
    )


def test_bad_canary_is_rolled_back_by_the_judge_and_audited(tmp_path):
    registry = _registry(tmp_path)
    store = LocalStorage(tmp_path / "warehouse")
    prod, canary = registry.alias("xgboost", PRODUCTION), registry.alias("xgboost", CANARY)
    write_rollout(
        registry.storage, "xgboost", Rollout("xgboost", canary, "2026-10-03", 0.10, "2026-10-03")
    )
    _publish_day(store, "2026-10-03", prod, canary, 0.10, canary_ctr=0.025, seed=1)
    result = dg.materialize(
        [canary_release],
        partition_key="2026-10-03",
        resources=resources(tmp_path),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert registry.alias("xgboost", CANARY) is None
    assert registry.alias("xgboost", PRODUCTION) == prod  # never moved to the bad canary
    move = registry.history("xgboost", CANARY)[-1]
    assert move.by.startswith("canary judge (run ") and move.from_version == canary
    reason = json.loads(move.reason.removeprefix("rollback: "))
    assert reason["verdict"] == "rollback" and reason["figures"]["ctr_canary"] < 0.03
    assert read_rollout(registry.storage, "xgboost") is None
    decisions = json.loads(
        warehouse.read_file(store, "canary_release", "2026-10-03", "decisions.json")
    )
    assert decisions["xgboost"]["action"] == "rollback"


def test_equal_canary_steps_up_then_is_promoted(tmp_path):
    registry = _registry(tmp_path)
    store = LocalStorage(tmp_path / "warehouse")
    prod, canary = registry.alias("xgboost", PRODUCTION), registry.alias("xgboost", CANARY)
    write_rollout(
        registry.storage, "xgboost", Rollout("xgboost", canary, "2026-10-03", 0.25, "2026-10-03")
    )
    _publish_day(store, "2026-10-03", prod, canary, 0.25, canary_ctr=0.05, seed=2)
    run = dict(resources=resources(tmp_path), instance=dg.DagsterInstance.ephemeral())
    assert dg.materialize([canary_release], partition_key="2026-10-03", **run).success
    stepped = read_rollout(registry.storage, "xgboost")
    assert stepped.share == 0.5 and stepped.share_since == "2026-10-04"
    assert registry.alias("xgboost", CANARY) == canary
    for k, dt in enumerate(("2026-10-04", "2026-10-05", "2026-10-06", "2026-10-07")):
        _publish_day(store, dt, prod, canary, 0.5, canary_ctr=0.05, seed=10 + k)
        assert dg.materialize([canary_release], partition_key=dt, **run).success
        if registry.alias("xgboost", PRODUCTION) == canary:
            break
    assert registry.alias("xgboost", PRODUCTION) == canary
    assert registry.alias("xgboost", CANARY) is None
    promote = registry.history("xgboost", PRODUCTION)[-1]
    assert promote.by.startswith("canary judge") and promote.reason.startswith("promote: ")


def _serve_a_day(root, registry, dt="2026-10-03"):
    """A simulated day's traffic written as the service's feedback log, with the registry's
    production version on every request (users and items landed by the world's export)."""
    from reckit_assets.core.ingest.landing import write_partition
    from reckit_assets.core.io.frames import frame_to_parquet_bytes
    from reckit_assets.simulation.simulate import SimulationConfig, simulate_day

    sim = SimulationConfig(
        start="2026-10-01", days=3, n_users=400, n_items=120, impressions_per_day=4000, seed=3
    )
    day = simulate_day(sim, 2)
    events = day.events.copy()
    prod = registry.alias("xgboost", PRODUCTION)
    events["model_version"] = events["model_version"].where(events["model_version"].isna(), prod)
    feedback = LocalStorage(root / "feedback")
    feedback.write_bytes(
        f"events/dt={dt}/serving-h-1-0-000001.parquet", frame_to_parquet_bytes(events)
    )
    landing = LocalStorage(root / "landing")
    write_partition(landing, "users", dt, day.users)
    write_partition(landing, "items", dt, day.items)
    return events


def test_online_metrics_from_landed_feedback_with_blocking_checks(tmp_path):

    registry = _registry(tmp_path)
    events = _serve_a_day(tmp_path, registry)
    result = dg.materialize(
        [feedback_landing, online_metrics],
        partition_key="2026-10-03",
        resources=resources(tmp_path),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"has_traffic": True, "figures_finite": True, "feedback_abuse": True}
    store = LocalStorage(tmp_path / "warehouse")
    summary = warehouse.read(store, "online_metrics", "2026-10-03", "summary")
    prod = summary[summary["alias"] == PRODUCTION].iloc[0]
    in_day = events[
        (events["ts"] >= "2026-10-03")
        & (events["ts"] < "2026-10-04")
        & events["model_version"].notna()
    ].drop_duplicates("event_id")
    # Attributable impressions only; orphan clicks and unattributed requests are kept apart.
    assert prod["impressions"] == (in_day["event_type"] == "impression").sum()
    assert prod["clicks"] < (in_day["event_type"] == "click").sum()
    assert prod["ctr_se_user"] > prod["ctr_se_binomial"]
    assert LocalStorage(tmp_path / "warehouse").exists(
        "unattributed/dt=2026-10-03/part-00000.parquet"
    )


def test_no_production_traffic_blocks_the_release_step(tmp_path):

    registry = _registry(tmp_path)
    _serve_a_day(tmp_path, registry)
    registry.set_alias("xgboost", PRODUCTION, None, "test", "no production")
    result = dg.materialize(
        [feedback_landing, online_metrics, canary_release],
        partition_key="2026-10-03",
        resources=resources(tmp_path),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["has_traffic"] is False
    assert not result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey("online_metrics") in materialized
    assert dg.AssetKey("canary_release") not in materialized


def _publish_production(store, dt, version, ctr, seed):
    rng = np.random.default_rng(seed)
    imps = rng.poisson(12, 3000) + 1
    users = pd.DataFrame(
        {
            "model_version": version,
            "alias": PRODUCTION,
            "user_id": [f"u{u}" for u in range(3000)],
            "impressions": imps,
            "clicks": rng.binomial(imps, ctr),
            "conversions": 0,
        }
    )
    service = {
        version: {
            "requests": 5000,
            "errors": 2,
            "latency_p99_ms": 9.0,
            "score_bounds": [0.5, float("inf")],
            "score_counts": [10, 10],
        }
    }
    warehouse.publish(
        store,
        "online_metrics",
        dt,
        warehouse.Artifact(
            frames={"users": users}, info={"service": service, "score_psi": {version: 0.01}}
        ),
    )


def _guarded_registry(tmp_path):
    from reckit_assets_tests.support.registries import build_demo_registry

    demo = build_demo_registry(tmp_path / "demo", item2vec=False)
    old, new = demo.versions["xgboost"]
    registry = Registry(LocalStorage(tmp_path / "registry"))
    shutil.copytree(demo.registry_uri, tmp_path / "registry", dirs_exist_ok=True)
    registry.set_alias("xgboost", PRODUCTION, new, "test", "promoted")
    return registry, old, new


def test_production_regression_rolls_back_after_verifying_the_target(tmp_path):

    registry, old, new = _guarded_registry(tmp_path)
    store = LocalStorage(tmp_path / "warehouse")
    for k, dt in enumerate(("2026-10-04", "2026-10-05", "2026-10-06")):
        _publish_production(store, dt, new, 0.05, k)
    run = dict(resources=resources(tmp_path), instance=dg.DagsterInstance.ephemeral())
    assert dg.materialize([production_guard], partition_key="2026-10-06", **run).success
    assert registry.alias("xgboost", PRODUCTION) == new  # a steady day: nothing moves
    _publish_production(store, "2026-10-07", new, 0.03, 9)
    assert dg.materialize([production_guard], partition_key="2026-10-07", **run).success
    assert registry.alias("xgboost", PRODUCTION) == old
    move = registry.history("xgboost", PRODUCTION)[-1]
    assert move.by.startswith("production guard") and move.reason.startswith("rollback: ")
    guard = json.loads(warehouse.read_file(store, "production_guard", "2026-10-07", "guard.json"))
    assert guard["xgboost"]["retrain"] and guard["xgboost"]["figures"]["relative_drop"] > 0.3


def test_production_rollback_to_a_corrupt_target_is_refused(tmp_path):

    registry, old, new = _guarded_registry(tmp_path)
    store = LocalStorage(tmp_path / "warehouse")
    for k, dt in enumerate(("2026-10-04", "2026-10-05", "2026-10-06")):
        _publish_production(store, dt, new, 0.05, k)
    _publish_production(store, "2026-10-07", new, 0.03, 9)
    target = tmp_path / "registry" / "xgboost" / "versions" / old / "files"
    victim = sorted(p for p in target.iterdir() if p.is_file())[0]
    victim.write_bytes(b"corrupt")
    run = dict(resources=resources(tmp_path), instance=dg.DagsterInstance.ephemeral())
    assert dg.materialize([production_guard], partition_key="2026-10-07", **run).success
    assert registry.alias("xgboost", PRODUCTION) == new
    guard = json.loads(warehouse.read_file(store, "production_guard", "2026-10-07", "guard.json"))
    assert guard["xgboost"]["action"] == "refused" and "corrupt" in guard["xgboost"]["error"]


def test_quarantined_feedback_warns_and_the_rest_of_the_day_lands(tmp_path):
    """Issue 21's first attack through the real asset: 300 fabricated clicks and conversions on
    one item by one user are quarantined; the run stays green, the non-blocking check warns with
    every figure, and the landed day holds the clean day's clicks on that item (difference 0)."""
    from reckit_assets.core.ingest.landing import read_landed
    from reckit_assets.core.io.frames import frame_to_parquet_bytes
    from reckit_assets.core.monitoring.feedback import attribute

    registry = _registry(tmp_path)
    events = _serve_a_day(tmp_path, registry)
    version = registry.alias("xgboost", PRODUCTION)
    target = events.loc[events["event_type"] == "click", "item_id"].value_counts().index[0]
    t0 = pd.Timestamp("2026-10-03T12:00:00Z")
    rows = [
        {"event_id": f"atk-{r}-{kind}", "ts": t0 + pd.Timedelta(seconds=r), "user_id": "attacker",
         "item_id": target, "event_type": kind, "request_id": f"atk-{r}", "position": 0,
         "device": "web", "model_version": version}
        for r in range(300) for kind in ("impression", "click", "conversion")
    ]  # fmt: skip
    LocalStorage(tmp_path / "feedback").write_bytes(
        "events/dt=2026-10-03/serving-h-2-0-000001.parquet",
        frame_to_parquet_bytes(pd.DataFrame(rows)),
    )
    result = dg.materialize(
        [feedback_landing],
        partition_key="2026-10-03",
        resources=resources(tmp_path),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success  # quarantine is a normal outcome, not a red run
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "feedback_abuse" and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["quarantined_events"].value == 900
    assert check.metadata["quarantined_users"].value == 1
    assert "unknown_id" in check.description  # "attacker" is not in the users snapshot
    landed = read_landed(LocalStorage(tmp_path / "landing"), "events", "2026-10-03").frame
    clean = attribute(events, "2026-10-03").landed  # the day without the attack
    assert sorted(landed["event_id"]) == sorted(clean["event_id"])
    clicks = landed["item_id"].eq(target) & landed["event_type"].eq("click")
    assert clicks.sum() == (clean["item_id"].eq(target) & clean["event_type"].eq("click")).sum()
    assert LocalStorage(tmp_path / "warehouse").exists(
        "quarantined_feedback/dt=2026-10-03/part-00000.parquet"
    )
