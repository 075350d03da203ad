"""Training samples (gated by drift and volume checks) and behaviour sequences."""

import dagster as dg

from reckit_assets.core.steps import data as steps
from reckit_assets.defs.config import (
    DataQualityOverrides,
    ProjectConfig,
    config_metadata,
    overrides_of,
)
from reckit_assets.defs.partitions import SINGLE_RUN, Structure
from reckit_assets.defs.resources import ReckitStorage
from reckit_assets.defs.results import blocking_checks, publish_days

SAMPLE_CHECKS = (
    ("row_count_change", "Rows within the allowed change from the previous partition; never empty"),
    (
        "feature_drift",
        "PSI (dense) / Jensen-Shannon (categorical) per feature vs the previous partition",
    ),
)


def build(s: Structure) -> list[dg.AssetsDefinition]:
    """The samples stage's assets for this code location's partitions."""

    @dg.asset(
        name=steps.SAMPLES,
        group_name="samples",
        deps=[steps.EVENTS, steps.USERS, steps.ITEMS, steps.FEATURES],
        partitions_def=s.daily,
        backfill_policy=SINGLE_RUN,
        code_version="2",
        kinds={"parquet"},
        check_specs=blocking_checks(steps.SAMPLES, SAMPLE_CHECKS),
        description=(
            "The day's labelled impressions with every feature of the spec. A day failing its "
            "checks is quarantined: published under quarantine/, where training never reads."
        ),
    )
    def training_samples(
        context: dg.AssetExecutionContext,
        config: DataQualityOverrides,
        storage: ReckitStorage,
        project: ProjectConfig,
    ) -> dg.MaterializeResult:
        effective = project.load({"data_quality": overrides_of(config)})
        store, limits = storage.warehouse(), effective.config.data_quality

        def produce(dt: str):
            result = steps.samples(store, dt, limits)
            return result.artifact, result.outcomes

        return publish_days(
            context,
            steps.SAMPLES,
            store,
            produce,
            quarantine_on_failure=True,
            extra_metadata=config_metadata(effective, ("data_quality",)),
        )

    @dg.asset(
        name=steps.SEQUENCES,
        group_name="samples",
        deps=[steps.EVENTS],
        partitions_def=s.daily,
        backfill_policy=SINGLE_RUN,
        code_version="1",
        kinds={"parquet"},
        description="Each user's clicked items in time order, split into 30-minute sessions; "
        "sessions of two or more items form the item2vec corpus.",
    )
    def behaviour_sequences(
        context: dg.AssetExecutionContext, storage: ReckitStorage
    ) -> dg.MaterializeResult:
        store = storage.warehouse()
        return publish_days(
            context, steps.SEQUENCES, store, lambda dt: (steps.sequences(store, dt), [])
        )

    return [training_samples, behaviour_sequences]
