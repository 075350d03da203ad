"""Behaviour sequences: each user's clicked items in time order, split into sessions.

The item2vec corpus is the sessions with at least two items over the training window.
"""

from __future__ import annotations

import pandas as pd

SESSION_GAP = pd.Timedelta(minutes=30)


def behaviour_sequences(validated: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, session): ``items`` is the list of clicked item ids in order."""
    clicks = validated.loc[validated["clicked"] == 1, ["user_id", "ts", "item_id", "request_id"]]
    clicks = clicks.sort_values(["user_id", "ts", "request_id", "item_id"], kind="stable")
    if clicks.empty:
        return pd.DataFrame(
            {
                "user_id": pd.Series(dtype="string"),
                "session": pd.Series(dtype="int64"),
                "start_ts": pd.Series(dtype="datetime64[ns, UTC]"),
                "length": pd.Series(dtype="int64"),
                "items": pd.Series(dtype="object"),
            }
        )
    new_user = clicks["user_id"] != clicks["user_id"].shift()
    gap = clicks["ts"].diff() > SESSION_GAP
    clicks = clicks.assign(session=(new_user | gap).cumsum().astype("int64"))
    g = clicks.groupby("session", sort=True)
    out = pd.DataFrame(
        {
            "user_id": g["user_id"].first().astype("string"),
            "start_ts": g["ts"].first(),
            "length": g.size().astype("int64"),
            "items": g["item_id"].agg(lambda s: [str(x) for x in s]),
        }
    ).reset_index()
    return out[["user_id", "session", "start_ts", "length", "items"]]


def corpus(sequences: list[pd.DataFrame], min_length: int = 2) -> list[list[str]]:
    """Sessions with at least ``min_length`` items, in day then session order."""
    out: list[list[str]] = []
    for day in sequences:
        for items in day.loc[day["length"] >= min_length, "items"]:
            out.append(list(items))
    return out
