"""Behaviour sequences: each user's clicked items in time order, split into sessions.

The item2vec corpus is the sessions with at least two items over the training window.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import polars as pl
import pyarrow as pa

from reckit_assets.core.io.frames import to_arrow

SESSION_GAP = timedelta(minutes=30)


def behaviour_sequences(validated: pd.DataFrame | pl.DataFrame) -> pd.DataFrame | pl.DataFrame:
    """One row per (user, session): ``items`` is the list of clicked item ids in order.

    Sessions are numbered from 1 in (user, ts, request_id, item_id) order; a new session starts
    with each user and after a gap of more than SESSION_GAP. Polars (pandas for an empty day).
    """
    frame = validated if isinstance(validated, pl.DataFrame) else pl.from_pandas(validated)
    clicks = frame.filter(pl.col("clicked") == 1).select("user_id", "ts", "item_id", "request_id")
    if clicks.is_empty():
        return pd.DataFrame(
            {
                "user_id": pd.Series(dtype="string"),
                "session": pd.Series(dtype="int64"),
                "start_ts": pd.Series(dtype="datetime64[ns, UTC]"),
                "length": pd.Series(dtype="int64"),
                "items": pd.Series(dtype="object"),
            }
        )
    clicks = clicks.sort(["user_id", "ts", "request_id", "item_id"], maintain_order=True)
    new_user = (pl.col("user_id") != pl.col("user_id").shift(1)).fill_null(True)
    gap = (pl.col("ts").diff() > SESSION_GAP).fill_null(False)
    clicks = clicks.with_columns(session=(new_user | gap).cum_sum().cast(pl.Int64))
    out = (
        clicks.group_by("session", maintain_order=True)
        .agg(
            user_id=pl.col("user_id").first(),
            start_ts=pl.col("ts").first(),
            length=pl.len().cast(pl.Int64),
            items=pl.col("item_id"),
        )
        .sort("session")
    )
    return out.select("user_id", "session", "start_ts", "length", "items")


def sequences_table(sequences: pd.DataFrame | pl.DataFrame) -> pa.Table:
    """Sequences as the Arrow table published: ``items`` as ``list<string>``, the type the
    sequences had before the switch to Polars (so their files keep their bytes)."""
    table = to_arrow(sequences)
    index = table.schema.get_field_index("items")
    return table.set_column(index, "items", table["items"].cast(pa.list_(pa.string())))


def corpus(sequences: list[pd.DataFrame], min_length: int = 2) -> list[list[str]]:
    """Sessions with at least ``min_length`` items, in day then session order."""
    out: list[list[str]] = []
    for day in sequences:
        for items in day.loc[day["length"] >= min_length, "items"]:
            out.append(list(items))
    return out
