"""Served traffic becomes tomorrow's training data: feedback events in the landing-zone format.

Provenance. Only feedback on a request this service served is written where the pipeline lands
data. ``/v1/rank`` returns with each ranking a **signed request token** (HMAC-SHA256 over the
request id, model, version, alias, user, device and serving time; key ``RECKIT_FEEDBACK_SECRET``):
feedback that carries it is attributed in any worker or replica sharing the key, with no state.
Feedback that carries only a ``request_id`` is attributed from this process's **served-request
memory** (a bounded LRU, which also knows the served items, so a click on an item that was not in
the ranking is refused). Anything else (an unknown request id, reckit's own events, which have
none) is accepted only with the ingest or admin token and is written **apart**, under
``unattributed/events/dt=.../``, never under the landing layout's ``events/``.

Files: buffered rows are written as Parquet under

    events/dt=YYYY-MM-DD/serving-<host>-<pid>-<start>-<seq>.parquet               (attributed)
    unattributed/events/dt=YYYY-MM-DD/serving-<host>-<pid>-<start>-<seq>.parquet  (apart)

with the landing ``events`` columns first, then ``alias``, ``source``, ``scene`` and
``reckit_type`` (added columns only: landing readers ignore extras). Every ranked position is
logged as an ``impression`` when it is served (``source=served``; ``RECKIT_SERVED_IMPRESSIONS``),
so a day's impressions exist even when clients report only clicks; a client's own impression of
the same (request, item) has the same ``event_id`` when it carries no ``ts``, and the pipeline's
impression dedup on (request_id, item_id) keeps one either way. Writes go through
``reckit_assets.core.io.storage`` (atomic: a reader never sees a torn file) when the buffer is
full, on a timer, and on shutdown. The service never writes ``_SUCCESS``: only whoever knows a
day is complete (the export that merges all servers' logs) may declare it so.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from reckit_assets.core.ingest.landing import SCHEMAS, partition_prefix
from reckit_assets.core.io.frames import frame_to_parquet_bytes
from reckit_assets.core.io.storage import Storage

log = logging.getLogger("serving.feedback")

EVENT_COLUMNS = tuple(c.name for c in SCHEMAS["events"])
# Added after the landing columns (a reader that knows only those ignores these).
EXTRA_COLUMNS = ("alias", "source", "scene", "reckit_type")
LOG_COLUMNS = (*EVENT_COLUMNS, *EXTRA_COLUMNS)
UNKNOWN_VERSION = "unknown"  # label for feedback not attributable to a served request
UNATTRIBUTED_PREFIX = "unattributed"
# Sources: "served" (logged by /v1/rank), "client" (our feedback shape), "reckit" (reckit's).
SERVED, CLIENT, RECKIT = "served", "client", "reckit"


def _item_key(item_id: str) -> int:
    # 32 bits of a per-process hash: 4 bytes per served item in memory; a false "served" answer
    # needs a collision among one request's items (~1e-8 for 100 items).
    return hash(item_id) & 0xFFFFFFFF


@dataclass(frozen=True)
class ServedRequest:
    model: str
    model_version: str
    user_id: str
    device: str | None
    alias: str = "production"
    served_at: float = 0.0  # epoch seconds
    items: array | None = None  # _item_key of each served item; None: unknown (from a token)

    def served_item(self, item_id: str) -> bool | None:
        """Whether ``item_id`` was in the ranking; None when this record cannot tell."""
        return None if self.items is None else _item_key(item_id) in self.items

    @staticmethod
    def item_keys(item_ids: Sequence[str]) -> array:
        return array("I", [_item_key(i) for i in item_ids])


class ServedRequests:
    """request_id -> who served it; the oldest are forgotten beyond ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, ServedRequest] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, request_id: str, served: ServedRequest) -> None:
        with self._lock:
            self._items[request_id] = served
            self._items.move_to_end(request_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, request_id: str) -> ServedRequest | None:
        with self._lock:
            return self._items.get(request_id)

    def __len__(self) -> int:
        return len(self._items)


class TokenError(ValueError):
    """A request token that is malformed or whose signature does not match (``reason``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class RequestTokens:
    """Signed request tokens: ``v1.<payload>.<mac>``, both base64url; the payload is JSON.

    A token proves the service served that request (id, model, version, alias, user, device, time)
    to whoever holds it; it does not list the served items (it would grow with the candidates).
    With no configured secret the key is random per process: tokens then verify only in the
    process that issued them.
    """

    VERSION = "v1"

    def __init__(self, secret: str | None) -> None:
        self.shared = secret is not None
        self._key = (secret or secrets.token_hex(32)).encode("utf-8")

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, f"{self.VERSION}.{payload}".encode(), hashlib.sha256)
        return _b64(digest.digest()[:18])

    def issue(self, request_id: str, served: ServedRequest) -> str:
        body = {
            "r": request_id,
            "m": served.model,
            "v": served.model_version,
            "a": served.alias,
            "u": served.user_id,
            "d": served.device,
            "t": round(served.served_at, 3),
        }
        payload = _b64(json.dumps(body, separators=(",", ":")).encode("utf-8"))
        return f"{self.VERSION}.{payload}.{self._mac(payload)}"

    def verify(self, token: str) -> tuple[str, ServedRequest]:
        """(request_id, who served it), or :class:`TokenError`."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != self.VERSION:
            raise TokenError("bad_token", "request_token is not a token this service issues")
        payload, mac = parts[1], parts[2]
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(payload).encode()):
            raise TokenError("bad_token", "request_token signature does not match")
        try:
            body = json.loads(_unb64(payload))
            served = ServedRequest(
                model=str(body["m"]),
                model_version=str(body["v"]),
                user_id=str(body["u"]),
                device=None if body["d"] is None else str(body["d"]),
                alias=str(body["a"]),
                served_at=float(body["t"]),
            )
            return str(body["r"]), served
        except (ValueError, KeyError, TypeError) as exc:  # signed but unreadable: our bug
            raise TokenError("bad_token", f"request_token payload unreadable: {exc}") from exc


def _request_key(request_id: str) -> bytes:
    return f"{request_id}\x1f".encode()


def _event_key(item_id: str, event_type: str, ts_ms: int | None) -> bytes:
    return f"{item_id}\x1f{event_type}\x1f{ts_ms if ts_ms is not None else ''}".encode()


def event_id(request_id: str, item_id: str, event_type: str, ts_ms: int | None) -> str:
    """Deterministic: a client retrying the same event produces the same id, and the pipeline's
    dedup on ``event_id`` drops the copy."""
    digest = hashlib.sha256(_request_key(request_id) + _event_key(item_id, event_type, ts_ms))
    return "s" + digest.hexdigest()[:24]


def impression_ids(request_id: str, item_ids: Sequence[str]) -> list[str]:
    """``event_id(request_id, item, "impression", None)`` for every item, the request's part
    encoded once (the served-impression log computes 100 of these per request)."""
    prefix = _request_key(request_id)
    return [
        "s" + hashlib.sha256(prefix + _event_key(item, "impression", None)).hexdigest()[:24]
        for item in item_ids
    ]


@dataclass(frozen=True)
class ServedList:
    """One ranking as served: expanded into one impression row per position at flush time
    (cheaper than building 100 dicts inside the request)."""

    request_id: str
    user_id: str
    item_ids: Sequence[str]
    model_version: str
    alias: str
    device: str | None
    ts: datetime


class FeedbackLog:
    """A buffer of event rows (and served lists) and the files it is flushed to.

    ``prefix`` is prepended to the landing layout: "" writes ``events/dt=...`` (attributed
    traffic), ``unattributed`` writes ``unattributed/events/dt=...`` (kept apart).
    """

    def __init__(
        self,
        storage: Storage | None,
        flush_rows: int = 5000,
        max_buffered: int = 1_000_000,
        host: str | None = None,
        prefix: str = "",
    ) -> None:
        self.storage = storage
        self.prefix = prefix.strip("/")
        self.flush_rows = flush_rows
        self.max_buffered = max_buffered
        self.host = _safe(host or socket.gethostname())
        self.pid = os.getpid()
        # The pid alone repeats across container restarts (often 1): the start time keeps a
        # restarted server from overwriting the files of the previous one.
        self._run = f"{int(time.time() * 1000):x}"
        self._seq = 0
        self._rows: list[dict] = []
        self._served: list[ServedList] = []
        self._served_rows = 0
        self._lock = threading.Lock()  # guards the buffer
        self._flush_lock = threading.Lock()  # one flush at a time
        self.rows_written = 0
        self.files_written: list[str] = []
        self.dropped = 0
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return self.storage is not None

    def append(self, rows: list[dict]) -> bool:
        """Buffer rows; True when a flush is due."""
        if not self.enabled:
            return False
        with self._lock:
            self._rows.extend(rows)
            overflow = len(self._rows) - self.max_buffered
            if overflow > 0:  # storage has been failing for long: bounded memory beats a crash
                del self._rows[:overflow]
                self.dropped += overflow
            return len(self._rows) >= self.flush_rows

    def append_served(self, served: ServedList) -> bool:
        """Buffer one served ranking (one impression per item); True when a flush is due."""
        if not self.enabled:
            return False
        with self._lock:
            self._served.append(served)
            self._served_rows += len(served.item_ids)
            while self._served_rows > self.max_buffered and self._served:
                dropped = self._served.pop(0)
                self._served_rows -= len(dropped.item_ids)
                self.dropped += len(dropped.item_ids)
            return len(self._rows) + self._served_rows >= self.flush_rows

    @property
    def buffered(self) -> int:
        return len(self._rows) + self._served_rows

    def flush(self) -> int:
        """Write the buffered rows (one file per day); returns rows written. Blocking."""
        if not self.enabled:
            return 0
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
                served, self._served, self._served_rows = self._served, [], 0
            if not rows and not served:
                return 0
            frame = _frame(rows, served)
            written = 0
            base = f"{self.prefix}/" if self.prefix else ""
            # one file per UTC day (integer days since the epoch: no per-row string formatting)
            epoch_days = frame["ts"].dt.tz_convert(None).to_numpy().astype("datetime64[D]")
            for day, part in frame.groupby(epoch_days, sort=True):
                dt = str(np.datetime64(day, "D"))
                self._seq += 1
                key = (
                    f"{base}{partition_prefix('events', str(dt))}/"
                    f"serving-{self.host}-{self.pid}-{self._run}-{self._seq:06d}.parquet"
                )
                try:
                    self.storage.write_bytes(
                        key, frame_to_parquet_bytes(part.reset_index(drop=True))
                    )
                except Exception as exc:
                    self.last_error = f"{key}: {type(exc).__name__}: {exc}"
                    log.warning(
                        "feedback flush failed, rows kept for the next one: %s", self.last_error
                    )
                    back = part.to_dict("records")
                    with self._lock:
                        self._rows[:0] = back
                    continue
                written += len(part)
                self.files_written.append(key)
            self.rows_written += written
            return written


def _served_frame(served: list[ServedList]) -> pd.DataFrame:
    """One impression row per served position, built column-wise (the flush runs beside
    requests: per-row Python work here is CPU the event loop does not get)."""
    sizes = np.fromiter((len(s.item_ids) for s in served), dtype=np.int64, count=len(served))

    def per_request(values: list) -> np.ndarray:
        return np.repeat(np.array(values, dtype=object), sizes)

    rids = per_request([s.request_id for s in served])
    items = [i for s in served for i in s.item_ids]
    ids = [i for s in served for i in impression_ids(s.request_id, s.item_ids)]
    ms = np.repeat(
        np.fromiter((int(s.ts.timestamp() * 1000) for s in served), np.int64, len(served)), sizes
    )
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    return pd.DataFrame(
        {
            "event_id": pd.array(ids, dtype="string"),
            "ts": pd.to_datetime(ms, unit="ms", utc=True).astype("datetime64[ms, UTC]"),
            "user_id": pd.array(per_request([s.user_id for s in served]), dtype="string"),
            "item_id": pd.array(items, dtype="string"),
            "event_type": pd.array(["impression"] * len(items), dtype="string"),
            "request_id": pd.array(rids, dtype="string"),
            "position": pd.array(np.arange(len(items)) - starts, dtype="Int64"),
            "device": pd.array(per_request([s.device for s in served]), dtype="string"),
            "model_version": pd.array(
                per_request([s.model_version for s in served]), dtype="string"
            ),
            "alias": pd.array(per_request([s.alias for s in served]), dtype="string"),
            "source": pd.array([SERVED] * len(items), dtype="string"),
            "scene": pd.array([None] * len(items), dtype="string"),
            "reckit_type": pd.array([None] * len(items), dtype="string"),
        },
        columns=list(LOG_COLUMNS),
    )


def _frame(rows: list[dict], served: list[ServedList] = ()) -> pd.DataFrame:
    parts = []
    if rows:
        frame = pd.DataFrame(rows, columns=list(LOG_COLUMNS))
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[ms, UTC]")
        frame["position"] = frame["position"].astype("Int64")
        for col in LOG_COLUMNS:
            if col not in ("ts", "position"):
                frame[col] = frame[col].astype("string")
        parts.append(frame)
    if served:
        parts.append(_served_frame(list(served)))
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _safe(host: str) -> str:
    """A hostname fit for a file name (the key's ``<host>`` part)."""
    cleaned = "".join(c if c.isalnum() or c in "-." else "-" for c in host)
    return cleaned.strip("-.") or "host"


def utc_now() -> datetime:
    return datetime.now(UTC)
