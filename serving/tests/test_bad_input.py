"""Malformed and oversized requests get a 4xx with a message, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from serving.app import create_app
from serving.config import ServingConfig
from serving.tests.support import (
    LiveServer,
    TestClient,
    ready,
    wait_until,
    with_config,
)

MAX_CANDIDATES = 50
MAX_BODY = 16_384
INGEST = "ingest-token"

OK_RANK = {"user_id": "u1", "item_ids": ["a", "b"], "context": {"device": "ios"}}
OK_EVENT = {"request_id": "r1", "item_id": "a", "user_id": "u1", "event_type": "click"}


def _body(value: object) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


# (name, method, path, body, expected status, text expected in the message)
CASES = [
    (
        "number beyond float range",
        "POST",
        "/predict",
        b'{"features_list": [{"item_ctr": 18446744073709551616000000000000000000000000000000000'
        + b"0" * 300
        + b"}]}",
        422,
        "finite in float32",
    ),
    (
        "timestamp out of range",
        "POST",
        "/v1/feedback",
        {"events": [{**OK_EVENT, "ts": "9999-12-31T23:00:00-14:00"}]},
        422,
        "out of range",
    ),
    (
        "lone surrogate in a user id",
        "POST",
        "/v1/rank",
        b'{"user_id": "\\ud800", "item_ids": ["a"]}',
        422,
        "unicode",
    ),
    ("malformed json", "POST", "/v1/rank", b'{"user_id": "u1", "item_ids": [', 422, "JSON"),
    ("json is a list", "POST", "/v1/rank", [1, 2], 422, "valid dictionary"),
    ("empty body", "POST", "/v1/rank", b"", 422, "Field required"),
    ("no user", "POST", "/v1/rank", {"item_ids": ["a"]}, 422, "user_id"),
    ("numeric user", "POST", "/v1/rank", {**OK_RANK, "user_id": 7}, 422, "valid string"),
    ("empty user", "POST", "/v1/rank", {**OK_RANK, "user_id": ""}, 422, "at least 1"),
    ("no candidates", "POST", "/v1/rank", {**OK_RANK, "item_ids": []}, 422, "at least 1"),
    (
        "candidates not a list",
        "POST",
        "/v1/rank",
        {**OK_RANK, "item_ids": "a,b"},
        422,
        "valid list",
    ),
    (
        "numeric candidates",
        "POST",
        "/v1/rank",
        {**OK_RANK, "item_ids": [1, 2]},
        422,
        "valid string",
    ),
    (
        "duplicate candidates",
        "POST",
        "/v1/rank",
        {**OK_RANK, "item_ids": ["a", "a"]},
        422,
        "duplicates",
    ),
    (
        "too many candidates",
        "POST",
        "/v1/rank",
        {**OK_RANK, "item_ids": [f"i{k}" for k in range(MAX_CANDIDATES + 1)]},
        413,
        "RECKIT_MAX_CANDIDATES",
    ),
    ("context not an object", "POST", "/v1/rank", {**OK_RANK, "context": "ios"}, 422, "context"),
    ("huge id", "POST", "/v1/rank", {**OK_RANK, "user_id": "x" * 300}, 422, "at most 256"),
    ("nan literal", "POST", "/predict", b'{"features_list": [{"item_ctr": NaN}]}', 400, "NaN"),
    ("rows not objects", "POST", "/predict", {"features_list": [1, 2]}, 422, "valid dictionary"),
    ("features_list missing", "POST", "/predict", {"rows": []}, 422, "features_list"),
    ("string feature", "POST", "/predict", {"features_list": [{"item_ctr": "x"}]}, 422, "float32"),
    (
        "too many rows",
        "POST",
        "/predict",
        {"features_list": [{}] * (MAX_CANDIDATES + 1)},
        413,
        "RECKIT_MAX_CANDIDATES",
    ),
    ("unknown model", "POST", "/predictions/nope", {"data": []}, 404, "not served"),
    ("data not a list", "POST", "/predictions/xgboost", {"data": {"a": 1}}, 422, "valid list"),
    ("item2vec non-string ids", "POST", "/predictions/item2vec", {"data": [[1]]}, 422, "item ids"),
    ("k too large", "GET", "/v1/similar/a?k=1000", None, 422, "less than or equal"),
    ("k not a number", "GET", "/v1/similar/a?k=ten", None, 422, "valid integer"),
    ("unknown similar item", "GET", "/v1/similar/zzz", None, 404, "not in item2vec"),
    ("no events", "POST", "/v1/feedback", {"events": []}, 422, "at least 1"),
    (
        "bad event type",
        "POST",
        "/v1/feedback",
        {"events": [{**OK_EVENT, "event_type": "like"}]},
        422,
        "impression",
    ),
    (
        "negative position",
        "POST",
        "/v1/feedback",
        {"events": [{**OK_EVENT, "position": -1}]},
        422,
        "greater",
    ),
    (
        "bad ts",
        "POST",
        "/v1/feedback",
        {"events": [{**OK_EVENT, "ts": "yesterday"}]},
        422,
        "datetime",
    ),
    (
        "ts long ago",
        "POST",
        "/v1/feedback",
        {"events": [{**OK_EVENT, "ts": "2001-01-01T00:00:00Z"}]},
        422,
        "RECKIT_FEEDBACK_WINDOW_SECONDS",
    ),
    (
        "unattributable event",
        "POST",
        "/v1/feedback",
        {"events": [{k: v for k, v in OK_EVENT.items() if k != "user_id"}]},
        422,
        "user_id is required",
    ),
    (
        "too many events",
        "POST",
        "/v1/feedback",
        {"events": [OK_EVENT] * 101},
        413,
        "RECKIT_MAX_FEEDBACK_EVENTS",
    ),
    ("wrong method", "GET", "/v1/rank", None, 405, ""),
    ("unknown path", "GET", "/v2/rank", None, 404, ""),
]


@pytest.fixture(scope="module")
def bounded(demo, tmp_path_factory) -> Iterator[TestClient]:
    """One server for the whole table: these requests change nothing (the registry is only
    read, feedback is refused)."""
    cfg = ServingConfig(
        registry_uri=demo.registry_uri,
        poll_seconds=3600,
        max_candidates=MAX_CANDIDATES,
        max_body_bytes=MAX_BODY,
        max_feedback_events=100,
        feedback_uri=str(tmp_path_factory.mktemp("feedback")),
        ingest_token=INGEST,
    )
    with TestClient(create_app(cfg)) as client:
        wait_until(lambda: ready(client))
        yield client


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "status", "says"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_requests_get_a_4xx_that_says_why(bounded, name, method, path, body, status, says):
    kwargs = {}
    if body is not None:
        kwargs = {"content": _body(body), "headers": {"content-type": "application/json"}}
    if path == "/v1/feedback":  # with the ingest token: past provenance, to the checks behind it
        kwargs.setdefault("headers", {})["x-ingest-token"] = INGEST
    response = bounded.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert says in response.text


def test_the_server_keeps_serving_after_bad_requests(bounded):
    for _, method, path, body, _, _ in CASES:
        kwargs = {"content": _body(body)} if body is not None else {}
        bounded.request(method, path, **kwargs)
    assert bounded.get("/health").status_code == 200
    server_errors = [
        line
        for line in bounded.get("/metrics").text.splitlines()
        if 'kind="server"' in line and 'endpoint="/health"' not in line  # 503 while loading
    ]
    assert server_errors == []  # not one 5xx among all of them


def test_oversized_bodies_are_refused_with_413_on_a_real_server(config):
    cfg = with_config(config, max_body_bytes=MAX_BODY)
    big = json.dumps({**OK_RANK, "padding": "x" * (MAX_BODY + 1)}).encode()
    with LiveServer(create_app(cfg)) as server, httpx.Client(base_url=server.url) as client:
        wait_until(lambda: ready(client))
        announced = client.post(
            "/v1/rank", content=big, headers={"content-type": "application/json"}
        )
        assert announced.status_code == 413 and "RECKIT_MAX_BODY_BYTES" in announced.text

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
            for k in range(0, len(big), 4096):
                yield big[k : k + 4096]

        chunked = client.post(
            "/v1/rank", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413 and "at least" in chunked.text
        # The limit is on bytes, not on what they say: a small body still works afterwards.
        assert client.post("/v1/rank", json=OK_RANK).status_code == 200
        text = client.get("/metrics").text
        assert 'endpoint="/v1/rank",kind="client",model_version="none",status="413"' in text
