"""The online feature snapshot the pipeline publishes for the inference service.

After day d is processed, the features for serving on d+1 are the point-in-time features over
the window ending on d (days d-6 .. d), computed by the same code as training, plus the latest
user and item snapshots. Published next to the registry::

    online_features/dt=<d>/{items,users,user_categories,profiles,catalog}.parquet, priors.json, _manifest.json
    online_features/current.json     {"dt": d, "data_version": ...}  (one atomic write)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from reckit_assets.core.features.compute import FeatureTables, Priors
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import Storage

ASSET = "online_features"
CURRENT = f"{ASSET}/current.json"


@dataclass
class OnlineSnapshot:
    dt: str
    data_version: str
    features: FeatureTables
    users: pd.DataFrame  # user_id, age, gender, region
    items: pd.DataFrame  # item_id, category, price


def build(
    features: FeatureTables, users: pd.DataFrame, items: pd.DataFrame, window: list[str]
) -> warehouse.Artifact:
    return warehouse.Artifact(
        frames={
            "items": features.items,
            "users": features.users,
            "user_categories": features.user_categories,
            "profiles": users,
            "catalog": items,
        },
        blobs={"priors.json": json.dumps(features.priors.as_dict(), sort_keys=True).encode()},
        info={"window": window, "items": len(features.items), "users": len(features.users)},
    )


def publish(storage: Storage, dt: str, artifact: warehouse.Artifact) -> dict:
    """Publish the snapshot of ``dt``; ``current`` moves to it (last) unless it points at a later
    day already (backfilling an old day never rolls serving back in time)."""
    manifest = warehouse.publish(storage, ASSET, dt, artifact)
    pointer = current(storage)
    if pointer is not None and pointer["dt"] > dt:
        return manifest
    storage.write_bytes(
        CURRENT,
        json.dumps({"dt": dt, "data_version": manifest["data_version"]}, sort_keys=True).encode(),
    )
    return manifest


def current(storage: Storage) -> dict | None:
    return json.loads(storage.read_bytes(CURRENT)) if storage.exists(CURRENT) else None


def load(storage: Storage, dt: str | None = None) -> OnlineSnapshot:
    """The snapshot of ``dt`` (default: the current one)."""
    if dt is None:
        pointer = current(storage)
        if pointer is None:
            raise warehouse.MissingPartitionError(
                "no online feature snapshot has been published yet"
            )
        dt = pointer["dt"]
    manifest = warehouse.require(storage, ASSET, dt)
    priors = warehouse.read_json(storage, ASSET, dt, "priors.json")
    return OnlineSnapshot(
        dt=dt,
        data_version=manifest["data_version"],
        features=FeatureTables(
            items=warehouse.read(storage, ASSET, dt, "items"),
            users=warehouse.read(storage, ASSET, dt, "users"),
            priors=Priors.from_dict(priors),
            user_categories=warehouse.read(storage, ASSET, dt, "user_categories"),
        ),
        users=warehouse.read(storage, ASSET, dt, "profiles"),
        items=warehouse.read(storage, ASSET, dt, "catalog"),
    )
