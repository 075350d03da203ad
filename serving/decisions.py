"""The decision log: what the service decided for each ranking it served, for the pipeline's
live-traffic evidence (off-policy estimates, training/serving skew, shadow scoring).

One row per ranked item of a logged request (``RECKIT_DECISION_LOG_SHARE`` of requests, drawn at
random, so any estimate over them stays unbiased)::

    decisions/dt=YYYY-MM-DD/serving-<host>-<pid>-<start>-<seq>.parquet

============================  ====================================================================
``request_id``                the server's request id (the one feedback events carry)
``served_at``                 when it was ranked (UTC, ms)
``user_id``, ``item_id``,     what was ranked, for whom
``device``
``model``, ``model_version``  who ranked it, under which alias (``production`` / ``canary``)
``alias``
``position``                  where the item was shown (0 = first)
``policy_position``           where the model's own order put it (equal unless explored)
``slate_size``                items in the ranking
``exploration_share``         epsilon in force (``RECKIT_EXPLORATION_SHARE``)
``explored``                  whether this ranking was served in a uniformly random order
``propensity``                P(item shown at ``position``) = (1 - eps) [position ==
                              policy_position] + eps / slate_size: exact, by construction
``score``                     the model's score of the item
``features_dt``,              the online feature snapshot it was scored with
``features_version``
``feature_logged``            whether this ranking's feature vector is in the row
``f.<column>``                the exact values the model scored (``RECKIT_FEATURE_LOG_SHARE`` of
                              rankings; null otherwise), in the model's input columns
``shadow_version``,           the shadow model's version and score of the item, and its time for
``shadow_score``,             the ranking, when a shadow scored it (null otherwise; NaN scores:
``shadow_latency_ms``         it failed); never what users see (``serving/shadow.py``)
============================  ====================================================================

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
import pandas as pd

from reckit_assets.core.evaluation.off_policy import propensities
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


def _frame(decisions: list[Decision]) -> pd.DataFrame:
    sizes = np.fromiter((len(d.item_ids) for d in decisions), np.int64, len(decisions))

    def each(values: list, dtype: object = object) -> np.ndarray:
        return np.repeat(np.array(values, dtype=dtype), sizes)

    position = np.concatenate([np.arange(n) for n in sizes])
    policy = np.concatenate([np.asarray(d.policy_positions, np.int64) for d in decisions])
    slate = each([len(d.item_ids) for d in decisions], np.int64)
    eps = each([d.exploration_share for d in decisions], np.float64)
    frame = pd.DataFrame(
        {
            "request_id": pd.array(each([d.request_id for d in decisions]), dtype="string"),
            "served_at": pd.to_datetime(
                each([int(d.served_at * 1000) for d in decisions], np.int64), unit="ms", utc=True
            ).astype("datetime64[ms, UTC]"),
            "user_id": pd.array(each([d.user_id for d in decisions]), dtype="string"),
            "item_id": pd.array([i for d in decisions for i in d.item_ids], dtype="string"),
            "device": pd.array(each([d.device for d in decisions]), dtype="string"),
            "model": pd.array(each([d.model for d in decisions]), dtype="string"),
            "model_version": pd.array(each([d.model_version for d in decisions]), dtype="string"),
            "alias": pd.array(each([d.alias for d in decisions]), dtype="string"),
            "position": position.astype(np.int64),
            "policy_position": policy,
            "slate_size": slate,
            "exploration_share": eps,
            "explored": each([d.explored for d in decisions], bool),
            "propensity": propensities(policy, position, slate, eps),
            "score": np.concatenate([np.asarray(d.scores, np.float64) for d in decisions]),
            "features_dt": pd.array(each([d.features_dt for d in decisions]), dtype="string"),
            "features_version": pd.array(
                each([d.features_version for d in decisions]), dtype="string"
            ),
            "feature_logged": each([d.features is not None for d in decisions], bool),
            "shadow_version": pd.array(each([d.shadow_version for d in decisions]), dtype="string"),
            "shadow_latency_ms": each(
                [np.nan if d.shadow_latency_ms is None else d.shadow_latency_ms for d in decisions],
                np.float64,
            ),
            "shadow_score": np.concatenate(
                [
                    np.asarray(d.shadow_scores, np.float64)
                    if d.shadow_scores is not None
                    else np.full(len(d.item_ids), np.nan)
                    for d in decisions
                ]
            ),
        }
    )
    columns = sorted({c for d in decisions if d.features is not None for c in d.feature_columns})
    if columns:
        values = np.full((len(frame), len(columns)), np.nan)
        where = {c: k for k, c in enumerate(columns)}
        start = 0
        for d, n in zip(decisions, sizes, strict=True):
            if d.features is not None:
                cols = [where[c] for c in d.feature_columns]
                values[start : start + n, cols] = np.asarray(d.features, np.float64)
            start += n
        features = pd.DataFrame(values, columns=[FEATURE_PREFIX + c for c in columns])
        frame = pd.concat([frame, features], axis=1)
    return frame


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
                try:
                    frame = _frame(part)
                    self.storage.write_bytes(key, frame_to_parquet_bytes(frame))
                except Exception as exc:
                    self.last_error = f"{key}: {type(exc).__name__}: {exc}"
                    log.warning("decision log flush failed, kept for the next: %s", self.last_error)
                    with self._lock:
                        self._pending[:0] = part
                        self._rows += sum(len(d.item_ids) for d in part)
                    continue
                written += len(frame)
            self.rows_written += written
            return written
