"""Hot reload: new versions swap in atomically, bad ones are refused, requests never fail."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families

from reckit_assets.core.features import online
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.release.registry import CANARY, PRODUCTION
from serving.app import create_app
from serving.tests.support import LiveServer, TestClient, ready, reload, wait_until, with_config


def _items(registry_dir, n: int = 50) -> list[str]:
    return list(online.load(LocalStorage(registry_dir)).items["item_id"][:n])


def _rank_version(client, items, user: str = "some-user") -> str:
    response = client.post("/v1/rank", json={"user_id": user, "item_ids": items})
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def _metric(client, family: str, **labels: str) -> float:
    for fam in text_string_to_metric_families(client.get("/metrics").text):
        if fam.name == family:
            return sum(
                s.value for s in fam.samples if all(s.labels.get(k) == v for k, v in labels.items())
            )
    return 0.0


def test_reloads_under_load_on_a_real_server_fail_no_request(config, registry, registry_dir, demo):
    v1, v2 = demo.versions["xgboost"]
    items = _items(registry_dir)
    stop = threading.Event()
    seen: list[list[str]] = [[], []]
    failures: list[str] = []

    def keep_ranking(k: int, url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as c:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    r = c.post("/v1/rank", json={"user_id": f"u{k}-{n}", "item_ids": items})
                except httpx.HTTPError as exc:
                    failures.append(f"client {k}: {exc!r}")
                    continue
                if r.status_code != 200:
                    failures.append(f"client {k}: {r.status_code} {r.text[:200]}")
                else:
                    seen[k].append(r.json()["model_version"])

    with LiveServer(create_app(config)) as server, httpx.Client(base_url=server.url) as admin:
        wait_until(lambda: ready(admin))
        clients = [threading.Thread(target=keep_ranking, args=(k, server.url)) for k in (0, 1)]
        for t in clients:
            t.start()
        try:
            for flip in range(10):
                target = v2 if flip % 2 == 0 else v1
                registry.set_alias("xgboost", PRODUCTION, target, "test", f"flip {flip}")
                response = reload(admin)
                assert response.status_code == 200, response.text
                assert response.json()["models"]["xgboost"][PRODUCTION] == target
                assert _rank_version(admin, items) == target  # the next request sees it
                time.sleep(0.05)
        finally:
            stop.set()
            for t in clients:
                t.join(timeout=30)
        reloads = _metric(admin, "reckit_serving_reloads", model="xgboost", result="success")

    assert failures == []
    served = Counter(seen[0] + seen[1])
    assert set(served) == {v1, v2} and sum(served.values()) >= 50, served
    assert reloads == 11  # the first load, then every flip


def _break(registry_dir, version: str, how: str) -> None:
    files = registry_dir / "xgboost" / "versions" / version / "files"
    if how == "corrupt":
        path = files / "xgb_model.json"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01  # one bit
        path.write_bytes(bytes(data))
    else:
        (files / "feature_meta.json").unlink()  # manifest present, a file gone


def test_a_corrupt_or_incomplete_version_is_refused_and_the_old_one_keeps_serving(
    client, registry, registry_dir, demo
):
    v1, v2 = demo.versions["xgboost"]
    items = _items(registry_dir)
    for how, says in (
        ("corrupt", "xgb_model.json sha256 mismatch"),
        ("incomplete", "feature_meta.json missing"),
    ):
        _break(registry_dir, v2, how)
        registry.set_alias("xgboost", PRODUCTION, v2, "test", f"{how} version")
        response = reload(client)
        assert response.status_code == 409
        body = response.json()
        assert body["status"] == "failed" and body["models"]["xgboost"][PRODUCTION] == v1
        assert says in body["errors"]["xgboost/production"]
        assert f"still serving {v1}" in body["errors"]["xgboost/production"]
        assert _rank_version(client, items) == v1

        health = client.get("/health")
        # Still 200 (the old version serves) but "degraded": what a monitor alerts on.
        assert health.status_code == 200 and health.json()["model_version"] == v1
        assert health.json()["status"] == "degraded"
        assert set(health.json()["refused"]) == {"xgboost/production"}
        assert says in health.json()["refused"]["xgboost/production"]
        assert says in health.json()["last_reload_error"]["error"]
        assert "xgboost/production" in health.json()["failing"]
        assert _metric(client, "reckit_serving_reload_failing", slot="xgboost/production") == 1
        assert _metric(client, "reckit_serving_version_refused", version=v2) == 1
        assert _metric(client, "reckit_serving_health_status", status="degraded") == 1
        assert _metric(client, "reckit_serving_health_status", status="ok") == 0
        assert _metric(client, "reckit_serving_model_loaded_info", model="xgboost", version=v1) == 1

        # Restore the files for the next case (registering again rewrites identical bytes).
        for name, data in demo.registry.load_files("xgboost", v2).items():
            (registry_dir / "xgboost" / "versions" / v2 / "files" / name).write_bytes(data)
        registry.set_alias("xgboost", PRODUCTION, v1, "test", "back")

    assert _metric(client, "reckit_serving_reloads", model="xgboost", result="failure") == 2
    assert reload(client).status_code == 200
    health = client.get("/health").json()
    assert health["failing"] == {} and health["refused"] == {} and health["status"] == "ok"
    assert _metric(client, "reckit_serving_version_refused") == 0


def test_the_poll_skips_a_refused_version_until_forced(client, registry, registry_dir, demo):
    v2 = demo.versions["xgboost"][1]
    _break(registry_dir, v2, "corrupt")
    registry.set_alias("xgboost", PRODUCTION, v2, "test", "corrupt")
    manager = client.app.state.service.manager
    for _ in range(3):
        assert not manager.refresh("poll").ok
    # Refused once; the poll does not re-read a version that cannot change (it is immutable).
    assert _metric(client, "reckit_serving_reloads", model="xgboost", result="failure") == 1
    for name, data in demo.registry.load_files("xgboost", v2).items():
        (registry_dir / "xgboost" / "versions" / v2 / "files" / name).write_bytes(data)
    assert reload(client).status_code == 200  # a forced reload tries again
    assert _rank_version(client, _items(registry_dir)) == v2


def test_the_poll_picks_up_alias_moves_and_new_features_without_a_reload_call(
    config, registry, registry_dir, demo
):
    v1, v2 = demo.versions["xgboost"]
    items = _items(registry_dir)
    storage = LocalStorage(registry_dir)
    with TestClient(create_app(with_config(config, poll_seconds=0.05))) as client:
        wait_until(lambda: ready(client))
        assert _rank_version(client, items) == v1
        registry.set_alias("xgboost", PRODUCTION, v2, "test", "promote")
        wait_until(lambda: _rank_version(client, items) == v2, timeout=10)

        snap = online.load(storage)
        online.publish(
            storage,
            "2026-10-05",
            online.build(snap.features, snap.users, snap.items, ["2026-10-05"]),
        )

        def features_dt() -> str:
            body = client.post("/v1/rank", json={"user_id": "u", "item_ids": items}).json()
            return body["features"]["dt"]

        wait_until(lambda: features_dt() == "2026-10-05", timeout=10)


def test_canary_alias_appears_and_disappears(client, registry, registry_dir, demo):
    v1, v2 = demo.versions["xgboost"]
    registry.set_alias("xgboost", CANARY, v2, "test", "canary")
    assert reload(client).json()["models"]["xgboost"] == {PRODUCTION: v1, CANARY: v2}
    registry.set_alias("xgboost", CANARY, v1, "test", "canary = production: no canary")
    assert reload(client).json()["models"]["xgboost"] == {PRODUCTION: v1}
    registry.set_alias("xgboost", CANARY, v2, "test", "canary again")
    reload(client)
    registry.set_alias("xgboost", CANARY, None, "test", "canary ended")
    assert reload(client).json()["models"]["xgboost"] == {PRODUCTION: v1}
