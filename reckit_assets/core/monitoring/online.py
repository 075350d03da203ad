"""Online metrics of served traffic: per day, model version and alias.

From attributable feedback events: impressions, clicks, conversions and CTR with a user-level
standard error (delta method, as the judge uses), plus per-user counts so any window of days
can be re-aggregated per user (a user's impressions on several days are one unit, not several).

From the service's Prometheus metrics, read through a real Prometheus server's HTTP API:
requests, server errors (5xx), latency p99 and the score histogram per model version over a
time range; the score histogram against the offline holdout's scores (same bucket bounds)
gives the score PSI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd

from reckit_assets.core.monitoring.judge import ArmMetrics, log_ctr_variance, user_stats

_EPS = 1e-6
NO_ALIAS = "unknown"


def with_alias(events: pd.DataFrame, alias_of_version: dict[str, str]) -> pd.DataFrame:
    """Events with an ``alias`` column: the log's own when present (per request), else the alias
    each version held that day (``alias_of_version``), else ``unknown``."""
    out = events.copy()
    from_map = out["model_version"].astype("string").map(alias_of_version)
    if "alias" in out.columns:
        out["alias"] = out["alias"].astype("string").fillna(from_map)
    else:
        out["alias"] = from_map
    out["alias"] = out["alias"].fillna(NO_ALIAS).astype(str)
    return out


def distinct_events(events: pd.DataFrame) -> pd.DataFrame:
    """One row per (request_id, item_id, event_type), the earliest: the service logs every served
    position as an impression and a client may report the same impression (or click twice) under
    another event id. Counting each shown item once is what the labels of the training data do
    (``validate_events``), so online and offline CTR have the same denominator."""
    if events.empty or not {"request_id", "item_id"} <= set(events.columns):
        return events
    order = [c for c in ("ts", "event_id") if c in events.columns]
    ordered = events.sort_values(order, kind="stable") if order else events
    keep = ~ordered.duplicated(subset=["request_id", "item_id", "event_type"], keep="first")
    return ordered[keep].sort_index()


def per_user(events: pd.DataFrame) -> pd.DataFrame:
    """(model_version, alias, user_id) -> impressions, clicks, conversions, each (request, item)
    counted once per event type (see :func:`distinct_events`)."""
    events = distinct_events(events)
    frame = events.assign(
        impressions=(events["event_type"] == "impression").astype(np.int64),
        clicks=(events["event_type"] == "click").astype(np.int64),
        conversions=(events["event_type"] == "conversion").astype(np.int64),
    )
    keys = ["model_version", "alias", "user_id"]
    frame[keys] = frame[keys].astype(str)
    grouped = frame.groupby(keys, sort=True)[["impressions", "clicks", "conversions"]].sum()
    return grouped.reset_index()


def summarize(users: pd.DataFrame) -> pd.DataFrame:
    """Per (model_version, alias): counts, CTR, its user-level standard error and the CTR
    sufficient statistics (so the judge's ArmMetrics can be rebuilt from them)."""
    rows = []
    for (version, alias), g in users.groupby(["model_version", "alias"], sort=True):
        s = user_stats(g["impressions"].to_numpy(), g["clicks"].to_numpy())
        ctr = s["clicks"] / s["impressions"] if s["impressions"] else math.nan
        se = math.nan
        if s["users"] >= 2 and s["clicks"] > 0:
            arm = ArmMetrics(str(version), ("", ""), **s, requests=0, errors=0, latency_p99_ms=0)
            se = ctr * math.sqrt(log_ctr_variance(arm))
        rows.append(
            {
                "model_version": version,
                "alias": alias,
                **s,
                "conversions": int(g["conversions"].sum()),
                "ctr": ctr,
                "ctr_se_user": se,
                "ctr_se_binomial": math.sqrt(ctr * (1 - ctr) / s["impressions"])
                if s["impressions"]
                else math.nan,
            }
        )
    return pd.DataFrame(rows)


def psi_counts(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two histograms over the same bins (NaN when one is empty)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.sum() <= 0 or a.sum() <= 0:
        return math.nan
    e = np.maximum(e / e.sum(), _EPS)
    a = np.maximum(a / a.sum(), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def histogram(scores: np.ndarray, upper_bounds: list[float]) -> np.ndarray:
    """Counts per bucket ``(previous bound, bound]`` with the last bound +inf (Prometheus ``le``)."""
    bounds = np.asarray([b for b in upper_bounds if math.isfinite(b)])
    idx = np.searchsorted(bounds, np.asarray(scores, dtype=np.float64), side="left")
    return np.bincount(idx, minlength=len(bounds) + 1)


@dataclass(frozen=True)
class ServiceFigures:
    """What the service itself measured for one model version over a time range."""

    requests: int
    errors: int  # 5xx
    latency_p99_ms: float | None
    score_bounds: list[float]  # histogram upper bounds (last is +inf)
    score_counts: list[int]


class Prometheus:
    """A Prometheus server's HTTP query API (``/api/v1/query``)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, expr: str, at: float) -> list[dict]:
        resp = httpx.get(
            f"{self.url}/api/v1/query", params={"query": expr, "time": at}, timeout=self.timeout
        )
        resp.raise_for_status()
        body = resp.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus query {expr!r} failed: {body}")
        return body["data"]["result"]

    def service_figures(
        self, start: float, end: float, endpoint: str = "/v1/rank"
    ) -> dict[str, ServiceFigures]:
        """Per model version, what the service counted between ``start`` and ``end`` (unix
        seconds): each counter's value at ``end`` minus its value at ``start`` (series born in
        between count from zero). Exact, unlike ``increase()``, which extrapolates to the edges.
        Assumes the service did not restart in between (a reset counter would undercount)."""
        offset = f"offset {max(round(end - start), 1)}s"

        def delta(series: str, by: str) -> str:
            return f"sum by ({by}) (({series}) - ({series} {offset}) or ({series}))"

        def by_version(expr: str) -> dict[str, float]:
            return {
                r["metric"].get("model_version", ""): float(r["value"][1])
                for r in self.query(expr, end)
            }

        sel = f'endpoint="{endpoint}"'
        requests = by_version(delta(f"reckit_serving_requests_total{{{sel}}}", "model_version"))
        errors = by_version(
            delta(f'reckit_serving_errors_total{{{sel},kind="server"}}', "model_version")
        )
        p99 = by_version(
            "histogram_quantile(0.99, "
            + delta(f"reckit_serving_request_latency_seconds_bucket{{{sel}}}", "le, model_version")
            + ")"
        )
        buckets: dict[str, dict[float, float]] = {}
        for r in self.query(delta("reckit_serving_score_bucket", "le, model_version"), end):
            le = float(r["metric"]["le"])
            buckets.setdefault(r["metric"].get("model_version", ""), {})[le] = float(r["value"][1])
        out = {}
        for version in set(requests) | set(buckets):
            cumulative = sorted(buckets.get(version, {}).items())
            bounds = [b for b, _ in cumulative]
            cum = np.array([c for _, c in cumulative])
            counts = np.diff(np.r_[0.0, cum]) if len(cum) else np.array([])
            lat = p99.get(version)
            out[version] = ServiceFigures(
                requests=round(requests.get(version, 0.0)),
                errors=round(errors.get(version, 0.0)),
                latency_p99_ms=lat * 1000 if lat is not None and math.isfinite(lat) else None,
                score_bounds=bounds,
                score_counts=[round(c) for c in counts],
            )
        return out


def arm_metrics(
    users: pd.DataFrame,
    version: str,
    window: tuple[str, str],
    service: ServiceFigures | None,
    offline_scores: np.ndarray | None,
) -> ArmMetrics | None:
    """One arm over a window: per-user rows of ``version`` (all days of the window, summed per
    user), plus what the service measured. None when the version has no traffic at all."""
    mine = users[users["model_version"] == version]
    if mine.empty:
        return None
    summed = mine.groupby("user_id")[["impressions", "clicks"]].sum()
    stats = user_stats(summed["impressions"].to_numpy(), summed["clicks"].to_numpy())
    psi = None
    if service is not None and offline_scores is not None and service.score_bounds:
        psi = psi_counts(histogram(offline_scores, service.score_bounds), service.score_counts)
    return ArmMetrics(
        version=version,
        window=window,
        **stats,
        requests=service.requests if service else math.nan,
        errors=service.errors if service else math.nan,
        latency_p99_ms=service.latency_p99_ms if service else None,
        score_psi=psi,
    )


def offline_scores(
    registry_files: dict[str, bytes], kind: str, holdout: pd.DataFrame
) -> np.ndarray:
    """The version's scores on its offline holdout (the day it was evaluated on), scored as the
    service scores (``position`` 0: the ranking decides the slot): the reference distribution
    for the online score PSI. With logged positions the offline scores would sit lower than
    any served score (position is a feature), and the PSI would flag every version."""
    from reckit_assets.core.training.base import load_model

    if "position" in holdout.columns:
        holdout = holdout.assign(position=0.0)
    return np.asarray(load_model(kind, registry_files).predict(holdout), dtype=np.float64)
