"""What lands: one simulated day's frames as written, with a defect injected (the data gate must
block it) or a realistic variation (it must pass), for the data-gate benchmark
(bench/gates_data.py), the data-check tests and the real-data rehearsals. Each works on one day's
landed frames and returns new frames; the originals are not modified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reckit_assets.core.ingest.landing import write_partition
from reckit_assets.core.io.storage import Storage
from reckit_assets.simulation.simulate import mix64


@dataclass(frozen=True)
class Landed:
    """One day's frames as they will be landed, and the file format to land them in."""

    events: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    fmt: str = "parquet"  # "parquet" | "csv"


def _requests_kept(events: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """Keep a random ``share`` of requests (all their events), as lower traffic would."""
    requests = events["request_id"].drop_duplicates().to_numpy()
    rng = np.random.default_rng(seed)
    keep = requests[rng.random(len(requests)) < share]
    return events[events["request_id"].isin(keep)]


def _after_noon(events: pd.DataFrame) -> pd.Series:
    return events["ts"].dt.hour >= 12


# name -> (what it does, the check that must block it)
DEFECTS: dict[str, tuple[str, str]] = {
    "missing_column": ("events without the `device` column", "landing_contract"),
    "duplicates_10pct": ("10% of events landed twice", "duplicate_rate"),
    "out_of_day_10pct": ("10% of events 5 hours before the day", "out_of_day_rate"),
    "orphan_clicks_25pct": ("25% of clicks lose their request id", "orphan_click_rate"),
    "no_clicks": ("no click or conversion events at all", "click_rate_bounds"),
    "unknown_event_type_33pct": ("a third of events typed `view`", "unknown_event_type_rate"),
    "volume_collapse_99pct": ("1% of the day's requests landed", "volume"),
    "volume_spike_5x": ("the day's events landed 5 times under new ids", "volume"),
    "null_required_60pct": ("60% of item prices null", "null_share"),
    "null_optional_80pct": ("80% of events without model_version", "null_share"),
    "price_x1000": ("item prices in thousandths (x1000)", "value_range"),
    "age_in_months": ("user ages in months (x12)", "value_range"),
    "clicks_stop_at_noon": ("click logging stops at 12:00 UTC", "clicks_stopped"),
    "device_collapse": ("every event logged as device `web`", "feature_drift"),
}


def inject_defect(day: Landed, kind: str, seed: int = 0) -> Landed:
    """``day`` with one defect of :data:`DEFECTS` injected."""
    ev, users, items = day.events.copy(), day.users.copy(), day.items.copy()
    rng = np.random.default_rng(seed)
    if kind == "missing_column":
        ev = ev.drop(columns=["device"])
    elif kind == "duplicates_10pct":
        ev = pd.concat([ev, ev.sample(frac=0.1, random_state=seed)], ignore_index=True)
    elif kind == "out_of_day_10pct":
        rows = ev.sample(frac=0.1, random_state=seed).index
        ev.loc[rows, "ts"] = ev["ts"].dt.floor("D").iloc[0] - pd.Timedelta(hours=5)
    elif kind == "orphan_clicks_25pct":
        clicks = ev.index[ev["event_type"] == "click"]
        lost = rng.choice(clicks, size=len(clicks) // 4, replace=False)
        ev.loc[lost, "request_id"] = "lost-" + ev.loc[lost, "event_id"].astype(str)
    elif kind == "no_clicks":
        ev = ev[ev["event_type"] == "impression"]
    elif kind == "unknown_event_type_33pct":
        rows = ev.sample(frac=1 / 3, random_state=seed).index
        ev.loc[rows, "event_type"] = "view"
    elif kind == "volume_collapse_99pct":
        ev = _requests_kept(ev, 0.01, seed)
    elif kind == "volume_spike_5x":
        copies = []
        for k in range(5):
            c = ev.copy()
            c["event_id"] = c["event_id"] + f"-{k}"
            c["request_id"] = c["request_id"] + f"-{k}"
            copies.append(c)
        ev = pd.concat(copies, ignore_index=True)
    elif kind == "null_required_60pct":
        items["price"] = items["price"].where(rng.random(len(items)) >= 0.6)
    elif kind == "null_optional_80pct":
        ev["model_version"] = ev["model_version"].where(rng.random(len(ev)) >= 0.8)
    elif kind == "price_x1000":
        items["price"] = items["price"] * 1000
    elif kind == "age_in_months":
        users["age"] = users["age"] * 12
    elif kind == "clicks_stop_at_noon":
        ev = ev[~((ev["event_type"] != "impression") & _after_noon(ev))]
    elif kind == "device_collapse":
        ev["device"] = "web"
    else:
        raise ValueError(f"unknown defect {kind!r}; one of {sorted(DEFECTS)}")
    return Landed(ev.reset_index(drop=True), users, items, day.fmt)


VARIATIONS: dict[str, str] = {
    "csv": "every table landed as CSV instead of Parquet",
    "extra_columns": "two extra columns in every table",
    "duplicates_1pct": "1% of events landed twice",
    "null_numeric_20pct": "20% of item prices and user ages null",
    "unicode_long_ids": "user and item ids in non-Latin scripts, 200+ characters",
    "new_users_items": "on each day, 10% of users and 10% of items appear under new ids",
    "weekly_swing_30pct": "traffic follows a +-30% day-of-week cycle",
}


def _rename(ids: pd.Series, share: float, salt: str, seed: int) -> pd.Series:
    """Give a stable random ``share`` of ids a new id (same mapping in every table of a day)."""
    keys = pd.util.hash_pandas_object(ids.astype("string"), index=False).to_numpy()
    chosen = (mix64(keys ^ np.uint64(seed)) % np.uint64(1000)) < np.uint64(share * 1000)
    return ids.where(~chosen, ids.astype("string") + f"-{salt}")


def apply_variation(day: Landed, kind: str, day_index: int, seed: int = 0) -> Landed:
    """``day`` with one realistic variation of :data:`VARIATIONS` applied (must still pass)."""
    ev, users, items = day.events.copy(), day.users.copy(), day.items.copy()
    rng = np.random.default_rng([seed, day_index])
    fmt = day.fmt
    if kind == "csv":
        fmt = "csv"
    elif kind == "extra_columns":
        for f in (ev, users, items):
            f["ingest_batch"] = f"b{day_index}"
            f["score_raw"] = rng.random(len(f))
    elif kind == "duplicates_1pct":
        ev = pd.concat([ev, ev.sample(frac=0.01, random_state=day_index)], ignore_index=True)
    elif kind == "null_numeric_20pct":
        items["price"] = items["price"].where(rng.random(len(items)) >= 0.2)
        users["age"] = users["age"].where(rng.random(len(users)) >= 0.2)
    elif kind == "unicode_long_ids":

        def long(s: pd.Series, word: str) -> pd.Series:
            return word + "·" + s.astype("string") + "·" + "é日本ü" * 50

        ev["user_id"], users["user_id"] = (
            long(ev["user_id"], "用户"),
            long(users["user_id"], "用户"),
        )
        ev["item_id"], items["item_id"] = (
            long(ev["item_id"], "商品"),
            long(items["item_id"], "商品"),
        )
    elif kind == "new_users_items":
        salt = f"new{day_index}"
        ev["user_id"] = _rename(ev["user_id"], 0.1, salt, seed + day_index)
        users["user_id"] = _rename(users["user_id"], 0.1, salt, seed + day_index)
        ev["item_id"] = _rename(ev["item_id"], 0.1, salt, seed + day_index + 7)
        items["item_id"] = _rename(items["item_id"], 0.1, salt, seed + day_index + 7)
    elif kind == "weekly_swing_30pct":
        # Simulated at 1.3x the base volume; keep the share that gives base * (1 + 0.3 sin).
        target = 1 + 0.3 * np.sin(2 * np.pi * day_index / 7)
        ev = _requests_kept(ev, target / 1.3, seed * 1000 + day_index)
    else:
        raise ValueError(f"unknown variation {kind!r}; one of {sorted(VARIATIONS)}")
    return Landed(ev.reset_index(drop=True), users, items, fmt)


def land(landing: Storage, dt: str, day: Landed) -> None:
    """Land one day's frames (users, items, then events; each with ``_SUCCESS``)."""
    for table, df in (("users", day.users), ("items", day.items), ("events", day.events)):
        if day.fmt == "csv":
            prefix = f"{table}/dt={dt}"
            out = df.copy()
            if "ts" in out.columns:
                out["ts"] = out["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            landing.write_bytes(f"{prefix}/part-00000.csv", out.to_csv(index=False).encode())
            landing.write_bytes(f"{prefix}/_SUCCESS", b"")
        else:
            write_partition(landing, table, dt, df)


SERVING_BUG_FACTOR = 100.0  # a rate served as a percentage


def serving_feature_bug(features, column: str, factor: float = SERVING_BUG_FACTOR) -> None:
    """A serving-side feature bug for ``reckit loop --skew-bug-on``: the online snapshot the
    service holds serves ``column`` multiplied by ``factor`` (a unit mismatch: a rate served as
    a percentage), while training keeps computing it right. Reaches into the loaded
    ``serving.features.OnlineFeatures``' value arrays: a fault injected into a running service,
    not an API of it."""
    for values in (features._user_values, features._item_values, features._pair_values):
        if column in values:
            values[column] = values[column] * factor
            return
    raise KeyError(f"{column!r} is not an online feature the service gathers per user or item")
