"""Deterministic Parquet/CSV (de)serialisation of tables through a :class:`Storage`.

Tables are pandas or Polars frames (or Arrow tables); all are written through one Arrow path, so
the same rows give the same bytes whichever library built them.
"""

from __future__ import annotations

import io

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from reckit_assets.core.io.storage import Storage, sha256_bytes

Frame = pd.DataFrame | pl.DataFrame | pa.Table


def to_arrow(df: Frame) -> pa.Table:
    """One contiguous Arrow table; Polars strings become ``large_string`` (as pandas writes them)."""
    if isinstance(df, pl.DataFrame):
        table = df.to_arrow(compat_level=pl.CompatLevel.oldest())
    elif isinstance(df, pd.DataFrame):
        table = pa.Table.from_pandas(df, preserve_index=False)
    else:
        table = df
    # Chunk boundaries decide page boundaries: one chunk per column keeps the bytes a function of
    # the rows only.
    return table.replace_schema_metadata(None).combine_chunks()


# pyarrow's default row group: the unit in which a Polars frame is converted and written.
ROW_GROUP_ROWS = 1024 * 1024


def frame_to_parquet_bytes(df: Frame) -> bytes:
    """Same rows -> same bytes: no index, fixed compression, no wall-clock metadata.

    A Polars frame is converted to Arrow one row group at a time (memory bounded by a row
    group, not the frame); the bytes equal those of writing the whole table at once.
    """
    buf = io.BytesIO()
    options = {"compression": "zstd", "write_statistics": True}
    if isinstance(df, pl.DataFrame) and df.height > ROW_GROUP_ROWS:
        first = to_arrow(df.slice(0, ROW_GROUP_ROWS))
        with pq.ParquetWriter(buf, first.schema, **options) as writer:
            writer.write_table(first)
            for offset in range(ROW_GROUP_ROWS, df.height, ROW_GROUP_ROWS):
                writer.write_table(to_arrow(df.slice(offset, ROW_GROUP_ROWS)))
        return buf.getvalue()
    pq.write_table(to_arrow(df), buf, **options)
    return buf.getvalue()


def parquet_bytes_to_frame(data: bytes, columns: list[str] | None = None) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data), columns=columns).to_pandas()


def parquet_bytes_to_polars(data: bytes, columns: list[str] | None = None) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(data), columns=columns)


def write_frame(storage: Storage, key: str, df: Frame) -> str:
    """Write ``df`` as Parquet at ``key``; returns the sha256 of the bytes written."""
    data = frame_to_parquet_bytes(df)
    storage.write_bytes(key, data)
    return sha256_bytes(data)


def read_frame(storage: Storage, key: str, columns: list[str] | None = None) -> pd.DataFrame:
    return parquet_bytes_to_frame(storage.read_bytes(key), columns=columns)


def read_csv_bytes(data: bytes) -> pd.DataFrame:
    # IDs stay strings: "007" and "7" are different users.
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""])
