"""Fuzzing the live service from its own OpenAPI document (schemathesis), plus the spec itself.

A real uvicorn serves the app; schemathesis reads ``/openapi.json`` from it over HTTP, generates
valid and invalid requests for every operation (bounded: ``FUZZ_EXAMPLES`` per operation and
mode, derandomized so a run is repeatable), sends them, and checks each response: no 5xx
(``not_a_server_error``), the status is one the spec lists for that operation, the media type is
the documented one, and the body matches the documented schema. The test then compares what the
run saw with the spec: every (operation, status) observed is documented there.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving.app import create_app
from serving.tests.support import TOKEN, LiveServer, ready, wait_until, with_config

FUZZ_EXAMPLES = int(os.environ.get("RECKIT_FUZZ_EXAMPLES", "20"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live(demo, tmp_path_factory) -> Iterator[str]:
    from serving.config import ServingConfig

    config = ServingConfig(
        registry_uri=demo.registry_uri,
        poll_seconds=3600,
        admin_token=TOKEN,
        ingest_token="fuzz-ingest",
        max_candidates=50,
        feedback_uri=str(tmp_path_factory.mktemp("fuzz-feedback")),
    )
    # Generous limits: the fuzzer is one client sending fast; 429 is documented anyway.
    config = with_config(config, rate_limit_rank=10_000, rate_limit_feedback=10_000)
    with LiveServer(create_app(config)) as server:
        with httpx.Client(base_url=server.url) as client:
            wait_until(lambda: ready(client))
        yield server.url


def _documented(spec: dict) -> dict[tuple[str, str], set[str]]:
    return {
        (method.upper(), path): set(op["responses"])
        for path, item in spec["paths"].items()
        for method, op in item.items()
    }


def _fuzz(operation, mode, base_url: str, session, seen: dict) -> None:
    key = (operation.method.upper(), operation.path)
    # /reload is called with the admin token (it reloads), the rest as any client would.
    headers = {"Authorization": f"Bearer {TOKEN}"} if key[1] == "/reload" else None

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers)
        seen[key].add(str(response.status_code))
        case.validate_response(response, checks=CHECKS)

    try:
        fuzz()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # An operation that takes no input has no invalid input to send.


def test_fuzzing_every_operation_finds_no_5xx_and_only_documented_responses(live):
    schema = schemathesis.openapi.from_url(f"{live}/openapi.json")
    spec = requests.get(f"{live}/openapi.json", timeout=10).json()
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    session = requests.Session()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(_documented(spec)) >= 10

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, live, session, seen)

    print("fuzz run saw:", {f"{m} {p}": sorted(v) for (m, p), v in sorted(seen.items())})
    documented = _documented(spec)
    undocumented = {key: sorted(statuses - documented[key]) for key, statuses in seen.items()}
    assert all(not v for v in undocumented.values()), undocumented
    assert not any(s.startswith("5") for statuses in seen.values() for s in statuses), seen
    # The run reached every operation and more than its happy path.
    assert set(seen) == set(documented)
    assert sum(len(s) for s in seen.values()) > len(seen)


def test_the_spec_documents_every_status_error_schema_and_media_type(live):
    spec = requests.get(f"{live}/openapi.json", timeout=10).json()
    paths = spec["paths"]
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, item in paths.items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    body = response["content"]["application/json"]["schema"]
                    assert body == error, (method, path, status, body)
            if method == "post":
                assert {"400", "408", "413", "422"} <= set(op["responses"]), (method, path)
    assert set(paths["/reload"]["post"]["responses"]) >= {"200", "401", "403", "409"}
    assert set(paths["/v1/feedback"]["post"]["responses"]) >= {"200", "403", "429"}
    assert set(paths["/v1/similar/{item_id}"]["get"]["responses"]) >= {"404", "422", "503"}
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    predict = paths["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert predict == {"$ref": "#/components/schemas/PredictRequest"}
    row = spec["components"]["schemas"]["PredictRequest"]["properties"]["features_list"]
    assert row["type"] == "array" and "additionalProperties" in row["items"]
