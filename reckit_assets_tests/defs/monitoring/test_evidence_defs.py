"""Live-traffic evidence in Dagster: real materializations of ``served_decisions``,
``serving_skew`` and ``shadow_evaluation`` -> ``canary_release`` over a decision log written by
the service's own writer (serving.decisions.DecisionLog) and landed events."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pandas as pd

from reckit_assets.config import ReckitConfig
from reckit_assets.core.ingest.landing import write_partition
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.release.registry import CANARY, PRODUCTION, SHADOW, Registry
from reckit_assets.defs.monitoring import assets as monitoring_assets
from reckit_assets.defs.monitoring import evidence
from reckit_assets.defs.partitions import structure_for
from reckit_assets_tests.defs.monitoring.test_monitoring_defs import resources
from serving.decisions import Decision, DecisionLog

DT = "2026-10-05"
S = structure_for(ReckitConfig())
ASSETS = {a.key.to_user_string(): a for a in [*evidence.build(S), *monitoring_assets.build(S)]}
FEATURES = ("user_ctr", "item_ctr", "position")
PROD, SHADOWED = "xgboost-2026-10-01-aaaa", "xgboost-2026-10-04-cccc"


def _world(root, rankings: int = 300, items: int = 8, skew: float = 1.0, shadow_fails=False):
    """A served day: the decision log (features for every ranking, the shadow's scores), the
    day's landed traffic, and the same rows' training samples."""
    rng = np.random.default_rng(3)
    log = DecisionLog(LocalStorage(root / "feedback"), flush_rows=10**9)
    events, samples = [], []
    for k in range(rankings):
        request, user = f"req{k:04d}", f"u{k % 50}"
        shown = [f"i{(k + j) % 40}" for j in range(items)]
        values = rng.random((items, len(FEATURES)))
        scores = rng.random(items)
        policy = np.argsort(np.argsort(-scores))
        log.append(
            Decision(
                request_id=request, served_at=1.79e9, user_id=user, device="ios",
                model="xgboost", model_version=PROD, alias=PRODUCTION, item_ids=shown,
                policy_positions=policy, scores=scores, exploration_share=0.1, explored=False,
                features_dt="2026-10-04", features_version="fv",
                feature_columns=FEATURES, features=values * [skew, 1.0, 1.0],
                shadow_version=SHADOWED,
                shadow_scores=np.full(items, np.nan) if shadow_fails else rng.random(items),
                shadow_latency_ms=1.5, day=DT,
            )
        )  # fmt: skip
        ts = pd.Timestamp(DT, tz="UTC") + pd.Timedelta(seconds=k)
        for pos, item in enumerate(shown):
            events.append(
                {"event_id": f"e{k}-{pos}", "ts": ts, "user_id": user, "item_id": item,
                 "event_type": "impression", "request_id": request, "position": pos,
                 "device": "ios", "model_version": PROD}
            )  # fmt: skip
            samples.append({"request_id": request, "item_id": item, "user_id": user,
                            **dict(zip(FEATURES, values[pos], strict=True))})  # fmt: skip
        events.append({**events[-1], "event_id": f"c{k}", "event_type": "click"})
    log.flush()
    landing = LocalStorage(root / "landing")
    write_partition(landing, "events", DT, pd.DataFrame(events))
    write_partition(landing, "users", DT, pd.DataFrame({"user_id": ["u0"]}))
    write_partition(landing, "items", DT, pd.DataFrame({"item_id": ["i0"]}))
    store = LocalStorage(root / "warehouse")
    warehouse.publish(
        store, "training_samples", DT, warehouse.Artifact(frames={"data": pd.DataFrame(samples)})
    )
    registry = Registry(LocalStorage(root / "registry"))
    for v in (PROD, SHADOWED):
        registry.register("xgboost", v, {"x.bin": v.encode()}, {"kind": "xgboost"})
    registry.set_alias("xgboost", PRODUCTION, PROD, "test", "first")
    registry.set_alias("xgboost", SHADOW, SHADOWED, "test", "registered from dt=2026-10-04")
    return store, registry


def _materialize(root, *names):
    return dg.materialize(
        [ASSETS[n] for n in names],
        partition_key=DT,
        resources=resources(root),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_a_clean_day_passes_and_a_mis_scaled_feature_blocks_by_name(tmp_path):
    clean, skewed = tmp_path / "clean", tmp_path / "skewed"
    store, _ = _world(clean)
    result = _materialize(clean, "served_decisions", "serving_skew")
    assert result.success
    counts = warehouse.manifest(store, "served_decisions", DT)["info"]
    assert counts["rankings"] == 300 and counts["clicks"] == 300
    [check] = result.get_asset_check_evaluations()
    assert check.passed and "match on 2400 rows" in check.description

    _world(skewed, skew=100.0)
    result = _materialize(skewed, "served_decisions", "serving_skew")
    assert not result.success  # a blocking check: the run is red (something is broken)
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.description.startswith("user_ctr: 2400 of 2400 rows")
    assert "skew.max_mismatch_share" in check.description


def test_a_shadow_day_that_passes_moves_the_shadow_to_canary(tmp_path):
    store, registry = _world(tmp_path)
    result = _materialize(tmp_path, "served_decisions", "shadow_evaluation", "canary_release")
    assert result.success
    judged = json.loads(warehouse.read_file(store, "shadow_evaluation", DT, "shadow.json"))
    assert judged["xgboost"]["verdict"] == "passed" and judged["xgboost"]["rankings"] == 300
    assert registry.aliases("xgboost") == {PRODUCTION: PROD, CANARY: SHADOWED}
    move = registry.history("xgboost", CANARY)[-1]
    assert move.by.startswith("shadow judge") and move.reason.startswith("shadow day passed")


def test_a_failing_shadow_is_cleared_with_a_warning_and_the_run_stays_green(tmp_path):
    _, registry = _world(tmp_path, shadow_fails=True)
    result = _materialize(tmp_path, "served_decisions", "shadow_evaluation", "canary_release")
    assert result.success  # an outcome, not a broken run
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "errors on 100.00% of rankings" in check.description
    assert registry.aliases("xgboost") == {PRODUCTION: PROD}
    assert registry.history("xgboost", SHADOW)[-1].reason.startswith("shadow day failed")
