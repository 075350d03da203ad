"""Turn published partitions and their check outcomes into Dagster results.

One code path for a single partition and for a range run (single-run backfill): each day is
published by itself; a range run reports the combined data version, each day's version in the
metadata, and a check fails when it failed for any day (naming the days).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import dagster as dg
import pandas as pd
import polars as pl
import pyarrow as pa

from reckit_assets.core.checks import Outcome
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import Storage


def _schema(frame: pd.DataFrame | pl.DataFrame | pa.Table) -> dg.TableSchema:
    if isinstance(frame, pd.DataFrame):
        types = frame.dtypes.items()
    elif isinstance(frame, pl.DataFrame):
        types = frame.schema.items()
    else:
        types = zip(frame.schema.names, frame.schema.types, strict=True)
    return dg.TableSchema(columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in types])


def _tables(frames: dict[str, pd.DataFrame]) -> str:
    rows = [
        f"| `{name}.parquet` | {len(frame)} | {', '.join(f'`{c}`' for c in frame.columns)} |"
        for name, frame in frames.items()
    ]
    return "| file | rows | columns |\n|---|---:|---|\n" + "\n".join(rows)


def _flat(info: dict) -> dict:
    return {
        k: v
        for k, v in info.items()
        if isinstance(v, int | float | str) and not isinstance(v, bool)
    }


def publish_days(
    context: dg.AssetExecutionContext,
    asset: str,
    store: Storage,
    produce: Callable[[str], tuple[warehouse.Artifact, list[Outcome]]],
    quarantine_on_failure: bool = False,
    extra_metadata: dict | None = None,
) -> dg.MaterializeResult:
    """Produce and publish every partition of the run, then report them as one result."""
    days: dict[str, tuple[dict, list[Outcome], warehouse.Artifact]] = {}
    for dt in context.partition_keys:
        artifact, outcomes = produce(dt)
        failed = [o for o in outcomes if not o.passed]
        # Only a blocking failure quarantines: drift or a volume spike is recorded, not refused.
        blocked = [o for o in failed if o.blocking]
        manifest = warehouse.publish(
            store, asset, dt, artifact, quarantined=quarantine_on_failure and bool(blocked)
        )
        state = "quarantined" if manifest["quarantined"] else "published"
        # An asset without tables (e.g. landed_logs' landing.json) says what it recorded, not
        # "0 rows", which reads like data loss.
        if len(artifact.frames) == 1:
            what = f"{manifest['rows']} rows"
        elif artifact.frames:
            what = ", ".join(f"{name} {len(f)} rows" for name, f in artifact.frames.items())
        else:
            what = f"{', '.join(sorted(artifact.blobs))} (a record, no table)"
        context.log.info(
            f"{asset} dt={dt}: {state} {what}, data version {manifest['data_version']}"
            + (f"; blocked by: {[o.name for o in blocked]}" if blocked else "")
            + (
                f"; warnings: {[o.name for o in failed if not o.blocking]}"
                if len(failed) > len(blocked)
                else ""
            )
        )
        days[dt] = (manifest, outcomes, artifact)
    return to_result(asset, days, extra_metadata=extra_metadata)


def to_result(
    asset: str,
    days: dict[str, tuple[dict, list[Outcome], warehouse.Artifact]],
    asset_key: str | None = None,
    extra_metadata: dict | None = None,
) -> dg.MaterializeResult:
    versions = {dt: m["data_version"] for dt, (m, _, _) in days.items()}
    if len(days) == 1:
        ((dt, (manifest, _, artifact)),) = days.items()
        version = manifest["data_version"]
        metadata: dict = {
            "data_version": version,
            "location": f"{warehouse.prefix(asset, dt, manifest['quarantined'])}/",
            "quarantined": manifest["quarantined"],
            **_flat(artifact.info),
        }
        if len(artifact.frames) == 1:
            # Only an asset that is one table gets a row count: a model or a record has no rows,
            # and a sum over several tables counts nothing in particular.
            metadata["dagster/row_count"] = manifest["rows"]
            metadata["dagster/column_schema"] = _schema(next(iter(artifact.frames.values())))
        elif artifact.frames:
            # Several tables (daily_activity): one schema would show only the first table's columns.
            metadata["tables"] = dg.MetadataValue.md(_tables(artifact.frames))
    else:
        version = hashlib.sha256(
            "".join(f"{dt}={v}\n" for dt, v in sorted(versions.items())).encode()
        ).hexdigest()[:16]
        metadata = {
            "partitions": len(days),
            "data_versions": dg.MetadataValue.json(versions),
            "quarantined_days": ", ".join(dt for dt, (m, _, _) in days.items() if m["quarantined"])
            or "none",
        }
        if all(len(a.frames) == 1 for _, _, a in days.values()):
            metadata["dagster/row_count"] = sum(m["rows"] for m, _, _ in days.values())
    return dg.MaterializeResult(
        asset_key=asset_key,
        data_version=dg.DataVersion(version),
        metadata={**metadata, **(extra_metadata or {})},
        check_results=merged_checks(asset_key or asset, {dt: o for dt, (_, o, _) in days.items()}),
    )


def merged_checks(
    asset: str, outcomes_by_day: dict[str, list[Outcome]]
) -> list[dg.AssetCheckResult]:
    by_name: dict[str, list[tuple[str, Outcome]]] = {}
    for dt, outcomes in outcomes_by_day.items():
        for o in outcomes:
            by_name.setdefault(o.name, []).append((dt, o))
    results = []
    for name, items in by_name.items():
        failed = [(dt, o) for dt, o in items if not o.passed]
        # ERROR (blocks the run's downstream steps) only when a failure on some day blocks;
        # a failure that only informs is a WARN: visible, and the run stays green.
        blocks = any(o.blocks for _, o in items)
        if len(items) == 1:
            _, o = items[0]
            description, metadata = o.description, dict(o.metadata)
        else:
            description = (
                "; ".join(f"dt={dt}: {o.description}" for dt, o in failed)
                if failed
                else f"passed for all {len(items)} days"
            )
            metadata = {"failed_days": ", ".join(dt for dt, _ in failed) or "none"}
        metadata["detail"] = description
        results.append(
            dg.AssetCheckResult(
                asset_key=asset,
                check_name=name,
                passed=not failed,
                severity=dg.AssetCheckSeverity.ERROR
                if blocks or not failed
                else dg.AssetCheckSeverity.WARN,
                description=description[:2000],
                metadata=_flat(metadata),
            )
        )
    return results


def blocking_checks(
    asset: str, names_and_descriptions: Iterable[tuple[str, str]]
) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name, asset=asset, blocking=True, description=description)
        for name, description in names_and_descriptions
    ]
