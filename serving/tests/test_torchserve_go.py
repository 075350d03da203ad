"""reckit's own Go ``TorchServeClient`` (``service/torchserve.go``, verbatim from
rushteam/reckit@3f2cabd under ``fixtures/reckit/go/``) compiled offline with Debian's Go and run
against a real uvicorn of the service (``-m compat``): ``Health`` (``GET /ping``) and ``Predict``
(``POST /predictions/{model}``) with ``Instances`` (number rows in ``feature_columns`` order) and
``Features`` (maps, partial ones included) give exactly ``/predict``'s scores for the XGBoost
ranker. What the client cannot do is shown too: it sends numbers only, so DeepFM (string id
fields) and item2vec (item ids) answer 422 to it, and it reads that as an error, not a score.

The client needs nothing beyond the standard library and the copied ``core`` package
(``service/torchserve.go`` uses ``AuthConfig`` from ``service/factory.go``; the package's other
files are copied for ``factory.go``'s references), so it builds with ``GOPROXY=off``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.app import create_app
from serving.config import ServingConfig
from serving.tests.support import LiveServer, every_model_served
from serving.tests.test_kserve import GO_CLIENT, _deepfm_rows, _predict, _rows, _run_go

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory) -> Iterator[str]:
    with every_model_served(
        demo.registry_uri, str(tmp_path_factory.mktemp("torchserve-feedback"))
    ) as url:
        yield url


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def columns(http) -> list[str]:
    return http.get("/").json()["feature_columns"]


@pytest.fixture(scope="module")
def go_torchserve(tmp_path_factory) -> Path:
    """reckit's service/torchserve.go (with the rest of its package and core/ml_service.go),
    verbatim, plus this project's driver cmd/torchservecheck, built offline."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("Go is not installed: apt-get install -y golang-go (.ci/run installs it)")
    work = tmp_path_factory.mktemp("go-torchserve")
    source = work / "src"
    shutil.copytree(GO_CLIENT, source)
    env = {
        **os.environ,
        "GOFLAGS": "-mod=readonly",
        "GOPROXY": "off",  # nothing may come from the network
        "GOTOOLCHAIN": "local",
        "GOCACHE": str(work / "cache"),
        "GOPATH": str(work / "gopath"),
    }
    binary = work / "torchservecheck"
    subprocess.run(
        [go, "build", "-o", str(binary), "./cmd/torchservecheck"],
        cwd=source,
        env=env,
        check=True,
        timeout=300,
    )
    return binary


@pytest.mark.parametrize("model", ["xgb", "xgboost"])
def test_reckits_go_torchserve_client_gets_exactly_predicts_scores(
    go_torchserve, server, http, columns, model
):
    rows = _rows(columns, n=6, seed=4)
    expected = _predict(http, rows.tolist(), columns)
    version = http.get("/").json()["model_version"]
    # Instances: [][]float64 in feature_columns order -> {"data": [[...], ...]}
    got = _run_go(go_torchserve, {"endpoint": server, "model": model, "instances": rows.tolist()})
    assert got["health_error"] is None and got["predict_error"] is None, got
    assert got["predictions"] == expected
    # the raw body the client keeps in Outputs is our /predictions answer
    raw = json.loads(got["outputs"])
    assert raw["predictions"] == expected and raw["model_version"] == version
    # Features: full maps
    maps = [dict(zip(columns, r, strict=True)) for r in rows.tolist()]
    by_maps = _run_go(go_torchserve, {"endpoint": server, "model": model, "features": maps})
    assert by_maps["predict_error"] is None, by_maps
    assert by_maps["predictions"] == expected
    # Features: partial maps (the absent column scores as 0.0, as on /predict)
    partial = [{c: v for c, v in m.items() if c != columns[-1]} for m in maps]
    by_partial = _run_go(go_torchserve, {"endpoint": server, "model": model, "features": partial})
    assert by_partial["predict_error"] is None, by_partial
    assert by_partial["predictions"] == _predict(http, partial)
    assert json.loads(by_partial["outputs"])["filled_missing"] == len(rows)  # values filled


def test_one_row_version_and_api_key_options(go_torchserve, server, http, columns):
    """A single row (the client would copy one score to every row; here one row, one score),
    WithTorchServeVersion (`?version=`, ignored: the production alias decides) and
    WithTorchServeAuth api_key (X-API-Key, accepted and ignored on predictions)."""
    rows = _rows(columns, n=1, seed=5)
    expected = _predict(http, rows.tolist(), columns)
    job = {
        "endpoint": server,
        "model": "xgb",
        "instances": rows.tolist(),
        "version": "v-anything",
        "api_key": "some-callers-key-0123456789",
    }
    got = _run_go(go_torchserve, job)
    assert got["health_error"] is None and got["predict_error"] is None, got
    assert got["predictions"] == expected
    assert got["model_version"] == "v-anything"  # the client echoes its option, not the server


def test_health_is_an_error_until_a_model_is_loaded(go_torchserve, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = ServingConfig(
        registry_uri=str(empty), poll_seconds=3600, feedback_uri=str(tmp_path / "fb")
    )
    with LiveServer(create_app(config)) as live:
        got = _run_go(go_torchserve, {"endpoint": live.url, "model": "xgb", "instances": [[1.0]]})
    assert "health check failed: status=503" in got["health_error"]
    assert "torchserve error: status=503" in got["predict_error"]
    assert got["predictions"] is None


def test_unknown_model_and_wrong_width_are_errors_not_scores(go_torchserve, server, columns):
    unknown = _run_go(go_torchserve, {"endpoint": server, "model": "nope", "instances": [[1.0]]})
    assert "torchserve error: status=404" in unknown["predict_error"]
    narrow = _run_go(go_torchserve, {"endpoint": server, "model": "xgb", "instances": [[1.0, 2.0]]})
    assert "torchserve error: status=422" in narrow["predict_error"]
    assert narrow["predictions"] is None


def test_deepfm_is_unreachable_with_numbers_only(go_torchserve, server, http, demo):
    """The client's rows are []float64 or map[string]float64: DeepFM's id fields (strings
    mapped through its vocabulary) cannot be sent, so every request is a 422 naming them, and
    the client returns an error (never a made-up score). The same rows with their string ids
    score on /predictions/deepfm."""
    rows = _deepfm_rows(http, demo)
    numeric = [{k: v for k, v in r.items() if not isinstance(v, str)} for r in rows]
    assert numeric and all(numeric)
    for job in (
        {"features": numeric},
        {"instances": [list(r.values()) for r in numeric]},
    ):
        got = _run_go(go_torchserve, {"endpoint": server, "model": "deepfm", **job})
        assert got["health_error"] is None
        assert "torchserve error: status=422" in got["predict_error"], got
        assert got["predictions"] is None
    with_ids = http.post("/predictions/deepfm", json={"data": rows})
    assert with_ids.status_code == 200 and len(with_ids.json()["predictions"]) == len(rows)


def test_item2vec_is_unreachable_item_ids_are_strings(go_torchserve, server, http, demo):
    """item2vec's /predictions takes item ids (strings) and answers vectors; the client can send
    neither strings nor read a vector (it would keep each vector's first element). A numbers
    request is a 422, read by the client as an error."""
    got = _run_go(
        go_torchserve, {"endpoint": server, "model": "item2vec", "instances": [[1.0], [2.0]]}
    )
    assert "torchserve error: status=422" in got["predict_error"], got
    assert "item ids" in got["predict_error"]
    assert got["predictions"] is None
