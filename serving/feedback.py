"""Served traffic becomes tomorrow's training data: feedback events in the landing-zone format.

The service remembers which version served each request id (a bounded LRU), so impressions and
clicks reported later are counted per model version. Events are buffered and written as Parquet
files with the landing ``events`` columns (``model_version`` included) under

    events/dt=YYYY-MM-DD/serving-<host>-<pid>-<seq>.parquet

through ``reckit_assets.core.storage`` (atomic writes: a reader never sees a torn file). Flushes
happen when the buffer is full, on a timer, and on shutdown. The service never writes the
partition's ``_SUCCESS`` marker: only whoever knows a day is complete (the export that merges all
servers' logs) may declare it so.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from reckit_assets.core.ingest.landing import SCHEMAS, partition_prefix
from reckit_assets.core.io.frames import frame_to_parquet_bytes
from reckit_assets.core.io.storage import Storage

log = logging.getLogger("serving.feedback")

EVENT_COLUMNS = tuple(c.name for c in SCHEMAS["events"])
UNKNOWN_VERSION = "unknown"  # label for feedback on a request this process did not serve


@dataclass(frozen=True)
class ServedRequest:
    model: str
    model_version: str
    user_id: str
    device: str | None


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


def event_id(request_id: str, item_id: str, event_type: str, ts_ms: int | None) -> str:
    """Deterministic: a client retrying the same event produces the same id, and the pipeline's
    dedup on ``event_id`` drops the copy."""
    key = f"{request_id}\x1f{item_id}\x1f{event_type}\x1f{ts_ms if ts_ms is not None else ''}"
    return "s" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


class FeedbackLog:
    """A buffer of landing-format event rows and the files it is flushed to."""

    def __init__(
        self,
        storage: Storage | None,
        flush_rows: int = 5000,
        max_buffered: int = 1_000_000,
        host: str | None = None,
    ) -> None:
        self.storage = storage
        self.flush_rows = flush_rows
        self.max_buffered = max_buffered
        self.host = _safe(host or socket.gethostname())
        self.pid = os.getpid()
        # The pid alone repeats across container restarts (often 1): the start time keeps a
        # restarted server from overwriting the files of the previous one.
        self._run = f"{int(time.time() * 1000):x}"
        self._seq = 0
        self._rows: list[dict] = []
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

    @property
    def buffered(self) -> int:
        return len(self._rows)

    def flush(self) -> int:
        """Write the buffered rows (one file per day); returns rows written. Blocking."""
        if not self.enabled:
            return 0
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            frame = _frame(rows)
            written = 0
            for dt, part in frame.groupby(frame["ts"].dt.strftime("%Y-%m-%d"), sort=True):
                self._seq += 1
                key = (
                    f"{partition_prefix('events', str(dt))}/"
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


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[ms, UTC]")
    frame["position"] = frame["position"].astype("Int64")
    for col in (
        "event_id",
        "user_id",
        "item_id",
        "event_type",
        "request_id",
        "device",
        "model_version",
    ):
        frame[col] = frame[col].astype("string")
    return frame


def _safe(host: str) -> str:
    """A hostname fit for a file name (the key's ``<host>`` part)."""
    cleaned = "".join(c if c.isalnum() or c in "-." else "-" for c in host)
    return cleaned.strip("-.") or "host"


def utc_now() -> datetime:
    return datetime.now(UTC)
