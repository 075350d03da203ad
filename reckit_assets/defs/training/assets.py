"""Per-model candidates, trained daily on the window of days before dt."""

import dagster as dg

from reckit_assets.core.evaluation import plots
from reckit_assets.core.io import warehouse
from reckit_assets.core.release import staleness
from reckit_assets.core.release.registry import Registry
from reckit_assets.core.steps import models as model_steps
from reckit_assets.core.training import tuning
from reckit_assets.defs.config import (
    TRAINING_OVERRIDES,
    ProjectConfig,
    config_metadata,
    overrides_of,
)
from reckit_assets.defs.environments import k8s_op_tags, model_step_tags
from reckit_assets.defs.partitions import Structure
from reckit_assets.defs.resources import ModelProcesses, ReckitStorage
from reckit_assets.defs.results import to_result

# A daily partition reads the weekly study of the week of dt - 7: the last week that ended
# before dt (checked against tuning.week_for in the tests).
LAST_COMPLETED_WEEK = dg.TimeWindowPartitionMapping(
    start_offset=-7, end_offset=-7, allow_nonexistent_upstream_partitions=True
)

KINDS_META = {
    "xgboost": {"kinds": {"xgboost"}, "label": "XGBoost CTR ranker (hist, early stopping)"},
    "deepfm": {"kinds": {"pytorch"}, "label": "DeepFM ranker (FM + deep MLP on shared embeddings)"},
    "item2vec": {"kinds": {"gensim"}, "label": "item2vec embeddings (skip-gram word2vec)"},
}


def build_candidate(kind: str, s: Structure) -> dg.AssetsDefinition:
    config_cls = TRAINING_OVERRIDES[kind]

    @dg.asset(
        name=model_steps.candidate_asset(kind),
        group_name="models",
        deps=[
            dg.AssetDep(model_steps.input_asset(kind), partition_mapping=s.training_window),
            # XGBoost: the study of the last week that ended before dt (tuning.week_for)
            *(
                [dg.AssetDep(tuning.ASSET, partition_mapping=LAST_COMPLETED_WEEK)]
                if kind == "xgboost"
                else []
            ),
        ],
        partitions_def=s.daily,
        code_version=model_steps.CODE_VERSION,
        kinds=KINDS_META[kind]["kinds"],
        output_required=False,
        # Not blocking: a stale production is a reason to look, not to stop today's candidate.
        check_specs=[
            dg.AssetCheckSpec(
                staleness.NAME,
                asset=model_steps.candidate_asset(kind),
                blocking=False,
                description="How many days old production is (dt minus the day its version was "
                "trained for) and why: warns past release.stale_warn_days, fails past "
                "release.stale_fail_days. Evaluated every day, also when no candidate is trained.",
            )
        ],
        # GPU-bound on Kubernetes: the deployment maps this pool to a GPU node (see deploy/).
        pool="gpu" if kind == "deepfm" else None,
        # Pod settings under k8s_job_executor (deepfm: a GPU node); see defs/environments.py.
        op_tags={**k8s_op_tags(model_steps.candidate_asset(kind)), **model_step_tags(kind)},
        description=f"{KINDS_META[kind]['label']}, trained on the {s.training_window_days} "
        "days before dt (`training.window_days`). Skipped, with the reason, while fewer than "
        "`training.min_days` usable days are available.",
    )
    def candidate(
        context: dg.AssetExecutionContext,
        config: config_cls,  # type: ignore[valid-type]
        storage: ReckitStorage,
        project: ProjectConfig,
        model_processes: ModelProcesses,
    ):
        effective = project.load({kind: overrides_of(config)})
        store, dt = storage.warehouse(), context.partition_key
        params = effective.values()[kind]
        registry = Registry(storage.registry())

        def stale_check(today: str) -> dg.AssetCheckResult:
            outcome, level = staleness.staleness(
                registry,
                kind,
                dt,
                s.first_day,
                s.training_window_days,
                effective.config.release,
                today,
            )
            if level != staleness.OK:
                context.log.warning(f"{kind}: {outcome.description}")
            return dg.AssetCheckResult(
                asset_key=model_steps.candidate_asset(kind),
                check_name=staleness.NAME,
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR
                if level == staleness.FAIL
                else dg.AssetCheckSeverity.WARN,
                description=outcome.description,
                metadata={
                    "age_days": outcome.metadata["age_days"],
                    "level": level,
                    "production": outcome.metadata["production"] or "none",
                    "stale_warn_days": outcome.metadata["stale_warn_days"],
                    "stale_fail_days": outcome.metadata["stale_fail_days"],
                },
            )

        try:
            # Checked here first: a day without enough history needs no training process.
            model_steps.usable_window(
                store,
                kind,
                dt,
                s.training_window_days,
                s.first_day,
                effective.config.training.min_days,
                storage.landing(),
            )
            tuned = None
            if kind == "xgboost" and effective.config.tuning.enabled:
                tuned, why = model_steps.accepted_tuning(store, dt)
                context.log.info(f"xgboost parameters: {why}")
            artifact = model_processes.call(
                model_steps.train_candidate,
                store,
                kind,
                dt,
                params,
                s.training_window_days,
                s.first_day,
                effective.config.training.min_days,
                landing=storage.landing(),
                tuned=tuned,
                what=f"{kind} training dt={dt}",
                log=context.log.info,
                uses_torch=kind in model_steps.TORCH_KINDS,
            )
        except model_steps.NotEnoughDataError as exc:
            # Never silent: the run log and the asset's UI page say why, and for how many days.
            days = _days_without_candidate(
                store, model_steps.candidate_asset(kind), dt, s.first_day
            )
            # Expected while a history starts: information (with the count), not a warning.
            context.log.info(f"skipped: {exc}; no {kind} candidate for {days} day(s) up to {dt}")
            yield dg.AssetObservation(
                asset_key=model_steps.candidate_asset(kind),
                partition=dt,
                metadata={
                    "skipped": str(exc),
                    "days_without_candidate": days,
                    "config_key": "training.min_days",
                },
            )
            yield stale_check(f"no candidate ({exc}; {days} day(s) without one)")
            return
        manifest = warehouse.publish(store, model_steps.candidate_asset(kind), dt, artifact)
        result = to_result(model_steps.candidate_asset(kind), {dt: (manifest, [], artifact)})
        info = artifact.info
        history = info["history"]
        extra = {
            "version": info["version"],
            "training_window": ", ".join(info["training_window"]),
            "skipped_days": ", ".join(info["skipped_days"]) or "none",
            "hyperparameters": dg.MetadataValue.json(info["params"]),
            "tuning": dg.MetadataValue.json(info["tuning"])
            if isinstance(info["tuning"], dict)
            else info["tuning"],
            "best_iteration": info["best_iteration"],
            "train_seconds": info["train_seconds"],
            "learning_curve": dg.MetadataValue.md(_curve(history)),
            "training_curve": dg.MetadataValue.md(
                model_processes.call(
                    plots.training_curve_markdown,
                    history,
                    info["best_iteration"],
                    f"{kind} dt={dt}",
                    what=f"{kind} training curve dt={dt}",
                )
            ),
            **config_metadata(effective, (kind, "training")),
        }
        yield dg.MaterializeResult(
            data_version=result.data_version, metadata={**(result.metadata or {}), **extra}
        )
        yield stale_check(f"candidate {info['version']} trained; the gate decides next")

    return candidate


def _days_without_candidate(store, asset: str, dt: str, first_day: str, limit: int = 366) -> int:
    """Consecutive days up to and including ``dt`` with no published candidate."""
    from datetime import date, timedelta

    day, n = date.fromisoformat(dt), 1
    while n < limit:
        day -= timedelta(days=1)
        if day.isoformat() < first_day or warehouse.manifest(store, asset, day.isoformat()):
            break
        n += 1
    return n


def _curve(history: list[dict]) -> str:
    if not history:
        return "(no history)"
    keys = list(history[0].keys())
    step = max(1, len(history) // 25)  # a readable table, not 400 rows
    rows = [history[i] for i in range(0, len(history), step)]
    if rows[-1] is not history[-1]:
        rows.append(history[-1])
    fmt = lambda v: f"{v:.5f}" if isinstance(v, float) else str(v)  # noqa: E731
    return (
        "| "
        + " | ".join(keys)
        + " |\n|"
        + "---|" * len(keys)
        + "\n"
        + "\n".join("| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows)
    )


def build(s: Structure) -> list[dg.AssetsDefinition]:
    return [build_candidate(kind, s) for kind in model_steps.KINDS]
