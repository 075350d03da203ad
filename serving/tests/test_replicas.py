"""Replicas agree, or say why not: a fresh replica and a running one facing a production alias
moved (bypassing the CLI's checks) to a corrupt version, on real uvicorn servers."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from reckit_assets.core.release.registry import PRODUCTION
from serving.app import create_app
from serving.tests.support import AUTH, LiveServer, wait_until


def _corrupt(registry_dir, version: str) -> None:
    path = registry_dir / "xgboost" / "versions" / version / "files" / "xgb_model.json"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _mismatch(client: httpx.Client) -> dict[tuple[str, str], float]:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "reckit_serving_alias_mismatch":
            return {(s.labels["model"], s.labels["alias"]): s.value for s in family.samples}
    return {}


def _rank(client: httpx.Client) -> httpx.Response:
    return client.post("/v1/rank", json={"user_id": "u", "item_ids": ["a", "b"]})


def test_a_fresh_replica_serves_the_last_verified_version_and_says_degraded(
    config, registry, registry_dir, demo
):
    v1, v2 = demo.versions["xgboost"]
    _corrupt(registry_dir, v2)
    registry.set_alias("xgboost", PRODUCTION, v2, "test", "moved past the CLI's check")
    with LiveServer(create_app(config)) as live, httpx.Client(base_url=live.url) as client:
        wait_until(lambda: client.get("/health").status_code == 200)
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["model_version"] == v1
        production = health["aliases"]["xgboost"][PRODUCTION]
        assert production["registry"] == v2 and production["served"] == v1
        assert production["fallback"] is True and production["agree"] is False
        assert "xgb_model.json sha256 mismatch" in production["why"]
        assert f"serving {v1}" in production["why"]
        assert health["aliases"]["item2vec"][PRODUCTION]["agree"] is True
        ranked = _rank(client)
        assert ranked.status_code == 200 and ranked.json()["model_version"] == v1
        assert _mismatch(client)[("xgboost", PRODUCTION)] == 1.0
        assert _mismatch(client)[("item2vec", PRODUCTION)] == 0.0
        # The poll keeps the fallback (the refused version is not retried for its bytes).
        assert client.post("/reload", headers=AUTH).status_code == 409
        assert _rank(client).json()["model_version"] == v1


def test_a_fresh_replica_with_no_verified_version_still_answers_503(
    config, registry, registry_dir, demo
):
    v1, v2 = demo.versions["xgboost"]
    _corrupt(registry_dir, v1)
    _corrupt(registry_dir, v2)
    registry.set_alias("xgboost", PRODUCTION, v2, "test", "both corrupt")
    with LiveServer(create_app(config)) as live, httpx.Client(base_url=live.url) as client:
        wait_until(lambda: client.get("/health").json().get("aliases", {}).get("xgboost"))
        health = client.get("/health")
        assert health.status_code == 503
        production = health.json()["aliases"]["xgboost"][PRODUCTION]
        assert production["served"] is None and "sha256 mismatch" in production["why"]
        assert _rank(client).status_code == 503


def test_a_running_replica_keeps_its_model_and_says_why_until_the_alias_is_fixed(
    config, registry, registry_dir, demo
):
    v1, v2 = demo.versions["xgboost"]
    with LiveServer(create_app(config)) as live, httpx.Client(base_url=live.url) as client:
        wait_until(lambda: client.get("/health").status_code == 200)
        assert _mismatch(client)[("xgboost", PRODUCTION)] == 0.0
        _corrupt(registry_dir, v2)
        registry.set_alias("xgboost", PRODUCTION, v2, "test", "moved past the CLI's check")
        assert client.post("/reload", headers=AUTH).status_code == 409
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["model_version"] == v1
        production = health["aliases"]["xgboost"][PRODUCTION]
        assert (production["registry"], production["served"]) == (v2, v1)
        assert production["fallback"] is False
        assert "sha256 mismatch" in production["why"] and f"still serving {v1}" in production["why"]
        assert _mismatch(client)[("xgboost", PRODUCTION)] == 1.0
        assert _rank(client).json()["model_version"] == v1
        # The alias put back: replicas agree again.
        registry.set_alias("xgboost", PRODUCTION, v1, "test", "back")
        assert client.post("/reload", headers=AUTH).status_code == 200
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["aliases"]["xgboost"][PRODUCTION]["agree"]
        assert _mismatch(client)[("xgboost", PRODUCTION)] == 0.0
