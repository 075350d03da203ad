"""KServe V1 and V2 (Open Inference Protocol) through a real uvicorn: readiness, metadata,
predict/infer for each model kind with scores identical to ``/predict`` and
``/predictions/{model}``, bad tensors answered 4xx (with KServe's ``error`` key, never echoing a
value), and (``-m compat``) reckit's own Go ``KServeClient`` compiled from its sources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving.app import create_app
from serving.config import ServingConfig
from serving.tests.support import LiveServer, every_model_served

GO_CLIENT = Path(__file__).parent / "fixtures" / "reckit" / "go"
SECRET = "do-not-echo-me-7f3a"  # a rejected value that must never come back in an error body


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory) -> Iterator[str]:
    with every_model_served(
        demo.registry_uri, str(tmp_path_factory.mktemp("kserve-feedback"))
    ) as url:
        yield url


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def columns(http) -> list[str]:
    return http.get("/").json()["feature_columns"]


def _rows(columns: list[str], n: int = 7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(0, 40, size=(n, len(columns))), 4)


def _predict(http: httpx.Client, rows: list, columns: list[str] | None = None) -> list[float]:
    """``/predict``'s scores; list rows are taken in ``columns``' order."""
    if columns is not None:
        rows = [dict(zip(columns, r, strict=True)) for r in rows]
    response = http.post("/predict", json={"data": rows})
    assert response.status_code == 200, response.text
    return response.json()["scores"]


def _deepfm_rows(http: httpx.Client, demo) -> list[dict]:
    meta = http.get("/v2/models/deepfm").json()
    items = demo.registry.load_files("item2vec", demo.versions["item2vec"][0])
    item_ids = list(json.loads(items["item2vec.json"]))[:4]
    rows = []
    for k, item in enumerate(item_ids):
        row: dict = {}
        for tensor in meta["inputs"]:
            name = tensor["name"]
            if tensor["datatype"] == "BYTES":
                row[name] = item if name == "item_id" else f"{name}-{k % 2}"
            else:
                row[name] = round(0.5 + k, 3)
        rows.append(row)
    return rows


# -- health, readiness, metadata --------------------------------------------------------------
def test_v2_health_server_metadata_and_model_listing(http):
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get("/v2").json()["extensions"] == []
    assert http.get("/v1/models").json() == {"models": ["xgboost", "deepfm", "item2vec"]}


@pytest.mark.parametrize("name", ["xgb", "xgboost", "deepfm", "item2vec"])
def test_each_model_is_ready_on_v1_and_v2(http, name):
    v1 = http.get(f"/v1/models/{name}")
    assert v1.status_code == 200 and v1.json() == {"name": name, "ready": True}
    v2 = http.get(f"/v2/models/{name}/ready")
    assert v2.status_code == 200 and v2.json() == {"name": name, "ready": True}
    version = v2.headers["X-Model-Version"]
    assert http.get(f"/v2/models/{name}/versions/{version}/ready").status_code == 200


def test_v2_metadata_names_the_tensors(http, columns):
    xgb = http.get("/v2/models/xgb").json()
    assert xgb["inputs"] == [
        {
            "name": "input0",
            "datatype": "FP64",
            "shape": [-1, 13],
            "parameters": {"columns": columns},
        }
    ]
    assert xgb["outputs"] == [{"name": "output-0", "datatype": "FP64", "shape": [-1]}]
    assert xgb["versions"] == [http.get("/").json()["model_version"]]
    deepfm = http.get("/v2/models/deepfm").json()
    kinds = {t["name"]: t["datatype"] for t in deepfm["inputs"]}
    assert kinds["user_id"] == "BYTES" and "FP64" in kinds.values()
    item2vec = http.get("/v2/models/item2vec").json()
    assert item2vec["inputs"] == [{"name": "item_id", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in item2vec["outputs"]] == ["embedding", "found"]
    assert item2vec["outputs"][0]["shape"][1] > 0


def test_readiness_is_503_until_a_model_is_loaded(demo, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = ServingConfig(
        registry_uri=str(empty), poll_seconds=3600, feedback_uri=str(tmp_path / "fb")
    )
    with LiveServer(create_app(config)) as live, httpx.Client(base_url=live.url) as client:
        assert client.get("/v2/health/live").status_code == 200
        for path in (
            "/v2/health/ready",
            "/v1/models/xgb",
            "/v2/models/xgb/ready",
            "/v2/models/xgb",
        ):
            response = client.get(path)
            assert response.status_code == 503, path
            assert "is loaded yet" in response.json()["error"]
        infer = client.post(
            "/v2/models/xgb/infer",
            json={"inputs": [{"name": "input0", "shape": [1, 1], "datatype": "FP64", "data": [1]}]},
        )
        assert infer.status_code == 503
        v1 = client.post("/v1/models/xgb:predict", json={"instances": [[1.0]]})
        assert v1.status_code == 503


# -- scores identical to /predict ---------------------------------------------------------------
def test_v1_predict_scores_exactly_as_predict(http, columns):
    rows = _rows(columns)
    expected = _predict(http, rows.tolist(), columns)
    as_lists = http.post("/v1/models/xgb:predict", json={"instances": rows.tolist()})
    assert as_lists.status_code == 200, as_lists.text
    assert as_lists.json() == {"predictions": expected}
    objects = [dict(zip(columns, r, strict=True)) for r in rows.tolist()]
    as_objects = http.post("/v1/models/xgboost:predict", json={"inputs": objects})
    assert as_objects.json()["predictions"] == expected
    assert as_objects.headers["X-Model-Version"] == http.get("/").json()["model_version"]


def test_v2_infer_scores_exactly_as_predict_in_every_layout(http, columns):
    rows = _rows(columns, seed=1)
    expected = _predict(http, rows.tolist(), columns)
    n, k = rows.shape

    def infer(inputs: list, path: str = "/v2/models/xgb/infer", **extra) -> dict:
        response = http.post(path, json={"inputs": inputs, **extra})
        assert response.status_code == 200, response.text
        return response.json()

    flat = infer(
        [{"name": "input0", "shape": [n, k], "datatype": "FP64", "data": rows.ravel().tolist()}]
    )
    assert flat["outputs"] == [
        {"name": "output-0", "shape": [n], "datatype": "FP64", "data": expected}
    ]
    assert flat["model_name"] == "xgb" and flat["model_version"] and flat["id"]
    nested = infer(
        [{"name": "x", "shape": [n, k], "datatype": "FP32", "data": rows.tolist()}], id="req-1"
    )
    assert nested["outputs"][0]["data"] == expected and nested["id"] == "req-1"
    # reckit's WithKServeV2FeaturesAsJSON: one JSON object per row, partial maps allowed
    objects = [json.dumps(dict(zip(columns, r, strict=True))) for r in rows.tolist()]
    as_json = infer([{"name": "features", "shape": [n], "datatype": "BYTES", "data": objects}])
    assert as_json["outputs"][0]["data"] == expected
    # Triton's layout: one tensor per column, any order
    per_column = [
        {"name": c, "shape": [n, 1], "datatype": "FP64", "data": rows[:, j].tolist()}
        for j, c in reversed(list(enumerate(columns)))
    ]
    assert infer(per_column)["outputs"][0]["data"] == expected
    # a numeric tensor in an order the tensor names
    order = sorted(columns)
    index = [columns.index(c) for c in order]
    named = infer(
        [
            {
                "name": "input0",
                "shape": [n, k],
                "datatype": "FP64",
                "parameters": {"columns": order},
                "data": rows[:, index].tolist(),
            }
        ]
    )
    assert named["outputs"][0]["data"] == expected
    version = flat["model_version"]
    versioned = infer(
        [{"name": "input0", "shape": [n, k], "datatype": "FP64", "data": rows.tolist()}],
        path=f"/v2/models/xgboost/versions/{version}/infer",
        outputs=[{"name": "output-0"}],
    )
    assert versioned["outputs"][0]["data"] == expected


def test_deepfm_scores_on_v1_and_v2_as_on_predictions(http, demo):
    rows = _deepfm_rows(http, demo)
    expected = http.post("/predictions/deepfm", json={"data": rows})
    assert expected.status_code == 200, expected.text
    scores = expected.json()["predictions"]
    v1 = http.post("/v1/models/deepfm:predict", json={"instances": rows})
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == scores
    meta = http.get("/v2/models/deepfm").json()
    inputs = [
        {
            "name": t["name"],
            "shape": [len(rows)],
            "datatype": t["datatype"],
            "data": [r[t["name"]] for r in rows],
        }
        for t in meta["inputs"]
    ]
    v2 = http.post("/v2/models/deepfm/infer", json={"inputs": inputs})
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == scores
    as_json = http.post(
        "/v2/models/deepfm/infer",
        json={
            "inputs": [
                {
                    "name": "features",
                    "shape": [len(rows)],
                    "datatype": "BYTES",
                    "data": [json.dumps(r) for r in rows],
                }
            ]
        },
    )
    assert as_json.json()["outputs"][0]["data"] == scores
    numeric = http.post(
        "/v2/models/deepfm/infer",
        json={"inputs": [{"name": "input0", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]},
    )
    assert numeric.status_code == 422 and "id fields" in numeric.json()["error"]


def test_item2vec_gives_the_vectors_predictions_gives(http, demo):
    items = list(
        json.loads(
            demo.registry.load_files("item2vec", demo.versions["item2vec"][0])["item2vec.json"]
        )
    )[:3]
    ids = [*items, "no-such-item"]
    expected = http.post("/predictions/item2vec", json={"data": ids}).json()["predictions"]
    assert expected[-1] is None
    v1 = http.post("/v1/models/item2vec:predict", json={"instances": ids})
    assert v1.status_code == 200 and v1.json() == {"predictions": expected}
    v2 = http.post(
        "/v2/models/item2vec/infer",
        json={
            "inputs": [{"name": "item_id", "shape": [len(ids)], "datatype": "BYTES", "data": ids}]
        },
    )
    assert v2.status_code == 200, v2.text
    embedding, found = v2.json()["outputs"]
    dim = len(expected[0])
    assert embedding["shape"] == [len(ids), dim] and embedding["datatype"] == "FP32"
    got = np.asarray(embedding["data"]).reshape(len(ids), dim)
    assert got[:-1].tolist() == expected[:-1]
    assert not got[-1].any()
    assert found == {
        "name": "found",
        "shape": [len(ids)],
        "datatype": "BOOL",
        "data": [True, True, True, False],
    }


# -- bad input: 4xx, KServe's "error", nothing echoed ---------------------------------------------
def _tensor(**changes) -> dict:
    tensor = {"name": "input0", "shape": [1, 13], "datatype": "FP64", "data": [0.5] * 13}
    return {"inputs": [{**tensor, **changes}]}


BAD_INFER = {
    "too few values": ("/v2/models/xgb/infer", _tensor(data=[0.5] * 12), 422, "needs 13"),
    "shape of the wrong width": (
        "/v2/models/xgb/infer",
        _tensor(shape=[2, 6], data=[0.5] * 12),
        422,
        "13 columns",
    ),
    "one-dimensional numeric": ("/v2/models/xgb/infer", _tensor(shape=[13]), 422, "[n, k]"),
    "string in FP64": (
        "/v2/models/xgb/infer",
        _tensor(data=[SECRET] + [0.5] * 12),
        422,
        "not a FP64 value",
    ),
    "float in INT32": ("/v2/models/xgb/infer", _tensor(datatype="INT32"), 422, "INT32"),
    "INT8 out of range": (
        "/v2/models/xgb/infer",
        _tensor(datatype="INT8", data=[300] + [1] * 12),
        422,
        "INT8",
    ),
    "unknown datatype": ("/v2/models/xgb/infer", _tensor(datatype="FP8"), 422, "datatype"),
    "BOOL features": (
        "/v2/models/xgb/infer",
        _tensor(datatype="BOOL", data=[True] * 13),
        422,
        "BOOL",
    ),
    "nested deeper than shape": (
        "/v2/models/xgb/infer",
        _tensor(data=[[[0.5]] * 13]),
        422,
        "nested",
    ),
    "float32 overflow": (
        "/v2/models/xgb/infer",
        _tensor(data=[1e39] + [0.5] * 12),
        422,
        "float32",
    ),
    "bad JSON object": (
        "/v2/models/xgb/infer",
        {"inputs": [{"name": "features", "shape": [1], "datatype": "BYTES", "data": [SECRET]}]},
        422,
        "JSON object",
    ),
    "unknown column tensors": (
        "/v2/models/xgb/infer",
        {
            "inputs": [
                {"name": SECRET, "shape": [1], "datatype": "FP64", "data": [1]},
                {"name": "item_ctr", "shape": [1], "datatype": "FP64", "data": [1]},
            ]
        },
        422,
        "feature column",
    ),
    "unknown columns parameter": (
        "/v2/models/xgb/infer",
        _tensor(parameters={"columns": [SECRET] * 1}),
        422,
        "name no column",
    ),
    "unknown output": (
        "/v2/models/xgb/infer",
        {**_tensor(), "outputs": [{"name": SECRET}]},
        422,
        "no such output",
    ),
    "no inputs": ("/v2/models/xgb/infer", {"inputs": []}, 422, "inputs"),
    "unknown model": ("/v2/models/" + SECRET + "/infer", _tensor(), 404, "not served"),
    "unknown version": (
        "/v2/models/xgb/versions/" + SECRET + "/infer",
        _tensor(),
        404,
        "not served",
    ),
    "item2vec numbers": (
        "/v2/models/item2vec/infer",
        _tensor(shape=[1], data=[1]),
        422,
        "BYTES tensor of item ids",
    ),
    "too many rows": (
        "/v2/models/xgb/infer",
        _tensor(shape=[51, 13], data=[0.5] * 51 * 13),
        413,
        "at most 50",
    ),
    "v1 string rows": ("/v1/models/xgb:predict", {"instances": [SECRET]}, 422, "neither"),
    "v1 wrong row length": ("/v1/models/xgb:predict", {"instances": [[1.0, 2.0]]}, 422, "13"),
    "v1 no instances": ("/v1/models/xgb:predict", {}, 422, "instances or inputs"),
    "v1 unknown model": (
        "/v1/models/" + SECRET + ":predict",
        {"instances": [[1.0]]},
        404,
        "not served",
    ),
    "v1 item2vec numbers": ("/v1/models/item2vec:predict", {"instances": [[1.0]]}, 422, "item ids"),
}


@pytest.mark.parametrize("case", sorted(BAD_INFER))
def test_bad_tensors_are_4xx_with_a_clear_message_and_no_echo(http, case):
    path, body, status, says = BAD_INFER[case]
    response = http.post(path, json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert says in payload["error"], payload
    assert "detail" in payload
    assert SECRET not in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/nope",
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/xgb/versions/0/ready",
    ],
)
def test_unknown_models_and_versions_are_404(http, path):
    response = http.get(path)
    assert response.status_code == 404 and response.json()["error"]


def test_the_openapi_document_lists_the_kserve_endpoints(http):
    paths = http.get("/openapi.json").json()["paths"]
    for path, method in [
        ("/v1/models", "get"),
        ("/v1/models/{model_name}", "get"),
        ("/v1/models/{model_name}:predict", "post"),
        ("/v2", "get"),
        ("/v2/health/live", "get"),
        ("/v2/health/ready", "get"),
        ("/v2/models/{model_name}", "get"),
        ("/v2/models/{model_name}/ready", "get"),
        ("/v2/models/{model_name}/infer", "post"),
        ("/v2/models/{model_name}/versions/{model_version}/infer", "post"),
    ]:
        assert method in paths[path], path
    infer = paths["/v2/models/{model_name}/infer"]["post"]["responses"]
    assert {"200", "404", "413", "422", "429", "503"} <= set(infer)


# -- reckit's own Go KServeClient ------------------------------------------------------------------
@pytest.fixture(scope="module")
def go_client(tmp_path_factory) -> Path:
    """reckit's service/kserve.go (and the four files its package needs), verbatim, built
    offline with Debian's Go: they import only the standard library."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("Go is not installed: apt-get install -y golang-go (.ci/run installs it)")
    work = tmp_path_factory.mktemp("go")
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
    binary = work / "kservecheck"
    subprocess.run(
        [go, "build", "-o", str(binary), "./cmd/kservecheck"],
        cwd=source,
        env=env,
        check=True,
        timeout=300,
    )
    return binary


def _run_go(binary: Path, job: dict) -> dict:
    done = subprocess.run(
        [str(binary)], input=json.dumps(job), capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.compat
@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_reckits_go_kserve_client_gets_exactly_predicts_scores(
    go_client, server, http, columns, protocol
):
    rows = _rows(columns, n=5, seed=2)
    expected = _predict(http, rows.tolist(), columns)
    base = {"endpoint": server, "model": "xgb", "protocol": protocol}
    by_instances = _run_go(go_client, {**base, "instances": rows.tolist()})
    assert by_instances["health_error"] is None and by_instances["predict_error"] is None
    assert by_instances["predictions"] == expected
    # Features maps: V1 sends them as objects; V2 as JSON objects (WithKServeV2FeaturesAsJSON).
    # Partial maps: the absent columns score as 0.0, as on /predict.
    partial = [
        {c: v for c, v in zip(columns, r, strict=True) if c != columns[0]} for r in rows.tolist()
    ]
    expected_partial = _predict(http, partial)
    job = {**base, "features": partial, "features_as_json": protocol == "v2"}
    by_features = _run_go(go_client, job)
    assert by_features["predict_error"] is None, by_features
    assert by_features["predictions"] == expected_partial
    version = http.get("/").json()["model_version"]
    if protocol == "v2":
        pinned = _run_go(go_client, {**base, "version": version, "instances": rows.tolist()})
        assert pinned["predictions"] == expected
        wrong = _run_go(go_client, {**base, "version": "v0", "instances": rows.tolist()})
        assert "status=404" in wrong["predict_error"]


@pytest.mark.compat
def test_reckits_go_client_health_follows_readiness(go_client, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = ServingConfig(
        registry_uri=str(empty), poll_seconds=3600, feedback_uri=str(tmp_path / "fb")
    )
    with LiveServer(create_app(config)) as live:
        for protocol in ("v1", "v2"):
            got = _run_go(
                go_client,
                {"endpoint": live.url, "model": "xgb", "protocol": protocol, "instances": [[1.0]]},
            )
            assert "status=503" in got["health_error"] and "status=503" in got["predict_error"]


@pytest.mark.compat
def test_reckits_go_v2_numeric_features_are_sorted_by_name_and_misread(
    go_client, server, http, columns
):
    """reckit's V2 client flattens Features maps to one FP64 tensor with the keys sorted by name
    and no names sent: the server cannot know the order. Documented; this shows it is real, so
    callers use Instances (feature_columns order) or WithKServeV2FeaturesAsJSON."""
    assert sorted(columns) != columns
    rows = _rows(columns, n=3, seed=3)
    maps = [dict(zip(columns, r, strict=True)) for r in rows.tolist()]
    got = _run_go(
        go_client, {"endpoint": server, "model": "xgb", "protocol": "v2", "features": maps}
    )
    order = sorted(columns)
    as_sent = [
        [m[c] for c in order] for m in maps
    ]  # what reaches us, read in feature_columns order
    assert got["predictions"] == _predict(http, as_sent, columns)
    assert got["predictions"] != _predict(http, rows.tolist(), columns)
