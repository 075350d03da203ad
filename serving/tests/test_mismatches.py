"""What the README and the OpenAPI document promise, checked on a real server: NaN in any
encoding is a 400 before parsing, no error echoes a rejected key or value, and the document
states the rules the handlers enforce."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from serving.app import create_app
from serving.tests.support import LiveServer, ready, wait_until

LONG_KEY = "K" * 300
SECRET_VALUE = "do-not-echo-this-value"


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory) -> Iterator[httpx.Client]:
    from serving.config import ServingConfig

    config = ServingConfig(
        registry_uri=demo.registry_uri,
        poll_seconds=3600,
        feedback_uri=str(tmp_path_factory.mktemp("mismatch-feedback")),
    )
    with LiveServer(create_app(config)) as live, httpx.Client(base_url=live.url) as client:
        wait_until(lambda: ready(client))
        yield client


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_utf16_and_utf32_is_a_400_before_parsing(server, encoding, literal):
    body = f'{{"user_id": "u", "item_ids": ["a"], "x": {literal}}}'.encode(encoding)
    response = server.post("/v1/rank", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "not valid JSON" in response.json()["detail"]
    # The same text inside a string is data, not a literal.
    fine = '{"user_id": "NaN", "item_ids": ["Infinity"]}'.encode(encoding)
    ok = server.post("/v1/rank", content=fine, headers={"content-type": "application/json"})
    assert ok.status_code == 200, ok.text


REJECTED = {
    "long feature key on /predict": ("/predict", {"features_list": [{LONG_KEY: 1.0}]}),
    "long feature key on /predictions/xgb": ("/predictions/xgb", {"data": [{LONG_KEY: 1.0}]}),
    "long label key in reckit's event": (
        "/v1/feedback",
        [
            {
                "user_id": "u",
                "item_id": "i",
                "type": "click",
                "timestamp": 1,
                "labels": {LONG_KEY: "v"},
            }
        ],
    ),
    "string feature value": ("/predict", {"features_list": [{"item_ctr": SECRET_VALUE}]}),
    "string row for a ranker": ("/predictions/xgb", {"data": [SECRET_VALUE]}),
    "duplicate candidates": ("/v1/rank", {"user_id": "u", "item_ids": [SECRET_VALUE] * 2}),
    "unknown model": (f"/predictions/{SECRET_VALUE}", {"data": []}),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_errors_never_echo_a_rejected_key_or_value(server, case):
    path, body = REJECTED[case]
    response = server.post(path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert "K" * 20 not in response.text and SECRET_VALUE not in response.text, response.text
    assert response.json()["detail"]  # still says what and where


def test_unknown_items_on_similar_are_not_echoed(server):
    response = server.get(f"/v1/similar/{SECRET_VALUE}")
    assert response.status_code == 404 and SECRET_VALUE not in response.text


def test_the_openapi_document_states_the_enforced_rules(server):
    doc = server.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    # /predict refuses {}: one of features_list / data is required.
    assert schemas["PredictRequest"]["anyOf"] == [
        {"required": ["features_list"]},
        {"required": ["data"]},
    ]
    assert server.post("/predict", json={}).status_code == 422
    # /v1/rank refuses duplicate candidates.
    assert schemas["RankRequest"]["properties"]["item_ids"]["uniqueItems"] is True
    # /v1/feedback refuses [] (the list form of reckit's events has at least one).
    body = doc["paths"]["/v1/feedback"]["post"]["requestBody"]["content"]["application/json"]
    lists = [s for s in body["schema"]["anyOf"] if s.get("type") == "array"]
    assert lists and all(s.get("minItems") == 1 for s in lists)
    assert server.post("/v1/feedback", json=[]).status_code == 422
    # /predictions/xgb refuses string rows: said in the schema of data.
    data = schemas["PredictionsRequest"]["properties"]["data"]
    assert "string row is refused (422)" in data["description"]
    assert server.post("/predictions/xgb", json={"data": ["i-1"]}).status_code == 422
