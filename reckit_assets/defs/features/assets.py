"""Validated events -> daily activity -> point-in-time features (7 days strictly before dt)."""

import dagster as dg

from reckit_assets.core.features.spec import LONG_WINDOW_DAYS, WINDOW_DAYS
from reckit_assets.core.steps import data as steps
from reckit_assets.defs.partitions import SINGLE_RUN, Structure
from reckit_assets.defs.resources import ReckitStorage
from reckit_assets.defs.results import publish_days


def build(s: Structure) -> list[dg.AssetsDefinition]:
    """The features stage's assets for this code location's partitions."""

    @dg.asset(
        name=steps.ACTIVITY,
        group_name="features",
        deps=[steps.EVENTS, steps.ITEMS],
        partitions_def=s.daily,
        backfill_policy=SINGLE_RUN,
        code_version="2",
        kinds={"parquet"},
        description="The day's impressions, clicks and conversions in three tables: "
        "`items.parquet` per item_id, `users.parquet` per user_id and `user_categories.parquet` "
        "per (user_id, item_category); the `tables` metadata lists each one's columns and rows.",
    )
    def daily_activity(
        context: dg.AssetExecutionContext, storage: ReckitStorage
    ) -> dg.MaterializeResult:
        store = storage.warehouse()
        return publish_days(
            context, steps.ACTIVITY, store, lambda dt: (steps.activity(store, dt), [])
        )

    @dg.asset(
        name=steps.FEATURES,
        group_name="features",
        deps=[
            dg.AssetDep(steps.ACTIVITY, partition_mapping=s.feature_window),
            # the long window's item categories: the catalog of its last day
            dg.AssetDep(steps.ITEMS, partition_mapping=s.feature_window),
        ],
        partitions_def=s.daily,
        backfill_policy=SINGLE_RUN,
        code_version="3",
        kinds={"parquet"},
        description=(
            f"Item and user statistics of the {WINDOW_DAYS} days before dt (smoothed CTR/CVR, "
            f"counts), target encodings over the {LONG_WINDOW_DAYS} days before dt (shrunk by "
            "empirical Bayes, strengths in priors.json) and the windows' priors. The online "
            "snapshot for serving is the same table."
        ),
    )
    def point_in_time_features(
        context: dg.AssetExecutionContext, storage: ReckitStorage
    ) -> dg.MaterializeResult:
        store, landing = storage.warehouse(), storage.landing()
        return publish_days(
            context,
            steps.FEATURES,
            store,
            lambda dt: (steps.features(store, dt, s.first_day, landing), []),
        )

    @dg.asset(
        name="online_features",
        group_name="features",
        deps=[
            dg.AssetDep(
                steps.ACTIVITY,
                partition_mapping=dg.TimeWindowPartitionMapping(
                    start_offset=-(LONG_WINDOW_DAYS - 1),
                    end_offset=0,
                    allow_nonexistent_upstream_partitions=True,
                ),
            ),
            steps.USERS,
            steps.ITEMS,
        ],
        partitions_def=s.daily,
        backfill_policy=SINGLE_RUN,
        code_version="1",
        kinds={"parquet"},
        description="The feature snapshot the inference service serves on dt+1: statistics of the "
        f"{WINDOW_DAYS} (and {LONG_WINDOW_DAYS}) days ending on dt, by the same code as training, published beside the registry; the "
        "`current` pointer moves to it.",
    )
    def online_features(
        context: dg.AssetExecutionContext, storage: ReckitStorage
    ) -> dg.MaterializeResult:
        from reckit_assets.core.features import online

        store, published = storage.warehouse(), storage.registry()
        for dt in context.partition_keys:
            artifact = steps.online_snapshot(store, dt, s.first_day, storage.landing())
            manifest = online.publish(published, dt, artifact)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(manifest["data_version"]),
            metadata={"dt": dt, **{k: v for k, v in artifact.info.items() if isinstance(v, int)}},
        )

    return [daily_activity, point_in_time_features, online_features]
