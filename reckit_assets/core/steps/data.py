"""One function per data asset: read its inputs for one day, compute, return what to publish.

Framework-free, so the Dagster assets stay thin and the benchmark runs the same code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import polars as pl

from reckit_assets.core.checks import Outcome
from reckit_assets.core.features.compute import (
    FeatureTables,
    LongWindow,
    Priors,
    build_samples,
    daily_activity,
    window_features,
)
from reckit_assets.core.features.drift import feature_drift
from reckit_assets.core.features.sequences import behaviour_sequences, sequences_table
from reckit_assets.core.features.spec import DENSE_COLUMNS, LONG_WINDOW_DAYS, WINDOW_DAYS
from reckit_assets.core.ingest import quality, waivers
from reckit_assets.core.ingest.events import (
    clean_snapshot_frame,
    validated_impressions,
)
from reckit_assets.core.ingest.landing import (
    SCHEMAS,
    SUCCESS_MARKER,
    TABLES,
    LandedTable,
    is_ready,
    marker_key,
    read_landed,
)
from reckit_assets.core.ingest.quality import Reference, Thresholds
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.frames import parquet_bytes_to_polars
from reckit_assets.core.io.storage import Storage, sha256_bytes

LANDED = "landed_logs"
EVENTS = "validated_events"
USERS = "user_profiles"
ITEMS = "item_catalog"
ACTIVITY = "daily_activity"
FEATURES = "point_in_time_features"
SAMPLES = "training_samples"
SEQUENCES = "behaviour_sequences"
DRIFT_CATEGORICAL = ["item_category", "user_region", "device"]


@dataclass
class StepResult:
    artifact: warehouse.Artifact
    outcomes: list[Outcome]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)


def _read_landing(landing: Storage, dt: str) -> dict[str, LandedTable]:
    return {t: read_landed(landing, t, dt) for t in ("events", "users", "items")}


def reference(
    dt: str,
    first_day: str | None,
    t: Thresholds,
    status: Callable[[str], tuple[str, dict | None]],
    pending_is_error: bool = True,
) -> Reference:
    """The last ``t.reference_days`` passing days before ``dt``, by partition.

    ``status(d)`` says what day ``d`` is: ``"pass"`` (with its recorded stats), ``"fail"``,
    ``"absent"`` (never landed) or ``"pending"`` (landed, not decided yet). A pending day is an
    error when ``pending_is_error`` (a blocking decision must not depend on the order in which
    days are built); otherwise it is left out and named (checks that only inform).
    """
    end = date.fromisoformat(dt)
    passing: list[tuple[str, dict]] = []
    failed, absent = [], []
    for k in range(1, t.reference_lookback_days + 1):
        d = (end - timedelta(days=k)).isoformat()
        if first_day is not None and d < first_day:
            break
        state, found = status(d)
        if state == "pending" and not pending_is_error:
            absent.append(d)
            continue
        if state == "pending":
            raise warehouse.MissingPartitionError(
                f"dt={dt} compares with the earlier days it follows, and dt={d} has landed but "
                "has not been checked yet: materialize the earlier days first (in date order)"
            )
        if state == "pass":
            passing.append((d, found or {}))
        elif state == "fail":
            failed.append(d)
        else:
            absent.append(d)
        if len(passing) == t.reference_days:
            break
    passing.reverse()
    return Reference(
        dt=dt,
        days=tuple(d for d, _ in passing),
        failed=tuple(sorted(failed)),
        absent=tuple(sorted(absent)),
        stats=tuple(found for _, found in passing),
        first_partition=not passing and not failed,
    )


def _landing_status(landing: Storage, store: Storage) -> Callable[[str], tuple[str, dict | None]]:
    def status(d: str) -> tuple[str, dict | None]:
        found = warehouse.manifest(store, LANDED, d)
        if found is not None:
            info = found.get("info", {})
            return ("pass" if info.get("passed") else "fail"), info
        return ("pending" if is_ready(landing, d) else "absent"), None

    return status


def not_ready_tables(landing: Storage, dt: str) -> list[str]:
    """The landed tables of ``dt`` without their ``_SUCCESS`` marker (the export is incomplete)."""
    return [t for t in TABLES if not landing.exists(marker_key(t, dt))]


@dataclass
class WindowDays:
    """The days of a window an asset can read: ``usable`` (published), ``skipped`` (day -> why:
    blocked by its data checks, quarantined, never landed) and ``pending`` (landed and passed,
    or landed and not checked yet, but not built: an error, since building it later would change
    the result)."""

    usable: list[str]
    skipped: dict[str, str]
    pending: list[str]

    def metadata(self) -> dict:
        return {
            "window": self.usable,
            "skipped_days": {d: why for d, why in sorted(self.skipped.items())},
            "skipped": "; ".join(f"{d}: {why}" for d, why in sorted(self.skipped.items()))
            or "none",
        }


def _landed_failures(found: dict) -> str:
    failed = found.get("info", {}).get("failed_checks") or "its data checks"
    return f"blocked by {LANDED} ({failed})"


def window_days(
    store: Storage, asset: str, days: list[str], landing: Storage | None = None
) -> WindowDays:
    """Which of ``days`` ``asset`` can read, and why the others are left out.

    A day the data gate blocked, or whose samples were quarantined, or that never landed, is
    skipped and named: a blocked day never fails the days that read it. A day that landed but
    was not built is pending: it is an error for the caller, since the window would change once
    it is built (materialize the earlier days first).
    """
    out = WindowDays([], {}, [])
    for d in days:
        if warehouse.manifest(store, asset, d) is not None:
            out.usable.append(d)
            continue
        if warehouse.manifest(store, asset, d, quarantined=True) is not None:
            out.skipped[d] = f"{asset} quarantined by its blocking checks"
            continue
        landed = warehouse.manifest(store, LANDED, d)
        if landed is not None and not landed.get("info", {}).get("passed"):
            out.skipped[d] = _landed_failures(landed)
        elif landed is not None or (landing is not None and is_ready(landing, d)):
            out.pending.append(d)
        else:
            out.skipped[d] = "not landed" if landing is not None else "not landed or not checked"
    return out


def _require_built(what: str, status: WindowDays) -> None:
    if status.pending:
        raise warehouse.MissingPartitionError(
            f"{what} reads {len(status.pending)} day(s) that landed but were not built: "
            f"{', '.join(status.pending)}; materialize them first (in date order). Days the data "
            "gate blocked are skipped, never waited for"
        )


def _null_shares(landed: dict[str, LandedTable]) -> dict[str, tuple[float, int, bool]]:
    """Null share per checked column, on the Polars rows (a float NaN counts as null, as it
    did in pandas): no pandas copy of a 10M-row day."""
    out = {}
    for table, lt in landed.items():
        rows = lt.data.height
        for col in SCHEMAS[table]:
            if col.is_id or col.name in lt.missing_optional or not rows:
                continue
            series = lt.data[col.name]
            nulls = series.null_count()
            if series.dtype.is_float():
                nulls += int(series.is_nan().sum())
            out[f"{table}.{col.name}"] = (nulls / rows, nulls, col.required)
    return out


def _medians(landed: dict[str, LandedTable]) -> dict[str, float]:
    """Median of every numeric column (nulls and NaN left out), on the Polars rows."""
    out = {}
    for table, lt in landed.items():
        for col in SCHEMAS[table]:
            if col.kind in ("int", "float") and not col.is_id:
                values = lt.data[col.name]
                if not values.dtype.is_numeric():
                    values = values.cast(pl.Float64, strict=False)
                values = values.drop_nulls()
                if values.dtype.is_float():
                    values = values.filter(values.is_not_nan())
                out[f"{table}.{col.name}"] = (
                    float(values.median()) if len(values) else float("nan")  # type: ignore[arg-type]
                )
    return out


def _hourly_requests(events: pl.DataFrame) -> tuple[list[int], list[int]]:
    """Requests per hour (by their first impression) and how many of them got a click."""
    if not events.height:
        return [0] * 24, [0] * 24
    per_request = events.group_by("request_id").agg(
        hour=pl.col("ts").min().dt.hour(), clicked=pl.col("clicked").cast(pl.Int64).max()
    )
    hours = per_request["hour"].to_numpy()
    requests = np.bincount(hours, minlength=24)
    clicked = np.bincount(
        hours, weights=per_request["clicked"].to_numpy().astype("float64"), minlength=24
    )
    return [int(x) for x in requests], [int(x) for x in clicked]


def check_landing(
    landing: Storage,
    dt: str,
    thresholds: Thresholds,
    store: Storage | None = None,
    first_day: str | None = None,
) -> StepResult:
    """The landing contract and raw-data checks of one day. Publishes a manifest, no data.

    Refuses a day whose tables lack ``_SUCCESS`` unless ``thresholds.allow_not_ready`` (then the
    override is recorded in the outcomes and the manifest). With ``store``, the checks that
    compare (volume, value range, clicks stopped) use the last passing landed days before ``dt``
    (:func:`reference`); without it they have no reference.
    """
    missing_markers = not_ready_tables(landing, dt)
    override = None
    if missing_markers:
        if not thresholds.allow_not_ready:
            raise warehouse.MissingPartitionError(
                f"landing dt={dt} is not ready: {', '.join(missing_markers)} "
                f"{'has' if len(missing_markers) == 1 else 'have'} no {SUCCESS_MARKER} marker "
                "(the export is incomplete). Wait for it, or check it anyway with "
                "data_quality.allow_not_ready: true in the run config (recorded)"
            )
        override = (
            f"checked without {SUCCESS_MARKER} for {', '.join(missing_markers)} "
            "(data_quality.allow_not_ready)"
        )
    landed = _read_landing(landing, dt)
    issues = [i for t in landed.values() for i in t.issues]
    ref = (
        reference(dt, first_day, thresholds, _landing_status(landing, store))
        if store is not None
        else Reference(dt, first_partition=True)
    )
    outcomes = [quality.contract(issues)]
    info: dict = {
        "fingerprints": {t: landed[t].fingerprint for t in landed},
        "files": {t: landed[t].files for t in landed},
        "issues": [str(i) for i in issues],
    }
    # Rates are measured on the rows that could be read, even when some file broke the contract.
    users, _ = clean_snapshot_frame(landed["users"], "user_id")
    items, _ = clean_snapshot_frame(landed["items"], "item_id")
    # Column statistics first: the validation then releases the landed rows it is done with.
    # Columns the data description lists as absent are not checked (nulls by design).
    absent = set(thresholds.absent_columns)
    medians = {k: v for k, v in _medians(landed).items() if k not in absent}
    null_shares = {k: v for k, v in _null_shares(landed).items() if k not in absent}
    events, counts = validated_impressions(
        landed["events"], dt, users=users, items=items, release=True
    )
    files = ", ".join(f["key"] for f in landed["events"].files) or f"events/dt={dt}"
    outcomes += quality.event_rates(counts, thresholds, files)
    hourly_requests, hourly_clicked = _hourly_requests(events)
    del events
    outcomes += [
        quality.unknown_event_types(counts, thresholds, files),
        quality.volume(counts.impressions, ref, thresholds, f"events dt={dt}"),
        quality.null_shares(null_shares, thresholds),
        quality.value_range(medians, ref, thresholds),
        quality.clicks_stopped(hourly_requests, hourly_clicked, ref, thresholds),
    ]
    waived = waivers.waivers_for(store, dt) if store is not None else {}
    waivers.apply(outcomes, waived, LANDED)
    if override:
        outcomes[0].description += f" [override: {override}]"
        for o in outcomes:
            o.metadata["override"] = override
    info["counts"] = {
        **counts.as_metadata(),
        "requests": sum(hourly_requests),
        "clicked_requests": sum(hourly_clicked),
    }
    info["medians"] = {k: v for k, v in medians.items() if np.isfinite(v)}
    info["reference"] = list(ref.days)
    info["override"] = override or "none"
    info["waived"] = ", ".join(sorted(c for a, c in waived if a == LANDED)) or "none"
    # Passed = nothing blocks: a warning (a volume spike) is recorded, the day flows on.
    info["passed"] = not any(o.blocks for o in outcomes)
    blob = json.dumps(info, indent=2, sort_keys=True, default=str).encode()
    summary = {
        "passed": info["passed"],
        "counts": {
            k: info["counts"][k]
            for k in ("impressions", "clicks", "raw_rows", "requests", "clicked_requests")
        },
        "medians": info["medians"],
        "reference": ", ".join(ref.days) or "none",
        "override": info["override"],
        "waived": info["waived"],
        "failed_checks": ", ".join(o.name for o in outcomes if o.blocks) or "none",
        "warnings": ", ".join(o.name for o in outcomes if not o.passed and not o.blocking)
        or "none",
    }
    return StepResult(warehouse.Artifact(blobs={"landing.json": blob}, info=summary), outcomes)


def validate(landing: Storage, store: Storage, dt: str) -> dict[str, warehouse.Artifact]:
    """Validated events, user profiles and item catalog of one day.

    Refuses a day whose landing check did not pass, or whose landed files changed since it was
    checked, whichever run asks: a bad day never flows downstream.
    """
    checked = warehouse.read_json(store, LANDED, dt, "landing.json")
    landed = _read_landing(landing, dt)
    if not checked.get("passed"):
        raise warehouse.MissingPartitionError(
            f"landing dt={dt} failed its data checks: " + "; ".join(checked.get("issues", [])[:5])
        )
    changed = [t for t in landed if landed[t].fingerprint != checked["fingerprints"].get(t)]
    if changed:
        raise warehouse.MissingPartitionError(
            f"landing dt={dt}: {', '.join(changed)} changed since {LANDED} checked it; "
            f"rematerialize {LANDED} for this day first"
        )
    users, user_counts = clean_snapshot_frame(landed["users"], "user_id")
    items, item_counts = clean_snapshot_frame(landed["items"], "item_id")
    events, counts = validated_impressions(
        landed["events"], dt, users=users, items=items, release=True
    )
    return {
        EVENTS: warehouse.Artifact(frames={"data": events}, info=counts.as_metadata()),
        USERS: warehouse.Artifact(frames={"data": users}, info=user_counts),
        ITEMS: warehouse.Artifact(frames={"data": items}, info=item_counts),
    }


def activity(store: Storage, dt: str) -> warehouse.Artifact:
    items, users, user_categories = daily_activity(
        warehouse.read_polars(
            store, EVENTS, dt, columns=["user_id", "item_id", "clicked", "converted"]
        ),
        warehouse.read_polars(store, ITEMS, dt),
    )
    return warehouse.Artifact(
        frames={"items": items, "users": users, "user_categories": user_categories},
        info={"items": len(items), "users": len(users), "user_categories": len(user_categories)},
    )


def _window_tables(store: Storage, days: list[str], long_days: list[str]) -> FeatureTables:
    """Feature tables (Polars frames) from the daily activity of ``days`` (the short window)
    and ``long_days`` (the long window, which contains it); the long window's item categories
    come from the catalog of its last day."""

    def read(d: str, name: str) -> pl.DataFrame:
        return warehouse.read_polars(store, ACTIVITY, d, name)

    long = LongWindow(
        [read(d, "items") for d in long_days],
        [read(d, "users") for d in long_days],
        [read(d, "user_categories") for d in long_days],
        warehouse.read_polars(store, ITEMS, long_days[-1]) if long_days else None,
    )
    return window_features(
        [read(d, "items") for d in days],
        [read(d, "users") for d in days],
        [read(d, "user_categories") for d in days],
        long,
    )


def _feature_windows(
    store: Storage, what: str, days: list[str], short: int, landing: Storage | None
) -> tuple[WindowDays, list[str]]:
    """The short window's status (its last ``short`` days) and the usable days of the whole
    (long) window ``days``; a long-window day that landed but was not built is an error too."""
    status = window_days(store, ACTIVITY, days, landing)
    _require_built(what, status)
    recent = set(days[-short:])
    short_status = WindowDays(
        [d for d in status.usable if d in recent],
        {d: why for d, why in status.skipped.items() if d in recent},
        [],
    )
    return short_status, status.usable


def features(
    store: Storage, dt: str, first_day: str, landing: Storage | None = None
) -> warehouse.Artifact:
    """Point-in-time features of ``dt`` from the activity of the window days before it only.

    Window days before the first partition count as empty; days the data gate blocked and days
    that never landed are skipped and named in ``skipped_days`` (:func:`window_days`); a day that
    landed but was not built is an error (it would change the features once built).
    """
    status, long_days = _feature_windows(
        store,
        f"{FEATURES} dt={dt}",
        warehouse.window(dt, LONG_WINDOW_DAYS, first_day),
        WINDOW_DAYS,
        landing,
    )
    tables = _window_tables(store, status.usable, long_days)
    return warehouse.Artifact(
        frames={
            "items": tables.items,
            "users": tables.users,
            "user_categories": tables.user_categories,
        },
        blobs={"priors.json": json.dumps(tables.priors.as_dict(), sort_keys=True).encode()},
        info={
            **status.metadata(),
            "long_window_days": len(long_days),
            "items": len(tables.items),
            "users": len(tables.users),
            **{f"prior_{k}": v for k, v in tables.priors.as_dict().items()},
        },
    )


def online_snapshot(
    store: Storage, dt: str, first_day: str, landing: Storage | None = None
) -> warehouse.Artifact:
    """Features for serving on dt+1: the window ending on dt (inclusive), same code as training;
    blocked and never-landed days skipped as in :func:`features`."""
    from reckit_assets.core.features import online

    status, long_days = _feature_windows(
        store,
        f"online features dt={dt}",
        [*warehouse.window(dt, LONG_WINDOW_DAYS - 1, first_day), dt],
        WINDOW_DAYS,
        landing,
    )
    tables = _window_tables(store, status.usable, long_days).to_pandas()
    return online.build(
        tables, warehouse.read(store, USERS, dt), warehouse.read(store, ITEMS, dt), status.usable
    )


def load_features(store: Storage, dt: str, polars: bool = False) -> FeatureTables:
    """The published feature tables of ``dt`` (pandas frames, or Polars with ``polars=True``)."""
    priors = warehouse.read_json(store, FEATURES, dt, "priors.json")
    read = warehouse.read_polars if polars else warehouse.read
    return FeatureTables(
        items=read(store, FEATURES, dt, "items"),
        users=read(store, FEATURES, dt, "users"),
        priors=Priors.from_dict(priors),
        user_categories=read(store, FEATURES, dt, "user_categories"),
    )


def _samples_status(store: Storage) -> Callable[[str], tuple[str, dict | None]]:
    def status(d: str) -> tuple[str, dict | None]:
        found = warehouse.manifest(store, SAMPLES, d)
        if found is not None:
            return "pass", {"rows": found["rows"]}
        if warehouse.manifest(store, SAMPLES, d, quarantined=True) is not None:
            return "fail", None
        landed = warehouse.manifest(store, LANDED, d)
        if landed is None:
            return "absent", None
        return ("pending" if landed.get("info", {}).get("passed") else "fail"), None

    return status


def profile_snapshot(
    store: Storage, asset: str, dt: str, lookback: int
) -> tuple[pl.DataFrame, str]:
    """The users/items snapshot serving used on ``dt``: the latest published one before ``dt``
    (normally dt-1's). Before any, an empty snapshot: every user and item is unknown, as at
    serving. Returns the frame and the day it comes from (or ``"none"``)."""
    found = warehouse.previous_published(store, asset, dt, lookback=lookback)
    if found is None:
        return warehouse.read_polars(store, asset, dt).head(0), "none"
    return warehouse.read_polars(store, asset, found), found


DRIFT_SAMPLE_SEED = 20261001


def _drift_rows(frame: pl.DataFrame, max_rows: int) -> pd.DataFrame:
    """At most ``max_rows`` rows of a day for the drift tests: a seeded uniform sample (the same
    rows on every rerun), all rows below it; as pandas, for the tests."""
    if frame.height > max_rows:
        frame = frame.sample(n=max_rows, seed=DRIFT_SAMPLE_SEED)
    return frame.to_pandas()


def _read_samples(store: Storage, d: str, columns: list[str], max_rows: int) -> pd.DataFrame:
    """A day's samples, published or quarantined (verified against its manifest either way),
    sampled down to ``max_rows`` (``data_quality.drift_max_rows``)."""
    if warehouse.manifest(store, SAMPLES, d) is not None:
        return _drift_rows(warehouse.read_polars(store, SAMPLES, d, columns=columns), max_rows)
    found = warehouse.manifest(store, SAMPLES, d, quarantined=True)
    data = store.read_bytes(f"{warehouse.prefix(SAMPLES, d, quarantined=True)}/data.parquet")
    if sha256_bytes(data) != found["files"]["data.parquet"]["sha256"]:
        raise warehouse.ChangedPartitionError(f"quarantined {SAMPLES} dt={d} is being rewritten")
    return _drift_rows(parquet_bytes_to_polars(data, columns=columns), max_rows)


def _drift_reference(store: Storage, dt: str, first_day: str | None, t: Thresholds) -> list[str]:
    """The last ``t.reference_days`` days before ``dt`` whose samples were built (published, or
    quarantined by their own checks) with full feature windows.

    Unlike the volume and value checks, drift compares with days quarantined for drift too:
    they are real traffic, and leaving them out froze the reference at the last day before a
    lasting change, so every later day drifted further from it and was quarantined as well. A
    sudden change still fails the days it appears on; a lasting one becomes the reference within
    ``reference_days`` days (each of them failing until then, with the figures recorded).
    """
    end = date.fromisoformat(dt)
    out = []
    for k in range(1, t.reference_lookback_days + 1):
        d = (end - timedelta(days=k)).isoformat()
        if first_day is not None and d < first_day:
            break
        built = warehouse.manifest(store, SAMPLES, d) or warehouse.manifest(
            store, SAMPLES, d, quarantined=True
        )
        if built is not None and _full_window(store, d):
            out.append(d)
        if len(out) == t.reference_days:
            break
    return sorted(out)


def _full_window(store: Storage, d: str) -> bool:
    """Whether ``d``'s feature window starts on or after the first partition (its days were all
    usable or skipped for a stated reason), i.e. the features are past their warm-up."""
    info = warehouse.require(store, FEATURES, d)["info"]
    return len(info["window"]) + len(info.get("skipped_days") or {}) == WINDOW_DAYS


def samples(
    store: Storage, dt: str, thresholds: Thresholds, first_day: str | None = None
) -> StepResult:
    """Labelled samples of ``dt``: its events joined with point-in-time features and the profile
    snapshots as of the end of dt-1 (what serving on dt had), never dt's own snapshots.

    Volume and drift compare with the last passing sample days before ``dt`` (:func:`reference`).
    """
    users, users_from = profile_snapshot(store, USERS, dt, thresholds.reference_lookback_days)
    items, items_from = profile_snapshot(store, ITEMS, dt, thresholds.reference_lookback_days)
    out = build_samples(
        warehouse.read_polars(store, EVENTS, dt),
        load_features(store, dt, polars=True),
        users,
        items,
    )
    # The samples' checks inform (row count, drift) or look at dt alone (collapse vs built days):
    # a day not built yet is left out of the reference, never an error.
    ref = reference(dt, first_day, thresholds, _samples_status(store), pending_is_error=False)
    comparable = _drift_reference(store, dt, first_day, thresholds)
    warming_up = not _full_window(store, dt) or not comparable
    scores = None
    if comparable and len(out):
        columns = [*DENSE_COLUMNS, *DRIFT_CATEGORICAL, "user_id", "item_id"]
        cap = thresholds.drift_max_rows
        pooled = pd.concat(
            [_read_samples(store, d, columns, cap).assign(_day=d) for d in comparable],
            ignore_index=True,
        )
        if len(pooled):
            current = _drift_rows(out.select(*columns), cap)
            scores = feature_drift(pooled, current, list(DENSE_COLUMNS), DRIFT_CATEGORICAL)
    outcomes = [
        quality.row_count_change(len(out), ref, thresholds, f"{SAMPLES} dt={dt}"),
        quality.drift(
            scores,
            Reference(
                dt, days=tuple(comparable), first_partition=ref.first_partition, what="built"
            ),
            thresholds,
            warming_up=warming_up,
        ),
    ]
    waived = waivers.waivers_for(store, dt)
    waivers.apply(outcomes, waived, SAMPLES)
    info = {
        "waived": ", ".join(sorted(c for a, c in waived if a == SAMPLES)) or "none",
        "label_rate": round(float(out["label"].mean()), 6) if len(out) else 0.0,
        "new_users": int(out["is_new_user"].sum()),
        "new_items": int(out["is_new_item"].sum()),
        "compared_with": ", ".join(ref.days) or "none",
        "drift_reference": ", ".join(comparable) or "none",
        "profiles_from": f"users {users_from}, items {items_from}",
    }
    return StepResult(warehouse.Artifact(frames={"data": out}, info=info), outcomes)


def sequences(store: Storage, dt: str) -> warehouse.Artifact:
    seqs = behaviour_sequences(
        warehouse.read_polars(
            store, EVENTS, dt, columns=["user_id", "ts", "item_id", "request_id", "clicked"]
        )
    )
    return warehouse.Artifact(
        frames={"data": sequences_table(seqs)},
        info={"sessions": len(seqs), "corpus_sessions": int((seqs["length"] >= 2).sum())},
    )
