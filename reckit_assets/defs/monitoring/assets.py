"""Monitoring and release, after the registry: served feedback -> landing, online metrics per
day, the canary judge applied through the registry, and production's own regression guard.

Every alias move here goes through the registry (audited: ``by`` the judge or the guard, the
verdict's figures as the reason); every decision is computed by core.monitoring.
"""

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from reckit_assets.core.ingest.landing import is_ready, read_landed
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import Storage
from reckit_assets.core.monitoring import online, rollout
from reckit_assets.core.monitoring.feedback import FeedbackLandingError, land_feedback
from reckit_assets.core.monitoring.judge import judge
from reckit_assets.core.monitoring.shadow import release_shadow
from reckit_assets.core.release.registry import CANARY, PRODUCTION, Registry, RegistryError
from reckit_assets.core.release.smoke import SmokeTestError, smoke_test
from reckit_assets.defs.config import ProjectConfig, config_metadata
from reckit_assets.defs.partitions import Structure
from reckit_assets.defs.resources import Monitoring, ReckitStorage

CODE_VERSION = "monitoring-1"
ONLINE = "online_metrics"
REGISTERED = [dg.AssetKey(f"{kind}_registered") for kind in ("xgboost", "deepfm", "item2vec")]
SAMPLES = "training_samples"
SHADOW_ASSET = "shadow_evaluation"
ABUSE_CHECK = "feedback_abuse"  # non-blocking: quarantined events warn, the day lands
MIN_ATTRIBUTED_SHARE = 0.5  # below this, the day's feedback is mostly unattributable: block


def _by(context: dg.AssetExecutionContext, who: str) -> str:
    return f"{who} (run {context.run_id})"


def _service_figures(monitoring: Monitoring, dt: str) -> dict[str, online.ServiceFigures]:
    if not monitoring.prometheus_url:
        return {}
    window = monitoring.service_window(dt)
    if window is None:  # the calendar day, UTC
        start = datetime.fromisoformat(dt).replace(tzinfo=UTC).timestamp()
        window = (start, start + timedelta(days=1).total_seconds())
    start, end = window
    return online.Prometheus(monitoring.prometheus_url).service_figures(start, end)


def offline_scores_of(registry: Registry, store: Storage, model: str, version: str):
    """The version's scores on its offline holdout (None when it or its holdout is unknown)."""
    partition = (registry.manifest(model, version) or {}).get("partition")
    if partition is None or warehouse.manifest(store, SAMPLES, partition) is None:
        return None
    holdout = warehouse.read(store, SAMPLES, partition)
    return online.offline_scores(registry.load_files(model, version), model, holdout)


def _window_users(store: Storage, first: str, last: str) -> pd.DataFrame:
    return rollout.concat_users(
        [
            warehouse.read(store, ONLINE, d, "users")
            for d in rollout.days(first, last)
            if warehouse.manifest(store, ONLINE, d) is not None
        ]
    )


def _window_service(store: Storage, first: str, last: str, version: str):
    """(service figures of ``version`` summed over the window's days, the worst day's score PSI);
    latency is the worst day's p99. The last day must have figures (else None: unknown, which
    never passes); earlier days without them are left out (a monitoring gap on one day must
    not freeze a canary until it expires)."""
    figs, psis = [], []
    for d in rollout.days(first, last):
        found = warehouse.manifest(store, ONLINE, d)
        fig = found["info"].get("service", {}).get(version) if found else None
        if fig is None:
            if d == last:
                return None, None
            continue
        figs.append(fig)
        psis.append(found["info"].get("score_psi", {}).get(version))
    if not figs:
        return None, None
    lat = [f["latency_p99_ms"] for f in figs]
    service = online.ServiceFigures(
        requests=sum(f["requests"] for f in figs),
        errors=sum(f["errors"] for f in figs),
        latency_p99_ms=None if any(x is None for x in lat) else max(lat),
        score_bounds=figs[-1]["score_bounds"],
        score_counts=[sum(c) for c in zip(*[f["score_counts"] for f in figs], strict=False)],
    )
    return service, None if any(p is None for p in psis) else max(psis)


def _arm(store: Storage, model: str, version: str, users: pd.DataFrame, window: tuple[str, str]):
    service, psi = _window_service(store, *window, version)
    arm = online.arm_metrics(users, version, window, service, None)
    return None if arm is None else dataclasses.replace(arm, score_psi=psi)


def _daily_arms(store: Storage, canary: str, production: str | None, window: tuple[str, str]):
    """Both arms day by day over the window (days where both served), for the judge's
    within-day comparison."""
    out = []
    for d in rollout.days(*window):
        if production is None or warehouse.manifest(store, ONLINE, d) is None:
            continue
        users = warehouse.read(store, ONLINE, d, "users")
        c = online.arm_metrics(users, canary, (d, d), None, None)
        p = online.arm_metrics(users, production, (d, d), None, None)
        if c is not None and p is not None:
            out.append((c, p))
    return out


def build(s: Structure) -> list:
    """The monitoring and release stage's assets for this code location's partitions."""

    @dg.asset(
        group_name="monitoring",
        partitions_def=s.daily,
        code_version=CODE_VERSION,
        kinds={"parquet"},
        check_specs=[dg.AssetCheckSpec(ABUSE_CHECK, asset="feedback_landing", blocking=False)],
        description="The day's served feedback (attributable to a served request) landed as the "
        "landing zone's `events` partition with `_SUCCESS`: tomorrow's training data. Write-once; "
        "unattributable feedback is counted and kept apart under the warehouse's `unattributed/`; "
        "abusive events (per-user/per-item anomalies, impossible ratios, unknown ids; the `abuse` "
        "config section) are quarantined under `quarantined_feedback/` and named in the "
        f"`{ABUSE_CHECK}` check (WARN, never blocking: the rest of the day lands).",
    )
    def feedback_landing(
        context: dg.AssetExecutionContext,
        storage: ReckitStorage,
        monitoring: Monitoring,
        project: ProjectConfig,
    ) -> dg.MaterializeResult:
        if not monitoring.feedback_uri:
            raise dg.Failure(
                "no feedback log configured (Monitoring.feedback_uri, RECKIT_FEEDBACK_URI)"
            )
        effective = project.load()
        try:
            report = land_feedback(
                monitoring.feedback(),
                storage.landing(),
                storage.warehouse(),
                context.partition_key,
                rules=effective.config.abuse,
            )
        except FeedbackLandingError as exc:
            raise dg.Failure(str(exc)) from exc
        outcomes = report.pop("abuse")
        failed = [o for o in outcomes if not o.passed]
        figures = {o.name: {"passed": o.passed, "description": o.description, **o.metadata}
                   for o in outcomes}  # fmt: skip
        check = dg.AssetCheckResult(
            check_name=ABUSE_CHECK,
            passed=not failed,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(f"{o.name}: {o.description}" for o in failed)
            or "no event quarantined",
            metadata={
                "quarantined_events": report.get("quarantined", 0),
                "quarantined_users": report.get("quarantined_users", 0),
                "quarantined_items": report.get("quarantined_items", 0),
                "rules": dg.MetadataValue.json(json.loads(json.dumps(figures, default=str))),
            },
        )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(report["sha256"][:16]),
            metadata={
                **{k: v for k, v in report.items() if isinstance(v, int | str | bool)},
                "abuse": dg.MetadataValue.json(json.loads(json.dumps(figures, default=str))),
                **config_metadata(effective, ("abuse",)),
            },
            check_results=[check],
        )

    @dg.asset(
        group_name="monitoring",
        partitions_def=s.daily,
        code_version=CODE_VERSION,
        deps=[feedback_landing],
        kinds={"parquet"},
        check_specs=[
            dg.AssetCheckSpec("has_traffic", asset=ONLINE, blocking=True),
            dg.AssetCheckSpec("figures_finite", asset=ONLINE, blocking=True),
        ],
        description="Per day, model version and alias: impressions, clicks, conversions, CTR with "
        "user-level SE, per-user counts (for windows), and the service's requests, 5xx, latency p99 "
        "and score PSI vs the version's offline holdout, read from Prometheus.",
    )
    def online_metrics(
        context: dg.AssetExecutionContext, storage: ReckitStorage, monitoring: Monitoring
    ):
        dt = context.partition_key
        landing, store, registry = (
            storage.landing(),
            storage.warehouse(),
            Registry(storage.registry()),
        )
        if not is_ready(landing, dt):
            raise dg.Failure(f"landing dt={dt} is not complete (no _SUCCESS on all three tables)")
        events = read_landed(landing, "events", dt).frame
        aliases = {}
        for model in monitoring.model_names():
            for alias, version in registry.aliases(model).items():
                aliases[version] = alias
        users = online.per_user(online.with_alias(events, aliases))
        summary = online.summarize(users)
        service = _service_figures(monitoring, dt)
        psi, extra = {}, []
        for row in summary.itertuples():
            fig = service.get(row.model_version)
            model = next(
                (m for m in monitoring.model_names() if row.model_version.startswith(m)), None
            )
            scores = None
            if fig and model:
                scores = offline_scores_of(registry, store, model, row.model_version)
            if fig and scores is not None and fig.score_bounds:
                psi[row.model_version] = online.psi_counts(
                    online.histogram(scores, fig.score_bounds), fig.score_counts
                )
            extra.append(
                {
                    "requests": fig.requests if fig else None,
                    "errors": fig.errors if fig else None,
                    "latency_p99_ms": fig.latency_p99_ms if fig else None,
                    "score_psi": psi.get(row.model_version),
                }
            )
        if len(summary):
            summary = pd.concat([summary, pd.DataFrame(extra)], axis=1)
        published = warehouse.publish(
            store,
            ONLINE,
            dt,
            warehouse.Artifact(
                frames={"summary": summary, "users": users},
                info={"service": {v: f.__dict__ for v, f in service.items()}, "score_psi": psi},
            ),
        )
        production = [r for r in summary.to_dict("records") if r["alias"] == PRODUCTION]
        yield dg.MaterializeResult(
            data_version=dg.DataVersion(published["data_version"]),
            metadata={
                "summary": dg.MetadataValue.md(
                    summary.to_markdown(index=False) if len(summary) else ""
                ),
                "impressions": int(summary["impressions"].sum()) if len(summary) else 0,
                "prometheus": bool(service),
            },
        )
        yield dg.AssetCheckResult(
            check_name="has_traffic",
            passed=bool(production) and production[0]["impressions"] > 0,
            metadata={"production_rows": len(production)},
            description="production served impressions this day",
        )
        finite = (
            summary[["impressions", "clicks", "users"]].notna().all().all()
            if len(summary)
            else False
        )
        yield dg.AssetCheckResult(check_name="figures_finite", passed=bool(finite))

    @dg.asset(
        group_name="release",
        partitions_def=s.daily,
        code_version=CODE_VERSION,
        deps=[online_metrics, *REGISTERED, SHADOW_ASSET],
        kinds={"json"},
        description="A shadow whose live day passed (`shadow_evaluation`) moves to canary, a "
        "failed one is cleared. Then the canary judge, once a day per model: verdict over the canary's whole window "
        "(same days for both arms) applied through the registry: promote, roll back, step the "
        "share up, or expire. Audited in the alias log: by the judge, the verdict's figures as reason.",
    )
    def canary_release(
        context: dg.AssetExecutionContext,
        storage: ReckitStorage,
        monitoring: Monitoring,
        project: ProjectConfig,
    ) -> dg.MaterializeResult:
        dt = context.partition_key
        store, registry = storage.warehouse(), Registry(storage.registry())
        effective = project.load()
        cfg = effective.config.judge
        decisions = {}
        shadows = (
            json.loads(warehouse.read_file(store, SHADOW_ASSET, dt, "shadow.json"))
            if warehouse.manifest(store, SHADOW_ASSET, dt) is not None
            else {}
        )
        for model in monitoring.model_names():
            # A shadow whose live day passed becomes the canary (release.new_version_alias:
            # shadow), before the canary's rollout is synced; a failed one is cleared.
            try:
                shadow_step = release_shadow(
                    registry, model, shadows.get(model), _by(context, "shadow judge")
                )
            except RegistryError as exc:  # a concurrent move: tomorrow's run decides again
                shadow_step = {"action": "waiting", "why": f"registry: {exc}"}
                context.log.warning(f"{model}: shadow step not applied: {exc}")
            if shadow_step["action"] != "none":
                context.log.info(f"{model}: shadow {shadow_step}")
            current, started = rollout.sync_rollout(registry, model, dt, cfg)
            if current is None or started or current.started > dt:
                decisions[model] = {
                    "action": "none" if current is None else "started",
                    "rollout": current and current.__dict__,
                    "shadow": shadow_step,
                }
                continue
            window = (current.started, dt)
            users = _window_users(store, *window)
            prod_version = registry.alias(model, PRODUCTION)
            canary = _arm(store, model, current.version, users, window)
            production = _arm(store, model, prod_version, users, window) if prod_version else None
            today = (
                warehouse.read(store, ONLINE, dt, "users")
                if warehouse.manifest(store, ONLINE, dt)
                else users.iloc[:0]
            )
            # This model's two versions only: other models' users are not this split's.
            today = today[today["model_version"].isin([current.version, prod_version])]
            day_users = today.groupby("alias")["user_id"].nunique().to_dict()
            state = current.state(dt, day_users.get(CANARY, 0), day_users.get(PRODUCTION, 0))
            daily = _daily_arms(store, current.version, prod_version, window)
            verdict = judge(canary, production, state, cfg, daily=daily)
            applied = rollout.apply_verdict(
                registry, current, verdict, dt, _by(context, "canary judge"), cfg
            )
            decisions[model] = {"verdict": verdict.as_dict(), **applied, "shadow": shadow_step}
            context.log.info(f"{model}: {verdict.summary()} -> {applied['action']}")
        blob = json.dumps(decisions, indent=2, sort_keys=True, default=str).encode()
        warehouse.publish(
            store, "canary_release", dt, warehouse.Artifact(blobs={"decisions.json": blob})
        )
        return dg.MaterializeResult(
            metadata={
                "decisions": dg.MetadataValue.json(json.loads(blob)),
                "actions": ", ".join(f"{m}: {d.get('action')}" for m, d in decisions.items()),
                **config_metadata(effective, ("judge",)),
            }
        )

    @dg.asset(
        group_name="release",
        partitions_def=s.daily,
        code_version=CODE_VERSION,
        deps=[online_metrics, *REGISTERED],
        kinds={"json"},
        description="Production's own online metrics today vs its trailing baseline (same version): "
        "a significant CTR drop beyond GuardConfig.rollback_ctr_drop, or an error-rate/latency "
        "regression, rolls production back (target verified and smoke-tested first). Also records "
        "the retraining signal the retraining sensor reads.",
    )
    def production_guard(
        context: dg.AssetExecutionContext,
        storage: ReckitStorage,
        monitoring: Monitoring,
        project: ProjectConfig,
    ) -> dg.MaterializeResult:
        dt = context.partition_key
        store, registry = storage.warehouse(), Registry(storage.registry())
        effective = project.load()
        cfg = effective.config.guard
        out = {}
        for model in monitoring.model_names():
            version = registry.alias(model, PRODUCTION)
            if version is None or warehouse.manifest(store, ONLINE, dt) is None:
                out[model] = {"action": "none", "reasons": ["no production or no metrics"]}
                continue
            base_days = [
                d
                for d in warehouse.window(dt, cfg.baseline_days)
                if warehouse.manifest(store, ONLINE, d) is not None
            ]

            # Production's own traffic only: the days this version served as a canary were
            # another share of users (and maybe another world, before a drift).
            def as_production(users: pd.DataFrame) -> pd.DataFrame:
                return users[users["alias"] == PRODUCTION]

            today_users = as_production(warehouse.read(store, ONLINE, dt, "users"))
            today = _arm(store, model, version, today_users, (dt, dt))
            baseline = None
            if base_days:
                base_users = as_production(_window_users(store, base_days[0], base_days[-1]))
                baseline = _arm(store, model, version, base_users, (base_days[0], base_days[-1]))
            daily = [
                a
                for d in base_days
                if (
                    a := _arm(
                        store,
                        model,
                        version,
                        as_production(warehouse.read(store, ONLINE, d, "users")),
                        (d, d),
                    )
                )
                is not None
            ]
            regression = rollout.compare_with_baseline(today, baseline, cfg, daily)
            try:
                applied = rollout.guard_production(
                    registry, model, regression, _by(context, "production guard"), smoke_test
                )
            except (RegistryError, SmokeTestError) as exc:
                applied = {"action": "refused", "error": str(exc)}
                context.log.error(f"{model}: production regressed but rollback refused: {exc}")
            out[model] = {
                "version": version,
                "rollback": regression.rollback,
                "retrain": regression.retrain,
                "reasons": regression.reasons,
                "figures": regression.figures,
                **applied,
            }
        blob = json.dumps(out, indent=2, sort_keys=True, default=str).encode()
        warehouse.publish(
            store, "production_guard", dt, warehouse.Artifact(blobs={"guard.json": blob})
        )
        return dg.MaterializeResult(
            metadata={
                "guard": dg.MetadataValue.json(json.loads(blob)),
                **config_metadata(effective, ("guard",)),
            }
        )

    return [feedback_landing, online_metrics, canary_release, production_guard]
