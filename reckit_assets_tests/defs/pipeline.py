"""Run the data assets the way Dagster does, against a test lake."""

from __future__ import annotations

import dagster as dg

from reckit_assets.config import ReckitConfig
from reckit_assets.defs.features import assets as feature_assets
from reckit_assets.defs.ingest import assets as ingest_assets
from reckit_assets.defs.partitions import structure_for
from reckit_assets.defs.samples import assets as sample_assets

STRUCTURE = structure_for(ReckitConfig())  # the defaults: partitions from 2026-10-01, 7-day window
DATA_ASSETS = [
    *ingest_assets.build(STRUCTURE),
    *feature_assets.build(STRUCTURE),
    *sample_assets.build(STRUCTURE),
]


def run_days(
    resources: dict,
    instance: dg.DagsterInstance,
    start: str,
    end: str | None = None,
    assets: list | None = None,
) -> dg.ExecuteInProcessResult:
    """One run for ``start`` (or the range ``start..end``, as a single-run backfill does)."""
    kwargs: dict = (
        {"partition_key": start}
        if end is None
        else {
            "tags": {
                "dagster/asset_partition_range_start": start,
                "dagster/asset_partition_range_end": end,
            }
        }
    )
    return dg.materialize(
        assets or DATA_ASSETS,
        resources=resources,
        instance=instance,
        raise_on_error=False,
        **kwargs,
    )


def failed_checks(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    return {
        e.check_name: e.description or ""
        for e in result.get_asset_check_evaluations()
        if not e.passed
    }


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        e.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
        if e.asset_key is not None
    }


def step_errors(result: dg.ExecuteInProcessResult) -> list[str]:
    """Every failed step's error message, with the chain of causes that explains it."""
    out = []
    for event in result.all_events:
        if event.is_step_failure:
            error, text = event.step_failure_data.error, []
            while error is not None:
                text.append(error.message)
                error = error.cause
            out.append(" | ".join(text))
    return out
