"""Point-in-time feature computation, shared by sample building and serving.

Day d's statistics come only from the daily activity of days d-7 .. d-1, so a sample never sees
its own day's labels. The online snapshot served for day d+1 is the same computation over the
window ending on d.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reckit_assets.core.feature_spec import (
    BY_NAME,
    CTR_PRIOR_STRENGTH,
    GENDER_CODES,
    GENDER_UNKNOWN,
    LABEL_COLUMN,
    sample_columns,
)

ITEM_STAT_COLUMNS = ("item_id", "impressions", "clicks", "conversions")
USER_STAT_COLUMNS = ("user_id", "impressions", "clicks", "conversions")


@dataclass(frozen=True)
class Priors:
    """Global rates of the window: the smoothing prior and the value for unseen users/items."""

    ctr: float
    cvr: float
    impressions: int

    def as_dict(self) -> dict[str, float]:
        return {"ctr": self.ctr, "cvr": self.cvr, "impressions": self.impressions}


@dataclass
class FeatureTables:
    items: pd.DataFrame  # item_id, item_impressions_7d, item_ctr, item_cvr
    users: pd.DataFrame  # user_id, user_impressions_7d, user_ctr
    priors: Priors


# Used when a window has no impressions at all (the first days): a neutral, documented prior.
DEFAULT_PRIORS = Priors(ctr=0.05, cvr=0.1, impressions=0)


def daily_activity(validated: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-item and per-user impressions, clicks and conversions of one day."""

    def agg(by: str) -> pd.DataFrame:
        g = validated.groupby(by, observed=True, sort=True)
        out = pd.DataFrame(
            {
                "impressions": g.size(),
                "clicks": g["clicked"].sum(),
                "conversions": g["converted"].sum(),
            }
        ).astype("int64")
        out.index = out.index.astype("string")
        return out.reset_index()

    return agg("item_id"), agg("user_id")


def _sum_window(frames: list[pd.DataFrame], key: str) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(
            {key: pd.Series(dtype="string"), "impressions": [], "clicks": [], "conversions": []}
        ).astype({"impressions": "int64", "clicks": "int64", "conversions": "int64"})
    total = pd.concat(frames, ignore_index=True).groupby(key, sort=True).sum(numeric_only=True)
    total.index = total.index.astype("string")
    return total.reset_index()


def point_in_time_features(
    item_days: list[pd.DataFrame], user_days: list[pd.DataFrame]
) -> FeatureTables:
    """Window statistics -> smoothed rates. ``*_days`` are daily_activity outputs of the window."""
    items = _sum_window(item_days, "item_id")
    users = _sum_window(user_days, "user_id")
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
    return FeatureTables(items=item_feats, users=user_feats, priors=priors)


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
    return out[sample_columns()].reset_index(drop=True)
