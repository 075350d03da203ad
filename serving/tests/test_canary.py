"""Canary: a stable, configurable share of users is served by the canary version."""

from __future__ import annotations

from collections import Counter

import pytest

from reckit_assets.core.features import online
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.release.registry import CANARY, PRODUCTION
from serving.app import create_app
from serving.schemas import RankRequest
from serving.state import user_bucket
from serving.tests.support import TestClient, ready, reload, wait_until, with_config

USERS = [f"user-{k}" for k in range(5000)]


@pytest.mark.parametrize("share", [0.05, 0.2, 0.5])
def test_buckets_are_uniform_enough(share):
    observed = sum(user_bucket(u) < share for u in USERS) / len(USERS)
    assert abs(observed - share) < 0.03


def test_buckets_are_stable_and_independent_of_the_process():
    # sha256, not Python's salted hash: the value is fixed across processes and releases.
    assert user_bucket("user-1") == pytest.approx(0.7764059241441005, abs=1e-15)
    assert [user_bucket(u) for u in USERS[:50]] == [user_bucket(u) for u in USERS[:50]]


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
        # The routing decision /v1/rank makes, for 5000 users...
        routed = {u: state.route("xgboost", u, 0.2)[0].version for u in USERS}
        share = Counter(routed.values())[v2] / len(USERS)
        assert abs(share - 0.2) < 0.03
        # ...is what the rank function serves (in-process, the function the endpoint calls)...
        for u in USERS[:500]:
            assert (
                service.rank(RankRequest(user_id=u, item_ids=items))["model_version"] == routed[u]
            )
        served = routed
        for user in USERS[:100]:  # ...and over HTTP: the same answer, twice, version named
            first = client.post("/v1/rank", json={"user_id": user, "item_ids": items})
            again = client.post("/v1/rank", json={"user_id": user, "item_ids": items})
            version = first.json()["model_version"]
            assert version == again.json()["model_version"] == served[user]
            assert first.headers["x-model-version"] == version
            assert first.json()["alias"] == (CANARY if version == v2 else PRODUCTION)
            assert (version == v2) == (user_bucket(user) < 0.2)
