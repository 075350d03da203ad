"""Deterministic Parquet/CSV (de)serialisation of data frames through a :class:`Storage`."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from reckit_assets.core.io.storage import Storage, sha256_bytes


def frame_to_parquet_bytes(df: pd.DataFrame) -> bytes:
    """Same frame -> same bytes: no index, fixed compression, no wall-clock metadata."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata(None)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", write_statistics=True)
    return buf.getvalue()


def parquet_bytes_to_frame(data: bytes, columns: list[str] | None = None) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data), columns=columns).to_pandas()


def write_frame(storage: Storage, key: str, df: pd.DataFrame) -> str:
    """Write ``df`` as Parquet at ``key``; returns the sha256 of the bytes written."""
    data = frame_to_parquet_bytes(df)
    storage.write_bytes(key, data)
    return sha256_bytes(data)


def read_frame(storage: Storage, key: str, columns: list[str] | None = None) -> pd.DataFrame:
    return parquet_bytes_to_frame(storage.read_bytes(key), columns=columns)


def read_csv_bytes(data: bytes) -> pd.DataFrame:
    # IDs stay strings: "007" and "7" are different users.
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""])
