"""The decision log: what the service decided for each ranking it served, for the pipeline's
live-traffic evidence (off-policy estimates, training/serving skew, shadow scoring).

One row per logged ranking (``RECKIT_DECISION_LOG_SHARE`` of requests, drawn at random, so any
estimate over them stays unbiased); per-item columns are lists in the order shown::

    decisions/dt=YYYY-MM-DD/serving-<host>-<pid>-<start>-<seq>.parquet

============================  ====================================================================
``request_id``                the server's request id (the one feedback events carry)
``served_at``                 when it was ranked (UTC, ms)
``user_id``, ``device``       for whom
``model``, ``model_version``  who ranked it, under which alias (``production`` / ``canary``)
``alias``
``slate_size``                items in the ranking
``exploration_share``         epsilon in force (``RECKIT_EXPLORATION_SHARE``)
``explored``                  whether this ranking was served in a uniformly random order
``features_dt``,              the online feature snapshot it was scored with
``features_version``
``feature_logged``            whether this ranking's feature vectors are in the row
``shadow_version``,           the shadow that scored this ranking and its time for it (null: none)
``shadow_latency_ms``
``item_id`` (list)            the items, in the order shown (list index = shown position)
``policy_position`` (list)    where the model's own order put each (equal to the index unless
                              explored); the propensity of an item at its shown position k is
                              exact: (1 - eps) [k == policy_position] + eps / slate_size
``score`` (list)              the model's score of each item
``shadow_score`` (list)       the shadow's scores (null: no shadow; NaN: it failed); never shown
``f.<column>`` (list)         the exact values the model scored (``RECKIT_FEATURE_LOG_SHARE`` of
                              rankings; null otherwise), one list per input column
============================  ====================================================================

The pipeline reads it one row per item (``core.monitoring.decisions.read_decision_log``).
The day is the serving day's UTC date, or ``RECKIT_DECISION_LOG_DAY`` (a replay of a past day).
Written through ``reckit_assets.core.io.storage`` (atomic) when the buffer is full, on a timer and
on shutdown; a failed write keeps the rows for the next flush.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from reckit_assets.core.io.frames import frame_to_parquet_bytes
from reckit_assets.core.io.storage import Storage
from reckit_assets.core.monitoring.decisions import FEATURE_PREFIX, PREFIX
from serving.feedback import safe_host

log = logging.getLogger("serving.decisions")


@dataclass(frozen=True)
class Decision:
    """One served ranking, in the order it was shown."""

    request_id: str
    served_at: float  # epoch seconds
    user_id: str
    device: str | None
    model: str
    model_version: str
    alias: str
    item_ids: Sequence[str]  # shown order
    policy_positions: np.ndarray  # where the model's own order put each shown item
    scores: np.ndarray  # the model's score of each shown item
    exploration_share: float
    explored: bool
    features_dt: str | None
    features_version: str | None
    feature_columns: Sequence[str] = ()
    features: np.ndarray | None = None  # (items, columns) in shown order, or None
    shadow_version: str | None = None
    shadow_scores: np.ndarray | None = None  # in shown order
    shadow_latency_ms: float | None = None
    day: str | None = None  # the partition; None: served_at's UTC date


def _table(decisions: list[Decision]) -> pa.Table:
    """One row per ranking; the per-item columns are lists in shown order (built from flat
    arrays and offsets: the flush runs beside requests, so no per-row Python work)."""
    sizes = np.fromiter((len(d.item_ids) for d in decisions), np.int32, len(decisions))
    offsets = pa.array(np.concatenate([[0], np.cumsum(sizes, dtype=np.int32)]), pa.int32())

    def listed(values: object, kind: pa.DataType, mask: np.ndarray | None = None) -> pa.Array:
        flat = pa.array(values, kind)
        return pa.ListArray.from_arrays(
            offsets, flat, mask=None if mask is None else pa.array(mask)
        )

    def column(get, kind: pa.DataType) -> pa.Array:
        return pa.array([get(d) for d in decisions], kind)

    shadowed = np.fromiter((d.shadow_scores is not None for d in decisions), bool, len(decisions))
    cols: dict[str, pa.Array] = {
        "request_id": column(lambda d: d.request_id, pa.string()),
        "served_at": pa.array(
            np.fromiter((d.served_at * 1000 for d in decisions), np.int64, len(decisions)),
            pa.timestamp("ms", tz="UTC"),
        ),
        "user_id": column(lambda d: d.user_id, pa.string()),
        "device": column(lambda d: d.device, pa.string()),
        "model": column(lambda d: d.model, pa.string()),
        "model_version": column(lambda d: d.model_version, pa.string()),
        "alias": column(lambda d: d.alias, pa.string()),
        "slate_size": pa.array(sizes, pa.int32()),
        "exploration_share": column(lambda d: d.exploration_share, pa.float64()),
        "explored": column(lambda d: d.explored, pa.bool_()),
        "features_dt": column(lambda d: d.features_dt, pa.string()),
        "features_version": column(lambda d: d.features_version, pa.string()),
        "feature_logged": column(lambda d: d.features is not None, pa.bool_()),
        "shadow_version": column(lambda d: d.shadow_version, pa.string()),
        "shadow_latency_ms": column(lambda d: d.shadow_latency_ms, pa.float64()),
        "item_id": listed([i for d in decisions for i in d.item_ids], pa.string()),
        "policy_position": listed(
            np.concatenate([np.asarray(d.policy_positions, np.int32) for d in decisions]),
            pa.int32(),
        ),
        "score": listed(
            np.concatenate([np.asarray(d.scores, np.float64) for d in decisions]), pa.float64()
        ),
    }
    if shadowed.any():
        flat = [
            np.asarray(d.shadow_scores, np.float64)
            if d.shadow_scores is not None
            else np.zeros(len(d.item_ids))
            for d in decisions
        ]
        cols["shadow_score"] = listed(np.concatenate(flat), pa.float64(), ~shadowed)
    logged = [d for d in decisions if d.features is not None]
    for name in sorted({c for d in logged for c in d.feature_columns}):
        flat = []
        for d in decisions:
            if d.features is not None and name in d.feature_columns:
                flat.append(
                    np.asarray(d.features, np.float64)[:, list(d.feature_columns).index(name)]
                )
            else:
                flat.append(np.zeros(len(d.item_ids)))
        has = np.fromiter(
            (d.features is not None and name in d.feature_columns for d in decisions),
            bool,
            len(decisions),
        )
        cols[FEATURE_PREFIX + name] = listed(np.concatenate(flat), pa.float64(), ~has)
    return pa.table(cols)


class DecisionLog:
    """A buffer of served rankings and the files it is flushed to (``decisions/dt=.../``)."""

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
        self.host = safe_host(host or socket.gethostname())
        self.pid = os.getpid()
        self._run = f"{int(time.time() * 1000):x}"
        self._seq = 0
        self._pending: list[Decision] = []
        self._rows = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self.rows_written = 0
        self.dropped = 0
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return self.storage is not None

    @property
    def buffered(self) -> int:
        return self._rows

    def append(self, decision: Decision) -> bool:
        """Buffer one ranking; True when a flush is due."""
        if not self.enabled:
            return False
        with self._lock:
            self._pending.append(decision)
            self._rows += len(decision.item_ids)
            while self._rows > self.max_buffered and self._pending:
                gone = self._pending.pop(0)  # storage failing for long: bounded memory
                self._rows -= len(gone.item_ids)
                self.dropped += len(gone.item_ids)
            return self._rows >= self.flush_rows

    def _buildable(self, part: list[Decision]) -> tuple[pa.Table | None, list[Decision]]:
        """The table of ``part``; a ranking that cannot be written (it would fail every flush
        of its day) is dropped and counted, never kept in the buffer."""
        try:
            return _table(part), part
        except Exception:
            good = []
            for d in part:
                try:
                    _table([d])
                    good.append(d)
                except Exception as exc:
                    self.dropped += len(d.item_ids)
                    log.warning("decision of request %s not writable: %s", d.request_id, exc)
            return (_table(good), good) if good else (None, [])

    def flush(self) -> int:
        """Write the buffered rankings, one file per day; returns rows written. Blocking."""
        if not self.enabled:
            return 0
        with self._flush_lock:
            with self._lock:
                pending, self._pending, self._rows = self._pending, [], 0
            by_day: dict[str, list[Decision]] = {}
            for d in pending:
                day = d.day or datetime.fromtimestamp(d.served_at, UTC).date().isoformat()
                by_day.setdefault(day, []).append(d)
            written = 0
            for day, part in sorted(by_day.items()):
                self._seq += 1
                key = (
                    f"{PREFIX}/dt={day}/serving-{self.host}-{self.pid}-{self._run}-"
                    f"{self._seq:06d}.parquet"
                )
                table, part = self._buildable(part)
                if table is None:
                    continue
                try:
                    self.storage.write_bytes(key, frame_to_parquet_bytes(table))
                except Exception as exc:
                    self.last_error = f"{key}: {type(exc).__name__}: {exc}"
                    log.warning("decision log flush failed, kept for the next: %s", self.last_error)
                    with self._lock:
                        self._pending[:0] = part
                        self._rows += sum(len(d.item_ids) for d in part)
                    continue
                written += sum(len(d.item_ids) for d in part)
            self.rows_written += written
            return written
