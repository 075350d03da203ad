"""Benchmark: ``POST /v1/rank`` with 100 candidates on ONE uvicorn worker, next to the floor.

Builds a registry with the pipeline's own steps (simulated week, xgboost + item2vec, online
snapshot), starts ``python -m serving`` in a subprocess on a loopback port (feedback logging on:
every served position is logged as an impression, as in production), and measures:

* **the headline: ``wrk`` at a fixed ``--rps``** (default 300 req/s). wrk is a compiled load
  generator that costs far less CPU than the server (Debian: ``apt-get install -y wrk``). wrk has
  no fixed-rate mode (wrk2 is not packaged in Debian), so the rate comes from a Lua ``delay()``
  per connection (``--wrk-connections`` connections, each pausing so the total is the target):
  paced, not strictly open loop, so the achieved rate is reported beside the target. Client-side
  percentiles are wrk's; server-side ones come from the service's own ``/metrics`` histogram
  (bucket upper bounds) over the same window; CPU seconds of wrk and of the server are read from
  the kernel, each per request;

and, from this process (httpx clients in threads, bounded in time and count):

* sequential latency (one connection): p50 / p99,
* maximum throughput (closed loop, ``--concurrency`` connections) with its p50 / p99,
* p50 / p99 at a fixed offered load (open loop, ``--rps`` for ``--seconds``; latency counted from
  each request's scheduled send time, so a stalled server cannot hide its queue),
* the floor: the same ``Service.rank`` function called in-process, no HTTP,
* the server's RSS with all models loaded (``/proc/<pid>/status``).

The client shares the machine's cores with the server: on 2 cores, its CPU is part of the cost.

    python bench/serving.py                 # ~2 min, most of it building the registry
    python bench/serving.py --compare-ref eeb1e80   # + the same wrk load on that ref's server
    python bench/serving.py --keep /tmp/b   # reuse (or keep) the registry under /tmp/b
    python bench/serving.py --compare-evidence --rounds 3   # + the evidence's cost, see below

``--compare-evidence`` alternates the same wrk load (``--rps``, ``--rounds`` times) between two
servers of this tree on the same registry: evidence off (``RECKIT_DECISION_LOG_SHARE=0``: no
decision log, no shadow scoring, no exploration; no ``shadow`` alias) and evidence on (every
ranking logged, 5 % of them with their feature vectors, 5 % served in random order, a second
xgboost version scoring every logged ranking as ``shadow``; a copy of production's files under
another version name when the registry has only one). Per run: wrk's figures, the decision-log
rows written, the rankings the shadow scored and dropped, and its scoring time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from reckit_assets.core.release.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# ``serving`` package: put the repository root there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

CANDIDATES = 100
TOKEN = "bench"
JSON = {"content-type": "application/json"}


def _build(root: Path) -> str:
    from reckit_assets.simulation.simulate import SimulationConfig
    from reckit_assets_tests.support.registries import build_demo_registry

    registry = root / "registry"
    if (registry / "online_features" / "current.json").exists():
        return str(registry)
    started = time.perf_counter()
    sim = SimulationConfig(
        start="2026-10-01",
        days=7,
        n_users=20_000,
        n_items=2_000,
        impressions_per_day=40_000,
        seed=7,
    )
    # One production-sized ranker (300 trees of depth 6) and item2vec: the default models.
    build_demo_registry(root, sim=sim, xgb_trees=(300,), xgb_depth=6, item2vec=True)
    print(f"built the registry in {time.perf_counter() - started:.0f}s under {root}", flush=True)
    return str(registry)


def _payloads(registry_uri: str, n: int, seed: int = 1) -> list[dict]:
    """Requests like production's: mostly known users (some new), 100 catalog items (a few new)."""
    from reckit_assets.core.features import online
    from reckit_assets.core.io.storage import LocalStorage

    snap = online.load(LocalStorage(registry_uri))
    users = snap.users["user_id"].tolist()
    items = snap.items["item_id"].tolist()
    rng = random.Random(seed)
    out = []
    for k in range(n):
        user = rng.choice(users) if k % 10 else f"new-user-{k}"
        candidates = [*rng.sample(items, CANDIDATES - 2), f"new-item-{k}-a", f"new-item-{k}-b"]
        out.append({"user_id": user, "item_ids": candidates, "context": {"device": "ios"}})
    return out


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000.0  # ms


def _summary(latencies: list[float], seconds: float, errors: int) -> dict:
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / seconds if seconds else 0.0,
        "p50_ms": _pct(latencies, 50),
        "p99_ms": _pct(latencies, 99),
        "max_ms": max(latencies) * 1000.0,
    }


# -- in-process floor ---------------------------------------------------------------------------


def floor(registry_uri: str, payloads: list[dict], seconds: float) -> dict:
    from serving.config import ServingConfig
    from serving.schemas import RankRequest
    from serving.service import Service

    service = Service(
        ServingConfig(registry_uri=registry_uri, feedback_uri=None, poll_seconds=3600)
    )
    service.manager.refresh("bench")
    if service.manager.state.get("xgboost") is None:
        raise SystemExit(f"the ranker did not load: {service.manager.failing}")
    requests = [RankRequest.model_validate(p) for p in payloads]
    for req in requests[:200]:
        service.rank(req)
    latencies, full = [], []
    deadline = time.perf_counter() + seconds
    k = 0
    while time.perf_counter() < deadline and k < 50_000:
        req = requests[k % len(requests)]
        t = time.perf_counter()
        service.rank(req)
        latencies.append(time.perf_counter() - t)
        if k % 2 == 0:  # plus what the endpoint adds around it: validation and JSON
            body = json.dumps(payloads[k % len(payloads)]).encode()
            t = time.perf_counter()
            json.dumps(service.rank(RankRequest.model_validate_json(body)))
            full.append(time.perf_counter() - t)
        k += 1
    total = sum(latencies)
    out = _summary(latencies, total, 0)
    out["with_parse_and_json"] = _summary(full, sum(full), 0)
    model = service.manager.state.get("xgboost")
    out["trees"] = int(model.model.booster.num_boosted_rounds())
    return out


# -- over HTTP ----------------------------------------------------------------------------------


def _closed_loop(url: str, bodies: list[bytes], concurrency: int, seconds: float, cap: int) -> dict:
    """``concurrency`` connections, each sending its next request as soon as the last returns."""
    latencies: list[float] = []
    errors: list[int] = []
    slots = itertools.count()  # next() on a count is atomic under the GIL
    deadline = time.perf_counter() + seconds

    def connection() -> None:
        with httpx.Client(base_url=url, timeout=30, headers=JSON) as client:
            for k in slots:
                if k >= cap or time.perf_counter() > deadline:
                    return
                t = time.perf_counter()
                r = client.post("/v1/rank", content=bodies[k % len(bodies)])
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors.append(r.status_code)

    started = time.perf_counter()
    _run_threads(connection, concurrency)
    return _summary(latencies, time.perf_counter() - started, len(errors))


def _open_loop(url: str, bodies: list[bytes], rps: float, seconds: float, connections: int) -> dict:
    """Request k is due at start + k/rps whatever happened before (open loop). Each connection
    takes the next due request; latency counts from the due time, so time spent waiting for a
    free connection (a server falling behind) is in the figures, not hidden."""
    latencies: list[float] = []
    errors: list[int] = []
    n = int(rps * seconds)
    slots = itertools.count()
    start = time.perf_counter() + 0.2

    def connection() -> None:
        with httpx.Client(base_url=url, timeout=30, headers=JSON) as client:
            client.get("/health")  # connect before the clock starts
            for k in slots:
                if k >= n:
                    return
                due = start + k / rps
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                r = client.post("/v1/rank", content=bodies[k % len(bodies)])
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - due)
                else:
                    errors.append(r.status_code)

    _run_threads(connection, connections)
    out = _summary(latencies, time.perf_counter() - start, len(errors))
    out["offered_rps"] = rps
    return out


def _run_threads(target, n: int) -> None:
    threads = [threading.Thread(target=target) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


RANK_LATENCY = ("reckit_serving_request_latency_seconds", {"endpoint": "/v1/rank"})


def _bucket_diff(
    before: str, after: str, histogram: str, labels: dict[str, str] | None = None
) -> list[tuple[float, float]]:
    """(upper bound in seconds, cumulative count) of ``histogram``'s buckets observed between two
    scrapes of /metrics, summed over the label sets matching ``labels``; ascending."""
    from prometheus_client.parser import text_string_to_metric_families

    def buckets(text: str) -> dict[float, float]:
        out: dict[float, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name != f"{histogram}_bucket":
                    continue
                if any(s.labels.get(k) != v for k, v in (labels or {}).items()):
                    continue
                le = float(s.labels["le"])
                out[le] = out.get(le, 0.0) + s.value
        return out

    b0, b1 = buckets(before), buckets(after)
    return sorted((le, b1[le] - b0.get(le, 0.0)) for le in b1)


def _bucket_quantile(
    before: str, after: str, histogram: str, q: float, labels: dict[str, str] | None = None
) -> float | None:
    """Upper bound (ms) of the bucket holding the ``q``-th percentile of ``histogram`` between
    two scrapes; None when nothing was observed."""
    diff = _bucket_diff(before, after, histogram, labels)
    if not diff or diff[-1][1] == 0:
        return None
    return next(le * 1000.0 for le, n in diff if n >= q / 100.0 * diff[-1][1])


def _server_p99(before: str, after: str) -> float | None:
    """Upper bound of the bucket holding the server-side p99 of /v1/rank between two scrapes."""
    return _bucket_quantile(before, after, RANK_LATENCY[0], 99, RANK_LATENCY[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU time all processes of the machine have used (``/proc/stat``), in seconds."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _measured(pid: int, run) -> dict:
    """``run()``'s summary plus the CPU milliseconds per request of the server and this client,
    and how many cores OTHER processes used meanwhile (this machine may be shared)."""
    server0, client0, busy0 = _cpu_seconds(pid), time.process_time(), _machine_busy_seconds()
    started = time.perf_counter()
    out = run()
    elapsed = time.perf_counter() - started
    server, client = _cpu_seconds(pid) - server0, time.process_time() - client0
    n = max(out["requests"] + out["errors"], 1)
    out["server_cpu_ms_per_request"] = server * 1000.0 / n
    out["client_cpu_ms_per_request"] = client * 1000.0 / n
    out["other_processes_cores"] = (
        max(0.0, _machine_busy_seconds() - busy0 - server - client) / elapsed
    )
    return out


WRK_SCRIPT = r"""
-- Cycles through pre-built /v1/rank bodies; pauses each connection so the total is the rate.
local bodies = {}
local pause_ms = tonumber(os.getenv("WRK_PAUSE_MS") or "0")
for line in io.lines(os.getenv("WRK_BODIES")) do bodies[#bodies + 1] = line end
local k = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  k = k + 1
  return wrk.format(nil, "/v1/rank", nil, bodies[(k % #bodies) + 1])
end
delay = function() return pause_ms end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "status_errors": %d, "connect_errors": %d, '
    .. '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, '
    .. '"p99_us": %d, "p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _server_percentiles(before: str, after: str, qs=(50, 90, 99)) -> dict[str, float | None]:
    """Upper bounds (ms) of the histogram buckets holding each server-side percentile of
    /v1/rank between two scrapes of /metrics."""
    out: dict[str, float | None] = {
        f"server_p{q}_le_ms": _bucket_quantile(before, after, RANK_LATENCY[0], q, RANK_LATENCY[1])
        for q in qs
    }
    diff = _bucket_diff(before, after, *RANK_LATENCY)
    if diff and diff[-1][1]:
        out["server_requests"] = diff[-1][1]
    return out


def wrk_fixed_rate(
    url: str,
    pid: int,
    bodies: list[bytes],
    rps: float,
    seconds: float,
    connections: int,
    expected_ms: float,
) -> dict:
    """wrk at ``rps`` (paced per connection), with client- and server-side percentiles and the
    CPU seconds per request of wrk and of the server, measured over the same window."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (see make bench)")
    folder = Path(tempfile.mkdtemp(prefix="reckit-wrk-"))
    (folder / "rank.lua").write_text(WRK_SCRIPT)
    (folder / "bodies.jsonl").write_bytes(b"\n".join(bodies) + b"\n")
    # Each connection sends, waits for the answer, pauses: pause = period - expected latency.
    pause_ms = max(0.0, connections * 1000.0 / rps - expected_ms)
    env = {
        **os.environ,
        "WRK_BODIES": str(folder / "bodies.jsonl"),
        "WRK_PAUSE_MS": f"{pause_ms:.3f}",
    }
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "5s",
           "-s", str(folder / "rank.lua"), url]  # fmt: skip
    before = httpx.get(f"{url}/metrics").text
    server0, wrk0, busy0 = _cpu_seconds(pid), _children_cpu(), _machine_busy_seconds()
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    server, client = _cpu_seconds(pid) - server0, _children_cpu() - wrk0
    after = httpx.get(f"{url}/metrics").text
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    n = max(raw["requests"], 1)
    errors = sum(raw[k] for k in ("status_errors", "connect_errors", "read_errors",
                                  "write_errors", "timeouts"))  # fmt: skip
    out = {
        "tool": "wrk (1 thread)",
        "connections": connections,
        "pause_ms": pause_ms,
        "offered_rps": rps,
        "requests": raw["requests"],
        "errors": errors,
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000.0,
        "p90_ms": raw["p90_us"] / 1000.0,
        "p99_ms": raw["p99_us"] / 1000.0,
        "p999_ms": raw["p999_us"] / 1000.0,
        "max_ms": raw["max_us"] / 1000.0,
        "server_cpu_ms_per_request": server * 1000.0 / n,
        "client_cpu_ms_per_request": client * 1000.0 / n,
        "server_cores": server / elapsed,
        "client_cores": client / elapsed,
        "other_processes_cores": max(0.0, _machine_busy_seconds() - busy0 - server - client)
        / elapsed,
        **_server_percentiles(before, after),
    }
    shutil.rmtree(folder, ignore_errors=True)
    return out


def _rss_mib(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024.0
    return out


def _start_server(tree: Path, env: dict) -> tuple[subprocess.Popen, str]:
    """``python -m serving`` from ``tree`` (its own package first on the path); healthy."""
    port = _free_port()
    env = {**env, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "serving", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(cmd, env=env, cwd=tree)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise SystemExit(f"the server from {tree} did not become healthy within 120 s")
        time.sleep(0.2)


def compare(ref: str, env: dict, bodies: list[bytes], args: argparse.Namespace) -> dict:
    """The same wrk run against this tree's server and ``ref``'s, alternated ``--rounds`` times
    on the same machine and registry: the cost of what changed, measured side by side."""
    old = Path(tempfile.mkdtemp(prefix="reckit-serving-ref-"))
    archive = subprocess.run(
        ["git", "archive", ref, "serving", "reckit_assets"], cwd=ROOT, capture_output=True,
        check=True,
    )  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    out: dict[str, list[dict]] = {"current": [], ref: []}
    try:
        for _ in range(args.rounds):
            for name, tree in (("current", ROOT), (ref, old)):
                server, url = _start_server(tree, env)
                try:
                    for body in bodies[:200]:  # warm-up
                        httpx.post(f"{url}/v1/rank", content=body, headers=JSON)
                    out[name].append(
                        wrk_fixed_rate(
                            url,
                            server.pid,
                            bodies,
                            args.rps,
                            args.wrk_seconds,
                            args.wrk_connections,
                            2.0,
                        )
                    )
                finally:
                    server.terminate()
                    server.wait(timeout=30)
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return out


# Evidence off: nothing logged, so nothing shadow-scored (service.py scores shadows only for
# logged rankings), and no ranking served in random order (drawn apart from logging).
EVIDENCE_OFF = {"RECKIT_DECISION_LOG_SHARE": "0", "RECKIT_EXPLORATION_SHARE": "0"}
EVIDENCE_ON = {
    "RECKIT_DECISION_LOG_SHARE": "1",
    "RECKIT_FEATURE_LOG_SHARE": "0.05",
    "RECKIT_EXPLORATION_SHARE": "0.05",
    "RECKIT_SHADOW_SHARE": "1",
}


def _shadow_version(registry: Registry) -> str:
    """A real xgboost version for the shadow alias: the registry's first one that is not in
    production, else production's files copied under another version name (its reckit meta
    restamped with that name): the same model, so the same scoring cost."""
    from reckit_assets.core.release.registry import PRODUCTION
    from reckit_assets.core.training.xgb_ranker import META_FILE

    production = registry.alias("xgboost", PRODUCTION)
    others = [m["version"] for m in registry.versions("xgboost") if m["version"] != production]
    if others:
        return others[0]
    version = f"{production}-shadow"
    files = registry.load_files("xgboost", production)
    meta = {**json.loads(files[META_FILE]), "model_version": version}
    files[META_FILE] = json.dumps(meta, indent=2, sort_keys=True).encode()
    manifest = registry.manifest("xgboost", production)
    registry.register(
        "xgboost",
        version,
        files,
        {"kind": "xgboost", "partition": manifest.get("partition"), "copy_of": production},
    )
    return version


def _set_shadow(registry: Registry, version: str | None) -> None:
    """Point the ranker's ``shadow`` alias at ``version`` (None: clear it), if not there yet."""
    from reckit_assets.core.release.registry import SHADOW

    if registry.alias("xgboost", SHADOW) != version:
        registry.set_alias("xgboost", SHADOW, version, "bench", "bench/serving.py evidence")


def _metric(text: str, sample: str) -> float:
    """Sum of ``sample`` (e.g. ``..._total``, ``..._count``) over all its label sets."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample
    )


def _evidence_counters(text: str) -> dict[str, float]:
    return {
        "decisions_logged": _metric(text, "reckit_serving_decisions_logged_total"),
        "shadow_scored": _metric(text, "reckit_serving_shadow_seconds_count"),
        "shadow_dropped": _metric(text, "reckit_serving_shadow_dropped_total"),
        "shadow_errors": _metric(text, "reckit_serving_shadow_errors_total"),
    }


def _settled_metrics(url: str, seconds: float = 15.0) -> str:
    """/metrics once every logged ranking is shadow-scored or dropped (the shadow's queue is
    empty; with ``RECKIT_SHADOW_SHARE=1`` each one is one or the other), or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        text = httpx.get(f"{url}/metrics").text
        c = _evidence_counters(text)
        if c["shadow_scored"] + c["shadow_dropped"] >= c["decisions_logged"]:
            return text
        if time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def _decision_rows(feedback: Path, since: float, until: float) -> dict:
    """What the decision log holds under ``feedback``: all rows (warm-up included) and, for the
    rankings served between ``since`` and ``until`` (epoch seconds), how they were logged."""
    from reckit_assets.core.monitoring.decisions import PREFIX

    columns = [
        "request_id",
        "served_at",
        "explored",
        "feature_logged",
        "shadow_version",
        "slate_size",
    ]
    files = sorted((feedback / PREFIX).rglob("*.parquet"))
    if not files:
        return {"decision_rows": 0, "decision_files": 0, "decision_rankings_in_wrk_window": 0}
    frame = pd.concat([pd.read_parquet(f, columns=columns) for f in files], ignore_index=True)
    served = frame["served_at"].astype("int64") / 1e3  # ms -> s
    window = frame[(served >= since) & (served <= until)]
    rankings = window.groupby("request_id").first()
    n = max(len(rankings), 1)
    return {
        "decision_rows": int(frame["slate_size"].sum()),  # one per ranked item
        "decision_files": len(files),
        "decision_rankings_in_wrk_window": len(rankings),
        "decision_rows_in_wrk_window": len(window),
        "features_logged_share": float(rankings["feature_logged"].sum()) / n,
        "explored_share": float(rankings["explored"].sum()) / n,
        "shadow_scored_share": float(rankings["shadow_version"].notna().sum()) / n,
    }


def _evidence_run(name: str, env: dict, bodies: list[bytes], args: argparse.Namespace) -> dict:
    """One server of this tree with ``env``, warmed up, under wrk; its own feedback folder."""
    from reckit_assets.core.release.registry import SHADOW

    feedback = Path(tempfile.mkdtemp(prefix=f"reckit-serving-bench-evidence-{name}-"))
    server, url = _start_server(ROOT, {**env, "RECKIT_FEEDBACK_URI": str(feedback)})
    try:
        health = httpx.get(f"{url}/health").json()
        shadow = health["models"].get("xgboost", {}).get(SHADOW)
        if (shadow is not None) != (name == "on"):
            raise SystemExit(
                f"evidence {name}: shadow {shadow!r} loaded; failing: {health['failing']}"
            )
        for body in bodies[:200]:  # warm-up
            httpx.post(f"{url}/v1/rank", content=body, headers=JSON)
        before = _settled_metrics(url)
        server0 = _cpu_seconds(server.pid)
        since = time.time()
        run = wrk_fixed_rate(
            url, server.pid, bodies, args.rps, args.wrk_seconds, args.wrk_connections, 2.0
        )
        until = time.time()
        after = _settled_metrics(url)  # the shadow's queue drained: its CPU counted below
        drained = _cpu_seconds(server.pid) - server0
    finally:
        server.terminate()
        server.wait(timeout=30)  # the decision log's last flush
    c0, c1 = _evidence_counters(before), _evidence_counters(after)
    run.update({f"{k}_in_wrk_window": c1[k] - c0[k] for k in c1})
    run["shadow_version"] = shadow
    run["shadow_p99_le_ms"] = _bucket_quantile(before, after, "reckit_serving_shadow_seconds", 99)
    run["shadow_p50_le_ms"] = _bucket_quantile(before, after, "reckit_serving_shadow_seconds", 50)
    run["server_cpu_ms_per_request_with_shadow_drain"] = drained * 1000.0 / max(run["requests"], 1)
    run.update(_decision_rows(feedback, since, until))
    shutil.rmtree(feedback, ignore_errors=True)
    return run


def compare_evidence(
    registry_uri: str, env: dict, bodies: list[bytes], args: argparse.Namespace
) -> dict:
    """The same wrk run against two servers of this tree, evidence off and on, alternated
    ``--rounds`` times on the same machine and registry: what the evidence costs the ranking."""
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.release.registry import SHADOW, Registry

    registry = Registry(LocalStorage(registry_uri))
    was = registry.alias("xgboost", SHADOW)
    shadow = _shadow_version(registry)
    on_env = {**EVIDENCE_ON, "RECKIT_DECISION_LOG_SHARE": str(args.evidence_log_share)}
    out: dict = {"shadow_version": shadow, "off_env": EVIDENCE_OFF, "on_env": on_env}
    out.update(off=[], on=[])
    try:
        for _ in range(args.rounds):
            for name, settings in (("off", EVIDENCE_OFF), ("on", on_env)):
                _set_shadow(registry, shadow if name == "on" else None)
                out[name].append(_evidence_run(name, {**env, **settings}, bodies, args))
    finally:
        _set_shadow(registry, was)  # a kept registry is left as it was found
    p99 = {k: float(np.median([r["p99_ms"] for r in out[k]])) for k in ("off", "on")}
    out["median_p99_ms"] = p99
    out["p99_ratio_on_off"] = p99["on"] / p99["off"] if p99["off"] else None
    out["worst_p99_on_ms"] = max(r["p99_ms"] for r in out["on"])
    out["target_met_on"] = all(r["p99_ms"] <= 20.0 and r["errors"] == 0 for r in out["on"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", help="registry folder to reuse or keep (default: a temp dir)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    parser.add_argument("--rps", type=float, default=300.0, help="offered load of the open loop")
    parser.add_argument("--concurrency", type=int, default=4, help="connections for max throughput")
    parser.add_argument("--connections", type=int, default=8, help="connections of the open loop")
    parser.add_argument("--max-requests", type=int, default=20_000, help="cap per phase")
    parser.add_argument("--wrk-seconds", type=float, default=30.0, help="duration of the wrk run")
    parser.add_argument("--wrk-connections", type=int, default=10, help="wrk's connections")
    parser.add_argument(
        "--compare-ref",
        help="also run wrk against the server of this git ref (e.g. the previous release), "
        "alternating with this tree's, and print both",
    )
    parser.add_argument(
        "--compare-evidence",
        action="store_true",
        help="also run wrk against this tree's server with the evidence off and on (decision "
        "log, feature logging, exploration, shadow scoring), alternating, and print both",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternations for --compare-ref/--compare-evidence"
    )
    parser.add_argument(
        "--evidence-log-share",
        type=float,
        default=1.0,
        help="RECKIT_DECISION_LOG_SHARE of the evidence-on server (the shadow and the feature log "
        "apply to logged rankings; the Helm values use 0.05)",
    )
    args = parser.parse_args()

    root = Path(args.keep or tempfile.mkdtemp(prefix="reckit-serving-bench-"))
    registry_uri = _build(root)
    payloads = _payloads(registry_uri, 500)
    bodies = [json.dumps(p).encode() for p in payloads]

    port = _free_port()
    feedback = Path(tempfile.mkdtemp(prefix="reckit-serving-bench-feedback-"))
    env = {
        **os.environ,
        "RECKIT_REGISTRY_URI": registry_uri,
        # As in production: every served position logged as an impression (written to disk).
        "RECKIT_FEEDBACK_URI": str(feedback),
        # The limiter runs (its cost is measured) but one benchmark client must not hit it.
        "RECKIT_RATE_LIMIT_RANK": "100000",
        "RECKIT_ADMIN_TOKEN": TOKEN,
        "RECKIT_POLL_SECONDS": "3600",
        "RECKIT_SERVING_MODELS": "xgboost,item2vec",
    }
    cmd = [sys.executable, "-m", "serving", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(cmd, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    results: dict = {"load_average_before": os.getloadavg()}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not become healthy within 120 s")
            time.sleep(0.2)
        health = httpx.get(f"{url}/health").json()
        results["models"] = health["models"]
        results["not_loaded"] = health["failing"]
        results["features_fast_path"] = (health["online_features"] or {}).get("fast_path")
        results["rss_mib"] = _rss_mib(server.pid)

        _closed_loop(url, bodies, 2, 3.0, 1000)  # warm-up
        pid = server.pid
        results["sequential"] = _measured(
            pid, lambda: _closed_loop(url, bodies, 1, args.seconds, args.max_requests)
        )
        results["wrk"] = wrk_fixed_rate(
            url,
            pid,
            bodies,
            args.rps,
            args.wrk_seconds,
            args.wrk_connections,
            results["sequential"]["p50_ms"],
        )
        results["max_throughput"] = _measured(
            pid,
            lambda: _closed_loop(url, bodies, args.concurrency, args.seconds, args.max_requests),
        )
        before = httpx.get(f"{url}/metrics").text
        results["open_loop"] = _measured(
            pid, lambda: _open_loop(url, bodies, args.rps, args.seconds, args.connections)
        )
        after = httpx.get(f"{url}/metrics").text
        results["open_loop"]["server_side_p99_bucket_ms"] = _server_p99(before, after)
        results["rss_mib_after"] = _rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
        results["feedback_rows_logged"] = sum(
            len(pd.read_parquet(f)) for f in feedback.rglob("*.parquet")
        )
        shutil.rmtree(feedback, ignore_errors=True)
    results["in_process_floor"] = floor(registry_uri, payloads, min(args.seconds, 5.0))
    if args.compare_ref:
        results["compare"] = compare(args.compare_ref, env, bodies, args)
    if args.compare_evidence:
        results["compare_evidence"] = compare_evidence(registry_uri, env, bodies, args)
    results["load_average_after"] = os.getloadavg()
    _print(results, args)
    out = Path(__file__).resolve().parent / "out" / "serving.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float))
    return 0


def _print(r: dict, args: argparse.Namespace) -> None:
    def row(name: str, s: dict) -> str:
        cpu = (
            f"{s['server_cpu_ms_per_request']:>7.2f} {s['client_cpu_ms_per_request']:>7.2f} "
            f"{s['other_processes_cores']:>7.2f}"
            if "server_cpu_ms_per_request" in s
            else ""
        )
        return (
            f"{name:<38} {s['p50_ms']:>7.2f} {s['p99_ms']:>7.2f} {s['max_ms']:>8.1f} "
            f"{s['rps']:>8.0f} {s['requests']:>7} {s['errors']:>6} {cpu}"
        )

    print()
    print(f"POST /v1/rank, {CANDIDATES} candidates, one uvicorn worker; models {r['models']}")
    print(f"online features gathered from precomputed rows: {r['features_fast_path']}")
    for slot, why in r["not_loaded"].items():
        print(f"  NOT loaded: {slot}: {why}")
    print(
        f"xgboost trees: {r['in_process_floor']['trees']}; cores: {os.cpu_count()}; "
        f"load average before/after: {r['load_average_before'][0]:.2f} / {r['load_average_after'][0]:.2f}"
    )
    print()
    print(
        f"{'':<38} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>8} {'req/s':>8} {'n':>7} {'errors':>6} "
        f"{'CPU ms/req: server':>18} {'client':>7} {'other processes (cores)':>7}"
    )
    print(row("in-process Service.rank (the floor)", r["in_process_floor"]))
    print(row("in-process + validation + JSON", r["in_process_floor"]["with_parse_and_json"]))
    print(row("HTTP, 1 connection", r["sequential"]))
    print(row(f"HTTP, {args.concurrency} connections (max throughput)", r["max_throughput"]))
    print(row(f"HTTP, open loop at {args.rps:.0f} req/s", r["open_loop"]))
    bucket = r["open_loop"]["server_side_p99_bucket_ms"]
    print(f"  server-side p99 at {args.rps:.0f} req/s (from /metrics buckets): <= {bucket} ms")
    print(
        f"server RSS with all models loaded: {r['rss_mib']['VmRSS']:.0f} MiB "
        f"(after the run {r['rss_mib_after']['VmRSS']:.0f} MiB, peak {r['rss_mib_after']['VmHWM']:.0f} MiB)"
    )
    w = r["wrk"]
    floor_p99 = r["in_process_floor"]["p99_ms"]
    print()
    print(
        f"wrk (1 thread, {w['connections']} connections paced to {w['offered_rps']:.0f} req/s, "
        f"{args.wrk_seconds:.0f} s): achieved {w['rps']:.1f} req/s, {w['requests']} requests, "
        f"{w['errors']} errors"
    )
    print(
        f"  client-side (wrk) ms: p50 {w['p50_ms']:.2f}  p90 {w['p90_ms']:.2f}  "
        f"p99 {w['p99_ms']:.2f}  p99.9 {w['p999_ms']:.2f}  max {w['max_ms']:.1f}"
    )
    print(
        f"  server-side (/metrics buckets) ms: p50 <= {w['server_p50_le_ms']}  "
        f"p90 <= {w['server_p90_le_ms']}  p99 <= {w['server_p99_le_ms']}"
    )
    print(
        f"  CPU per request: server {w['server_cpu_ms_per_request']:.2f} ms "
        f"({w['server_cores']:.2f} cores), wrk {w['client_cpu_ms_per_request']:.3f} ms "
        f"({w['client_cores']:.3f} cores), other processes {w['other_processes_cores']:.2f} cores"
    )
    print(
        f"  ratio to the in-process floor (same run): p50 {w['p50_ms'] / r['in_process_floor']['p50_ms']:.1f}x, "
        f"p99 {w['p99_ms'] / floor_p99:.1f}x"
    )
    print(f"feedback rows logged by the server during the run: {r['feedback_rows_logged']}")
    if "compare" in r:
        print()
        print(f"side by side, wrk at {w['offered_rps']:.0f} req/s, alternating servers:")
        for name, runs in r["compare"].items():
            for run in runs:
                print(
                    f"  {name:<12} achieved {run['rps']:6.1f} req/s  client p50 {run['p50_ms']:6.2f} "
                    f"p99 {run['p99_ms']:7.2f} ms  server p50 <= {run['server_p50_le_ms']} "
                    f"p99 <= {run['server_p99_le_ms']} ms  server CPU "
                    f"{run['server_cpu_ms_per_request']:.2f} ms/req  others "
                    f"{run['other_processes_cores']:.2f} cores"
                )
    if "compare_evidence" in r:
        _print_evidence(r["compare_evidence"], args)
    target = w["p99_ms"] <= 20.0 and w["errors"] == 0
    print(f"target p99 <= 20 ms at {args.rps:.0f} req/s (wrk): {'met' if target else 'NOT met'}")


def _print_evidence(e: dict, args: argparse.Namespace) -> None:
    def le(value: float | None) -> str:
        return "-" if value is None else f"<={value:g}"

    print()
    print(
        f"evidence off vs on, wrk at {args.rps:.0f} req/s for {args.wrk_seconds:.0f} s, "
        f"alternating servers of this tree; shadow: xgboost {e['shadow_version']}"
    )
    print(f"  off: {e['off_env']}")
    print(f"  on:  {e['on_env']}")
    print(
        f"  {'run':<6} {'req/s':>6} {'err':>4} {'p50 ms':>7} {'p99 ms':>7} {'srv p99':>8} "
        f"{'CPU ms/req':>10} {'+drain':>7} {'others':>6} {'rankings':>8} {'rows':>8} "
        f"{'shadow':>6} {'dropped':>7} {'shadow p99':>10}"
    )
    for k, (off, on) in enumerate(zip(e["off"], e["on"], strict=True), start=1):
        for name, run in ((f"off {k}", off), (f"on {k}", on)):
            print(
                f"  {name:<6} {run['rps']:>6.1f} {run['errors']:>4} {run['p50_ms']:>7.2f} "
                f"{run['p99_ms']:>7.2f} {le(run['server_p99_le_ms']):>8} "
                f"{run['server_cpu_ms_per_request']:>10.2f} "
                f"{run['server_cpu_ms_per_request_with_shadow_drain']:>7.2f} "
                f"{run['other_processes_cores']:>6.2f} "
                f"{run['decision_rankings_in_wrk_window']:>8} {run['decision_rows']:>8} "
                f"{run['shadow_scored_in_wrk_window']:>6.0f} "
                f"{run['shadow_dropped_in_wrk_window']:>7.0f} {le(run['shadow_p99_le_ms']):>10}"
            )
    print(
        "  (rankings: logged in the wrk window; rows: all decision-log rows written, warm-up "
        "included; shadow/dropped: in the wrk window, from /metrics; +drain: server CPU until "
        "the shadow's queue emptied)"
    )
    p99 = e["median_p99_ms"]
    ratio = e["p99_ratio_on_off"]
    print(
        f"  median client p99: off {p99['off']:.2f} ms, on {p99['on']:.2f} ms; on/off "
        f"{'-' if ratio is None else f'{ratio:.2f}x'}"
    )
    print(
        f"  p99 <= 20 ms with the evidence on (every run, no errors): "
        f"{'met' if e['target_met_on'] else 'NOT met'} (worst {e['worst_p99_on_ms']:.2f} ms)"
    )


if __name__ == "__main__":
    sys.exit(main())
