"""The decision log: every logged ranking with its propensities, scores and (sampled) features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reckit_assets.core.features import online
from reckit_assets.core.io.storage import LocalStorage
from serving.app import create_app
from serving.config import ConfigError, ServingConfig
from serving.decisions import FEATURE_PREFIX
from serving.tests.support import TestClient, ready, wait_until, with_config


def _decisions(root, dt: str | None = None) -> pd.DataFrame:
    """The log as the pipeline reads it: one row per ranked item."""
    from reckit_assets.core.monitoring.decisions import read_decision_log

    days = sorted(p.name.split("=")[1] for p in (root / "decisions").glob("dt=*"))
    assert days, f"no decision log under {root}"
    storage = LocalStorage(root)
    return pd.concat([read_decision_log(storage, d) for d in ([dt] if dt else days)])


def _serve(config: ServingConfig, requests: int = 40) -> tuple[list[dict], list[str]]:
    snap = online.load(LocalStorage(config.registry_uri))
    users = list(snap.users["user_id"][:5])
    items = list(snap.items["item_id"][:20])
    bodies = []
    with TestClient(create_app(config)) as client:
        wait_until(lambda: ready(client))
        for k in range(requests):
            r = client.post(
                "/v1/rank",
                json={"user_id": users[k % 5], "item_ids": items, "context": {"device": "ios"}},
            )
            assert r.status_code == 200, r.text
            bodies.append(r.json())
    return bodies, items  # leaving the client flushed the logs


def test_every_ranking_is_logged_with_exact_propensities_and_the_scored_features(config, tmp_path):
    cfg = with_config(
        config, exploration_share=0.5, feature_log_share=1.0, decision_log_day="2026-11-02"
    )
    bodies, items = _serve(cfg)
    log = _decisions(tmp_path / "feedback")
    assert sorted(log["request_id"].unique()) == sorted(b["request_id"] for b in bodies)
    assert (tmp_path / "feedback" / "decisions" / "dt=2026-11-02").is_dir()  # the pinned day
    explored = log.groupby("request_id")["explored"].first()
    assert 0 < explored.sum() < len(explored)  # about half of 40, drawn at random
    for body in bodies:
        rows = log[log["request_id"] == body["request_id"]].sort_values("position")
        # what users were shown, in order, is what was logged
        assert rows["item_id"].tolist() == body["ranked_item_ids"]
        # the policy's own order is the scores' order
        by_score = dict(zip(items, body["scores"], strict=True))
        policy = rows.sort_values("policy_position")["item_id"].tolist()
        assert policy == sorted(items, key=lambda i: -by_score[i])
        np.testing.assert_allclose(rows["score"], [by_score[i] for i in rows["item_id"]])
        same = rows["position"].to_numpy() == rows["policy_position"].to_numpy()
        expected = 0.5 * same + 0.5 / len(items)
        np.testing.assert_allclose(rows["propensity"], expected)
        if not rows["explored"].iloc[0]:
            assert same.all()
    # The features logged are the ones scored: the model gives the logged scores from them.
    from serving.models import LoadedModel

    assert log["feature_logged"].all()
    model: LoadedModel = _model(cfg)
    x = log[[FEATURE_PREFIX + c for c in model.input_columns]].to_numpy(np.float32)
    np.testing.assert_allclose(
        model.score(pd.DataFrame(x, columns=model.input_columns)), log["score"], atol=1e-6
    )


def _model(cfg: ServingConfig):
    from serving.state import ModelManager

    manager = ModelManager(cfg, None)
    manager.refresh("test")
    return manager.state.get("xgboost")


def test_without_exploration_the_order_is_the_models_and_features_are_sampled(config, tmp_path):
    cfg = with_config(config, feature_log_share=0.25)
    _serve(cfg, requests=80)
    log = _decisions(tmp_path / "feedback")
    assert not log["explored"].any()
    assert (log["position"] == log["policy_position"]).all()
    assert (log["propensity"] == 1.0).all()
    logged = log.groupby("request_id")["feature_logged"].first()
    assert 5 <= logged.sum() <= 40  # about 20 of 80
    feature_columns = [c for c in log.columns if c.startswith(FEATURE_PREFIX)]
    assert feature_columns and log.loc[~log["feature_logged"], feature_columns].isna().all().all()


def test_no_decision_is_logged_when_the_share_is_zero(config, tmp_path):
    _serve(with_config(config, decision_log_share=0.0), requests=5)
    assert not list((tmp_path / "feedback").rglob("decisions/**/*.parquet"))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RECKIT_EXPLORATION_SHARE", "1.5"),
        ("RECKIT_FEATURE_LOG_SHARE", "-0.1"),
        ("RECKIT_DECISION_LOG_DAY", "yesterday"),
    ],
)
def test_bad_exploration_and_logging_settings_are_refused_by_name(key, value):
    with pytest.raises(ConfigError, match=key):
        ServingConfig.from_env({"RECKIT_REGISTRY_URI": "/tmp/r", key: value})


def test_the_shadow_scores_the_same_items_off_the_path_and_users_never_see_it(
    config, registry, demo, tmp_path
):
    from reckit_assets.core.release.registry import PRODUCTION, SHADOW
    from serving.tests.support import reload

    v1, v2 = demo.versions["xgboost"]
    registry.set_alias("xgboost", SHADOW, v2, "test", "shadow")
    snap = online.load(LocalStorage(config.registry_uri))
    items = list(snap.items["item_id"][:20])
    with TestClient(create_app(config)) as client:
        wait_until(lambda: ready(client))
        assert reload(client).json()["models"]["xgboost"] == {PRODUCTION: v1, SHADOW: v2}
        assert client.get("/health").json()["status"] == "ok"
        bodies = [
            client.post("/v1/rank", json={"user_id": u, "item_ids": items}).json()
            for u in list(snap.users["user_id"][:10])
        ]
        shadow = client.app.state.service.manager.state.get("xgboost", SHADOW)
        wait_until(lambda: client.app.state.service.shadow.pending == 0)  # scored off the path
        metrics = client.get("/metrics").text
    assert {b["model_version"] for b in bodies} == {v1}  # users are served production only
    log = _decisions(tmp_path / "feedback")
    assert set(log["shadow_version"]) == {v2} and log["shadow_latency_ms"].gt(0).all()
    for body in bodies:
        rows = log[log["request_id"] == body["request_id"]]
        assert rows["item_id"].tolist() == body["ranked_item_ids"]
        user, shown = rows["user_id"].iloc[0], rows["item_id"].tolist()
        expected = shadow.score_request(_features(config), user, shown, None)
        np.testing.assert_allclose(rows["shadow_score"], expected, atol=1e-9)
    assert 'reckit_serving_shadow_seconds_count{model_version="' + v2 + '"} 10.0' in metrics


def _features(config: ServingConfig):
    from serving.features import OnlineFeatures

    return OnlineFeatures(online.load(LocalStorage(config.registry_uri)))


def test_a_failing_shadow_is_counted_and_logged_as_nan_while_users_are_served(
    config, registry, demo, tmp_path
):
    from reckit_assets.core.release.registry import SHADOW
    from serving.tests.support import reload

    _, v2 = demo.versions["xgboost"]
    registry.set_alias("xgboost", SHADOW, v2, "test", "shadow")
    snap = online.load(LocalStorage(config.registry_uri))
    items = list(snap.items["item_id"][:20])
    with TestClient(create_app(config)) as client:
        wait_until(lambda: ready(client))
        reload(client)
        shadow = client.app.state.service.manager.state.get("xgboost", SHADOW)

        def broken(*_args, **_kwargs):  # a fault injected into the loaded shadow
            raise RuntimeError("the shadow's booster is corrupt")

        for method in ("score_request", "score_matrix"):  # LoadedModel is frozen
            object.__setattr__(shadow, method, broken)
        for u in list(snap.users["user_id"][:5]):
            assert (
                client.post("/v1/rank", json={"user_id": u, "item_ids": items}).status_code == 200
            )
        wait_until(lambda: client.app.state.service.shadow.pending == 0)  # scored off the path
        metrics = client.get("/metrics").text
    log = _decisions(tmp_path / "feedback")
    assert log["shadow_score"].isna().all() and set(log["shadow_version"]) == {v2}
    assert 'reckit_serving_shadow_errors_total{model_version="' + v2 + '"} 5.0' in metrics
