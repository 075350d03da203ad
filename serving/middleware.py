"""The outermost layer of every HTTP request: body-size limit, then metrics.

Plain ASGI rather than Starlette's BaseHTTPMiddleware: it costs microseconds, not a task per
request. The body is read here, up to the limit, before the app sees it, so an oversized body is
refused with 413 whether it announced its length (Content-Length) or not (chunked), and never
reaches JSON parsing.
"""

from __future__ import annotations

import json
import time
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


class ServingMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: ServingMetrics,
        max_body_bytes: int,
        resolve: Callable[[Scope], str | None] = lambda scope: None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
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


async def _send_json(send: Send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
