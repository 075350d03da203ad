"""Raw events -> validated, labelled impressions; every messy-data case is handled and counted.

One row per impression (request_id, item_id) with ``clicked`` and ``converted`` labels joined from
the click and conversion events of the same request and item.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from reckit_assets.core.ingest.landing import EVENT_TYPES, LandedTable

VALIDATED_COLUMNS = (
    "request_id",
    "ts",
    "user_id",
    "item_id",
    "position",
    "device",
    "model_version",
    "clicked",
    "converted",
)


@dataclass
class EventCounts:
    """What happened to every raw row. Rates use raw_rows (or clicks) as denominator."""

    raw_rows: int = 0
    files: int = 0
    null_id_rows: int = 0
    unknown_event_type: int = 0
    duplicate_events: int = 0
    out_of_day: int = 0
    duplicate_impressions: int = 0
    duplicate_clicks: int = 0
    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    orphan_clicks: int = 0
    orphan_conversions: int = 0
    missing_position: int = 0
    missing_optional_columns: list[str] = field(default_factory=list)
    users: int = 0
    single_event_users: int = 0
    items: int = 0
    items_not_in_catalog: int = 0
    users_not_in_profiles: int = 0

    @property
    def duplicate_rate(self) -> float:
        return self.duplicate_events / self.raw_rows if self.raw_rows else 0.0

    @property
    def out_of_day_rate(self) -> float:
        return self.out_of_day / self.raw_rows if self.raw_rows else 0.0

    @property
    def orphan_click_rate(self) -> float:
        total = self.clicks + self.orphan_clicks
        return self.orphan_clicks / total if total else 0.0

    @property
    def click_rate(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    def as_metadata(self) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {
            k: v for k, v in self.__dict__.items() if isinstance(v, int | float)
        }
        out["missing_optional_columns"] = ",".join(self.missing_optional_columns) or "none"
        out["duplicate_rate"] = round(self.duplicate_rate, 6)
        out["out_of_day_rate"] = round(self.out_of_day_rate, 6)
        out["orphan_click_rate"] = round(self.orphan_click_rate, 6)
        out["click_rate"] = round(self.click_rate, 6)
        return out


def day_bounds(dt: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(dt, tz="UTC")
    return start, start + pd.Timedelta(days=1)


def validate_events(
    landed: LandedTable,
    dt: str,
    users: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, EventCounts]:
    """Dedup, drop what cannot be used, join clicks and conversions onto impressions as labels.

    Deterministic: the output is sorted, and which duplicate survives does not depend on file
    order (the smallest file name wins).
    """
    df = landed.frame
    counts = EventCounts(
        raw_rows=len(df),
        files=len(landed.files),
        missing_optional_columns=list(landed.missing_optional),
    )
    id_cols = ["event_id", "user_id", "item_id", "request_id"]
    null_ids = df[id_cols].isna().any(axis=1)
    counts.null_id_rows = int(null_ids.sum())
    df = df[~null_ids]

    known = df["event_type"].isin(EVENT_TYPES)
    counts.unknown_event_type = int((~known).sum())
    df = df[known]

    # Rows arrive in file-name order (read_landed reads files sorted by key), so "first" is the
    # smallest file name: deterministic without sorting a million string ids.
    dup = df.duplicated("event_id", keep="first")
    counts.duplicate_events = int(dup.sum())
    df = df[~dup]

    start, end = day_bounds(dt)
    in_day = (df["ts"] >= start) & (df["ts"] < end)
    counts.out_of_day = int((~in_day).sum())
    df = df[in_day]

    key = ["request_id", "item_id"]
    imps = df[df["event_type"] == "impression"]
    repeated = imps.duplicated(key, keep=False)
    if repeated.any():
        # The same impression under several event ids: keep the earliest (then smallest id).
        # Only the few repeated rows are sorted.
        ordered = imps[repeated].sort_values([*key, "ts", "event_id"], kind="stable")
        imps = pd.concat([imps[~repeated], ordered])
    dup_imp = imps.duplicated(key, keep="first")
    counts.duplicate_impressions = int(dup_imp.sum())
    imps = imps[~dup_imp]
    counts.missing_position = int(imps["position"].isna().sum())

    clicks = df[df["event_type"] == "click"][key].drop_duplicates()
    counts.duplicate_clicks = int((df["event_type"] == "click").sum() - len(clicks))
    convs = df[df["event_type"] == "conversion"][key].drop_duplicates()

    imp_keys = pd.MultiIndex.from_frame(imps[key])
    click_keys = pd.MultiIndex.from_frame(clicks)
    conv_keys = pd.MultiIndex.from_frame(convs)
    click_matched = click_keys.isin(imp_keys)
    conv_matched = conv_keys.isin(imp_keys)
    counts.orphan_clicks = int((~click_matched).sum())
    counts.orphan_conversions = int((~conv_matched).sum())

    out = imps[["request_id", "ts", "user_id", "item_id", "position", "device", "model_version"]]
    out = out.copy()
    # A conversion implies a click even when the click event itself was lost.
    out["converted"] = imp_keys.isin(conv_keys).astype("int8")
    out["clicked"] = (imp_keys.isin(click_keys) | (out["converted"].to_numpy() == 1)).astype("int8")
    out["position"] = out["position"].fillna(-1).astype("int32")
    out["device"] = out["device"].fillna("unknown")
    for col in ("request_id", "user_id", "item_id", "device", "model_version"):
        out[col] = out[col].astype("string")
    # Numeric keys only (fast); ties keep the deterministic file order.
    out = out.sort_values(["ts", "position"], kind="stable")
    out = out.reset_index(drop=True)[list(VALIDATED_COLUMNS)]

    counts.impressions = len(out)
    counts.clicks = int(out["clicked"].sum())
    counts.conversions = int(out["converted"].sum())
    per_user = out.groupby("user_id", observed=True).size()
    counts.users = len(per_user)
    counts.single_event_users = int((per_user == 1).sum())
    counts.items = int(out["item_id"].nunique())
    if items is not None:
        counts.items_not_in_catalog = int((~out["item_id"].isin(items["item_id"])).sum())
    if users is not None:
        counts.users_not_in_profiles = int((~out["user_id"].isin(users["user_id"])).sum())
    return out, counts


def clean_snapshot(landed: LandedTable, key: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """A users/items snapshot: drop rows without a key, keep the first row per key."""
    df = landed.frame.drop(columns=["_file"])
    null_keys = int(df[key].isna().sum())
    df = df[df[key].notna()].sort_values(key, kind="stable")
    dup = df.duplicated(key, keep="first")
    df = df[~dup].reset_index(drop=True)
    return df, {"rows": len(df), "null_keys": null_keys, "duplicate_keys": int(dup.sum())}
