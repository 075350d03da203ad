"""Feedback cannot be forged: only what the service served is landed; the rest is refused
(counted by reason, never written) or, with the ingest token, written apart."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reckit_assets.core.features import online
from reckit_assets.core.ingest.landing import read_landed
from reckit_assets.core.io.storage import LocalStorage
from serving.app import create_app
from serving.feedback import LOG_COLUMNS, RequestTokens, ServedRequest, utc_now
from serving.tests.support import TestClient, ready, wait_until, with_config

INGEST = "the-ingest-token"
SECRET = "shared-secret"


def _rejected(client) -> dict[str, float]:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "reckit_serving_feedback_rejected_events":
            return {
                s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")
            }
    return {}


@pytest.fixture
def items(registry_dir) -> list[str]:
    return list(online.load(LocalStorage(registry_dir)).items["item_id"][:5])


@pytest.fixture
def cfg(config):
    return with_config(config, ingest_token=INGEST, feedback_secret=SECRET, served_impressions=0)


def _rank(client, items, user="u-1", request_id=None) -> dict:
    body = {"user_id": user, "item_ids": items}
    if request_id:
        body["request_id"] = request_id
    response = client.post("/v1/rank", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _landed(tmp_path: Path, apart: bool = False) -> pd.DataFrame:
    """The day's log files with every column (the landing reader keeps only the contract's),
    after checking the landing reader accepts them."""
    root = tmp_path / "feedback" / ("unattributed" if apart else "")
    dt = utc_now().date().isoformat()
    if not apart:  # what is written where the pipeline lands data meets its contract
        assert read_landed(LocalStorage(root), "events", dt).issues == []
    files = sorted((root / "events" / f"dt={dt}").glob("*.parquet"))
    if not files:
        return pd.DataFrame(columns=list(LOG_COLUMNS))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def test_fabricated_clicks_are_refused_counted_and_never_written(cfg, items, tmp_path):
    forged = [
        {"request_id": f"made-up-{k}", "item_id": items[0], "user_id": "u", "event_type": "click"}
        for k in range(5000)
    ]
    with TestClient(create_app(cfg)) as client:
        wait_until(lambda: ready(client))
        response = client.post("/v1/feedback", json={"events": forged})
        assert response.status_code == 403
        assert "unknown_request" in response.json()["detail"][0]
        assert _rejected(client) == {"unknown_request": 5000}
    assert len(_landed(tmp_path)) == 0 and len(_landed(tmp_path, apart=True)) == 0


def test_a_signed_token_attributes_feedback_in_another_worker(cfg, items, tmp_path):
    with TestClient(create_app(cfg)) as a, TestClient(create_app(cfg)) as b:
        wait_until(lambda: ready(a) and ready(b))
        served = _rank(a, items, request_id="req-a")
        event = {
            "request_id": "req-a",
            "request_token": served["request_token"],
            "item_id": served["ranked_item_ids"][0],
            "event_type": "click",
        }
        # Worker b never saw req-a: without the token it refuses, with it it attributes.
        no_token = {k: v for k, v in event.items() if k != "request_token"}
        assert b.post("/v1/feedback", json={"events": [no_token]}).status_code == 403
        response = b.post("/v1/feedback", json={"events": [event]})
        assert response.status_code == 200, response.text
        assert response.json()["attributed"] == 1
        assert response.json()["by_model_version"] == {served["model_version"]: {"click": 1}}
    frame = _landed(tmp_path)
    # Logged under the server's id (unique), not the caller's "req-a".
    assert list(frame["request_id"]) == [served["request_id"]] and list(frame["user_id"]) == ["u-1"]
    assert list(frame["model_version"]) == [served["model_version"]]
    assert list(frame["alias"]) == [served["alias"]]


def test_tampered_foreign_and_expired_tokens_are_refused(cfg, items):
    with TestClient(create_app(cfg)) as client:
        wait_until(lambda: ready(client))
        served = _rank(client, items, request_id="req-t")
        token = served["request_token"]
        head, payload, digests, mac = token.split(".")
        flipped = f"{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}"
        tampered = f"{head}.{flipped}.{digests}.{mac}"
        foreign = RequestTokens("another-secret").issue(
            "req-t", ServedRequest("xgboost", served["model_version"], "u-1", None)
        )
        old = RequestTokens(SECRET).issue(
            "req-t",
            ServedRequest(
                "xgboost",
                served["model_version"],
                "u-1",
                None,
                served_at=time.time() - cfg.feedback_window_seconds - 3600,
            ),
        )
        cases = {
            "bad_token": [tampered, foreign, "garbage"],
            "expired_token": [old],
        }
        for reason, tokens in cases.items():
            for bad in tokens:
                event = {
                    "request_id": "req-t",
                    "request_token": bad,
                    "item_id": items[0],
                    "event_type": "click",
                }
                response = client.post("/v1/feedback", json={"events": [event]})
                assert response.status_code == 403, (reason, response.text)
                assert reason in response.json()["detail"][0]
        # A valid token for one request does not vouch for another request id.
        other = {
            "request_id": "req-other",
            "request_token": token,
            "item_id": items[0],
            "event_type": "click",
        }
        assert client.post("/v1/feedback", json={"events": [other]}).status_code == 403
        assert _rejected(client) == {"bad_token": 4, "expired_token": 1}


def test_items_users_and_timestamps_must_match_the_served_request(cfg, items, tmp_path):
    with TestClient(create_app(cfg)) as client:
        wait_until(lambda: ready(client))
        served = _rank(client, items, request_id="req-m")
        base = {
            "request_id": "req-m",
            "request_token": served["request_token"],
            "item_id": items[1],
            "event_type": "click",
        }
        now = utc_now()
        cases = {
            "item_not_served": {**base, "item_id": "never-ranked"},
            "user_mismatch": {**base, "user_id": "someone-else"},
            "outside_window": {**base, "ts": (now - timedelta(days=3)).isoformat()},
        }
        for reason, event in cases.items():
            response = client.post("/v1/feedback", json={"events": [event]})
            assert response.status_code == 422, (reason, response.text)
            assert reason in response.json()["detail"][0]
        future = {**base, "ts": (now + timedelta(hours=2)).isoformat()}
        assert client.post("/v1/feedback", json={"events": [future]}).status_code == 422
        # A batch with one bad event writes nothing; the good one is counted as collateral.
        batch = [base, cases["item_not_served"]]
        assert client.post("/v1/feedback", json={"events": batch}).status_code == 422
        counts = _rejected(client)
        assert counts["item_not_served"] == 2 and counts["in_rejected_batch"] == 1
        assert counts["user_mismatch"] == 1 and counts["outside_window"] == 2
        # The good event alone is accepted.
        ok = client.post("/v1/feedback", json={"events": [base]})
        assert ok.status_code == 200 and ok.json()["attributed"] == 1
        assert served["model_version"] in ok.json()["by_model_version"]
    assert len(_landed(tmp_path)) == 1


def test_the_window_is_configurable(cfg, items):
    short = with_config(cfg, feedback_window_seconds=60, feedback_clock_skew_seconds=0)
    with TestClient(create_app(short)) as client:
        wait_until(lambda: ready(client))
        served = _rank(client, items, request_id="req-w")
        event = {
            "request_id": "req-w",
            "request_token": served["request_token"],
            "item_id": items[0],
            "event_type": "click",
        }
        earlier = (utc_now() - timedelta(seconds=30)).isoformat()  # before it was served
        response = client.post("/v1/feedback", json={"events": [{**event, "ts": earlier}]})
        assert response.status_code == 422 and "outside_window" in response.text
        assert client.post("/v1/feedback", json={"events": [event]}).status_code == 200


# reckit's Go FeedbackEvent, as json.Marshal writes it (fields in struct order; nil labels: null)
def _reckit_event(kind: str, ts: int, **extra) -> dict:
    return {
        "user_id": "user_123",
        "item_id": "1",
        "scene": "feed",
        "type": kind,
        "timestamp": ts,
        "position": 0,
        "score": 0.87,
        "labels": {"recall_source": "recall.hot"},
        **extra,
    }


def test_reckits_events_need_the_ingest_token_and_are_written_apart_mapped(cfg, tmp_path):
    now = int(time.time())
    kinds = ["impression", "click", "conversion", "skip", "like", "dislike"]
    events = [_reckit_event(kind, now - k) for k, kind in enumerate(kinds)]
    with TestClient(create_app(cfg)) as client:
        wait_until(lambda: ready(client))
        refused = client.post("/v1/feedback", json=events)
        assert refused.status_code == 403 and "ingest token" in refused.text
        headers = {"X-Ingest-Token": INGEST}
        # A list (a collector's batch), one object (a Kafka message), or inside "events".
        assert client.post("/v1/feedback", json=events, headers=headers).status_code == 200
        one = client.post("/v1/feedback", json=events[1], headers=headers)
        assert one.status_code == 200 and one.json()["unattributed"] == 1
        wrapped = client.post("/v1/feedback", json={"events": events[:1]}, headers=headers)
        assert wrapped.status_code == 200
        stale = _reckit_event("click", now - 3 * 86_400)
        assert client.post("/v1/feedback", json=stale, headers=headers).status_code == 422
        odd = _reckit_event("click", now, labels={"request_id": "r" * 200})
        response = client.post("/v1/feedback", json=odd, headers=headers)
        assert response.status_code == 422 and "invalid" in response.text
    assert len(_landed(tmp_path)) == 0  # nothing of it in the landing layout
    apart = _landed(tmp_path, apart=True)
    assert len(apart) == len(events) + 2
    mapped = dict(zip(apart["reckit_type"], apart["event_type"], strict=True))
    assert mapped == {
        "impression": "impression",
        "click": "click",
        "conversion": "conversion",
        "skip": "impression",
        "like": "like",
        "dislike": "dislike",
    }
    assert set(apart["source"]) == {"reckit"} and set(apart["scene"]) == {"feed"}
    seconds = {int(t.timestamp()) for t in apart["ts"]}
    assert seconds == {now - k for k in range(len(kinds))}  # seconds, not milliseconds
    assert apart["request_id"].isna().all()


def test_a_reckit_event_that_names_a_served_request_is_attributed(cfg, items, tmp_path):
    with TestClient(create_app(cfg)) as client:
        wait_until(lambda: ready(client))
        served = _rank(client, items, user="user_123", request_id="req-r")
        event = _reckit_event(
            "click",
            int(time.time()),
            item_id=served["ranked_item_ids"][0],
            labels={"request_id": "req-r"},
            extras={"request_token": served["request_token"]},
        )
        response = client.post("/v1/feedback", json=event)  # no ingest token needed
        assert response.status_code == 200, response.text
        assert response.json()["attributed"] == 1
    frame = _landed(tmp_path)
    assert list(frame["source"]) == ["reckit"]
    assert list(frame["request_id"]) == [served["request_id"]]


def test_served_rankings_are_logged_as_impressions_with_version_alias_and_request(
    config, items, tmp_path
):
    with TestClient(create_app(with_config(config, served_impressions=3))) as client:
        wait_until(lambda: ready(client))
        served = _rank(client, items, request_id="req-s")
    frame = _landed(tmp_path)
    assert list(frame["request_id"]) == [served["request_id"]] * 3  # the top 3 of 5, as configured
    assert list(frame["item_id"]) == served["ranked_item_ids"][:3]
    assert list(frame["position"]) == [0, 1, 2]
    assert set(frame["event_type"]) == {"impression"} and set(frame["source"]) == {"served"}
    assert set(frame["model_version"]) == {served["model_version"]}
    assert set(frame["alias"]) == {served["alias"]}
    assert (frame["ts"] <= datetime.now(UTC)).all()
