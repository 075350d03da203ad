"""The landing zone as an observable source asset at the head of the graph.

Its observations say which days have landed (all three tables marked ``_SUCCESS``), which are in
flight and which are missing between the first and the last. A sensor records an observation,
without a run, whenever that inventory changes; "Observe" in the UI records one on demand. The
pipeline never writes here (landed data is never modified).
"""

from __future__ import annotations

import dagster as dg

from reckit_assets.core.ingest.inventory import Inventory, landing_inventory
from reckit_assets.defs.partitions import Structure
from reckit_assets.defs.resources import ReckitStorage

LANDING_ZONE = "landing_zone"


def observation_metadata(inventory: Inventory) -> dict:
    days = sorted(inventory.landed)
    return {
        "landed": dg.MetadataValue.text(inventory.summary()),
        "landed_days": len(days),
        "last_landed_day": days[-1] if days else "none",
        "days": dg.MetadataValue.md(inventory.markdown()),
    }


def build(s: Structure) -> list:
    """The landing_zone source asset (unpartitioned: one observation lists every day)."""

    @dg.observable_source_asset(
        name=LANDING_ZONE,
        group_name="landing",
        description="Raw daily exports (events, users, items under `<table>/dt=YYYY-MM-DD/`, "
        "each complete day marked `_SUCCESS`; docs/landing_zone.md). Each observation lists "
        "the days that have landed, are in flight or are missing. Read-only for the pipeline.",
    )
    def landing_zone(storage: ReckitStorage) -> dg.ObserveResult:
        return dg.ObserveResult(metadata=observation_metadata(landing_inventory(storage.landing())))

    return [landing_zone]


def build_sensor() -> dg.SensorDefinition:
    """Observes the landing zone every 30 s; records an observation only when it changed."""

    @dg.sensor(
        name="landing_zone_observer",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Records an observation of landing_zone (no run) whenever its days change.",
    )
    def landing_zone_observer(context: dg.SensorEvaluationContext, storage: ReckitStorage):
        inventory = landing_inventory(storage.landing())
        if context.cursor == inventory.digest:
            return dg.SkipReason(f"landing zone unchanged: {inventory.summary()}")
        return dg.SensorResult(
            asset_events=[
                dg.AssetObservation(LANDING_ZONE, metadata=observation_metadata(inventory))
            ],
            cursor=inventory.digest,
        )

    return landing_zone_observer
