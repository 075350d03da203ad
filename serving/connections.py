"""Connections that cannot be held: a header deadline and bounds on connections mid-headers.

uvicorn (0.54) has no header timeout: its keep-alive timer is cancelled by the first byte of a
request, and nothing limits how long a request line and headers may take, so sockets that send
half a header and wait (slowloris) hold a file descriptor each until the process runs out
(1,100 such sockets against a 1,024 open-file limit: new clients get connection resets). The
ASGI app only sees a request once its headers are complete, so the guard sits in the HTTP
protocol: :func:`guarded` subclasses uvicorn's protocol class (httptools or h11) and

* closes a connection whose request line and headers have not all arrived within
  ``RECKIT_HEADER_TIMEOUT_SECONDS`` of its first byte (or of the connection, for the first
  request);
* bounds the connections still sending headers, per client address
  (``RECKIT_MAX_PENDING_PER_CLIENT``) and in all (``RECKIT_MAX_PENDING_CONNECTIONS``): beyond a
  bound, the **oldest** such connection is closed, so a new client (whose headers take
  microseconds) always gets in while a flood only ever churns its own sockets, and the number of
  descriptors slow clients can hold stays below the open-file limit.

Forwarded headers: uvicorn trusts ``X-Forwarded-For`` from 127.0.0.1 by default, which lets a
loopback client pick its address (and so its rate-limit bucket). :func:`uvicorn_options` turns
proxy headers on only for ``RECKIT_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from serving.config import ServingConfig

log = logging.getLogger("serving.connections")


class ConnectionGuard:
    """Connections still sending a request line and headers, oldest first, per client."""

    def __init__(self, header_timeout: float, max_pending: int, max_pending_per_client: int):
        self.header_timeout = header_timeout
        self.max_pending = max_pending
        self.max_pending_per_client = max_pending_per_client
        self._pending: OrderedDict[int, Any] = OrderedDict()
        self._by_client: dict[str, OrderedDict[int, Any]] = {}
        self.timed_out = 0  # closed at the header deadline
        self.evicted = 0  # closed to make room (a bound was reached)

    @classmethod
    def for_config(cls, config: ServingConfig) -> ConnectionGuard:
        return cls(
            config.header_timeout_seconds,
            config.max_pending_connections,
            config.max_pending_per_client,
        )

    @property
    def pending(self) -> int:
        return len(self._pending)

    def waiting(self, conn: Any) -> None:
        """``conn`` starts a request: arm its deadline and make room under the bounds."""
        loop = asyncio.get_running_loop()
        conn._guard_timer = loop.call_later(self.header_timeout, self._deadline, conn)
        key = id(conn)
        self._pending[key] = conn
        mine = self._by_client.setdefault(conn._guard_client, OrderedDict())
        mine[key] = conn
        while len(mine) > self.max_pending_per_client:
            self._evict(next(iter(mine.values())))
        while len(self._pending) > self.max_pending:
            self._evict(next(iter(self._pending.values())))

    def done(self, conn: Any) -> None:
        """``conn``'s headers are complete (or it closed)."""
        timer = getattr(conn, "_guard_timer", None)
        if timer is None:
            return
        timer.cancel()
        conn._guard_timer = None
        key = id(conn)
        self._pending.pop(key, None)
        mine = self._by_client.get(conn._guard_client)
        if mine is not None:
            mine.pop(key, None)
            if not mine:
                del self._by_client[conn._guard_client]

    def _close(self, conn: Any) -> None:
        self.done(conn)
        if not conn.transport.is_closing():
            conn.transport.close()

    def _deadline(self, conn: Any) -> None:
        self.timed_out += 1
        self._close(conn)

    def _evict(self, conn: Any) -> None:
        self.evicted += 1
        if self.evicted in (1, 100, 10_000) or self.evicted % 100_000 == 0:
            log.warning(
                "%d connections closed before sending their headers to stay within "
                "RECKIT_MAX_PENDING_CONNECTIONS=%d / RECKIT_MAX_PENDING_PER_CLIENT=%d",
                self.evicted,
                self.max_pending,
                self.max_pending_per_client,
            )
        self._close(conn)


class _Guarded:
    """Mixed in before uvicorn's protocol class (see :func:`guarded`)."""

    guard: ConnectionGuard | None = None

    def _the_guard(self) -> ConnectionGuard:
        guard = type(self).guard
        if guard is None:  # imported by name (uvicorn --http, several workers): the environment's
            guard = type(self).guard = ConnectionGuard.for_config(ServingConfig.from_env())
        return guard

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._guard_timer = None
        self._guard_client = self.client[0] if self.client else "unknown"  # type: ignore[attr-defined]
        self._guard_cycle = self.cycle  # type: ignore[attr-defined]
        self._the_guard().waiting(self)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle  # type: ignore[attr-defined]
        if self._guard_timer is None and (cycle is None or cycle.response_complete):
            self._guard_cycle = cycle  # the first bytes of the next request on this connection
            self._the_guard().waiting(self)
        super().data_received(data)  # type: ignore[misc]
        # uvicorn starts a new request cycle exactly when a request's headers are complete.
        if self._guard_timer is not None and self.cycle is not self._guard_cycle:  # type: ignore[attr-defined]
            self._the_guard().done(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._the_guard().done(self)
        super().connection_lost(exc)  # type: ignore[misc]


def guarded(base: type[asyncio.Protocol], guard: ConnectionGuard | None = None) -> type:
    """``base`` (a uvicorn HTTP protocol class) with the header deadline and bounds."""
    return type(f"Guarded{base.__name__}", (_Guarded, base), {"guard": guard})


def _auto_protocol() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return AutoHTTPProtocol


# For ``uvicorn --http serving.connections:GuardedProtocol`` and worker processes: settings
# from the environment, read at the first connection.
GuardedProtocol = guarded(_auto_protocol())


def uvicorn_options(config: ServingConfig, guard: ConnectionGuard | None = None) -> dict:
    """The connection settings ``uvicorn.Config``/``uvicorn.run`` need for this service."""
    return {
        "http": guarded(_auto_protocol(), guard or ConnectionGuard.for_config(config)),
        # Off unless proxies are configured: a forwarded address is only as good as its sender.
        "proxy_headers": bool(config.trusted_proxies),
        "forwarded_allow_ips": list(config.trusted_proxies),
        # No endpoint is a websocket; an upgrade would also outlive the header guard's view.
        "ws": "none",
    }
