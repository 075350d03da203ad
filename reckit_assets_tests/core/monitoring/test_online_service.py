"""Online metrics from a real service run: a real uvicorn serving a real registry (production and
canary), real HTTP traffic and feedback, a real Prometheus server scraping the service; then the
day's feedback is landed and the figures are computed and judged."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.monitoring.feedback import land_feedback, read_feedback_log
from reckit_assets.core.monitoring.judge import CanaryState, judge
from reckit_assets.core.monitoring.online import (
    Prometheus,
    arm_metrics,
    per_user,
    summarize,
    with_alias,
)
from reckit_assets.core.release.registry import CANARY

PROMETHEUS = shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator:
    """Start a real Prometheus scraping ``target`` (host:port) every second."""
    if PROMETHEUS is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (.ci/run installs Debian's `prometheus`)")
        pytest.skip("Debian's `prometheus` is not installed here")
    procs = []

    def start(target: str) -> Prometheus:
        port = _free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: reckit\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        prom = Prometheus(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if prom.query("up", time.time()):
                    return prom
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("Prometheus did not start scraping within 30 s")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=20)


def test_online_metrics_from_a_real_service_scraped_by_prometheus(tmp_path, prometheus_for):
    from reckit_assets_tests.support.registries import build_demo_registry
    from serving.app import create_app
    from serving.config import ServingConfig
    from serving.tests.support import LiveServer, ready, wait_until

    demo = build_demo_registry(tmp_path / "demo", item2vec=False)
    production, canary = demo.versions["xgboost"]
    demo.registry.set_alias("xgboost", CANARY, canary, "test", "canary under test")
    config = ServingConfig(
        registry_uri=demo.registry_uri,
        models=("xgboost",),
        poll_seconds=3600,
        admin_token="t",
        feedback_uri=str(tmp_path / "feedback"),
        canary_share=0.5,
        # one test client sends all traffic: the service's per-client limits are tested elsewhere
        rate_limit_rank=0.0,
        rate_limit_feedback=0.0,
        # impressions come from the client's feedback (as reckit's clients send them), not
        # from serve-time logging, so each shown item is counted once
        served_impressions=0,
    )
    items = [f"i-{i:06d}" for i in range(1, 40)]
    rng = np.random.default_rng(0)
    served: dict[str, int] = {}
    with LiveServer(create_app(config)) as server:
        client = httpx.Client(base_url=server.url, timeout=10)
        wait_until(lambda: ready(client))
        prom = prometheus_for(server.url.removeprefix("http://"))
        time.sleep(1.5)  # a scrape before any traffic
        start = time.time()
        for n in range(240):
            user = f"u-{n % 80:05d}"
            cands = list(rng.choice(items, size=8, replace=False))
            body = client.post("/v1/rank", json={"user_id": user, "item_ids": cands}).json()
            served[body["model_version"]] = served.get(body["model_version"], 0) + 1
            shown = body["ranked_item_ids"][:5]
            events = [
                {
                    "request_id": body["request_id"],
                    "request_token": body["request_token"],
                    "item_id": item,
                    "event_type": "impression",
                    "position": pos,
                }
                for pos, item in enumerate(shown)
            ]
            if rng.random() < 0.4:
                events.append(
                    {
                        "request_id": body["request_id"],
                        "request_token": body["request_token"],
                        "item_id": shown[0],
                        "event_type": "click",
                    }
                )
            assert client.post("/v1/feedback", json={"events": events}).status_code == 200
        # Client errors are answered 4xx and are not server errors.
        assert client.post("/v1/rank", json={"user_id": "u", "item_ids": []}).status_code == 422
        end = time.time()
        time.sleep(2.5)  # two more scrapes
        figures = prom.service_figures(start - 1.0, end + 2.0)
    # The service flushed its feedback log on shutdown.
    dt = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d")
    landing = LocalStorage(tmp_path / "landing")
    report = land_feedback(
        LocalStorage(tmp_path / "feedback"), landing, LocalStorage(tmp_path / "wh"), dt
    )
    log = read_feedback_log(LocalStorage(tmp_path / "feedback"), dt)
    assert report["attributable"] == len(log) > 1000

    # Prometheus counted exactly the requests each version answered.
    assert {v: f.requests for v, f in figures.items() if v in served} == served
    assert all(figures[v].errors == 0 for v in served)
    for v in served:
        assert 0 < figures[v].latency_p99_ms < 2000
        assert sum(figures[v].score_counts) == 8 * served[v]

    from reckit_assets.core.io.frames import parquet_bytes_to_frame

    landed = parquet_bytes_to_frame(landing.read_bytes(report["key"]))
    aliases = {production: "production", canary: "canary"}
    users = per_user(with_alias(landed, aliases))
    summary = summarize(users).set_index("model_version")
    assert summary.loc[canary, "alias"] == "canary"
    assert summary["impressions"].sum() == 240 * 5
    assert summary["clicks"].sum() == (landed["event_type"] == "click").sum()

    # The same figures feed the judge (offline holdout scores: the canary's own score counts).
    holdout = np.repeat(np.r_[figures[canary].score_bounds[:-1], 1.0], figures[canary].score_counts)
    window = (dt, dt)
    arms = {v: arm_metrics(users, v, window, figures[v], holdout) for v in (canary, production)}
    assert arms[canary].score_psi < 0.01
    assert arms[canary].users + arms[production].users == 80
    verdict = judge(
        arms[canary],
        arms[production],
        CanaryState(0.5, 1, 1, arms[canary].users, arms[production].users),
    )
    assert verdict.decision == "inconclusive" and "too little data" in verdict.reasons[0]
    assert verdict.figures["requests_canary"] == served[canary]
