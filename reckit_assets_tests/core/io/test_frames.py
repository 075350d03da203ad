"""Parquet bytes are a function of the rows only, whichever library built the frame."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from reckit_assets.core.io.frames import ROW_GROUP_ROWS, frame_to_parquet_bytes


def _reference(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table.combine_chunks(), buf, compression="zstd", write_statistics=True)
    return buf.getvalue()


def test_a_large_polars_frame_written_by_row_group_gives_the_whole_table_bytes():
    n = 2 * ROW_GROUP_ROWS + 12_345
    rng = np.random.default_rng(0)
    frame = pl.DataFrame(
        {
            "user_id": [f"u{k % 5000}" for k in range(n)],
            "x": rng.random(n),
            "label": rng.integers(0, 2, n).astype("int8"),
        }
    )
    # Several chunks, as after a concat: chunking must not show in the bytes.
    chunked = pl.concat([frame.slice(0, 1000), frame.slice(1000)], rechunk=False)
    data = frame_to_parquet_bytes(chunked)
    assert data == _reference(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))
    assert pq.ParquetFile(io.BytesIO(data)).num_row_groups == 3


def test_pandas_and_polars_frames_of_the_same_rows_give_the_same_bytes():
    pdf = pd.DataFrame({"item_id": pd.Series(["a", "b", None], dtype="string"), "n": [1, 2, 3]})
    assert frame_to_parquet_bytes(pdf) == frame_to_parquet_bytes(pl.from_pandas(pdf))
