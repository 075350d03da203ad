"""The closed loop: the simulator as a world that answers a real service, day after day.

Each simulated day:

1. The world's users arrive with their candidate slates (``simulate_day``: who, when, which
   items). For the first ``bootstrap_days`` the legacy policy's logged traffic is landed as is,
   so the pipeline can train a first model.
2. Afterwards a real uvicorn serving the registry (production, and the canary at the share the
   rollout state says) ranks every slate over HTTP on loopback. Users click with the world's true
   probabilities *given the served order*: the logit of the position effect
   (-0.25 per position) moves with each item's new position. Impressions, clicks and conversions
   go back to the service as feedback; a real Prometheus scrapes the service.
3. The service's feedback log becomes the day's landing partition (``feedback_landing``), with
   the world's users and items; the pipeline then runs the day through Dagster as the sensors
   would: data assets, the day's xgboost candidate (trained every day, as the daily job does:
   gate, registration as canary when released), online metrics, the canary judge, the
   production guard and the retraining sensor (whose request for a day already trained is
   recorded, not run twice).
4. ``--bad-canary-on D``: after day D's pipeline a deliberately degraded model (XGBoost trained on
   inverted labels) is force-registered as canary, with an audited reason.

Outputs under ``out``: ``report.md``, ``timeline.json`` (every alias move, verdict, retraining
request, with day and reason) and ``online_ctr.png`` (online CTR per day and model version
against the oracle-optimal CTR of the same slates).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from reckit_assets.simulation.simulate import SimulationConfig, simulate_day

MODEL = "xgboost"
BY = "reckit loop"
SHADOW_POLICY_ENV = "RECKIT__RELEASE__NEW_VERSION_ALIAS"


@dataclass
class LoopConfig:
    out: Path
    days: int = 20
    drift_from: int | None = None  # 1-based day number from which preferences shift
    bad_canary_on: int | None = None  # 1-based day number after which a bad canary is registered
    skew_bug_on: int | None = None  # from the day after it, the service mis-scales a feature
    skew_bug_feature: str = "user_ctr"
    shadow_on: int | None = None  # from this day, released versions go to shadow before canary
    exploration: float = 0.1  # RECKIT_EXPLORATION_SHARE: rankings served in a random order
    feature_log_share: float = 0.2  # RECKIT_FEATURE_LOG_SHARE
    users: int = 3000
    items: int = 600
    impressions: int = 30000
    seed: int = 7
    bootstrap_days: int = 4
    rank_batch: int = 25  # requests per feedback POST
    start: str = field(default="")  # first day; default: so that the last day is yesterday

    def __post_init__(self) -> None:
        if not self.start:
            self.start = (date.today() - timedelta(days=self.days)).isoformat()
        if self.days <= self.bootstrap_days:
            raise ValueError(f"--days must exceed bootstrap_days {self.bootstrap_days}")

    def dt(self, day: int) -> str:
        """Date of 1-based day number ``day``."""
        return (date.fromisoformat(self.start) + timedelta(days=day - 1)).isoformat()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class _Prometheus:
    """A real Prometheus scraping the service's port (started only if installed)."""

    def __init__(self) -> None:
        self.binary = shutil.which("prometheus")
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self.root: Path | None = None

    def start(self, root: Path, target_port: int) -> None:
        # One server (and one fresh TSDB) per simulated day: the service restarts every day,
        # and counters of a restarted process must not be subtracted from yesterday's.
        self.stop()
        if self.binary is None:
            return
        self.root = root
        port = _free_port()
        root.mkdir(parents=True, exist_ok=True)
        config = root / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\nscrape_configs:\n"
            f"  - job_name: reckit\n    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
        )
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{port}"

    def wait_for(self, requests: int, timeout: float = 600.0) -> None:
        """Until Prometheus has scraped ``requests`` /v1/rank requests of the running service."""
        if not self.url:
            return
        import httpx

        expr = 'sum(reckit_serving_requests_total{endpoint="/v1/rank"})'
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
                result = got.json()["data"]["result"]
                if result and float(result[0]["value"][1]) >= requests:
                    time.sleep(1.5)  # one more scrape: every series of the same instant
                    return
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Prometheus did not scrape {requests} requests within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc, self.url = None, ""
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


# Longer than any simulated history replayed against the server's wall clock (400 days).
SIMULATED_CLOCK_SKEW_SECONDS = 400 * 86_400.0


class _Service:
    """The real service (uvicorn, in a thread) on a fixed loopback port, restarted per day with
    the canary share the rollout state asks for (the deployment applying the traffic split)."""

    def __init__(
        self,
        registry_uri: str,
        feedback_uri: str,
        port: int,
        exploration: float,
        feature_log_share: float,
    ) -> None:
        self.registry_uri, self.feedback_uri, self.port = registry_uri, feedback_uri, port
        self.exploration, self.feature_log_share = exploration, feature_log_share

    def run_day(self, dt: str, share: float, work, settle, fault=None) -> float:
        """Serve day ``dt`` (its decision log partition); returns the moment the day's counts
        were all scraped (before the server stops: after that Prometheus marks its series
        stale). ``fault(service)``: applied once the service is ready (an injected bug)."""
        import httpx
        import uvicorn

        from serving.app import create_app
        from serving.config import ServingConfig

        config = ServingConfig(
            registry_uri=self.registry_uri,
            models=(MODEL,),
            poll_seconds=3600,
            canary_share=share,
            admin_token=os.environ.get("RECKIT_ADMIN_TOKEN", "loop"),
            feedback_uri=self.feedback_uri,
            feedback_flush_rows=20000,
            # The world is one client sending a whole day's traffic in minutes: no rate limit.
            rate_limit_rank=0.0,
            rate_limit_feedback=0.0,
            # Its events carry the simulated day's timestamps (days or weeks before the server's
            # wall clock, which serves that day in minutes): the feedback time window is checked
            # against the simulated clock's distance from the real one, not a real client's.
            feedback_clock_skew_seconds=SIMULATED_CLOCK_SKEW_SECONDS,
            # impressions come from the client's feedback (as reckit's clients send them), not
            # from serve-time logging, so each shown item is counted once
            served_impressions=0,
            exploration_share=self.exploration,
            feature_log_share=self.feature_log_share,
            decision_log_day=dt,  # a replay: the simulated day, not the wall clock's
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        app = create_app(config)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if client.get("/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the service did not become healthy within 60 s")
                    time.sleep(0.1)
                if fault is not None:
                    fault(app.state.service)
                settle(work(client))  # until Prometheus has scraped the day's last counts
                return time.time()
        finally:
            server.should_exit = True
            thread.join(timeout=60)
            sock.close()


def _serve_day(client, day, rng: np.random.Generator, batch: int) -> dict:
    """Rank every slate through the service; click with the true probabilities at the served
    positions; send the feedback. Returns the day's figures (served and oracle-optimal CTR)."""
    oracle = day.oracle
    imps = day.events[day.events["event_type"] == "impression"]
    meta = imps.drop_duplicates("request_id").set_index("request_id")[["ts", "device"]]
    base = _logit(oracle["p_click"].to_numpy()) + 0.25 * oracle["position"].to_numpy()
    oracle = oracle.assign(base_logit=base)
    served_p, optimal_p, by_version = [], [], {}
    pending: list[dict] = []
    for request_id, slate in oracle.groupby("request_id", sort=False):
        user = slate["user_id"].iloc[0]
        ts, device = meta.loc[request_id, "ts"], meta.loc[request_id, "device"]
        items = slate["item_id"].tolist()
        body = client.post(
            "/v1/rank",
            json={
                "user_id": user,
                "item_ids": items,
                "context": {"device": device},
                "request_id": request_id,
            },
        ).json()
        order = {item: pos for pos, item in enumerate(body["ranked_item_ids"])}
        pos = np.array([order[i] for i in items])
        p = _sigmoid(slate["base_logit"].to_numpy() - 0.25 * pos)
        best = _sigmoid(
            np.sort(slate["base_logit"].to_numpy())[::-1] - 0.25 * np.arange(len(items))
        )
        served_p.append(p.sum())
        optimal_p.append(best.sum())
        clicks = rng.random(len(items)) < p
        convs = clicks & (rng.random(len(items)) < slate["p_conversion_given_click"].to_numpy())
        v = by_version.setdefault(body["model_version"], {"impressions": 0, "clicks": 0, "p": 0.0})
        v["impressions"] += len(items)
        v["clicks"] += int(clicks.sum())
        v["p"] += float(p.sum())
        stamp = pd.Timestamp(ts)
        # Feedback is attributed by the token /v1/rank returned (bound to the served items);
        # the service keys it by its own request id, which the landed events then carry.
        served_as = {"request_id": body["request_id"], "request_token": body["request_token"]}
        for item, k, c, cv in zip(items, pos, clicks, convs, strict=True):
            pending.append(
                {
                    **served_as,
                    "item_id": item,
                    "event_type": "impression",
                    "position": int(k),
                    "ts": stamp.isoformat(),
                }
            )
            if c:
                click_ts = (stamp + pd.Timedelta(seconds=5)).isoformat()
                pending.append(
                    {
                        **served_as,
                        "item_id": item,
                        "event_type": "click",
                        "ts": click_ts,
                    }
                )
            if cv:
                conv_ts = (stamp + pd.Timedelta(seconds=60)).isoformat()
                pending.append(
                    {
                        **served_as,
                        "item_id": item,
                        "event_type": "conversion",
                        "ts": conv_ts,
                    }
                )
        if len(pending) >= batch * 12:
            _post_feedback(client, pending)
            pending = []
    if pending:
        _post_feedback(client, pending)
    n = len(oracle)
    return {
        "requests": int(oracle["request_id"].nunique()),
        "impressions": n,
        "expected_ctr": float(np.sum(served_p) / n),
        "oracle_ctr": float(np.sum(optimal_p) / n),
        "by_version": {
            k: {
                "impressions": v["impressions"],
                "clicks": v["clicks"],
                "ctr": v["clicks"] / v["impressions"],
                "expected_ctr": v["p"] / v["impressions"],
            }
            for k, v in by_version.items()
        },
    }


def _release_outcome(store, dt: str) -> str:
    """The day's release outcome of the served model's candidate (released / held / ...)."""
    key = f"{MODEL}_evaluation/dt={dt}/report.json"
    if not store.exists(key):
        return "no candidate"
    return json.loads(store.read_bytes(key)).get("outcome", "?")


def _off_policy(store, dt: str) -> dict | None:
    """The day's candidate's off-policy CTR estimates (its evaluation report), if made."""
    key = f"{MODEL}_evaluation/dt={dt}/report.json"
    if not store.exists(key):
        return None
    report = json.loads(store.read_bytes(key))
    found = report.get("off_policy")
    if not found:
        return None
    out = {
        "version": report["candidate"]["version"],
        "logged_ctr": found.get("logged_ctr"),
        "evidence_clicks": found.get("evidence_clicks"),
    }
    if "candidate" not in found:
        return out | {"reason": found.get("reason")}
    return out | {
        k: {f: found["candidate"][k][f] for f in ("value", "ci_low", "ci_high")}
        for k in found["candidate"]
    }


def _realised(store, dt: str) -> dict:
    """Per served version: its CTR on the rankings it served in its own order (not explored),
    from the day's served decisions."""
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.monitoring.decisions import ASSET

    if warehouse.manifest(store, ASSET, dt) is None:
        return {}
    rows = warehouse.read(store, ASSET, dt)
    if rows.empty:
        return {}
    own = rows[~rows["explored"].astype(bool)]
    return {
        str(v): {"impressions": len(g), "ctr": float(g["clicked"].mean())}
        for v, g in own.groupby("model_version")
    }


def _post_feedback(client, events: list[dict]) -> None:
    resp = client.post("/v1/feedback", json={"events": events})
    if resp.status_code != 200:
        raise RuntimeError(f"feedback refused: {resp.status_code} {resp.text[:500]}")


def _degraded_canary(store, registry, dt: str, first_day: str) -> str:
    """An XGBoost trained on inverted labels: loads and scores fine, ranks badly."""
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.release.registry import CANARY
    from reckit_assets.core.training.xgb_ranker import XGBParams, train_xgb

    days = [*warehouse.window(dt, 4, first_day), dt]
    frames = [warehouse.read(store, "training_samples", d) for d in days]
    frames = [f.assign(label=1 - f["label"]) for f in frames]
    train, valid = pd.concat(frames[:-1], ignore_index=True), frames[-1]
    model = train_xgb(train, valid, XGBParams(n_estimators=30, max_depth=4, seed=1))[0]
    version = f"{MODEL}-{dt}-degraded"
    files = {**model.files(), **model.reckit_export(version, f"{dt}T00:00:00Z")}
    reason = "deliberately degraded model (trained on inverted labels), forced as canary"
    registry.register(
        MODEL,
        version,
        files,
        {"kind": MODEL, "partition": dt, "override": {"forced": True, "reason": reason}},
    )
    registry.set_alias(MODEL, CANARY, version, f"{BY} --bad-canary-on", reason)
    return version


def run_loop(cfg: LoopConfig) -> dict:
    """Run the whole loop; returns the summary written to report.md and timeline.json."""
    loop = _Loop(cfg)
    try:
        for day_no in range(1, cfg.days + 1):
            loop.day(day_no)
    finally:
        loop.prometheus.stop()
        os.environ.pop(SHADOW_POLICY_ENV, None)
    return loop.finish()


class _Loop:
    """The loop's state across days: the code location, the service, the registry, and what
    the report is made of (the timeline of events and one record per day)."""

    def __init__(self, cfg: LoopConfig) -> None:
        self.cfg = cfg
        self.out = cfg.out.resolve()
        data = self.out / "data"
        if data.exists():
            shutil.rmtree(data)
        self.out.mkdir(parents=True, exist_ok=True)
        os.environ["RECKIT_DATA_DIR"] = str(data)
        os.environ["RECKIT_PARTITIONS_START"] = cfg.start
        for key in (
            "RECKIT_LANDING_URI", "RECKIT_WAREHOUSE_URI", "RECKIT_REGISTRY_URI", SHADOW_POLICY_ENV
        ):  # fmt: skip
            os.environ.pop(key, None)

        # Imported once the environment above is set: the settings read it.
        import dagster as dg

        from reckit_assets.config import load_config
        from reckit_assets.core.io.storage import LocalStorage
        from reckit_assets.core.release.registry import Registry
        from reckit_assets.definitions import build_defs
        from reckit_assets.settings import load_settings

        settings = load_settings()
        self.judge_config = load_config(settings.config_file).config.judge  # reckit.yaml's
        self.defs = build_defs(settings)
        self.landing = LocalStorage(settings.landing_uri)
        self.store = LocalStorage(settings.warehouse_uri)
        self.registry = Registry(LocalStorage(settings.registry_uri))
        self.feedback_uri = str(data / "feedback")
        self.drift_dt = cfg.dt(cfg.drift_from) if cfg.drift_from else None
        self.sim = SimulationConfig(
            start=cfg.start,
            days=cfg.days,
            n_users=cfg.users,
            n_items=cfg.items,
            impressions_per_day=cfg.impressions,
            seed=cfg.seed,
            drift_from=self.drift_dt,
            messy=False,
        )
        self.all_assets = list(self.defs.assets)
        self.data_selection = dg.AssetSelection.groups("ingest", "features", "samples")
        self.model_selection = dg.AssetSelection.assets(
            f"{MODEL}_candidate", f"{MODEL}_evaluation", f"{MODEL}_registered"
        )
        self.monitoring_selection = dg.AssetSelection.assets(
            "online_metrics", "canary_release", "production_guard", "served_decisions",
            "serving_skew", "shadow_evaluation",
        )  # fmt: skip
        self.instance = dg.DagsterInstance.ephemeral()
        self.port = _free_port()
        self.prometheus = _Prometheus()
        self.service = _Service(
            settings.registry_uri,
            self.feedback_uri,
            self.port,
            cfg.exploration,
            cfg.feature_log_share,
        )
        self.windows: dict[str, list[float]] = {}  # the service's hours of each served day
        self.rng = np.random.default_rng([cfg.seed, 99])
        self.timeline: list[dict] = []
        self.days: list[dict] = []
        self.sensor_cursor: str | None = None
        self.seen_moves = 0
        self.t0 = time.monotonic()

    def resources(self) -> dict:
        from reckit_assets.defs.resources import Monitoring

        res = dict(self.defs.resources)
        res["monitoring"] = Monitoring(
            feedback_uri=self.feedback_uri,
            prometheus_url=self.prometheus.url,
            models=MODEL,
            service_windows=json.dumps(self.windows),
        )
        return res

    def run(self, day_no: int, selection, dt: str, tags: dict | None = None):
        """Materialize ``selection`` for ``dt`` as a run would; failed checks go on the
        timeline."""
        import dagster as dg

        result = dg.materialize(
            self.all_assets,
            selection=selection,
            partition_key=dt,
            resources=self.resources(),
            instance=self.instance,
            raise_on_error=False,
            tags=tags or {},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        for e in result.get_asset_check_evaluations():
            if not e.passed:
                self.timeline.append(
                    {"day": day_no, "dt": dt, "kind": "check_failed",
                     "what": f"{e.asset_key.to_user_string()}.{e.check_name}",
                     "reason": e.description or ""}
                )  # fmt: skip
        return result

    def day(self, day_no: int) -> None:
        """One day: its traffic lands (logged, or served by the service), the pipeline runs it,
        and the release decisions of the day are recorded."""
        from reckit_assets.core.ingest.landing import write_partition

        cfg, dt = self.cfg, self.cfg.dt(day_no)
        world = simulate_day(self.sim, day_no - 1)
        write_partition(self.landing, "users", dt, world.users)
        write_partition(self.landing, "items", dt, world.items)
        record = {"day": day_no, "dt": dt, "drifted": bool(self.drift_dt and dt >= self.drift_dt)}
        if day_no <= cfg.bootstrap_days:
            write_partition(self.landing, "events", dt, world.events)  # the legacy policy's log
            record["policy"] = "legacy (logged)"
        else:
            self.serve(day_no, dt, world, record)
        result = self.run(day_no, self.data_selection, dt)
        if not result.success:
            raise RuntimeError(f"day {day_no} {dt}: data pipeline failed")
        if day_no == cfg.bootstrap_days:  # the first model: production
            self.run(day_no, self.model_selection, dt, {"reckit/trigger": "bootstrap"})
        if day_no > cfg.bootstrap_days:
            self.judge_and_release(day_no, dt, record)
        if cfg.bad_canary_on and day_no == cfg.bad_canary_on:
            from reckit_assets.core.monitoring.rollout import sync_rollout

            version = _degraded_canary(self.store, self.registry, dt, cfg.start)
            sync_rollout(self.registry, MODEL, dt, self.judge_config)  # serves from tomorrow
            record["bad_canary"] = version
        for move in self.registry.history(MODEL)[self.seen_moves :]:
            self.timeline.append({"day": day_no, "dt": dt, "kind": "alias_move", **move.as_dict()})
            self.seen_moves += 1
        record["aliases"] = self.registry.aliases(MODEL)
        record["seconds"] = round(time.monotonic() - self.t0, 1)
        self.days.append(record)
        print(json.dumps({k: record.get(k) for k in (
            "day", "dt", "policy", "canary_share", "expected_ctr", "oracle_ctr",
            "aliases", "seconds")}), flush=True)  # fmt: skip

    def serve(self, day_no: int, dt: str, world, record: dict) -> None:
        """The day's slates ranked by the service (the canary at its rollout share), the users'
        clicks sent back as feedback, and the feedback log landed as the day's events."""
        import dagster as dg

        from reckit_assets.core.monitoring.rollout import read_rollout

        rollout = read_rollout(self.registry.storage, MODEL)
        share = rollout.share if rollout and rollout.started <= dt else 0.0
        start = time.time()
        figures: dict = {}

        def work(client) -> int:
            figures.update(_serve_day(client, world, self.rng, self.cfg.rank_batch))
            return figures.pop("requests")

        fault = None
        if self.cfg.skew_bug_on and day_no > self.cfg.skew_bug_on:
            from reckit_assets.simulation.defects import serving_feature_bug

            def fault(service) -> None:
                serving_feature_bug(service.manager.state.features, self.cfg.skew_bug_feature)

            record["skew_bug"] = self.cfg.skew_bug_feature
        self.prometheus.start(self.out / "prometheus" / dt, self.port)
        end = self.service.run_day(dt, share, work, self.prometheus.wait_for, fault)
        self.windows[dt] = [start - 1.0, end]
        record |= {"policy": "served", "canary_share": share, **figures}
        result = self.run(day_no, dg.AssetSelection.assets("feedback_landing"), dt)
        if not result.success:
            raise RuntimeError(f"day {day_no}: feedback landing failed")

    def judge_and_release(self, day_no: int, dt: str, record: dict) -> None:
        """After a served day: online metrics, the canary judge and the production guard, then
        the day's candidate (gated on the day just served; released, it becomes the canary or
        waits, per release.canary_in_judgement), and what the retraining sensor asks for."""
        from reckit_assets.core.monitoring.rollout import sync_rollout

        self.run(day_no, self.monitoring_selection, dt)
        decisions = json.loads(self.store.read_bytes(f"canary_release/dt={dt}/decisions.json")).get(
            MODEL, {}
        )
        if "verdict" in decisions:
            v = decisions["verdict"]
            self.timeline.append(
                {"day": day_no, "dt": dt, "kind": "verdict", "verdict": v["decision"],
                 "action": decisions["action"], "reason": "; ".join(v["reasons"]),
                 "figures": {k: v["figures"].get(k) for k in (
                     "ctr_canary", "ctr_production", "likelihood_ratio", "ci_low",
                     "ci_high", "share", "version_canary")}}
            )  # fmt: skip
        record["realised"] = _realised(self.store, dt)
        shadow_key = f"shadow_evaluation/dt={dt}/shadow.json"
        if self.store.exists(shadow_key):
            judged = json.loads(self.store.read_bytes(shadow_key)).get(MODEL)
            if judged:
                record["shadow"] = judged
                self.timeline.append(
                    {"day": day_no, "dt": dt, "kind": "shadow_day", "version": judged["version"],
                     "verdict": judged["verdict"], "reason": judged["why"]}
                )  # fmt: skip
        guard = json.loads(self.store.read_bytes(f"production_guard/dt={dt}/guard.json"))[MODEL]
        record["guard"] = {k: guard.get(k) for k in ("rollback", "retrain", "reasons")}
        if self.cfg.shadow_on and day_no >= self.cfg.shadow_on:
            # From this day the release policy puts a gated version in shadow first (a passing
            # live day before canary): reckit.yaml's release.new_version_alias, by environment.
            os.environ[SHADOW_POLICY_ENV] = "shadow"
        result = self.run(day_no, self.model_selection, dt, {"reckit/trigger": "daily"})
        record["release_outcome"] = _release_outcome(self.store, dt)
        record["off_policy"] = _off_policy(self.store, dt)
        record["red"] = not result.success
        sync_rollout(self.registry, MODEL, dt, self.judge_config)
        self.retrain_requests(day_no, dt)

    def retrain_requests(self, day_no: int, dt: str) -> None:
        """The retraining sensor's requests, each on the timeline; run unless it asks for the
        day the daily run trained already (the same candidate)."""
        import dagster as dg

        from reckit_assets.core.monitoring.rollout import sync_rollout
        from reckit_assets.defs.monitoring.sensors import REASON_TAG

        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.sensor_cursor,
            resources=self.resources(),
            definitions=self.defs,
        )
        sensed = self.defs.get_sensor_def("retraining_sensor")(context)
        self.sensor_cursor = sensed.cursor or self.sensor_cursor
        for req in sensed.run_requests or []:
            self.timeline.append(
                {"day": day_no, "dt": dt, "kind": "retrain_request",
                 "partition": req.partition_key, "reason": req.tags[REASON_TAG]}
            )  # fmt: skip
            if req.partition_key == dt:
                continue  # the daily run trained this day already: same candidate
            self.run(day_no, self.model_selection, req.partition_key, dict(req.tags))
            sync_rollout(self.registry, MODEL, dt, self.judge_config)

    def finish(self) -> dict:
        """The summary, timeline.json and report.md."""
        from reckit_assets.core.release.registry import PRODUCTION
        from reckit_assets.simulation.loop_report import write_report

        cfg = self.cfg
        summary = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items()},
            "prometheus": shutil.which("prometheus") is not None,
            "seconds": round(time.monotonic() - self.t0, 1),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "production": self.registry.alias(MODEL, PRODUCTION),
            "ledger": [m.as_dict() for m in self.registry.history(MODEL)],
        }
        timeline, days = self.timeline, self.days
        (self.out / "timeline.json").write_text(
            json.dumps(
                {"summary": summary, "timeline": timeline, "days": days}, indent=1, default=str
            )
        )
        write_report(self.out, cfg, days, timeline, summary)
        return {"summary": summary, "timeline": timeline, "days": days}
