"""Served traffic becomes tomorrow's training data: feedback events in the landing-zone format.

Provenance. Only feedback on a request this service served, reported for items it served to
that user, is written where the pipeline lands data. ``/v1/rank`` returns with each ranking a
**signed request token** (HMAC-SHA256, key ``RECKIT_FEEDBACK_SECRET``) bound to the server's own
request id, the user, device, model version and alias, the caller (the API key's), an expiry
and keyed digests of the served items: feedback that carries it is attributed in any worker or
replica sharing the key, with no state. A request id alone is never a credential (the caller may
choose one): feedback without a valid token is accepted only with the ingest or admin token and
is written **apart**, under ``unattributed/events/dt=.../``, never under the landing layout's
``events/``. Each (request, item) takes one impression, one click and one conversion, the
conversion only after the click (:class:`Engagements`, per process; across replicas the
deterministic ``event_id`` lets the pipeline's dedup drop repeats).

Files: buffered rows are written as Parquet under

    events/dt=YYYY-MM-DD/serving-<host>-<pid>-<start>-<seq>.parquet               (attributed)
    unattributed/events/dt=YYYY-MM-DD/serving-<host>-<pid>-<start>-<seq>.parquet  (apart)

with the landing ``events`` columns first, then ``alias``, ``source``, ``scene``,
``reckit_type`` and ``caller`` (added columns only: landing readers ignore extras). Every ranked
position is logged as an ``impression`` when it is served (``source=served``;
``RECKIT_SERVED_IMPRESSIONS``), so a day's impressions exist even when clients report only
clicks; an attributed event's ``event_id`` depends only on (request, item, type), so a client's
own impression of a served item has the served one's id and the pipeline's dedup keeps one. Writes go through
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
EXTRA_COLUMNS = ("alias", "source", "scene", "reckit_type", "caller")
LOG_COLUMNS = (*EVENT_COLUMNS, *EXTRA_COLUMNS)
UNKNOWN_VERSION = "unknown"  # label for feedback not attributable to a served request
UNATTRIBUTED_PREFIX = "unattributed"
# Sources: "served" (logged by /v1/rank), "client" (our feedback shape), "reckit" (reckit's).
SERVED, CLIENT, RECKIT = "served", "client", "reckit"


@dataclass(frozen=True)
class ServedRequest:
    """Who served a request: what its token proves. ``items`` are keyed digests of the served
    item ids (:meth:`RequestTokens.item_digest`); None only for records built by hand."""

    model: str
    model_version: str
    user_id: str
    device: str | None
    alias: str = "production"
    served_at: float = 0.0  # epoch seconds
    caller: str | None = None  # the API key's caller that asked for the ranking (None: open)
    client_request_id: str | None = None  # the caller's own id for it, if it sent one
    expires_at: float | None = None  # feedback is refused after this (plus clock skew)
    items: frozenset[bytes] | None = None


class Engagements:
    """What was reported per served (request, item): each of impression, click and conversion
    is taken once, and a conversion only after a click. Bounded: beyond ``capacity`` requests
    the least recently reported is forgotten (a repeat then reaches the log with the same
    ``event_id``, which the pipeline's dedup drops)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, dict[str, set[str]]] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, request_id: str, item_id: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._items.get(request_id, {}).get(item_id, ()))

    def record(self, events: Sequence[tuple[str, str, str]]) -> None:
        """Remember ``(request_id, item_id, event_type)`` reports."""
        with self._lock:
            for request_id, item_id, event_type in events:
                by_item = self._items.get(request_id)
                if by_item is None:
                    by_item = self._items[request_id] = {}
                self._items.move_to_end(request_id)
                by_item.setdefault(item_id, set()).add(event_type)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

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


ITEM_DIGEST_BYTES = 3


class RequestTokens:
    """Signed request tokens: ``v2.<payload>.<items>.<mac>``, all base64url.

    The payload (JSON) names the server's request id, the caller's own id, model, version,
    alias, user, device, caller, serving time and expiry; ``items`` holds a 3-byte keyed digest
    (BLAKE2b under the secret, salted with the request id) of every served item, so any worker
    or replica sharing the secret can tell whether an item was in the ranking without state
    (a guessed item passes with probability n / 2**24, ~6e-6 at 100 candidates). With no
    configured secret the key is random per process: tokens then verify only there.
    """

    VERSION = "v2"

    def __init__(self, secret: str | None) -> None:
        self.shared = secret is not None
        self._key = (secret or secrets.token_hex(32)).encode("utf-8")
        self._item_key = hashlib.sha256(b"items\x1f" + self._key).digest()

    def _mac(self, signed: str) -> str:
        digest = hmac.new(self._key, f"{self.VERSION}.{signed}".encode(), hashlib.sha256)
        return _b64(digest.digest()[:18])

    def _item_hasher(self, request_id: str) -> hashlib.blake2b:
        hasher = hashlib.blake2b(key=self._item_key, digest_size=ITEM_DIGEST_BYTES)
        hasher.update(f"{request_id}\x1f".encode("utf-8", "surrogatepass"))
        return hasher

    def item_digest(self, request_id: str, item_id: str) -> bytes:
        hasher = self._item_hasher(request_id)
        hasher.update(item_id.encode("utf-8", "surrogatepass"))
        return hasher.digest()

    def item_digests(self, request_id: str, item_ids: Sequence[str]) -> bytes:
        """``item_digest`` of every item, concatenated (the keyed state is built once)."""
        base = self._item_hasher(request_id)
        out = bytearray()
        for item in item_ids:
            hasher = base.copy()
            hasher.update(item.encode("utf-8", "surrogatepass"))
            out += hasher.digest()
        return bytes(out)

    def issue(self, request_id: str, served: ServedRequest, item_ids: Sequence[str] = ()) -> str:
        body = {
            "r": request_id,
            "q": served.client_request_id,
            "m": served.model,
            "v": served.model_version,
            "a": served.alias,
            "u": served.user_id,
            "d": served.device,
            "c": served.caller,
            "t": round(served.served_at, 3),
            "x": None if served.expires_at is None else round(served.expires_at, 3),
        }
        payload = _b64(json.dumps(body, separators=(",", ":")).encode("utf-8", "surrogatepass"))
        items = _b64(self.item_digests(request_id, item_ids))
        signed = f"{payload}.{items}"
        return f"{self.VERSION}.{signed}.{self._mac(signed)}"

    def verify(self, token: str) -> tuple[str, ServedRequest]:
        """(the server's request id, who served it), or :class:`TokenError`."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != self.VERSION:
            raise TokenError("bad_token", "request_token is not a token this service issues")
        signed, mac = f"{parts[1]}.{parts[2]}", parts[3]
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(signed).encode()):
            raise TokenError("bad_token", "request_token signature does not match")
        try:
            body = json.loads(_unb64(parts[1]).decode("utf-8", "surrogatepass"))
            raw = _unb64(parts[2])
            n = ITEM_DIGEST_BYTES
            served = ServedRequest(
                model=str(body["m"]),
                model_version=str(body["v"]),
                user_id=str(body["u"]),
                device=None if body["d"] is None else str(body["d"]),
                alias=str(body["a"]),
                served_at=float(body["t"]),
                caller=None if body["c"] is None else str(body["c"]),
                client_request_id=None if body["q"] is None else str(body["q"]),
                expires_at=None if body["x"] is None else float(body["x"]),
                items=frozenset(raw[k : k + n] for k in range(0, len(raw), n)),
            )
            return str(body["r"]), served
        except (ValueError, KeyError, TypeError) as exc:  # signed but unreadable: our bug
            raise TokenError("bad_token", "request_token payload unreadable") from exc

    def click_receipt(self, request_id: str, item_id: str) -> str:
        """Proof that this service took a click on (request, item): a conversion carrying it is
        accepted by any worker or replica sharing the secret, not only the one that took the
        click."""
        data = f"click\x1f{request_id}\x1f{item_id}".encode("utf-8", "surrogatepass")
        return _b64(hmac.new(self._key, data, hashlib.sha256).digest()[:18])

    def is_click_receipt(self, request_id: str, item_id: str, receipt: str | None) -> bool:
        if not receipt:
            return False
        expected = self.click_receipt(request_id, item_id)
        return hmac.compare_digest(receipt.encode("ascii", "replace"), expected.encode())

    def served_item(self, request_id: str, served: ServedRequest, item_id: str) -> bool:
        return served.items is not None and self.item_digest(request_id, item_id) in served.items


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
    caller: str | None = None


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
        self.host = safe_host(host or socket.gethostname())
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
            "caller": pd.array(per_request([s.caller for s in served]), dtype="string"),
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


def safe_host(host: str) -> str:
    """A hostname fit for a file name (the key's ``<host>`` part)."""
    cleaned = "".join(c if c.isalnum() or c in "-." else "-" for c in host)
    return cleaned.strip("-.") or "host"


def utc_now() -> datetime:
    return datetime.now(UTC)
