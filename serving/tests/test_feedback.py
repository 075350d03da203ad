"""Feedback: counted per serving version, logged as landing-format events the pipeline reads."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from reckit_assets.core.features import online
from reckit_assets.core.ingest.events import validate_events
from reckit_assets.core.ingest.landing import read_landed
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.release.registry import CANARY
from serving.app import create_app
from serving.feedback import utc_now
from serving.tests.support import TestClient, ready, reload, wait_until, with_config

FILE_NAME = re.compile(r"^serving-[A-Za-z0-9.-]+-\d+-[0-9a-f]+-\d{6}\.parquet$")


def _feedback_counts(client) -> dict[tuple[str, str], float]:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "reckit_serving_feedback_events":
            return {
                (s.labels["model_version"], s.labels["event_type"]): s.value
                for s in family.samples
                if s.name.endswith("_total")
            }
    return {}


def _serve_and_report(client, users, items):
    """Rank for each user, then report impressions of all items and a click on the top one."""
    served, events = {}, []
    for k, user in enumerate(users):
        out = client.post(
            "/v1/rank",
            json={
                "user_id": user,
                "item_ids": items,
                "context": {"device": "web"},
                "request_id": f"req-{k}",
            },
        ).json()
        rid, token = out["request_id"], out["request_token"]
        served[rid] = out["model_version"]
        for pos, item in enumerate(out["ranked_item_ids"]):
            events.append(
                {
                    "request_id": rid,
                    "request_token": token,
                    "item_id": item,
                    "event_type": "impression",
                    "position": pos,
                }
            )
        if k % 3 == 0:
            events.append(
                {
                    "request_id": f"req-{k}",  # the caller's own id works with the token too
                    "request_token": token,
                    "item_id": out["ranked_item_ids"][0],
                    "event_type": "click",
                }
            )
    return served, events


def test_feedback_is_counted_per_version_and_lands_in_the_pipelines_format(
    config, registry, registry_dir, demo, tmp_path
):
    v1, v2 = demo.versions["xgboost"]
    registry.set_alias("xgboost", CANARY, v2, "test", "canary")
    snap = online.load(LocalStorage(registry_dir))
    users, items = list(snap.users["user_id"][:30]), list(snap.items["item_id"][:5])
    cfg = with_config(config, canary_share=0.5, ingest_token="ingest")
    with TestClient(create_app(cfg)) as client:
        wait_until(lambda: ready(client))
        reload(client)
        served, events = _serve_and_report(client, users, items)
        assert set(served.values()) == {v1, v2}
        response = client.post("/v1/feedback", json={"events": events})
        assert response.status_code == 200, response.text
        body = response.json()
        # One more event for a request this server never served: refused without a token...
        stranger = {
            "request_id": "elsewhere",
            "item_id": items[0],
            "user_id": "u-x",
            "event_type": "click",
        }
        refused = client.post("/v1/feedback", json={"events": [stranger]})
        assert refused.status_code == 403 and "unknown_request" in refused.text
        # ...and with the ingest token accepted, counted as unknown, and kept apart.
        apart = client.post(
            "/v1/feedback", json={"events": [stranger]}, headers={"X-Ingest-Token": "ingest"}
        )
        assert apart.status_code == 200 and apart.json()["unattributed"] == 1

        version = {e["request_token"]: served[e["request_id"]] for e in events if "position" in e}
        expected = Counter((version[e["request_token"]], e["event_type"]) for e in events)
        expected[("unknown", "click")] += 1
        assert _feedback_counts(client) == dict(expected)
        assert body["accepted"] == len(events) and body["unattributed"] == 0
        assert body["by_model_version"][v1]["impression"] == expected[(v1, "impression")]
    # Leaving the client shut the server down: the buffered events were flushed.

    dt = utc_now().date().isoformat()
    storage = LocalStorage(tmp_path / "feedback")
    landed = read_landed(storage, "events", dt)
    assert landed.issues == [] and landed.missing_optional == []
    assert all(FILE_NAME.match(Path(f["key"]).name) for f in landed.files), landed.files
    frame = landed.frame
    # Every served position was logged as an impression when served, plus the client's events.
    assert len(frame) == len(served) * len(items) + len(events)
    assert "elsewhere" not in set(frame["request_id"])  # unattributable: never in events/
    by_request = frame.groupby("request_id")["model_version"].first().to_dict()
    assert {rid: by_request[rid] for rid in served} == served
    assert set(frame["device"].dropna()) == {"web"}  # filled in from the ranking request
    assert (frame.loc[frame["event_type"] == "impression", "position"] >= 0).all()
    kept_apart = read_landed(
        LocalStorage(tmp_path / "feedback" / "unattributed"), "events", dt
    ).frame
    assert list(kept_apart["request_id"]) == ["elsewhere"]

    # The pipeline's own validation turns them into labelled impressions.
    validated, counts = validate_events(landed, dt)
    assert counts.impressions == len(served) * len(items)
    assert counts.clicks == sum(e["event_type"] == "click" for e in events)
    assert counts.orphan_clicks == 0
    assert set(validated["model_version"]) == {v1, v2}


def test_feedback_is_flushed_in_batches_and_retries_do_not_double_count(
    config, registry_dir, tmp_path
):
    snap = online.load(LocalStorage(registry_dir))
    users, items = list(snap.users["user_id"][:4]), list(snap.items["item_id"][:5])
    storage = LocalStorage(tmp_path / "feedback")
    dt = utc_now().date().isoformat()
    with TestClient(create_app(with_config(config, feedback_flush_rows=10))) as client:
        wait_until(lambda: ready(client))
        _, events = _serve_and_report(client, users, items)
        ts = utc_now().isoformat()
        events = [{**e, "ts": ts} for e in events]  # a client that sends its own timestamps
        assert client.post("/v1/feedback", json={"events": events}).status_code == 200
        # 20+ rows >= the batch of 10: written while the server runs, not only at shutdown.
        wait_until(lambda: bool(read_landed(storage, "events", dt).files), timeout=10)
        retry = client.post("/v1/feedback", json={"events": events})  # the client retries
        assert retry.status_code == 200 and retry.json()["duplicates"] == len(events)
        assert retry.json()["accepted"] == 0  # taken once: nothing written twice
    landed = read_landed(storage, "events", dt)
    assert len(landed.frame) == len(users) * len(items) + len(events)  # + served impressions
    _, counts = validate_events(landed, dt)
    # The client's impressions have the served ones' event ids: the pipeline keeps one each.
    assert counts.duplicate_events == sum(e["event_type"] == "impression" for e in events)
    assert counts.impressions == sum(e["event_type"] == "impression" for e in events)


def test_served_impression_ids_are_the_event_ids_a_client_impression_gets():
    from serving.feedback import event_id, impression_ids

    items = ["i-1", "i-2", "é-3"]
    assert impression_ids("req-9", items) == [
        event_id("req-9", i, "impression", None) for i in items
    ]
    assert len(set(impression_ids("req-9", items))) == 3
