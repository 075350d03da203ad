"""The pandas data layer as it was before the switch to Polars, kept verbatim for tests only.

The equivalence tests run these next to the current data layer on messy simulated days and
assert the same counts, labels, features and samples (the golden reference). Not imported by the
package.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reckit_assets.core.features.compute import (
    DEFAULT_PRIORS,
    UNKNOWN_CATEGORY,
    USER_CATEGORY_PRIOR_STRENGTH,
    FeatureTables,
    Priors,
)
from reckit_assets.core.features.spec import (
    BY_NAME,
    CTR_PRIOR_STRENGTH,
    GENDER_CODES,
    GENDER_UNKNOWN,
    LABEL_COLUMN,
    sample_columns,
)
from reckit_assets.core.ingest.events import VALIDATED_COLUMNS, EventCounts
from reckit_assets.core.ingest.landing import (
    EVENT_TYPES,
    SCHEMAS,
    Column,
    ContractIssue,
    _partition_files,
)
from reckit_assets.core.io.frames import parquet_bytes_to_frame, read_csv_bytes
from reckit_assets.core.io.storage import Storage, sha256_bytes


@dataclass
class LandedTable:
    table: str
    dt: str
    frame: pd.DataFrame
    files: list[dict] = field(default_factory=list)
    issues: list[ContractIssue] = field(default_factory=list)
    missing_optional: list[str] = field(default_factory=list)


SESSION_GAP = pd.Timedelta(minutes=30)


def day_bounds(dt: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(dt, tz="UTC")
    return start, start + pd.Timedelta(days=1)


def _coerce(df: pd.DataFrame, col: Column, file: str, table: str) -> tuple[pd.Series, list]:
    raw = df[col.name]
    issues = []
    was_null = raw.isna()
    if col.kind == "str":
        out = raw.astype("string").str.strip()
        out = out.mask(out == "")
    elif col.kind == "timestamp":
        textual = pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw)
        if pd.api.types.is_numeric_dtype(raw) or (
            textual
            and raw.notna().any()
            and raw.dropna().astype("string").str.strip().str.fullmatch(r"-?\d+").all()
        ):
            # Epoch milliseconds, as numbers or (from CSV) as digit strings.
            out = pd.to_datetime(
                pd.to_numeric(raw, errors="coerce"), unit="ms", utc=True, errors="coerce"
            )
        else:
            out = pd.to_datetime(raw, utc=True, errors="coerce", format="mixed")
        bad = int((out.isna() & ~was_null).sum())
        if bad:
            issues.append(ContractIssue(table, file, col.name, "is not a UTC timestamp", bad))
    else:
        out = pd.to_numeric(raw, errors="coerce")
        bad = int((out.isna() & ~was_null).sum())
        if bad:
            issues.append(ContractIssue(table, file, col.name, f"is not {col.kind}", bad))
        if col.kind == "int":
            frac = out.notna() & (out != np.floor(out.fillna(0)))
            if frac.any():
                issues.append(ContractIssue(table, file, col.name, "is not int", int(frac.sum())))
            out = out.round().astype("Int64")
        else:
            out = out.astype("float64")
    if col.is_id:
        nulls = int(out.isna().sum())
        if nulls:
            issues.append(ContractIssue(table, file, col.name, "has null IDs", nulls))
    return out, issues


def read_landed(storage: Storage, table: str, dt: str) -> LandedTable:
    """Read every data file of one table's partition, coerce the contract's types, list issues.

    Rows are never dropped here; the issues say which file and column broke the contract and how
    many rows are affected. Extra columns are ignored; missing optional ones are added as nulls.
    """
    schema = SCHEMAS[table]
    result = LandedTable(table=table, dt=dt, frame=_empty(table))
    frames = []
    missing_optional: set[str] = set()
    files, unknown = _partition_files(storage, table, dt)
    for key in unknown:
        # Silently skipping e.g. Hive's 000000_0 or .csv.gz would look like a day of no traffic.
        result.issues.append(
            ContractIssue(
                table, key, "*", "is not .parquet or .csv: not read (convert or remove it)", 0
            )
        )
    for info in files:
        data = storage.read_bytes(info.key)
        file = f"{table}/dt={dt}/{info.key.rsplit('/', 1)[-1]}"
        try:
            df = (
                parquet_bytes_to_frame(data)
                if info.key.endswith(".parquet")
                else read_csv_bytes(data)
            )
        except Exception as exc:  # a torn or foreign file: say which one
            result.issues.append(ContractIssue(table, file, "*", f"is unreadable: {exc}", 0))
            continue
        result.files.append({"key": file, "rows": len(df), "sha256": sha256_bytes(data)})
        typed = {}
        for col in schema:
            if col.name not in df.columns:
                if col.required:
                    result.issues.append(
                        ContractIssue(table, file, col.name, "is missing", len(df))
                    )
                else:
                    missing_optional.add(col.name)
                continue
            typed[col.name], issues = _coerce(df, col, file, table)
            result.issues.extend(issues)
        if any(c.required and c.name not in typed for c in schema):
            continue
        out = pd.DataFrame(typed)
        for col in schema:
            if col.name not in out.columns:
                out[col.name] = pd.Series([pd.NA] * len(out), dtype="string")
        out["_file"] = file
        frames.append(out[[c.name for c in schema] + ["_file"]])
    if frames:
        result.frame = pd.concat(frames, ignore_index=True)
    result.missing_optional = sorted(missing_optional)
    return result


def _empty(table: str) -> pd.DataFrame:
    dtypes = {
        "str": "string",
        "int": "Int64",
        "float": "float64",
        "timestamp": "datetime64[ns, UTC]",
    }
    cols = {c.name: pd.Series(dtype=dtypes[c.kind]) for c in SCHEMAS[table]}
    cols["_file"] = pd.Series(dtype="string")
    return pd.DataFrame(cols)


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


def daily_activity(
    validated: pd.DataFrame, items: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-item, per-user and per-(user, category) impressions, clicks and conversions of a day.

    The category comes from the same day's catalog snapshot; items missing from it count under
    the unknown category.
    """

    def agg(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
        g = frame.groupby(by, observed=True, sort=True)
        out = pd.DataFrame(
            {
                "impressions": g.size(),
                "clicks": g["clicked"].sum(),
                "conversions": g["converted"].sum(),
            }
        ).astype("int64")
        out = out.reset_index()
        for col in by:
            out[col] = out[col].astype("string")
        return out

    categories = items.set_index("item_id")["category"].astype("string")
    with_category = validated.assign(
        item_category=validated["item_id"].map(categories).fillna(UNKNOWN_CATEGORY).astype("string")
    )
    return (
        agg(validated, ["item_id"]),
        agg(validated, ["user_id"]),
        agg(with_category, ["user_id", "item_category"]),
    )


def _sum_window(frames: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        empty = {k: pd.Series(dtype="string") for k in keys}
        empty.update(
            {c: pd.Series(dtype="int64") for c in ("impressions", "clicks", "conversions")}
        )
        return pd.DataFrame(empty)
    total = pd.concat(frames, ignore_index=True).groupby(keys, sort=True).sum(numeric_only=True)
    total = total.reset_index()
    for key in keys:
        total[key] = total[key].astype("string")
    return total


def point_in_time_features(
    item_days: list[pd.DataFrame],
    user_days: list[pd.DataFrame],
    user_category_days: list[pd.DataFrame] | None = None,
) -> FeatureTables:
    """Window statistics -> smoothed rates. ``*_days`` are daily_activity outputs of the window."""
    items = _sum_window(item_days, ["item_id"])
    users = _sum_window(user_days, ["user_id"])
    user_cats = _sum_window(user_category_days or [], ["user_id", "item_category"])
    imps = int(items["impressions"].sum())
    if imps:
        clicks = int(items["clicks"].sum())
        ctr = clicks / imps
        cvr = int(items["conversions"].sum()) / clicks if clicks else DEFAULT_PRIORS.cvr
        priors = Priors(ctr=float(ctr), cvr=float(cvr), impressions=imps)
    else:
        priors = DEFAULT_PRIORS
    a = CTR_PRIOR_STRENGTH
    item_feats = pd.DataFrame(
        {
            "item_id": items["item_id"],
            "item_impressions_7d": np.log1p(items["impressions"].to_numpy(dtype="float64")),
            "item_ctr": (items["clicks"] + a * priors.ctr) / (items["impressions"] + a),
            "item_cvr": (items["conversions"] + a * priors.cvr) / (items["clicks"] + a),
        }
    )
    user_feats = pd.DataFrame(
        {
            "user_id": users["user_id"],
            "user_impressions_7d": np.log1p(users["impressions"].to_numpy(dtype="float64")),
            "user_ctr": (users["clicks"] + a * priors.ctr) / (users["impressions"] + a),
        }
    )
    # Shrink each (user, category) rate towards the user's own smoothed CTR.
    user_cats = user_cats.merge(user_feats[["user_id", "user_ctr"]], on="user_id", how="left")
    b = USER_CATEGORY_PRIOR_STRENGTH
    user_cat_feats = pd.DataFrame(
        {
            "user_id": user_cats["user_id"],
            "item_category": user_cats["item_category"],
            "user_category_impressions_7d": np.log1p(
                user_cats["impressions"].to_numpy(dtype="float64")
            ),
            "user_category_ctr": (
                user_cats["clicks"] + b * user_cats["user_ctr"].fillna(priors.ctr)
            )
            / (user_cats["impressions"] + b),
        }
    )
    return FeatureTables(
        items=item_feats, users=user_feats, priors=priors, user_categories=user_cat_feats
    )


def assemble_features(
    requests: pd.DataFrame,
    features: FeatureTables,
    users: pd.DataFrame,
    items: pd.DataFrame,
) -> pd.DataFrame:
    """Rows of (user_id, item_id, device, position, ...) -> every feature of the spec.

    Used for training samples and, with position 0, by the inference service: one
    implementation, so training and serving cannot disagree. Unknown users and items get the
    spec's defaults and the window priors, and are flagged ``is_new_user`` / ``is_new_item``.
    """
    out = requests.reset_index(drop=True).copy()
    out = out.merge(features.items, on="item_id", how="left", validate="many_to_one")
    out = out.merge(features.users, on="user_id", how="left", validate="many_to_one")
    out["is_new_item"] = out["item_ctr"].isna().astype("int8")
    out["is_new_user"] = out["user_ctr"].isna().astype("int8")
    out["item_ctr"] = out["item_ctr"].fillna(features.priors.ctr)
    out["item_cvr"] = out["item_cvr"].fillna(features.priors.cvr)
    out["user_ctr"] = out["user_ctr"].fillna(features.priors.ctr)
    out["item_impressions_7d"] = out["item_impressions_7d"].fillna(0.0)
    out["user_impressions_7d"] = out["user_impressions_7d"].fillna(0.0)

    user_attrs = users[["user_id", "age", "gender", "region"]].rename(
        columns={"age": "user_age", "gender": "_gender", "region": "user_region"}
    )
    item_attrs = items[["item_id", "category", "price"]].rename(
        columns={"category": "item_category", "price": "item_price"}
    )
    out = out.merge(user_attrs, on="user_id", how="left", validate="many_to_one")
    out = out.merge(item_attrs, on="item_id", how="left", validate="many_to_one")
    out["item_category"] = out["item_category"].astype("string").fillna(UNKNOWN_CATEGORY)
    if features.user_categories is not None:
        out = out.merge(
            features.user_categories,
            on=["user_id", "item_category"],
            how="left",
            validate="many_to_one",
        )
    else:
        out["user_category_ctr"] = np.nan
        out["user_category_impressions_7d"] = np.nan
    # A category the user has not seen in the window: the user's own CTR is the best guess.
    out["user_category_ctr"] = out["user_category_ctr"].fillna(out["user_ctr"])
    out["user_category_impressions_7d"] = out["user_category_impressions_7d"].fillna(0.0)
    out["user_age"] = out["user_age"].astype("float64").fillna(BY_NAME["user_age"].default)
    out["user_gender"] = out["_gender"].map(GENDER_CODES).astype("float64").fillna(GENDER_UNKNOWN)
    out["item_price"] = out["item_price"].astype("float64").fillna(BY_NAME["item_price"].default)
    out["cross_age_x_ctr"] = out["user_age"] * out["item_ctr"]
    out["cross_gender_x_price"] = out["user_gender"] * out["item_price"]
    out["position"] = out["position"].astype("float64").clip(lower=0)
    for col in ("user_id", "item_id", "item_category", "user_region", "device"):
        out[col] = out[col].astype("string").fillna("")
    return out.drop(columns=["_gender"])


def build_samples(
    validated: pd.DataFrame,
    features: FeatureTables,
    users: pd.DataFrame,
    items: pd.DataFrame,
) -> pd.DataFrame:
    """Labelled impressions of day d + point-in-time features of day d -> training samples."""
    base = validated.rename(columns={"clicked": LABEL_COLUMN})
    out = assemble_features(base, features, users, items)
    out[LABEL_COLUMN] = out[LABEL_COLUMN].astype("int8")
    out["converted"] = out["converted"].astype("int8")
    # The columns of that time: the long-window target encodings came after (issue 20).
    legacy = [c for c in sample_columns() if not c.endswith("_28d")]
    return out[legacy].reset_index(drop=True)


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
