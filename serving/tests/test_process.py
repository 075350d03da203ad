"""The real entry point: ``python -m serving`` configured from the environment, stopped by
SIGTERM as an orchestrator would, loses no feedback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

import serving
from reckit_assets.core.features import online
from reckit_assets.core.ingest.landing import read_landed
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.monitoring.decisions import read_decision_log
from serving.feedback import utc_now
from serving.tests.support import wait_until

REPO = Path(serving.__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_python_m_serving_serves_and_flushes_feedback_on_sigterm(registry_dir, tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "RECKIT_REGISTRY_URI": str(registry_dir),
        "RECKIT_FEEDBACK_URI": str(tmp_path / "feedback"),
        "RECKIT_SERVING_PORT": str(port),
        "RECKIT_SERVING_MODELS": "xgboost",
        "RECKIT_FEEDBACK_FLUSH_SECONDS": "3600",  # only the shutdown flush can write it
    }
    items = list(online.load(LocalStorage(registry_dir)).items["item_id"][:10])
    proc = subprocess.Popen([sys.executable, "-m", "serving"], env=env, cwd=REPO)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            def healthy() -> bool:
                try:
                    return client.get("/health").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(healthy, timeout=60, every=0.2)
            out = client.post("/v1/rank", json={"user_id": "u1", "item_ids": items}).json()
            events = [
                {
                    "request_id": out["request_id"],
                    "request_token": out["request_token"],
                    "item_id": i,
                    "event_type": "impression",
                    "position": p,
                }
                for p, i in enumerate(out["ranked_item_ids"])
            ]
            assert client.post("/v1/feedback", json={"events": events}).status_code == 200
            assert not (tmp_path / "feedback").exists()  # still buffered
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught (exit -15).
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    landed = read_landed(
        LocalStorage(tmp_path / "feedback"), "events", utc_now().date().isoformat()
    )
    frame = pd.concat(
        [pd.read_parquet(f) for f in sorted((tmp_path / "feedback" / "events").rglob("*.parquet"))],
        ignore_index=True,
    )  # every column the service wrote, extras (``source``) included
    # ...and the ranking's decision, flushed on shutdown too (serving/decisions.py)
    decisions = read_decision_log(LocalStorage(tmp_path / "feedback"), utc_now().date().isoformat())
    assert decisions["request_id"].unique().tolist() == [out["request_id"]]
    assert decisions["item_id"].tolist() == out["ranked_item_ids"]
    # Each ranked position twice: logged when served (source=served) and reported by the client;
    # the client's impressions carry no ts, so they get the served ones' event ids and the
    # pipeline's dedup keeps one per (request, item).
    assert landed.issues == [] and len(landed.frame) == len(frame) == 2 * len(items)
    assert sorted(frame["source"].value_counts().to_dict().items()) == [
        ("client", len(items)),
        ("served", len(items)),
    ]
    assert frame["event_id"].nunique() == len(items)
    assert set(frame["item_id"]) == set(items)
    assert set(landed.frame["model_version"]) == {out["model_version"]}
