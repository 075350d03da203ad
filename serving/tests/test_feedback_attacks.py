"""The issue's forgery attacks, replayed against a real uvicorn server and landed with the
pipeline's real ``land_feedback``: each is refused, or accepted once and counted, and the landed
day holds only what the service served to that user in that request."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reckit_assets.core.features import online
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.monitoring.feedback import land_feedback
from serving.app import create_app
from serving.config import ServingConfig
from serving.feedback import utc_now
from serving.tests.support import LiveServer, ready, wait_until, with_config

SHOP, OTHER = "shop-frontend-key-0001", "other-app-key-00000002"
INGEST = "the-ingest-token"
AS_SHOP, AS_OTHER = {"X-API-Key": SHOP}, {"Authorization": f"Bearer {OTHER}"}


@pytest.fixture
def items(registry_dir) -> list[str]:
    return list(online.load(LocalStorage(registry_dir)).items["item_id"][:5])


@pytest.fixture
def cfg(config) -> ServingConfig:
    return with_config(
        config,
        api_keys=(("shop", SHOP), ("other", OTHER)),
        ingest_token=INGEST,
        feedback_secret="shared-secret",
    )


@contextlib.contextmanager
def serving(cfg: ServingConfig) -> Iterator[httpx.Client]:
    """A real server; leaving the block stops it, which flushes the feedback log."""
    with LiveServer(create_app(cfg)) as live, httpx.Client(base_url=live.url) as client:
        wait_until(lambda: ready(client))
        yield client


@pytest.fixture
def server(cfg) -> Iterator[httpx.Client]:
    with serving(cfg) as client:
        yield client


def _rank(client: httpx.Client, items, user: str, headers=AS_SHOP, **extra) -> dict:
    response = client.post(
        "/v1/rank", json={"user_id": user, "item_ids": items, **extra}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def _event(served: dict, item: str, kind: str = "click", **extra) -> dict:
    return {
        "request_id": served["request_id"],
        "request_token": served["request_token"],
        "item_id": item,
        "event_type": kind,
        **extra,
    }


def _post(client: httpx.Client, *events: dict, headers=AS_SHOP) -> httpx.Response:
    return client.post("/v1/feedback", json={"events": list(events)}, headers=headers)


def _metric(client: httpx.Client, family: str, label: str) -> dict[str, float]:
    for fam in text_string_to_metric_families(client.get("/metrics").text):
        if fam.name == family:
            return {s.labels[label]: s.value for s in fam.samples if s.name.endswith("_total")}
    return {}


def _land(tmp_path: Path) -> tuple[pd.DataFrame, dict]:
    """The day as the pipeline lands it (``land_feedback``), once the server has stopped."""
    dt = utc_now().date().isoformat()
    counts = land_feedback(
        LocalStorage(tmp_path / "feedback"),
        LocalStorage(tmp_path / "landing"),
        LocalStorage(tmp_path / "apart"),
        dt,
    )
    landed = tmp_path / "landing" / "events" / f"dt={dt}"
    frames = [pd.read_parquet(f) for f in sorted(landed.glob("*.parquet"))]
    return pd.concat(frames, ignore_index=True), counts


def test_without_an_api_key_there_is_no_ranking_no_token_and_no_feedback(server, items):
    body = {"user_id": "anyone", "item_ids": items}
    for headers in ({}, {"X-API-Key": "guessed-key-00000000"}, {"Authorization": "Bearer x"}):
        response = server.post("/v1/rank", json=body, headers=headers)
        assert response.status_code == 401, response.text
        assert "RECKIT_API_KEYS" in response.json()["detail"]
        assert "guessed" not in response.text  # the rejected key is not echoed
    assert _rank(server, items, "u", headers=AS_SHOP)["request_token"]
    assert _rank(server, items, "u", headers=AS_OTHER)["request_token"]  # Bearer works too
    forged = {"request_id": "r", "item_id": items[0], "event_type": "click", "user_id": "u"}
    assert _post(server, forged, headers={}).status_code == 401


def test_anonymous_rankings_of_made_up_users_and_items_log_nothing(cfg, tmp_path):
    with serving(cfg) as server:
        for k in range(50):
            body = {"user_id": f"ghost-{k}", "item_ids": [f"fake-{k}-{j}" for j in range(20)]}
            assert server.post("/v1/rank", json=body).status_code == 401
        served = _metric(server, "reckit_serving_served_impressions", "model_version")
        assert sum(served.values()) == 0
    assert not list((tmp_path / "feedback").rglob("*.parquet"))  # not one impression row


def test_a_token_replayed_300_times_lands_one_click_and_one_conversion(cfg, items, tmp_path):
    with serving(cfg) as server:
        served = _replay_clicks(server, items)
    landed, counts = _land(tmp_path)
    mine = landed[landed["request_id"] == served["request_id"]]
    kinds = mine.groupby("event_type").size().to_dict()
    assert kinds == {"impression": len(items), "click": 1, "conversion": 1}
    assert set(mine["user_id"]) == {"u-buyer"}
    assert counts["unattributable"] == 0


def _replay_clicks(server: httpx.Client, items: list[str]) -> dict:
    target, user = items[2], "u-buyer"
    served = _rank(server, items, user)
    # A conversion before any click, and a click on an item that was not served: refused.
    early = _post(server, _event(served, target, "conversion"))
    assert early.status_code == 422 and "conversion_without_click" in early.text
    unserved = _post(server, _event(served, "item-never-ranked"))
    assert unserved.status_code == 422 and "item_not_served" in unserved.text
    replies = [_post(server, _event(served, target)).json() for _ in range(300)]
    assert [r["attributed"] for r in replies] == [1] + [0] * 299
    assert sum(r["duplicates"] for r in replies) == 299
    converted = [_post(server, _event(served, target, "conversion")).json() for _ in range(5)]
    assert [r["attributed"] for r in converted] == [1, 0, 0, 0, 0]
    dups = _metric(server, "reckit_serving_feedback_duplicate_events", "event_type")
    assert dups == {"click": 299, "conversion": 4}
    rejected = _metric(server, "reckit_serving_feedback_rejected_events", "reason")
    assert rejected["conversion_without_click"] == 1 and rejected["item_not_served"] == 1
    return served


def test_a_token_is_good_only_for_the_caller_that_asked_for_the_ranking(server, items):
    served = _rank(server, items, "u-1", headers=AS_SHOP)
    stolen = _post(server, _event(served, items[0]), headers=AS_OTHER)
    assert stolen.status_code == 403 and "caller_mismatch" in stolen.text
    assert _post(server, _event(served, items[0]), headers=AS_SHOP).json()["attributed"] == 1


def test_a_client_chosen_request_id_is_not_a_credential(cfg, items, tmp_path):
    with serving(cfg) as server:
        _unattributed_by_request_id(server, items)
    landed, _ = _land(tmp_path)
    assert not (landed["event_type"] == "click").any()
    apart = tmp_path / "feedback" / "unattributed" / "events"
    assert len(pd.concat(pd.read_parquet(f) for f in apart.rglob("*.parquet"))) == 1


def _unattributed_by_request_id(server: httpx.Client, items: list[str]) -> None:
    served = _rank(server, items, "u-real", request_id="checkout-42")
    assert served["client_request_id"] == "checkout-42" and served["request_id"] != "checkout-42"
    no_token = {"request_id": "checkout-42", "item_id": items[0], "event_type": "click"}
    refused = _post(server, {**no_token, "user_id": "u-real"})
    assert refused.status_code == 403 and "not a credential" in refused.text
    # With the ingest token it is taken, but apart: never attributed, never landed.
    apart = _post(server, {**no_token, "user_id": "u-real"}, headers={"X-Ingest-Token": INGEST})
    assert apart.status_code == 200
    assert apart.json()["attributed"] == 0 and apart.json()["unattributed"] == 1
    unattributed = _metric(server, "reckit_serving_feedback_unattributed_events", "event_type")
    assert unattributed == {"click": 1}


def test_reusing_a_request_id_for_another_user_cannot_break_the_real_users_feedback(
    cfg, items, tmp_path
):
    with serving(cfg) as server:
        _reuse_request_id(server, items)
    landed, counts = _land(tmp_path)
    clicks = landed[landed["event_type"] == "click"]
    assert sorted(clicks["user_id"]) == ["u-evil", "u-real"]
    # One user per landed request id; each click joins its own ranking's impression.
    assert (landed.groupby("request_id")["user_id"].nunique() == 1).all()
    assert "checkout-42" not in set(landed["request_id"])
    assert counts.get("unattributable_no_served_impression", 0) == 0


def _reuse_request_id(server: httpx.Client, items: list[str]) -> None:
    real = _rank(server, items, "u-real", request_id="checkout-42")
    evil = _rank(server, items, "u-evil", request_id="checkout-42")
    assert real["request_id"] != evil["request_id"]  # the server's ids, unique per ranking
    # The attacker clicks under the shared id with its own token, then tries the real user's.
    assert _post(server, _event(evil, items[0], request_id="checkout-42")).status_code == 200
    mismatch = _post(server, _event(evil, items[1], user_id="u-real"))
    assert mismatch.status_code == 422 and "user_mismatch" in mismatch.text
    # The real user's click, by the shared id and its own token, is accepted and attributed.
    ok = _post(server, _event(real, items[0], request_id="checkout-42"))
    assert ok.status_code == 200 and ok.json()["attributed"] == 1


def test_a_conversion_in_another_worker_needs_the_clicks_receipt(cfg, items):
    with serving(cfg) as a, serving(cfg) as b:
        served = _rank(a, items, "u-buyer")
        click = _post(a, _event(served, items[0]))
        assert click.status_code == 200 and click.json()["attributed"] == 1
        receipt = click.json()["click_receipts"]["0"]
        # Worker b never saw the click: a bare conversion is refused...
        bare = _post(b, _event(served, items[0], "conversion"))
        assert bare.status_code == 422 and "conversion_without_click" in bare.text
        # ...a receipt for another item (or made up) proves nothing...
        for wrong in (receipt, "made-up-receipt"):
            other = _post(b, _event(served, items[1], "conversion", click_receipt=wrong))
            assert other.status_code == 422 and "conversion_without_click" in other.text
        # ...and the click's own receipt is accepted, once.
        proven = _event(served, items[0], "conversion", click_receipt=receipt)
        assert _post(b, proven).json()["attributed"] == 1
        assert _post(b, proven).json()["duplicates"] == 1


def test_a_caller_over_its_daily_feedback_budget_is_refused_counted_and_lands_nothing_more(
    cfg, items, tmp_path
):
    """Feedback volume per caller is bounded (RECKIT_MAX_FEEDBACK_PER_CALLER_DAY): a caller that
    floods gets 429 naming the limit's key, another caller is unaffected, and what lands is what
    the budgets admitted."""
    with serving(with_config(cfg, max_feedback_per_caller_day=6)) as server:
        for k in range(3):  # 3 rankings x (click + conversion) = 6 events: the whole budget
            served = _rank(server, items, f"u-{k}")
            ok = _post(server, _event(served, items[0]), _event(served, items[0], "conversion"))
            assert ok.status_code == 200, ok.text
        served = _rank(server, items, "u-9")
        refused = _post(server, _event(served, items[1]))
        assert refused.status_code == 429, refused.text
        detail = refused.json()["detail"]
        assert "RECKIT_MAX_FEEDBACK_PER_CALLER_DAY" in detail and "'shop' has 6" in detail
        assert 0 < int(refused.headers["Retry-After"]) <= 86_400
        # the other caller has its own budget
        theirs = _rank(server, items, "u-other", headers=AS_OTHER)
        assert _post(server, _event(theirs, items[2]), headers=AS_OTHER).status_code == 200
        assert _metric(server, "reckit_serving_feedback_rejected_events", "reason") == {
            "caller_volume": 1
        }
        assert _metric(server, "reckit_serving_feedback_caller_events", "caller") == {
            "shop": 6,
            "other": 1,
        }
    landed, _ = _land(tmp_path)
    feedback = landed[landed["event_type"] != "impression"]
    assert len(feedback) == 7
    assert "u-9" not in set(feedback["user_id"])
