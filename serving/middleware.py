"""The outermost layer of every HTTP request: rate limit, body limits, JSON literals, metrics.

Plain ASGI rather than Starlette's BaseHTTPMiddleware: it costs microseconds, not a task per
request. In order, before the app sees a request:

* per-client rate limit (token bucket per endpoint group and client address): 429 + Retry-After;
* the body is read here, up to the size limit and within the body timeout, so an oversized body
  is refused with 413 whether it announced its length (Content-Length) or not (chunked), and a
  client that stops half-way through its body is cut off with 408 instead of holding the
  connection;
* a body holding the non-JSON literals ``NaN``, ``Infinity`` or ``-Infinity`` outside strings
  (in UTF-8, UTF-16 or UTF-32) is refused with 400 (Python's parser would accept them; RFC 8259 does not, and a non-finite number
  echoed in an error would make the response itself unencodable).

Every response refused here carries ``Connection: close``: the rest of an unread body must not be
parsed as the next request.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving.metrics import NO_VERSION, ServingMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

VERSION_HEADER = b"x-model-version"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


_NON_JSON_LITERALS = (b"NaN", b"Infinity")


class RateLimiter:
    """Token buckets per (group, client): ``rate`` requests/s, bursts of ``rate * burst_seconds``.

    Memory is bounded: beyond ``max_clients`` the least recently seen client is forgotten (it
    starts again with a full bucket, which only ever errs towards admitting).
    """

    def __init__(
        self, rates: dict[str, float], burst_seconds: float, max_clients: int = 65_536
    ) -> None:
        self.rates = {group: rate for group, rate in rates.items() if rate > 0}
        self.burst_seconds = burst_seconds
        self.max_clients = max_clients
        self._buckets: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, group: str, client: str, now: float | None = None) -> float:
        """0.0 when admitted, else the seconds until a request would be."""
        rate = self.rates.get(group)
        if rate is None:
            return 0.0
        now = time.monotonic() if now is None else now
        capacity = max(1.0, rate * self.burst_seconds)
        key = (group, client)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [capacity, now]
                while len(self._buckets) > self.max_clients:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                bucket[0] = min(capacity, bucket[0] + (now - bucket[1]) * rate)
                bucket[1] = now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return 0.0
            return (1.0 - bucket[0]) / rate


def rate_group(path: str) -> str | None:
    """Which rate limit a path falls under: ``rank`` (scoring), ``feedback``, or none."""
    if path == "/v1/feedback":
        return "feedback"
    if path in ("/v1/rank", "/predict") or path.startswith("/predictions/"):
        return "rank"
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        return "rank"  # KServe V1
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "rank"  # KServe V2
    return None


class ServingMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: ServingMetrics,
        max_body_bytes: int,
        resolve: Callable[[Scope], str | None] = lambda scope: None,
        body_timeout: float = 10.0,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.limiter = limiter
        # Names the endpoint of a request refused before routing (413), for its metrics label.
        self.resolve = resolve

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen = {"status": 500, "version": NO_VERSION}

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == VERSION_HEADER:
                        seen["version"] = value.decode("latin-1")
            await send(message)

        try:
            group = rate_group(scope.get("path", "")) if self.limiter else None
            if group is not None:
                client = (scope.get("client") or ("unknown", 0))[0]
                wait = self.limiter.admit(group, client)
                if wait > 0:
                    self.metrics.rate_limited.labels(group).inc()
                    await _send_json(
                        send_and_watch,
                        429,
                        {
                            "detail": f"rate limit for {group} requests from {client} exceeded; "
                            f"retry in {wait:.2f}s (RECKIT_RATE_LIMIT_{group.upper()})"
                        },
                        extra_headers=[(b"retry-after", str(max(1, math.ceil(wait))).encode())],
                    )
                    return
            if scope["method"] in _BODY_METHODS:
                body_or_error = await self._read_body(scope, receive)
                if isinstance(body_or_error, tuple):
                    status, detail = body_or_error
                    await _send_json(send_and_watch, status, {"detail": detail})
                    return
                receive = _replay(body_or_error, receive)
            await self.app(scope, receive, send_and_watch)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or self.resolve(scope) or "unmatched"
            self.metrics.observe_request(
                endpoint,
                scope["method"],
                seen["status"],
                seen["version"],
                time.perf_counter() - started,
            )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | tuple[int, str]:
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await self._read_body_untimed(scope, receive)
        except TimeoutError:
            return 408, (
                f"request body not received within {self.body_timeout:g}s "
                f"(RECKIT_BODY_TIMEOUT_SECONDS)"
            )
        if isinstance(body, bytes) and any(lit in _as_utf8(body) for lit in _NON_JSON_LITERALS):
            problem = non_json_literal(body)  # the fast check found the text; parse to be sure
            if problem is not None:
                return 400, problem
        return body

    async def _read_body_untimed(self, scope: Scope, receive: Receive) -> bytes | tuple[int, str]:
        limit = self.max_body_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    return 400, f"invalid Content-Length header {value.decode('latin-1')!r}"
                if announced > limit:
                    return 413, _too_large(announced, limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 400, "client disconnected before sending the whole body"
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return 413, _too_large(size, limit, at_least=True)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _as_utf8(body: bytes) -> bytes:
    """``body`` in UTF-8 for the literal scan: JSON may come as UTF-16 or UTF-32 (RFC 8259
    allows the parser to detect them, and Python's does), where ``NaN`` is not the bytes b"NaN"."""
    encoding = json.detect_encoding(body)
    if encoding == "utf-8":
        return body
    try:
        return body.decode(encoding).encode("utf-8", "surrogatepass")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return body  # not text in that encoding: the app's parser reports it


class _Literal(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _Literal(name)


def non_json_literal(body: bytes) -> str | None:
    """A message when ``body`` is JSON only by Python's lenient parser (``NaN``, ``Infinity``,
    ``-Infinity`` as values), else None (including for bodies that are not JSON at all: the
    app's parser reports those)."""
    try:
        json.loads(body, parse_constant=_refuse_constant)
    except _Literal as exc:
        return (
            f"request body is not valid JSON: {exc.args[0]} is not a JSON number "
            "(RFC 8259 has no NaN or Infinity)"
        )
    except (ValueError, RecursionError):
        return None
    return None


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    return (
        f"request body of {'at least ' if at_least else ''}{size} bytes exceeds the limit of "
        f"{limit} bytes (RECKIT_MAX_BODY_BYTES)"
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: disconnect notifications

    return replay


async def _send_json(
    send: Send, status: int, payload: dict, extra_headers: list[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *extra_headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
