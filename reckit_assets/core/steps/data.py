"""One function per data asset: read its inputs for one day, compute, return what to publish.

Framework-free, so the Dagster assets stay thin and the benchmark runs the same code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from reckit_assets.core.checks import Outcome
from reckit_assets.core.features.compute import (
    FeatureTables,
    Priors,
    build_samples,
    daily_activity,
    window_features,
)
from reckit_assets.core.features.drift import feature_drift
from reckit_assets.core.features.sequences import behaviour_sequences, sequences_table
from reckit_assets.core.features.spec import DENSE_COLUMNS, WINDOW_DAYS
from reckit_assets.core.ingest import quality
from reckit_assets.core.ingest.events import clean_snapshot_frame, validated_impressions
from reckit_assets.core.ingest.landing import LandedTable, read_landed
from reckit_assets.core.ingest.quality import Thresholds
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import Storage

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


def check_landing(landing: Storage, dt: str, thresholds: Thresholds) -> StepResult:
    """The landing contract and raw-data rates of one day. Publishes a manifest, no data."""
    landed = _read_landing(landing, dt)
    issues = [i for t in landed.values() for i in t.issues]
    outcomes = [quality.contract(issues)]
    info: dict = {
        "fingerprints": {t: landed[t].fingerprint for t in landed},
        "files": {t: landed[t].files for t in landed},
        "issues": [str(i) for i in issues],
    }
    # Rates are measured on the rows that could be read, even when some file broke the contract.
    users, _ = clean_snapshot_frame(landed["users"], "user_id")
    items, _ = clean_snapshot_frame(landed["items"], "item_id")
    _, counts = validated_impressions(landed["events"], dt, users=users, items=items)
    files = ", ".join(f["key"] for f in landed["events"].files) or f"events/dt={dt}"
    outcomes += quality.event_rates(counts, thresholds, files)
    info["counts"] = counts.as_metadata()
    info["passed"] = all(o.passed for o in outcomes)
    blob = json.dumps(info, indent=2, sort_keys=True, default=str).encode()
    return StepResult(
        warehouse.Artifact(blobs={"landing.json": blob}, info={"passed": info["passed"]}), outcomes
    )


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
    events, counts = validated_impressions(landed["events"], dt, users=users, items=items)
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


def _window_tables(store: Storage, days: list[str]) -> FeatureTables:
    """Feature tables (Polars frames) from the daily activity of ``days``."""
    return window_features(
        [warehouse.read_polars(store, ACTIVITY, d, "items") for d in days],
        [warehouse.read_polars(store, ACTIVITY, d, "users") for d in days],
        [warehouse.read_polars(store, ACTIVITY, d, "user_categories") for d in days],
    )


def features(store: Storage, dt: str, first_day: str) -> warehouse.Artifact:
    """Point-in-time features of ``dt`` from the activity of the window days before it only.

    Window days before the first partition count as empty; any other missing day is an error,
    never silently skipped (it would change the features and break reproducibility).
    """
    days = warehouse.window(dt, WINDOW_DAYS, first_day)
    missing = [d for d in days if warehouse.manifest(store, ACTIVITY, d) is None]
    if missing:
        raise warehouse.MissingPartitionError(
            f"{FEATURES} dt={dt} needs {ACTIVITY} for {len(missing)} window day(s) not "
            f"materialized: {', '.join(missing)}"
        )
    tables = _window_tables(store, days)
    return warehouse.Artifact(
        frames={
            "items": tables.items,
            "users": tables.users,
            "user_categories": tables.user_categories,
        },
        blobs={"priors.json": json.dumps(tables.priors.as_dict(), sort_keys=True).encode()},
        info={
            "window": days,
            "items": len(tables.items),
            "users": len(tables.users),
            **{f"prior_{k}": v for k, v in tables.priors.as_dict().items()},
        },
    )


def online_snapshot(store: Storage, dt: str, first_day: str) -> warehouse.Artifact:
    """Features for serving on dt+1: the window ending on dt (inclusive), same code as training."""
    from reckit_assets.core.features import online

    days = [*warehouse.window(dt, WINDOW_DAYS - 1, first_day), dt]
    missing = [d for d in days if warehouse.manifest(store, ACTIVITY, d) is None]
    if missing:
        raise warehouse.MissingPartitionError(
            f"online features dt={dt} need {ACTIVITY} for: {', '.join(missing)}"
        )
    tables = _window_tables(store, days).to_pandas()
    return online.build(
        tables, warehouse.read(store, USERS, dt), warehouse.read(store, ITEMS, dt), days
    )


def load_features(store: Storage, dt: str, polars: bool = False) -> FeatureTables:
    """The published feature tables of ``dt`` (pandas frames, or Polars with ``polars=True``)."""
    priors = warehouse.read_json(store, FEATURES, dt, "priors.json")
    read = warehouse.read_polars if polars else warehouse.read
    return FeatureTables(
        items=read(store, FEATURES, dt, "items"),
        users=read(store, FEATURES, dt, "users"),
        priors=Priors(ctr=priors["ctr"], cvr=priors["cvr"], impressions=int(priors["impressions"])),
        user_categories=read(store, FEATURES, dt, "user_categories"),
    )


def samples(store: Storage, dt: str, thresholds: Thresholds) -> StepResult:
    out = build_samples(
        warehouse.read_polars(store, EVENTS, dt),
        load_features(store, dt, polars=True),
        warehouse.read_polars(store, USERS, dt),
        warehouse.read_polars(store, ITEMS, dt),
    )
    prev_dt = warehouse.previous_published(store, SAMPLES, dt)
    prev_rows = warehouse.manifest(store, SAMPLES, prev_dt)["rows"] if prev_dt else None
    scores = None
    if prev_dt:
        prev = warehouse.read(store, SAMPLES, prev_dt, columns=[*DENSE_COLUMNS, *DRIFT_CATEGORICAL])
        if len(prev) and len(out):
            current = out.select(*DENSE_COLUMNS, *DRIFT_CATEGORICAL).to_pandas()
            scores = feature_drift(prev, current, list(DENSE_COLUMNS), DRIFT_CATEGORICAL)
    full = [
        len(warehouse.require(store, FEATURES, d)["info"]["window"]) == WINDOW_DAYS
        for d in ([dt, prev_dt] if prev_dt else [dt])
    ]
    outcomes = [
        quality.row_count_change(len(out), prev_rows, thresholds, f"{SAMPLES} dt={dt}"),
        quality.drift(scores, set(DENSE_COLUMNS), thresholds, warming_up=not all(full)),
    ]
    info = {
        "label_rate": round(float(out["label"].mean()), 6) if len(out) else 0.0,
        "new_users": int(out["is_new_user"].sum()),
        "new_items": int(out["is_new_item"].sum()),
        "compared_with": prev_dt or "none",
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
