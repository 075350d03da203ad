"""The weekly XGBoost hyperparameter study (optuna), its job and its schedule.

Partitioned by week (Monday to Sunday); each study reads its week's training samples. The daily
XGBoost candidate reads the study of the last week that ended before its day (the partition
mapping says so) and uses its parameters only when the study was accepted. On demand:
``reckit materialize``-style launches of ``tuning_job`` for a week, or the UI.
"""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from reckit_assets.core.io import warehouse
from reckit_assets.core.steps import data as data_steps
from reckit_assets.core.steps import models as model_steps
from reckit_assets.core.training import tuning
from reckit_assets.defs.config import ProjectConfig, config_metadata
from reckit_assets.defs.partitions import Structure
from reckit_assets.defs.resources import ModelProcesses, ReckitStorage


def weekly(s: Structure) -> dg.WeeklyPartitionsDefinition:
    # Weeks start on Monday (day_offset=1); the first whole week on or after partitions.start.
    return dg.WeeklyPartitionsDefinition(start_date=s.first_day, day_offset=1, end_offset=0)


def build(s: Structure) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name=tuning.ASSET,
        group_name="tuning",
        deps=[dg.AssetDep(data_steps.SAMPLES, partition_mapping=dg.TimeWindowPartitionMapping())],
        partitions_def=weekly(s),
        code_version="1",
        kinds={"optuna", "xgboost"},
        description="Weekly out-of-time hyperparameter search for the XGBoost ranker (optuna "
        "TPE, `tuning.trials` trials, trial 0 = the configured parameters): fit on the week's "
        "first days, early-stop on the second-to-last, score logloss on the last. Accepted when "
        "the best trial beats trial 0 by `tuning.min_relative_gain`; the next week's daily "
        "candidates then train with it (their manifests say which study).",
    )
    def xgboost_tuning(
        context: dg.AssetExecutionContext,
        storage: ReckitStorage,
        project: ProjectConfig,
        model_processes: ModelProcesses,
    ) -> dg.MaterializeResult:
        effective = project.load()
        store, week = storage.warehouse(), context.partition_key
        artifact = model_processes.call(
            model_steps.tune_week,
            store,
            week,
            effective.values()["xgboost"],
            effective.config.tuning,
            s.first_day,
            log=context.log.info,
            landing=storage.landing(),
            what=f"{tuning.ASSET} week={week}",
        )
        manifest = warehouse.publish(store, tuning.ASSET, week, artifact)
        info = artifact.info
        context.log.info(f"{tuning.ASSET} week {week}: {info['reason']}")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(manifest["data_version"]),
            metadata={
                "accepted": info["accepted"],
                "study": dg.MetadataValue.md(tuning.markdown(info)),
                "best_params": dg.MetadataValue.json(info["best_params"]),
                "best_logloss": info["best_logloss"],
                "baseline_logloss": info["baseline_logloss"],
                "relative_gain": info["relative_gain"],
                "trials": info["trials"],
                "days": ", ".join(info["days"]),
                "skipped": info["skipped"],
                **config_metadata(effective, ("tuning", "xgboost")),
            },
        )

    return [xgboost_tuning]


def build_job() -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "tuning_job",
        selection=dg.AssetSelection.groups("tuning"),
        description="The weekly XGBoost hyperparameter study for one week.",
        tags={"reckit/lane": "tuning"},
    )


def build_schedule(job: UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    # Monday 03:00 UTC, for the week that just ended (after the daily run of its Sunday).
    # Off until switched on, as the daily schedule.
    return dg.build_schedule_from_partitioned_job(
        job,
        name="tuning_schedule",
        day_of_week=1,
        hour_of_day=3,
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
