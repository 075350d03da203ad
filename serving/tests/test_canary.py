"""Canary: the service routes the salted canary bucket (per model and release) at the share the
release stage's rollout state asks for, and every response names the version that served it."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from reckit_assets.core.features import online
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.monitoring.rollout import Rollout, write_rollout
from reckit_assets.core.monitoring.salting import canary_bucket, in_canary
from reckit_assets.core.release.registry import CANARY, PRODUCTION
from serving.app import create_app
from serving.schemas import RankRequest
from serving.tests.support import TestClient, ready, reload, wait_until, with_config

USERS = [f"user-{k}" for k in range(5000)]


@pytest.mark.parametrize("share", [0.05, 0.2, 0.5])
def test_buckets_are_uniform_enough(share):
    observed = sum(in_canary(u, "xgboost", "v2", share) for u in USERS) / len(USERS)
    assert abs(observed - share) < 0.03


def test_buckets_are_stable_and_independent_of_the_process():
    # sha256, not Python's salted hash: the value is fixed across processes.
    digest = hashlib.sha256(b"xgboost\x1fv2\x1fuser-1").digest()
    expected = int.from_bytes(digest[:8], "big") / 2.0**64
    assert canary_bucket("user-1", "xgboost", "v2") == pytest.approx(expected, abs=1e-15)
    assert [canary_bucket(u, "m", "r") for u in USERS[:50]] == [
        canary_bucket(u, "m", "r") for u in USERS[:50]
    ]


def test_the_canary_serves_its_share_and_every_response_names_its_version(
    config, registry, registry_dir, demo
):
    v1, v2 = demo.versions["xgboost"]
    registry.set_alias("xgboost", CANARY, v2, "test", "canary")
    items = list(online.load(LocalStorage(registry_dir)).items["item_id"][:20])
    with TestClient(create_app(with_config(config, canary_share=0.2))) as client:
        wait_until(lambda: ready(client))
        assert reload(client).json()["models"]["xgboost"] == {PRODUCTION: v1, CANARY: v2}
        service = client.app.state.service
        state = service.manager.state
        # No rollout state yet: RECKIT_CANARY_SHARE (0.2) of the salted bucket.
        routed = {u: state.route("xgboost", u, 0.2)[0].version for u in USERS}
        share = Counter(routed.values())[v2] / len(USERS)
        assert abs(share - 0.2) < 0.03
        # ...is what the rank function serves (in-process, the function the endpoint calls)...
        for u in USERS[:500]:
            assert (
                service.rank(RankRequest(user_id=u, item_ids=items))["model_version"] == routed[u]
            )
        for user in USERS[:100]:  # ...and over HTTP: the same answer, twice, version named
            first = client.post("/v1/rank", json={"user_id": user, "item_ids": items})
            again = client.post("/v1/rank", json={"user_id": user, "item_ids": items})
            version = first.json()["model_version"]
            assert version == again.json()["model_version"] == routed[user]
            assert first.headers["x-model-version"] == version
            assert first.json()["alias"] == (CANARY if version == v2 else PRODUCTION)
            assert (version == v2) == in_canary(user, "xgboost", v2, 0.2)


def test_the_rollout_share_routes_the_canary_and_a_step_up_keeps_its_users(
    config, registry, registry_dir, demo
):
    """The judge's share (``<model>/rollout/canary.json``) overrides RECKIT_CANARY_SHARE for the
    canary version it names; stepping it up keeps every user already in the canary."""
    v1, v2 = demo.versions["xgboost"]
    registry.set_alias("xgboost", CANARY, v2, "test", "canary")
    storage = LocalStorage(registry_dir)
    write_rollout(storage, "xgboost", Rollout("xgboost", v2, "2026-10-08", 0.05, "2026-10-08"))
    with TestClient(create_app(with_config(config, canary_share=0.5))) as client:
        wait_until(lambda: ready(client))
        reload(client)
        service = client.app.state.service

        def canary_users() -> set[str]:
            state = service.manager.state
            return {u for u in USERS if state.route("xgboost", u, 0.5)[1] == CANARY}

        at_5 = canary_users()
        assert abs(len(at_5) / len(USERS) - 0.05) < 0.015  # the rollout's 5%, not the env's 50%
        write_rollout(storage, "xgboost", Rollout("xgboost", v2, "2026-10-08", 0.25, "2026-10-10"))
        reload(client)
        at_25 = canary_users()
        assert abs(len(at_25) / len(USERS) - 0.25) < 0.03
        assert at_5 <= at_25  # a user once in the canary stays in as the share grows
        # A rollout of another version (a stale file) does not apply to this canary.
        write_rollout(storage, "xgboost", Rollout("xgboost", v1, "2026-10-08", 0.9, "2026-10-08"))
        reload(client)
        assert abs(len(canary_users()) / len(USERS) - 0.5) < 0.03


def test_canaries_of_two_releases_are_independent_draws():
    """Salting by release: the next release's 10% canary overlaps the previous one by chance
    (about 10% of it), not entirely as an unsalted bucket would."""
    a = {u for u in USERS if in_canary(u, "xgboost", "xgboost-2026-10-05-a", 0.1)}
    b = {u for u in USERS if in_canary(u, "xgboost", "xgboost-2026-10-09-b", 0.1)}
    assert len(a & b) / len(a) < 0.2
