"""Per-partition artifacts of the pipeline, written through a :class:`Storage`.

Each partition of each asset lives under ``<asset>/dt=YYYY-MM-DD/``: its files plus a
``_manifest.json`` written last (files, sha256, rows, data version). A partition without a manifest
does not exist for readers, so a crash mid-write never shows a half partition. Rerunning replaces
the partition (idempotent). A partition that failed its blocking checks is published under
``quarantine/`` instead, where no training step reads it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd
import polars as pl
import pyarrow as pa

from reckit_assets.core.io.frames import (
    Frame,
    frame_to_parquet_bytes,
    parquet_bytes_to_frame,
    parquet_bytes_to_polars,
)
from reckit_assets.core.io.storage import Storage, sha256_bytes

MANIFEST = "_manifest.json"
QUARANTINE = "quarantine"


class MissingPartitionError(RuntimeError):
    """An input partition that must exist does not (never materialized, or quarantined)."""


@dataclass
class Artifact:
    """What an asset produced for one partition, before it is published."""

    frames: dict[str, Frame] = field(default_factory=dict)  # pandas, Polars or Arrow
    blobs: dict[str, bytes] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # small JSON-able facts kept in the manifest

    def encoded(self) -> dict[str, bytes]:
        files = {f"{name}.parquet": frame_to_parquet_bytes(df) for name, df in self.frames.items()}
        files.update(self.blobs)
        return dict(sorted(files.items()))

    @property
    def rows(self) -> int:
        return int(sum(_rows(df) for df in self.frames.values()))


def _rows(df: Frame) -> int:
    return df.num_rows if isinstance(df, pa.Table) else len(df)


def prefix(asset: str, dt: str, quarantined: bool = False) -> str:
    base = f"{asset}/dt={dt}"
    return f"{QUARANTINE}/{base}" if quarantined else base


def data_version(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}:{sha256_bytes(files[name])}\n".encode())
    return h.hexdigest()[:16]


def publish(
    storage: Storage, asset: str, dt: str, artifact: Artifact, quarantined: bool = False
) -> dict:
    """Replace the partition with ``artifact`` (manifest last); returns the manifest."""
    files = artifact.encoded()
    # Both places are cleared first: a partition is either published or quarantined, never both,
    # and a rerun never leaves files of an older run behind.
    storage.delete_prefix(prefix(asset, dt))
    storage.delete_prefix(prefix(asset, dt, quarantined=True))
    target = prefix(asset, dt, quarantined)
    for name, data in files.items():
        storage.write_bytes(f"{target}/{name}", data)
    manifest = {
        "asset": asset,
        "dt": dt,
        "data_version": data_version(files),
        "quarantined": quarantined,
        "rows": artifact.rows,
        "files": {
            name: {"sha256": sha256_bytes(data), "bytes": len(data)} for name, data in files.items()
        },
        "info": artifact.info,
    }
    storage.write_bytes(
        f"{target}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True).encode()
    )
    return manifest


def manifest(storage: Storage, asset: str, dt: str, quarantined: bool = False) -> dict | None:
    key = f"{prefix(asset, dt, quarantined)}/{MANIFEST}"
    if not storage.exists(key):
        return None
    return json.loads(storage.read_bytes(key))


def require(storage: Storage, asset: str, dt: str) -> dict:
    """The manifest of a published partition, or a clear error saying why there is none."""
    found = manifest(storage, asset, dt)
    if found is not None:
        return found
    if manifest(storage, asset, dt, quarantined=True) is not None:
        raise MissingPartitionError(
            f"{asset} dt={dt} is quarantined: it failed its blocking checks (see the asset's "
            f"check results); fix the landed data and rematerialize it"
        )
    raise MissingPartitionError(
        f"{asset} dt={dt} has not been materialized; materialize it first "
        f"(for a range: dagster asset materialize --partition-range)"
    )


class ChangedPartitionError(RuntimeError):
    """A file no longer matches its manifest: the partition is being rewritten right now."""


def read_file(storage: Storage, asset: str, dt: str, name: str) -> bytes:
    """One file of a published partition, verified against the manifest's sha256, so a reader
    racing a rerun gets an error instead of a mix of old and new files."""
    found = require(storage, asset, dt)
    expected = found["files"].get(name)
    if expected is None:
        raise MissingPartitionError(f"{asset} dt={dt} has no file {name!r}")
    data = storage.read_bytes(f"{prefix(asset, dt)}/{name}")
    if sha256_bytes(data) != expected["sha256"]:
        raise ChangedPartitionError(
            f"{asset} dt={dt}/{name} does not match its manifest (the partition is being "
            "rewritten); retry once the run that rewrites it has finished"
        )
    return data


def read(
    storage: Storage, asset: str, dt: str, name: str = "data", columns: list[str] | None = None
) -> pd.DataFrame:
    return parquet_bytes_to_frame(read_file(storage, asset, dt, f"{name}.parquet"), columns=columns)


def read_polars(
    storage: Storage, asset: str, dt: str, name: str = "data", columns: list[str] | None = None
) -> pl.DataFrame:
    """Like :func:`read`, as a Polars frame (Arrow memory, no pandas conversion)."""
    return parquet_bytes_to_polars(
        read_file(storage, asset, dt, f"{name}.parquet"), columns=columns
    )


def read_json(storage: Storage, asset: str, dt: str, name: str) -> dict:
    return json.loads(read_file(storage, asset, dt, name))


def window(dt: str, days: int, first_day: str | None = None) -> list[str]:
    """The ``days`` days strictly before ``dt`` (oldest first), not before ``first_day``."""
    end = date.fromisoformat(dt)
    out = [(end - timedelta(days=k)).isoformat() for k in range(days, 0, -1)]
    return [d for d in out if first_day is None or d >= first_day]


def previous_published(storage: Storage, asset: str, dt: str, lookback: int = 7) -> str | None:
    """The closest earlier published partition within ``lookback`` days, if any."""
    for d in reversed(window(dt, lookback)):
        if manifest(storage, asset, d) is not None:
            return d
    return None
