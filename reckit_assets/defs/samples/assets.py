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

PREVIOUS_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
SAMPLE_CHECKS = (
    (
        "row_count_change",
        "Rows within the allowed change from the median of the last passing days; never empty",
    ),
    (
        "feature_drift",
        "Per feature vs the last passing days: fails when significant (KS / chi-square, "
        "Bonferroni) and large (Wasserstein-1 / std, Jensen-Shannon)",
    ),
)


def build(s: Structure) -> list[dg.AssetsDefinition]:
    """The samples stage's assets for this code location's partitions."""

    @dg.asset(
        name=steps.SAMPLES,
        group_name="samples",
        deps=[
            steps.EVENTS,
            # Profiles as of the end of dt-1: what serving on dt used (no same-day leak).
            dg.AssetDep(steps.USERS, partition_mapping=PREVIOUS_DAY),
            dg.AssetDep(steps.ITEMS, partition_mapping=PREVIOUS_DAY),
            steps.FEATURES,
        ],
        partitions_def=s.daily,
        backfill_policy=SINGLE_RUN,
        code_version="3",
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
            result = steps.samples(store, dt, limits, first_day=s.first_day)
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
