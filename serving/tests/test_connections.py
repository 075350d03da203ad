"""Connections that cannot be held (slow headers) and client addresses that cannot be forged
(X-Forwarded-For), on a real uvicorn server started with the service's own options."""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from serving.app import create_app
from serving.tests.support import LiveServer, ready, wait_until, with_config

HALF_HEADERS = b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: "


SLOW = 1100
SPARE = 300  # descriptors beyond the slow clients' own: what the server may use for connections


@pytest.fixture
def scarce_files() -> Iterator[None]:
    """The issue's situation in one process: an open-file limit that the 1,100 slow sockets'
    client ends nearly fill, leaving the server ``SPARE`` descriptors, far fewer than 1,100
    (without the guard, holding every slow connection's server end exhausts it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    wanted = in_use + SLOW + SPARE
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"open-file hard limit {hard} < {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def test_1100_slow_header_sockets_do_not_keep_a_normal_client_out(config, scarce_files):
    # A long header deadline: what lets the new client in here is the bound, not the timer.
    cfg = with_config(config, header_timeout_seconds=60)
    with LiveServer(create_app(cfg)) as live:
        with httpx.Client(base_url=live.url, timeout=5) as client:
            wait_until(lambda: ready(client))
        socks = []
        try:
            for _ in range(SLOW):
                sock = socket.create_connection(_address(live.url), timeout=5)
                sock.sendall(HALF_HEADERS)
                socks.append(sock)
            started = time.monotonic()
            with httpx.Client(base_url=live.url, timeout=5) as client:
                response = client.get("/health")
                elapsed = time.monotonic() - started
                assert response.status_code == 200, response.text
                assert client.post("/v1/rank", json={"user_id": "u", "item_ids": ["a"]}).is_success
            assert elapsed < 2.0
            # The server holds at most RECKIT_MAX_PENDING_PER_CLIENT of them; it closed the rest.
            wait_until(lambda: sum(_closed_by_server(s) for s in socks) >= SLOW - 64, timeout=10)
        finally:
            for sock in socks:
                sock.close()


def test_half_sent_headers_are_cut_at_the_header_deadline_also_on_a_kept_alive_connection(
    config,
):
    cfg = with_config(config, header_timeout_seconds=1)
    with LiveServer(create_app(cfg)) as live:
        with httpx.Client(base_url=live.url, timeout=5) as client:
            wait_until(lambda: ready(client))
        fresh = socket.create_connection(_address(live.url), timeout=10)
        fresh.sendall(HALF_HEADERS)
        kept = socket.create_connection(_address(live.url), timeout=10)
        kept.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 ")  # a whole request is served...
        started = time.monotonic()
        kept.sendall(HALF_HEADERS)  # ...then the next one stops half-way through its headers
        for sock in (fresh, kept):
            while sock.recv(65536):  # b"": the server closed it
                pass
            sock.close()
        assert time.monotonic() - started < 4.0


def _limited(url: str, forwarded: bool) -> int:
    event = {"events": [{"request_id": "r", "item_id": "a", "event_type": "click"}]}
    limited = 0
    with httpx.Client(base_url=url, timeout=5) as client:
        for k in range(30):
            headers = {"X-Forwarded-For": f"203.0.113.{k}"} if forwarded else {}
            limited += client.post("/v1/feedback", json=event, headers=headers).status_code == 429
    return limited


def test_forwarded_for_from_an_untrusted_peer_does_not_bypass_the_rate_limit(config):
    cfg = with_config(config, rate_limit_feedback=5, rate_limit_burst_seconds=1)
    with LiveServer(create_app(cfg)) as live:
        with httpx.Client(base_url=live.url) as client:
            wait_until(lambda: ready(client))
        # Default: no proxy is trusted; 30 "different clients" from one loopback peer are one.
        assert _limited(live.url, forwarded=True) >= 20
    trusting = with_config(cfg, trusted_proxies=("127.0.0.1",))
    with LiveServer(create_app(trusting)) as live:
        with httpx.Client(base_url=live.url) as client:
            wait_until(lambda: ready(client))
        # Behind a configured proxy the forwarded address is the client: one bucket each.
        assert _limited(live.url, forwarded=True) == 0
        assert _limited(live.url, forwarded=False) >= 20


def test_the_protocol_named_for_plain_uvicorn_and_workers_reads_the_environment(
    config, monkeypatch
):
    """``uvicorn --http serving.connections:GuardedProtocol`` (and each of several workers)
    builds its guard from the environment at the first connection."""
    import threading

    import uvicorn

    from serving import connections

    monkeypatch.setenv("RECKIT_REGISTRY_URI", config.registry_uri)
    monkeypatch.setenv("RECKIT_FEEDBACK_URI", "none")
    monkeypatch.setenv("RECKIT_HEADER_TIMEOUT_SECONDS", "1")
    monkeypatch.setattr(connections.GuardedProtocol, "guard", None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            http="serving.connections:GuardedProtocol",
            proxy_headers=False,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=15)
        slow = socket.create_connection(_address(url), timeout=10)
        slow.sendall(HALF_HEADERS)
        started = time.monotonic()
        assert slow.recv(65536) == b""  # closed by the server at the 1 s deadline
        assert time.monotonic() - started < 4.0
        assert connections.GuardedProtocol.guard.header_timeout == 1.0
        slow.close()
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
