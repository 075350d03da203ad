"""Helpers the serving tests share: waiting, reloading, and a real uvicorn server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import uvicorn
from fastapi import FastAPI

from serving.config import ServingConfig

with warnings.catch_warnings():  # starlette nudges towards httpx2; httpx is what we ship
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

__all__ = ["AUTH", "TOKEN", "LiveServer", "TestClient", "ready", "reload", "wait_until"]


def wait_until(check: Callable[[], bool], timeout: float = 30.0, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


def ready(client: TestClient | httpx.Client) -> bool:
    return client.get("/health").status_code == 200


def reload(client: TestClient | httpx.Client) -> httpx.Response:
    return client.post("/reload", headers=AUTH)


def with_config(config: ServingConfig, **changes: object) -> ServingConfig:
    return replace(config, **changes)


class LiveServer:
    """A real uvicorn server on a free loopback port, in a thread of the test process."""

    def __init__(self, app: FastAPI) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        from serving.connections import uvicorn_options

        # The service's own connection settings (header deadline, proxy trust), as it runs.
        options = uvicorn_options(app.state.service.config)
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on", **options
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=15)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@contextlib.contextmanager
def every_model_served(registry_uri: str, feedback_uri: str) -> Iterator[str]:
    """A live server of xgboost, deepfm and item2vec (no rate limits, 50 candidates), yielding
    its URL once every model is loaded: the KServe and reckit-client tests share it."""
    from serving.app import create_app

    config = ServingConfig(
        registry_uri=registry_uri,
        models=("xgboost", "deepfm", "item2vec"),
        poll_seconds=3600,
        admin_token=TOKEN,
        max_candidates=50,
        feedback_uri=feedback_uri,
        rate_limit_rank=0,
        rate_limit_feedback=0,
    )
    with LiveServer(create_app(config)) as live:
        with httpx.Client(base_url=live.url) as client:
            wait_until(lambda: ready(client))
            for model in ("item2vec", "deepfm"):
                wait_until(lambda m=model: client.get(f"/v2/models/{m}/ready").status_code == 200)
        yield live.url
