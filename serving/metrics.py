"""Prometheus metrics of one service instance (its own registry, so tests can run several).

Request counts, latency and errors by endpoint (the route template, never the raw path) and the
model version that answered; the score distribution per version; feedback by version; reloads;
and which version each model/alias is serving right now (read from the live state at scrape time,
so the gauge can never disagree with what requests get).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
)  # fmt: skip
SCORE_BUCKETS = tuple(round(x, 2) for x in np.linspace(0.05, 1.0, 20))
NO_VERSION = "none"


class ScoreHistogram(Collector):
    """Histogram of scores per model version, fed a whole request's scores at once.

    prometheus_client's Histogram takes one value per call under a lock; 100 candidates per
    request would cost more than the model. Here a request is one searchsorted + bincount.
    """

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._lock = threading.Lock()
        self._data: dict[str, tuple[np.ndarray, list[float]]] = {}  # version -> (counts, [sum])

    def observe(self, version: str, scores: np.ndarray) -> None:
        if len(scores) == 0:
            return
        idx = np.searchsorted(self.bounds, scores, side="left")  # bucket i: score <= bounds[i]
        counts = np.bincount(idx, minlength=len(self.bounds) + 1)
        total = float(np.sum(scores))
        with self._lock:
            entry = self._data.get(version)
            if entry is None:
                entry = self._data[version] = (np.zeros(len(self.bounds) + 1, np.int64), [0.0])
            entry[0][:] += counts
            entry[1][0] += total

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["model_version"])
        with self._lock:
            items = [(v, c.copy(), s[0]) for v, (c, s) in self._data.items()]
        for version, counts, total in sorted(items, key=lambda x: x[0]):
            cumulative = np.cumsum(counts)
            buckets = [
                (_fmt(b), float(n)) for b, n in zip(self.bounds, cumulative[:-1], strict=True)
            ]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric([version], buckets, total)
        yield family


class LiveStateCollector(Collector):
    """Gauges computed at scrape time from ``snapshot()``: [(name, doc, labels, rows)]."""

    def __init__(
        self, snapshot: Callable[[], list[tuple[str, str, list[str], list[tuple]]]]
    ) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        for name, doc, labels, rows in self._snapshot():
            family = GaugeMetricFamily(name, doc, labels=labels)
            for *values, value in rows:
                family.add_metric([str(v) for v in values], float(value))
            yield family


def _fmt(bound: float) -> str:
    return repr(float(bound))


class ServingMetrics:
    def __init__(self) -> None:
        # ``*_created`` series double the exposition for no use here (process-wide setting).
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "reckit_serving_requests",
            "HTTP requests by endpoint, status and the model version that answered",
            ["endpoint", "method", "status", "model_version"],
            registry=r,
        )
        self.latency = Histogram(
            "reckit_serving_request_latency_seconds",
            "Request latency (first byte in to last byte out, inside the server)",
            ["endpoint", "model_version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "reckit_serving_errors",
            "Responses with status >= 400 (kind: client for 4xx, server for 5xx)",
            ["endpoint", "kind", "status", "model_version"],
            registry=r,
        )
        self.scores = ScoreHistogram(
            "reckit_serving_score", "Scores returned by /v1/rank and /predict", SCORE_BUCKETS
        )
        r.register(self.scores)
        self.candidates = Histogram(
            "reckit_serving_candidates",
            "Candidates per ranking request",
            ["model_version"],
            buckets=(1, 10, 25, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.feedback = Counter(
            "reckit_serving_feedback_events",
            "Feedback events (impression, click, conversion) by the version that served them",
            ["model_version", "event_type"],
            registry=r,
        )
        self.feedback_rows_written = Counter(
            "reckit_serving_feedback_rows_written",
            "Event rows written to the feedback log",
            registry=r,
        )
        self.feedback_flush_failures = Counter(
            "reckit_serving_feedback_flush_failures", "Feedback log flushes that failed", registry=r
        )
        self.feedback_rejected = Counter(
            "reckit_serving_feedback_rejected_events",
            "Feedback events refused and never written, by reason (unknown_request, bad_token, "
            "expired_token, caller_mismatch, outside_window, item_not_served, user_mismatch, "
            "conversion_without_click, invalid, in_rejected_batch: valid events of a batch refused for another event, "
            "caller_volume: the caller's daily budget RECKIT_MAX_FEEDBACK_PER_CALLER_DAY)",
            ["reason"],
            registry=r,
        )
        self.feedback_caller_events = Counter(
            "reckit_serving_feedback_caller_events",
            "Feedback events written, by caller (API key name; open without keys): the volume "
            "each caller puts into tomorrow's training data",
            ["caller"],
            registry=r,
        )
        self.feedback_unattributed = Counter(
            "reckit_serving_feedback_unattributed_events",
            "Feedback accepted with the ingest/admin token but not attributable to a request "
            "this service served: written apart (unattributed/ prefix), never to events/",
            ["event_type"],
            registry=r,
        )
        self.feedback_duplicates = Counter(
            "reckit_serving_feedback_duplicate_events",
            "Attributed events already taken for their (request, item, type): not written again",
            ["event_type"],
            registry=r,
        )
        self.served_impressions = Counter(
            "reckit_serving_served_impressions",
            "Ranked positions logged as impressions when served, by version and alias",
            ["model_version", "alias"],
            registry=r,
        )
        self.decisions_logged = Counter(
            "reckit_serving_decisions_logged",
            "Rankings written to the decision log (serving/decisions.py), by version, alias and "
            "whether they were served in a random order (exploration)",
            ["model_version", "alias", "explored"],
            registry=r,
        )
        self.shadow_dropped = Counter(
            "reckit_serving_shadow_dropped",
            "Rankings drawn for shadow scoring but logged without it: the shadow queue was full "
            "(RECKIT_SHADOW_QUEUE)",
            ["model_version"],
            registry=r,
        )
        self.shadow_errors = Counter(
            "reckit_serving_shadow_errors",
            "Shadow scorings that raised or gave non-finite scores (users never see them)",
            ["model_version"],
            registry=r,
        )
        self.shadow_seconds = Histogram(
            "reckit_serving_shadow_seconds",
            "Time the shadow model took to score one ranking, off the request's path",
            ["model_version"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.missing_features = Counter(
            "reckit_serving_missing_features",
            "Feature values absent from /predict rows and filled with 0.0 (RECKIT_MISSING_FEATURES"
            "=zero), per column",
            ["column"],
            registry=r,
        )
        self.rate_limited = Counter(
            "reckit_serving_rate_limited_requests",
            "Requests refused with 429 by the per-client rate limit, per endpoint group",
            ["group"],
            registry=r,
        )
        self.reloads = Counter(
            "reckit_serving_reloads",
            "Version loads by model, alias and result (success, failure)",
            ["model", "alias", "result"],
            registry=r,
        )

    def add_live_state(
        self, snapshot: Callable[[], list[tuple[str, str, list[str], list[tuple]]]]
    ) -> None:
        self.registry.register(LiveStateCollector(snapshot))

    def on_reload(self, model: str, alias: str, version: str, success: bool) -> None:
        self.reloads.labels(model, alias, "success" if success else "failure").inc()

    def observe_request(
        self, endpoint: str, method: str, status: int, version: str, seconds: float
    ) -> None:
        self.requests.labels(endpoint, method, str(status), version).inc()
        self.latency.labels(endpoint, version).observe(seconds)
        if status >= 400:
            kind = "server" if status >= 500 else "client"
            self.errors.labels(endpoint, kind, str(status), version).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
