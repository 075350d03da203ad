"""Attacks on a real server: non-JSON literals, encoding tricks, slow bodies, floods.

Each literal and encoding trick is sent to every POST endpoint, in a field that fails validation
(where FastAPI's own handler would echo the value and crash encoding it) and in one that passes;
the answer is always a 4xx with a JSON body, and the server keeps serving.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.app import create_app
from serving.middleware import RateLimiter, non_json_literal
from serving.tests.support import TOKEN, LiveServer, ready, wait_until, with_config

INGEST = "ingest"
# (endpoint, body template with {} where the trick goes into a field that fails validation)
POSTS = {
    "/v1/rank": '{"user_id": {}, "item_ids": ["a"]}',
    "/v1/feedback": '{"events": [{"request_id": "r", "item_id": "a", "event_type": "click", '
    '"ts": {}}]}',
    "/predict": '{"features_list": {}}',
    "/predictions/xgboost": '{"data": {}}',
    "/predictions/xgb": '{"data": [{"item_ctr": {}}]}',
    "/predictions/item2vec": '{"data": {}}',
    "/reload": '{"anything": {}}',
}
LITERALS = ["NaN", "Infinity", "-Infinity", "[NaN]", '{"a": Infinity}']


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory) -> Iterator[LiveServer]:
    from serving.config import ServingConfig

    config = ServingConfig(
        registry_uri=demo.registry_uri,
        poll_seconds=3600,
        admin_token=TOKEN,
        ingest_token=INGEST,
        feedback_uri=str(tmp_path_factory.mktemp("hardening-feedback")),
        body_timeout_seconds=1.0,
    )
    with LiveServer(create_app(config)) as live:
        with httpx.Client(base_url=live.url) as client:
            wait_until(lambda: ready(client))
        yield live


def _post(url: str, path: str, body: bytes) -> httpx.Response:
    headers = {"content-type": "application/json", "x-ingest-token": INGEST}
    with httpx.Client(base_url=url, timeout=10) as client:  # a fresh connection each time
        return client.post(path, content=body, headers=headers)


def _server_errors(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "reckit_serving_errors":
            return sum(
                s.value
                for s in family.samples
                if s.labels.get("kind") == "server"
                and s.name.endswith("_total")
                and s.labels.get("endpoint") != "/health"  # 503 while the first load runs
            )
    return 0.0


@pytest.mark.parametrize("literal", LITERALS)
@pytest.mark.parametrize("path", list(POSTS))
def test_non_json_literals_are_a_400_on_every_post_endpoint(server, path, literal):
    body = POSTS[path].replace("{}", literal, 1).encode()
    response = _post(server.url, path, body)
    assert response.status_code == 400, response.text
    assert "not valid JSON" in response.json()["detail"]
    assert "NaN" in body.decode() or "Infinity" in body.decode()


def test_literal_text_inside_strings_is_not_refused(server):
    body = b'{"user_id": "NaN-Infinity", "item_ids": ["NaN", "Infinity"]}'
    response = _post(server.url, "/v1/rank", body)
    assert response.status_code == 200, response.text
    assert response.json()["ranked_item_ids"] == ["NaN", "Infinity"] or set(
        response.json()["ranked_item_ids"]
    ) == {"NaN", "Infinity"}
    assert non_json_literal(body) is None
    assert non_json_literal(b'{"a": -Infinity}') is not None


# Tricks JSON itself allows (so the middleware passes them) that once crashed the error encoder.
TRICKS = {
    "overflowing number (Python reads inf)": "1e999",
    "negative overflow": "-1e999",
    "huge integer": "1" + "0" * 400,
    "lone surrogate": '"\\ud800"',
    "surrogate pair half": '"a\\udfff"',
    "object with a surrogate key": '{"\\ud800": 1}',
    "deep nesting": "[" * 5000 + "]" * 5000,
    "control characters": '"\\u0000\\u001f"',
}


@pytest.mark.parametrize("trick", list(TRICKS))
@pytest.mark.parametrize("path", list(POSTS))
def test_values_that_cannot_be_echoed_get_a_clean_4xx(server, path, trick):
    body = POSTS[path].replace("{}", TRICKS[trick], 1).encode()
    response = _post(server.url, path, body)
    # /reload ignores its body (it reads none): the admin check answers first.
    expected = {401} if path == "/reload" else {400, 403, 404, 422}
    if trick == "control characters" and path == "/v1/rank":
        expected = {200}  # a valid (odd) user id
    assert response.status_code in expected, (response.status_code, response.text)
    # The body is strict JSON (no NaN/Infinity tokens, valid UTF-8): it could be encoded.
    parsed = json.loads(response.content.decode("utf-8"), parse_constant=_refuse)
    assert "detail" in parsed or response.status_code == 200


def _refuse(name: str) -> None:
    raise AssertionError(f"response holds the non-JSON literal {name}")


def test_invalid_utf8_and_non_json_bodies_are_4xx(server):
    for body in (b"\xff\xfe\x00{", b'{"user_id": "\xc3\x28"}', b"\x00" * 10, b"not json"):
        for path in POSTS:
            response = _post(server.url, path, body)
            assert 400 <= response.status_code < 500, (path, body, response.text)
            assert "detail" in response.json()


def test_a_feature_beyond_float32_is_refused_not_scored(server):
    columns = httpx.get(f"{server.url}/").json()["feature_columns"]
    row = dict.fromkeys(columns, 0.5)
    for value in ("3.5e38", "1.7e308", "-1e300"):
        body = json.dumps({"data": [row]}).replace("0.5", value, 1).encode()
        response = _post(server.url, "/predictions/xgb", body)
        assert response.status_code == 422, response.text
        assert "finite in float32" in response.text


def test_after_all_the_tricks_not_one_5xx_and_the_server_still_ranks(server):
    assert _server_errors(server.url) == 0, [
        line for line in httpx.get(f"{server.url}/metrics").text.splitlines() if "server" in line
    ]
    ok = _post(server.url, "/v1/rank", b'{"user_id": "u", "item_ids": ["a", "b"]}')
    assert ok.status_code == 200


# -- slow clients ---------------------------------------------------------------------------------
def _half_body(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 200\r\n\r\n{"user_id": "u", "item_'
    )
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_a_body_that_stops_half_way_is_cut_off_with_408_on_a_real_socket(server):
    started = time.monotonic()
    sock = _half_body(server.url)
    reply = _read_all(sock)  # returns when the server closes the connection
    elapsed = time.monotonic() - started
    sock.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"RECKIT_BODY_TIMEOUT_SECONDS" in reply and b"connection: close" in reply.lower()
    assert 0.9 <= elapsed < 5.0  # the configured 1 s, not the client's patience


def test_two_hundred_slow_clients_are_all_released(server):
    socks = [_half_body(server.url) for _ in range(200)]
    replies: list[bytes] = [b""] * len(socks)

    def read(k: int) -> None:
        replies[k] = _read_all(socks[k])

    threads = [threading.Thread(target=read, args=(k,)) for k in range(len(socks))]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    elapsed = time.monotonic() - started
    for s in socks:
        s.close()
    assert sum(r.startswith(b"HTTP/1.1 408") for r in replies) == len(socks)
    assert elapsed < 10.0
    # Meanwhile and afterwards, well-behaved clients are served.
    assert httpx.get(f"{server.url}/ping").status_code == 200


# -- floods -----------------------------------------------------------------------------------------
def test_the_token_bucket_admits_its_rate_and_burst_per_client_and_group():
    limiter = RateLimiter({"rank": 10.0, "feedback": 0.0}, burst_seconds=2.0)
    admitted = [limiter.admit("rank", "a", now=100.0) == 0.0 for _ in range(25)]
    assert sum(admitted) == 20  # the burst: 10/s x 2 s
    assert limiter.admit("rank", "b", now=100.0) == 0.0  # another client has its own bucket
    wait = limiter.admit("rank", "a", now=100.0)
    assert 0.0 < wait <= 0.1  # one token every 0.1 s
    assert limiter.admit("rank", "a", now=100.5) == 0.0  # refilled 5 tokens
    assert all(limiter.admit("feedback", "a", now=100.0) == 0.0 for _ in range(100))  # 0: off


def test_rank_and_feedback_floods_get_429_with_retry_after(config):
    cfg = with_config(config, rate_limit_rank=5, rate_limit_feedback=2, rate_limit_burst_seconds=1)
    with LiveServer(create_app(cfg)) as live, httpx.Client(base_url=live.url) as client:
        wait_until(lambda: ready(client))
        body = {"user_id": "u", "item_ids": ["a", "b"]}
        statuses = [client.post("/v1/rank", json=body).status_code for _ in range(12)]
        assert statuses.count(200) >= 5 and statuses.count(429) >= 5, statuses
        limited = client.post("/v1/rank", json=body)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "RECKIT_RATE_LIMIT_RANK" in limited.json()["detail"]
        event = {"events": [{"request_id": "x", "item_id": "a", "event_type": "click"}]}
        fb = [client.post("/v1/feedback", json=event).status_code for _ in range(6)]
        assert fb.count(429) >= 3, fb  # its own, lower limit
        assert client.get("/health").status_code == 200  # reads are not limited
        text = client.get("/metrics").text
        assert 'reckit_serving_rate_limited_requests_total{group="rank"}' in text
        assert 'reckit_serving_rate_limited_requests_total{group="feedback"}' in text
