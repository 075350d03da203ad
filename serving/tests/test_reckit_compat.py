"""A drop-in for reckit: the exact requests its Go client and Python service exchange, its
cosine order, and exports its xgboost (2.x included) reads the same way.

The fixtures under ``fixtures/reckit/`` hold the bodies byte for byte as reckit's code builds
them (source file and commit named in each); each is sent to a real uvicorn and the response is
checked the way reckit's client reads it (ported from its Go code below).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from reckit_assets.core.training.xgb_ranker import portable_model_json
from serving.app import create_app
from serving.tests.support import TOKEN, LiveServer, ready, wait_until

FIXTURES = Path(__file__).parent / "fixtures" / "reckit"
ROOT = Path(__file__).resolve().parents[2]
INGEST = "compat-ingest"


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory) -> Iterator[LiveServer]:
    from serving.config import ServingConfig

    config = ServingConfig(
        registry_uri=demo.registry_uri,
        poll_seconds=3600,
        admin_token=TOKEN,
        ingest_token=INGEST,
        feedback_uri=str(tmp_path_factory.mktemp("compat-feedback")),
    )
    with LiveServer(create_app(config)) as live:
        with httpx.Client(base_url=live.url) as client:
            wait_until(lambda: ready(client))
        yield live


# -- reckit's Go client, ported: what it accepts as a response ---------------------------------
def go_rpc_predictions(status: int, body: bytes, rows: int) -> list[float]:
    """model/rpc.go predictViaHTTP: 200, ``{"predictions": []float64}``, one per row."""
    assert status == 200, body
    predictions = json.loads(body)["predictions"]
    assert all(isinstance(p, int | float) and not isinstance(p, bool) for p in predictions)
    assert len(predictions) == rows  # "response predictions count mismatch"
    return [float(p) for p in predictions]


def go_torchserve_predictions(status: int, body: bytes, rows: int) -> list[float]:
    """service/torchserve.go predictREST: an array, or an object with "prediction" or
    "predictions" (numbers; a nested array counts by its first element)."""
    assert status == 200, body
    parsed = json.loads(body)

    def number(v: object) -> float | None:
        if isinstance(v, list):
            return number(v[0]) if v else None
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    if isinstance(parsed, list):
        values = [number(v) for v in parsed]
    elif "prediction" in parsed:
        values = [number(parsed["prediction"])]
    else:
        values = [number(v) for v in parsed["predictions"]]
    values = [v for v in values if v is not None]
    assert len(values) == rows  # its own check would copy a single value to every row
    return values


def _send(server: LiveServer, fixture: dict, body: str | None = None) -> httpx.Response:
    headers = {
        k: v.replace("<admin token>", TOKEN).replace("<ingest token>", INGEST)
        for k, v in fixture["headers"].items()
    }
    content = (body if body is not None else fixture["body"] or "").encode()
    return httpx.request(
        fixture["method"], server.url + fixture["path"], headers=headers, content=content
    )


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_reckits_own_requests_get_what_its_client_accepts(server, name):
    fixture = json.loads((FIXTURES / name).read_text())
    body = fixture["body"]
    if name == "go_feedback_event.json":  # only the timestamp moves to now (the window)
        event = json.loads(body)
        body = body.replace(str(event["timestamp"]), str(int(time.time())))
    response = _send(server, fixture, body)
    accepts = fixture["client_accepts"]
    if accepts == "rpc":
        go_rpc_predictions(response.status_code, response.content, fixture["rows"])
    elif accepts == "torchserve":
        go_torchserve_predictions(response.status_code, response.content, fixture["rows"])
    elif accepts == "scores_and_predictions":
        payload = response.json()
        assert response.status_code == 200, payload
        assert len(payload["scores"]) == fixture["rows"]
        assert payload["predictions"] == payload["scores"]
    elif accepts.startswith("status_"):
        assert response.status_code == int(accepts.split("_")[1]), response.text
    else:
        raise AssertionError(f"{name}: unknown client_accepts {accepts!r}")
    if "expect_json" in fixture:
        assert response.json() == fixture["expect_json"]


def _reckit_loader_scores(files: dict[str, bytes], rows: list[dict]) -> np.ndarray:
    """reckit's python/service/model_loader.py predict, on the exported files: absent or
    invalid features become 0.0, rows in feature_meta order, float64 array, DMatrix."""
    import xgboost as xgb

    meta = json.loads(files["feature_meta.json"])
    booster = xgb.Booster()
    booster.load_model(bytearray(files["xgb_model.json"]))
    vectors = []
    for row in rows:
        values = []
        for col in meta["feature_columns"]:
            try:
                value = float(row[col]) if col in row else 0.0
                values.append(value if np.isfinite(value) else 0.0)
            except (TypeError, ValueError):
                values.append(0.0)
        vectors.append(values)
    return booster.predict(xgb.DMatrix(np.array(vectors)))


def test_partial_feature_maps_score_exactly_as_reckits_server_would(server, demo):
    fixture = json.loads((FIXTURES / "go_rpcmodel_predictions_xgb.json").read_text())
    rows = json.loads(fixture["body"])["data"]
    response = _send(server, fixture)
    ours = go_rpc_predictions(response.status_code, response.content, len(rows))
    version = demo.versions["xgboost"][0]
    files = demo.registry.load_files("xgboost", version)
    theirs = _reckit_loader_scores(files, rows)
    np.testing.assert_array_equal(np.asarray(ours, dtype=np.float32), theirs)
    assert response.json()["filled_missing"] == len(rows) * (13 - 7)


def test_ping_and_the_xgb_name_are_reckits(server):
    assert httpx.get(f"{server.url}/ping").json() == {"status": "Healthy"}
    rows = [[0.1] * 13]
    by_alias = httpx.post(f"{server.url}/predictions/xgb", json={"data": rows}).json()
    by_name = httpx.post(f"{server.url}/predictions/xgboost", json={"data": rows}).json()
    assert by_alias["predictions"] == by_name["predictions"]


def test_ping_is_503_until_a_model_is_loaded(config, tmp_path):
    from serving.tests.support import TestClient, with_config

    empty = tmp_path / "empty"
    empty.mkdir()
    with TestClient(create_app(with_config(config, registry_uri=str(empty)))) as client:
        assert client.get("/ping").status_code == 503


# -- item2vec: reckit's plain cosine -------------------------------------------------------------
def go_similarity(v1: list[float], v2: list[float]) -> float:
    """model/word2vec.go Word2VecModel.Similarity, line for line."""
    if len(v1) != len(v2):
        return 0.0
    dot = norm1 = norm2 = 0.0
    for a, b in zip(v1, v2, strict=True):
        dot += a * b
        norm1 += a * a
        norm2 += b * b
    if norm1 == 0 or norm2 == 0:
        return 0.0
    return dot / (math.sqrt(norm1) * math.sqrt(norm2))


def test_similar_in_cosine_mode_is_exactly_reckits_order(server, demo):
    version = demo.versions["item2vec"][0]
    vectors = json.loads(demo.registry.load_files("item2vec", version)["item2vec.json"])
    items = list(vectors)
    for anchor in items[:10]:
        expected = sorted(
            ((go_similarity(vectors[anchor], vectors[i]), n, i) for n, i in enumerate(items)),
            key=lambda t: (-t[0], t[1]),
        )
        expected = [(i, s) for s, _, i in expected if i != anchor][:20]
        response = httpx.get(
            f"{server.url}/v1/similar/{anchor}", params={"k": 20, "mode": "cosine"}
        )
        assert response.status_code == 200, response.text
        got = [(n["item_id"], n["score"]) for n in response.json()["similar"]]
        assert [i for i, _ in got] == [i for i, _ in expected]
        assert [s for _, s in got] == [s for _, s in expected]  # bit for bit
    ranked = httpx.get(f"{server.url}/v1/similar/{items[0]}", params={"k": 20}).json()
    assert ranked["mode"] == "ranked"  # the default keeps the popularity prior


# -- xgboost 2.x reads the export ---------------------------------------------------------------
def test_the_export_writes_base_score_as_a_scalar(demo):
    version = demo.versions["xgboost"][0]
    raw = demo.registry.load_files("xgboost", version)["xgb_model.json"]
    param = json.loads(raw)["learner"]["learner_model_param"]
    assert not param["base_score"].startswith("[")
    assert portable_model_json(raw) == raw  # idempotent
    vector = raw.replace(
        f'"base_score":"{param["base_score"]}"'.encode(),
        f'"base_score":"[{param["base_score"]}]"'.encode(),
    )
    assert vector != raw and portable_model_json(vector) == raw


XGB2 = "2.1.4"
COMPAT_ENV = ROOT / ".compat" / f"xgboost-{XGB2}"
REQUIREMENTS = [f"xgboost-cpu=={XGB2}", "numpy==2.4.6", "scipy==1.17.1"]
SCORER = """
import json, sys
import numpy as np, xgboost as xgb
assert xgb.__version__ == sys.argv[2], xgb.__version__
files = sys.argv[1]
meta = json.load(open(files + "/feature_meta.json"))
booster = xgb.Booster()
booster.load_model(files + "/xgb_model.json")  # as reckit's ModelLoader does
x = np.array(json.load(sys.stdin), dtype=np.float64)
print(json.dumps({"base_score": json.loads(booster.save_config())["learner"]
                  ["learner_model_param"]["base_score"],
                  "scores": booster.predict(xgb.DMatrix(x)).tolist()}))
"""


def _compat_python() -> Path:
    """A separate venv (git-ignored, under .compat/) with xgboost 2.1; created once."""
    python = COMPAT_ENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(COMPAT_ENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
            check=True,
            timeout=600,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    return python


@pytest.mark.compat
def test_xgboost_2_1_scores_the_export_exactly_as_we_do(demo, server, tmp_path):
    python = _compat_python()
    version = demo.versions["xgboost"][0]
    files = demo.registry.load_files("xgboost", version)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    rng = np.random.default_rng(0)
    rows = np.round(rng.uniform(0, 50, size=(64, 13)) * rng.integers(0, 2, size=(64, 13)), 4)
    done = subprocess.run(
        [str(python), "-c", SCORER, str(tmp_path), XGB2],
        input=json.dumps(rows.tolist()),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    theirs = json.loads(done.stdout)
    ours = httpx.post(f"{server.url}/predictions/xgb", json={"data": rows.tolist()}).json()
    meta_base = json.loads(files["xgb_model.json"])["learner"]["learner_model_param"]
    assert float(theirs["base_score"]) == float(meta_base["base_score"]) != 0.5
    np.testing.assert_allclose(theirs["scores"], ours["predictions"], rtol=0, atol=1e-6)
    # The same file as xgboost 3 wrote it (vector base_score) is what 2.1 misreads: the check
    # above would catch a regression of the export.
    (tmp_path / "xgb_model.json").write_bytes(
        files["xgb_model.json"].replace(
            f'"base_score":"{meta_base["base_score"]}"'.encode(),
            f'"base_score":"[{meta_base["base_score"]}]"'.encode(),
        )
    )
    misread = subprocess.run(
        [str(python), "-c", SCORER, str(tmp_path), XGB2],
        input=json.dumps(rows.tolist()),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    wrong = json.loads(misread.stdout)["scores"]
    assert np.max(np.abs(np.asarray(wrong) - np.asarray(ours["predictions"]))) > 0.01
