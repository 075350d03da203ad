"""Plain request/response shapes: reckit's endpoints, ranking, similarity, metrics, auth."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reckit_assets.core.features import online
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.release.registry import PRODUCTION
from reckit_assets.core.training.base import load_model
from serving.app import create_app
from serving.features import OnlineFeatures
from serving.tests.support import (
    TOKEN,
    TestClient,
    ready,
    reload,
    wait_until,
    with_config,
)


def _known(registry_dir):
    snap = online.load(LocalStorage(registry_dir))
    return snap, list(snap.users["user_id"][:3]), list(snap.items["item_id"][:100])


def test_health_is_503_until_a_model_is_loaded_then_200(demo, config, tmp_path):
    empty = tmp_path / "empty-registry"
    empty.mkdir()
    with TestClient(create_app(with_config(config, registry_uri=str(empty)))) as client:
        wait_until(lambda: client.get("/health").json()["reloads"] >= 1)
        health = client.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["model_loaded"] is False and body["status"] == "unavailable"
        assert "xgboost/production" in body["failing"]
        assert client.get("/").json()["status"] == "loading"
        assert client.post("/predict", json={"features_list": []}).status_code == 503

        # The pipeline registers a model and publishes features: a reload picks both up.
        shutil.rmtree(empty)
        shutil.copytree(demo.registry_uri, empty)
        assert reload(client).status_code == 200
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["model_version"] == demo.versions["xgboost"][0]
        assert health.json()["status"] == "ok" and health.json()["failing"] == {}


def test_root_names_version_and_feature_count(client, demo):
    body = client.get("/").json()
    assert body["status"] == "ok"
    assert body["model_version"] == demo.versions["xgboost"][0]
    model = client.app.state.service.manager.state.get("xgboost")
    assert body["feature_columns"] == model.model.feature_columns  # feature_meta.json's
    assert body["feature_count"] == len(body["feature_columns"])


def test_predict_takes_reckits_features_list(client, registry, demo):
    version = demo.versions["xgboost"][0]
    columns = client.get("/").json()["feature_columns"]
    rows = [{c: 0.1 * (i + 1) for c in columns} for i in range(5)]
    response = client.post("/predict", json={"features_list": rows})
    assert response.status_code == 200
    assert response.headers["x-model-version"] == version
    scores = response.json()["scores"]
    model = load_model("xgboost", registry.load_files("xgboost", version))
    np.testing.assert_allclose(scores, model.predict(pd.DataFrame(rows)), rtol=0, atol=1e-7)


def test_missing_features_are_filled_with_zero_like_reckit_and_counted(client, registry, demo):
    version = demo.versions["xgboost"][0]
    columns = client.get("/").json()["feature_columns"]
    partial = [{"item_ctr": 0.1}, {"item_ctr": 0.3, "user_age": 30.0}]
    response = client.post("/predict", json={"features_list": partial})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["filled_missing"] == 2 * len(columns) - 3
    full = [{c: row.get(c, 0.0) for c in columns} for row in partial]
    model = load_model("xgboost", registry.load_files("xgboost", version))
    np.testing.assert_allclose(body["scores"], model.predict(pd.DataFrame(full)), atol=1e-7)
    counts = {
        s.labels["column"]: s.value
        for f in text_string_to_metric_families(client.get("/metrics").text)
        if f.name == "reckit_serving_missing_features"
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert "item_ctr" not in counts  # sent in every row: never filled
    assert counts["user_age"] == 1
    assert all(counts[c] == 2 for c in columns if c not in ("item_ctr", "user_age"))


def test_missing_features_are_a_422_under_the_reject_policy(config):
    with TestClient(create_app(with_config(config, missing_features="reject"))) as client:
        wait_until(lambda: ready(client))
        missing = client.post("/predict", json={"features_list": [{"item_ctr": 0.1}]})
        assert missing.status_code == 422
        assert "missing feature column(s)" in missing.json()["detail"][0]
        assert "user_age" in missing.json()["detail"][0]
        assert "RECKIT_MISSING_FEATURES=reject" in missing.json()["detail"][0]


def test_predictions_for_a_ranker_and_for_item2vec(client, demo, registry):
    columns = client.get("/").json()["feature_columns"]
    ranker = client.post("/predictions/xgboost", json={"data": [{c: 0.2 for c in columns}]})
    assert ranker.status_code == 200 and len(ranker.json()["predictions"]) == 1

    version = demo.versions["item2vec"][0]
    model = load_model("item2vec", registry.load_files("item2vec", version))
    known = model.items[:2]
    vectors = client.post("/predictions/item2vec", json={"data": [*known, "no-such-item"]})
    assert vectors.status_code == 200
    body = vectors.json()
    assert body["model_version"] == version
    assert body["predictions"][0] == pytest.approx(model.vector(known[0]).tolist())
    assert body["predictions"][2] is None and body["unknown_item_ids"] == ["no-such-item"]

    unknown = client.post("/predictions/lightgbm", json={"data": []})
    assert unknown.status_code == 404 and "not served" in unknown.json()["detail"]


def test_rank_scores_with_server_side_features_and_no_skew(client, registry_dir, registry, demo):
    snap, users, items = _known(registry_dir)
    body = {"user_id": users[0], "item_ids": items, "context": {"device": "android"}}
    response = client.post("/v1/rank", json={**body, "request_id": "req-1"})
    assert response.status_code == 200
    out = response.json()
    version = demo.versions["xgboost"][0]
    assert out["client_request_id"] == "req-1" and out["model_version"] == version
    assert out["request_id"] != "req-1"  # the server's own id: a client's is no credential
    assert out["alias"] == PRODUCTION and response.headers["x-model-version"] == version
    assert len(out["scores"]) == len(items)
    ranked = [items[i] for i in np.argsort(-np.asarray(out["scores"]), kind="stable")]
    assert out["ranked_item_ids"] == ranked
    # The same scores as the pipeline's own feature code and the model's own predict.
    model = load_model("xgboost", registry.load_files("xgboost", version))
    frame = OnlineFeatures(snap).reference(users[0], items, "android")
    np.testing.assert_array_equal(out["scores"], model.predict(frame))
    assert out["features"]["dt"] == snap.dt and out["features"]["new_user"] is False


def test_rank_unknown_user_and_items_get_the_documented_fallback(client, registry_dir):
    _, _, items = _known(registry_dir)
    response = client.post(
        "/v1/rank", json={"user_id": "brand-new-user", "item_ids": ["new-a", items[0], "new-b"]}
    )
    assert response.status_code == 200
    out = response.json()
    assert out["features"]["new_user"] is True and out["features"]["new_items"] == 2
    assert out["request_id"]  # generated when the client sends none
    scores = out["scores"]
    assert scores[0] == scores[2]  # two unknown items: identical fallback features


def test_similar_items_from_item2vec(client, demo, registry):
    model = load_model("item2vec", registry.load_files("item2vec", demo.versions["item2vec"][0]))
    anchor = model.items[0]
    response = client.get(f"/v1/similar/{anchor}", params={"k": 5})
    assert response.status_code == 200
    out = response.json()
    assert [n["item_id"] for n in out["similar"]] == [i for i, _ in model.similar(anchor, 5)]
    assert anchor not in [n["item_id"] for n in out["similar"]]
    missing = client.get("/v1/similar/no-such-item")
    assert missing.status_code == 404
    assert "item_id is not in item2vec" in missing.json()["detail"]  # the id is not echoed


def test_metrics_parse_and_cover_requests_versions_and_scores(client, registry_dir, demo):
    _, users, items = _known(registry_dir)
    client.post("/v1/rank", json={"user_id": users[0], "item_ids": items[:10]})
    client.post("/v1/rank", json={"user_id": users[0], "item_ids": []})  # a 422
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    version = demo.versions["xgboost"][0]

    def samples(name):
        return [s for s in families[name].samples]

    ok = [
        s
        for s in samples("reckit_serving_requests")
        if s.labels["endpoint"] == "/v1/rank" and s.labels["status"] == "200"
    ]
    assert ok and ok[0].labels["model_version"] == version and ok[0].value == 1
    errors = [s for s in samples("reckit_serving_errors") if s.labels["endpoint"] == "/v1/rank"]
    assert errors and errors[0].labels["kind"] == "client" and errors[0].labels["status"] == "422"
    latency = [
        s
        for s in samples("reckit_serving_request_latency_seconds")
        if s.name.endswith("_count") and s.labels["endpoint"] == "/v1/rank"
    ]
    assert latency
    scores = [s for s in samples("reckit_serving_score") if s.name == "reckit_serving_score_count"]
    assert scores[0].labels == {"model_version": version} and scores[0].value == 10
    loaded = {
        (s.labels["model"], s.labels["alias"]): s.labels["version"]
        for s in samples("reckit_serving_model_loaded_info")
    }
    assert loaded[("xgboost", PRODUCTION)] == version
    assert loaded[("item2vec", PRODUCTION)] == demo.versions["item2vec"][0]
    assert samples("reckit_serving_online_features_fast_path")[0].value == 1
    reloads = {
        (s.labels["model"], s.labels["result"]): s.value for s in samples("reckit_serving_reloads")
    }
    assert reloads[("xgboost", "success")] == 1


def test_reload_needs_the_admin_token(config):
    with TestClient(create_app(config)) as client:
        wait_until(lambda: ready(client))
        assert client.post("/reload").status_code == 401
        wrong = client.post("/reload", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert client.post("/reload", headers={"X-Admin-Token": TOKEN}).status_code == 200
        response = reload(client)
        assert response.status_code == 200 and response.json()["status"] == "unchanged"
    with TestClient(create_app(with_config(config, admin_token=None))) as client:
        disabled = client.post("/reload", headers={"Authorization": "Bearer anything"})
        assert disabled.status_code == 403 and "RECKIT_ADMIN_TOKEN" in disabled.json()["detail"]


def test_a_deepfm_ranker_reads_ids_and_dense_features(config, registry_dir):
    _, users, items = _known(registry_dir)
    cfg = with_config(config, models=("deepfm",))
    with TestClient(create_app(cfg)) as client:
        wait_until(lambda: ready(client))
        ranked = client.post("/v1/rank", json={"user_id": users[0], "item_ids": items[:20]})
        assert ranked.status_code == 200 and ranked.json()["model"] == "deepfm"
        columns = client.get("/").json()["feature_columns"]
        row = {c: 0.3 for c in columns} | {
            "user_id": users[0],
            "item_id": items[0],
            "device": "ios",
        }
        row |= {"item_category": "books", "user_region": "north"}
        assert client.post("/predict", json={"features_list": [row]}).status_code == 200
        bad = client.post("/predict", json={"features_list": [row | {"user_id": 7}]})
        assert bad.status_code == 422 and "user_id must be a string" in bad.json()["detail"][0]


def test_item2vec_passes_the_pipeline_smoke_test(demo):
    from reckit_assets.core.release.smoke import smoke_test

    version = demo.versions["item2vec"][0]
    model = smoke_test("item2vec", demo.registry.load_files("item2vec", version))
    assert model.similar(model.items[0], 3)


def test_serving_does_not_import_dagster():
    code = "import sys, serving.app, serving.cli; sys.exit(1 if 'dagster' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
