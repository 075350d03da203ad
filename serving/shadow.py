"""Shadow scoring: the registry's ``shadow`` version scores the same candidates as the served
model, off the request's path, and its scores go to the decision log beside the served ones.

A ranking drawn for the shadow (``RECKIT_SHADOW_SHARE`` of the logged rankings) is handed to one
worker thread after the response is computed; the user's ranking never waits for it and never
depends on it. The queue is bounded (``RECKIT_SHADOW_QUEUE``): beyond it the ranking is logged
without shadow scores and counted (``reckit_serving_shadow_dropped``), so a slow or failing
shadow costs at most that queue's memory and the worker's CPU share. A shadow that raises or
returns non-finite scores is counted (``reckit_serving_shadow_errors``) and logged with NaN
scores, so ``shadow_evaluation`` sees its errors. Its latency per ranking is logged
(``shadow_latency_ms``) and observed (``reckit_serving_shadow_seconds``).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from serving.decisions import Decision, DecisionLog
from serving.features import OnlineFeatures
from serving.metrics import ServingMetrics
from serving.models import LoadedModel

log = logging.getLogger("serving.shadow")


class ShadowScorer:
    def __init__(self, decisions: DecisionLog, metrics: ServingMetrics, capacity: int) -> None:
        self.decisions, self.metrics, self.capacity = decisions, metrics, capacity
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="reckit-shadow")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    def submit(
        self,
        decision: Decision,
        model: LoadedModel,
        features: OnlineFeatures,
        matrix: np.ndarray | None = None,
    ) -> bool:
        """Score ``decision``'s items with ``model`` later, then log it; False (and nothing
        queued) when the queue is full: the caller logs the decision without shadow scores.
        ``matrix``: the served model's input values in shown order, when the shadow has the
        same input columns (it then only runs its trees on them)."""
        with self._lock:
            if self._pending >= self.capacity:
                self.metrics.shadow_dropped.labels(model.version).inc()
                return False
            self._pending += 1
        try:
            self._pool.submit(self._score, decision, model, features, matrix)
        except RuntimeError:  # shut down: the caller logs it without shadow scores
            with self._lock:
                self._pending -= 1
            return False
        return True

    def _score(
        self,
        decision: Decision,
        model: LoadedModel,
        features: OnlineFeatures,
        matrix: np.ndarray | None,
    ) -> None:
        start = time.perf_counter()
        try:
            if matrix is not None:
                scores = model.score_matrix(matrix)
            else:
                scores = model.score_request(
                    features, decision.user_id, decision.item_ids, decision.device
                )
            if scores.shape != (len(decision.item_ids),) or not np.isfinite(scores).all():
                raise ValueError(f"{np.size(scores)} scores, some not finite")
        except Exception as exc:  # the shadow's failure is evidence, never the user's problem
            log.debug("shadow %s failed: %s", model.version, exc)
            self.metrics.shadow_errors.labels(model.version).inc()
            scores = np.full(len(decision.item_ids), np.nan)
        seconds = time.perf_counter() - start
        self.metrics.shadow_seconds.labels(model.version).observe(seconds)
        try:
            done = replace(
                decision,
                shadow_version=model.version,
                shadow_scores=scores,
                shadow_latency_ms=seconds * 1000.0,
            )
            self.decisions.append(done)  # flushed by the timer (the buffer is bounded)
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        """Finish what is queued (its decisions reach the log's last flush)."""
        self._pool.shutdown(wait=True)
