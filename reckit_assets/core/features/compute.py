"""Point-in-time feature computation, shared by sample building and serving.

Day d's statistics come only from the daily activity of days d-7 .. d-1, so a sample never sees
its own day's labels. The online snapshot served for day d+1 is the same computation over the
window ending on d.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reckit_assets.core.features.spec import (
    BY_NAME,
    CTR_PRIOR_STRENGTH,
    GENDER_CODES,
    GENDER_UNKNOWN,
    LABEL_COLUMN,
    sample_columns,
)

# A user's taste for a category is learnt from few impressions: shrink towards the user's own
# CTR with a weaker prior than the global one.
USER_CATEGORY_PRIOR_STRENGTH = 5.0
UNKNOWN_CATEGORY = ""


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
    # user_id, item_category, user_category_impressions_7d, user_category_ctr
    user_categories: pd.DataFrame | None = None


# Used when a window has no impressions at all (the first days): a neutral, documented prior.
DEFAULT_PRIORS = Priors(ctr=0.05, cvr=0.1, impressions=0)


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
    return out[sample_columns()].reset_index(drop=True)
