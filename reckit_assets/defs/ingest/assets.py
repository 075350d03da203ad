"""Raw logs -> the landing gate -> validated events, user profiles and the item catalog."""

import dagster as dg

from reckit_assets.core.io import warehouse
from reckit_assets.core.steps import data as steps
from reckit_assets.defs.config import (
    DataQualityOverrides,
    ProjectConfig,
    config_metadata,
    overrides_of,
)
from reckit_assets.defs.ingest.landing_zone import LANDING_ZONE
from reckit_assets.defs.partitions import SINGLE_RUN, Structure
from reckit_assets.defs.resources import ReckitStorage
from reckit_assets.defs.results import blocking_checks, publish_days, to_result

LANDING_CHECKS = (
    ("landing_contract", "Required columns present and typed, no null IDs, in every landed file"),
    ("duplicate_rate", "Share of duplicated event_id within the limit"),
    ("out_of_day_rate", "Share of events whose ts falls outside the day within the limit"),
    ("orphan_click_rate", "Share of clicks without their impression within the limit"),
    ("click_rate_bounds", "Click rate of the day's impressions within its bounds"),
    ("unknown_event_type_rate", "Share of events with an unknown event_type within the limit"),
    (
        "volume",
        "Impressions within a factor of the median of the last passing days (the reference); "
        "never empty",
    ),
    ("null_share", "Null share of every required and optional column within its limit"),
    (
        "value_range",
        "Median of every numeric column (price, age, position) within a factor of the "
        "reference's: catches unit and scale changes",
    ),
    (
        "clicks_stopped",
        "No run of hours without clicks that the reference click rate makes implausible "
        "(Poisson test)",
    ),
)


def build(s: Structure) -> list[dg.AssetsDefinition]:
    """The ingest stage's assets for this code location's partitions."""

    @dg.asset(
        name=steps.LANDED,
        group_name="ingest",
        deps=[LANDING_ZONE],
        partitions_def=s.daily,
        backfill_policy=SINGLE_RUN,
        code_version="2",
        kinds={"parquet"},
        check_specs=blocking_checks(steps.LANDED, LANDING_CHECKS),
        description=(
            "The day's landed events, users and items checked against the landing contract "
            "(docs/landing_zone.md). Records the files, their sha256 and every count; copies no data "
            "and never modifies the landing zone. Its blocking checks are the first gate."
        ),
    )
    def landed_logs(
        context: dg.AssetExecutionContext,
        config: DataQualityOverrides,
        storage: ReckitStorage,
        project: ProjectConfig,
    ) -> dg.MaterializeResult:
        effective = project.load({"data_quality": overrides_of(config)})
        landing, store = storage.landing(), storage.warehouse()
        limits = effective.config.data_quality

        def produce(dt: str):
            result = steps.check_landing(landing, dt, limits, store=store, first_day=s.first_day)
            return result.artifact, result.outcomes

        return publish_days(
            context,
            steps.LANDED,
            store,
            produce,
            extra_metadata=config_metadata(effective, ("data_quality",)),
        )

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                steps.EVENTS,
                deps=[steps.LANDED],
                group_name="ingest",
                code_version="1",
                kinds={"parquet"},
                description="One row per impression with `clicked` and `converted` labels; "
                "deduplicated, out-of-day and orphan events dropped and counted.",
            ),
            dg.AssetSpec(
                steps.USERS,
                deps=[steps.LANDED],
                group_name="ingest",
                code_version="1",
                kinds={"parquet"},
                description="The day's user snapshot, one row per user_id.",
            ),
            dg.AssetSpec(
                steps.ITEMS,
                deps=[steps.LANDED],
                group_name="ingest",
                code_version="1",
                kinds={"parquet"},
                description="The day's item snapshot, one row per item_id.",
            ),
        ],
        partitions_def=s.daily,
        backfill_policy=SINGLE_RUN,
    )
    def validated_tables(context: dg.AssetExecutionContext, storage: ReckitStorage):
        landing, store = storage.landing(), storage.warehouse()
        by_asset: dict[str, dict] = {steps.EVENTS: {}, steps.USERS: {}, steps.ITEMS: {}}
        for dt in context.partition_keys:
            for asset, artifact in steps.validate(landing, store, dt).items():
                manifest = warehouse.publish(store, asset, dt, artifact)
                by_asset[asset][dt] = (manifest, [], artifact)
            context.log.info(f"validated dt={dt}: {by_asset[steps.EVENTS][dt][2].info}")
        for asset, days in by_asset.items():
            yield to_result(asset, days, asset_key=asset)

    return [landed_logs, validated_tables]
