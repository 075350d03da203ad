"""The one declarative feature spec: sample building, training, evaluation and serving read it.

reckit's existing ``FEATURE_COLUMNS`` are kept by name so its model files and clients work as is.
Point-in-time statistics (``*_7d``, ``*_28d``, CTRs) come only from days strictly before the
sample's day.

Cold start (what a user or item the window has not seen gets, in training and serving alike):
a **new user** (no impression in the 7-day window: ``is_new_user`` = 1) has ``user_ctr`` =
the window's CTR, ``user_impressions_7d`` = 0, ``user_category_ctr`` = ``user_ctr``; a user
unseen in the 28-day window also has ``user_ctr_28d`` = the long window's CTR,
``user_impressions_28d`` = 0 and ``user_category_ctr_28d`` = ``user_ctr_28d``; missing
profile attributes take the defaults below (age 0, gender 0.5). A **new item**
(``is_new_item`` = 1) has ``item_ctr`` / ``item_cvr`` = the window's rates and 0 impressions;
unseen in 28 days, ``item_ctr_28d`` / ``item_cvr_28d`` = the long window's rates. The
evaluation reports the lift over the item-CTR prior for new, returning and 28-day-unseen
users separately (``slice_lift``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # "dense" (float) | "categorical" (small vocabulary) | "id" (large vocabulary)
    default: float | str
    description: str
    # For categorical/id fields: values seen fewer than min_count times in training map to the
    # reserved out-of-vocabulary bucket (index 0), as do values never seen (new users, items).
    min_count: int = 1


WINDOW_DAYS = 7
# The long window of the target encodings (``*_28d``): a real site's users and items come back
# over weeks, and a 7-day rate of a movie rated a few times a week is mostly noise. Measured on
# two MovieLens datasets (docs/benchmarks.md, "Model quality"): +0.01 to +0.015 AUC over the
# 7-day features alone.
LONG_WINDOW_DAYS = 28
CTR_PRIOR_STRENGTH = 20.0  # pseudo-impressions of the global prior in smoothed rates
GENDER_CODES = {"F": 1.0, "M": 0.0}
GENDER_UNKNOWN = 0.5

FEATURES: tuple[Feature, ...] = (
    # reckit's FEATURE_COLUMNS, in reckit's order
    Feature("item_ctr", "dense", 0.0, "smoothed item click-through rate over the 7 days before dt"),
    Feature(
        "item_cvr", "dense", 0.0, "smoothed item conversions per click over the 7 days before dt"
    ),
    Feature("item_price", "dense", 0.0, "item price in the day's catalog snapshot"),
    Feature("user_age", "dense", 0.0, "user age in years (0 when unknown)"),
    Feature("user_gender", "dense", GENDER_UNKNOWN, "F=1, M=0, unknown=0.5"),
    Feature("cross_age_x_ctr", "dense", 0.0, "user_age x item_ctr"),
    Feature("cross_gender_x_price", "dense", 0.0, "user_gender x item_price"),
    # extra dense features
    Feature("user_ctr", "dense", 0.0, "smoothed user click-through rate over the 7 days before dt"),
    Feature("item_impressions_7d", "dense", 0.0, "log1p of the item's impressions in the window"),
    Feature("user_impressions_7d", "dense", 0.0, "log1p of the user's impressions in the window"),
    Feature(
        "user_category_ctr",
        "dense",
        0.0,
        "the user's smoothed CTR on the item's category over the 7 days before dt",
    ),
    Feature(
        "user_category_impressions_7d",
        "dense",
        0.0,
        "log1p of the user's impressions of the item's category in the window",
    ),
    Feature("position", "dense", 0.0, "slot the item was shown in (0 at serving: ranking decides)"),
    # Target encodings over the long window, shrunk by empirical Bayes: each level's prior
    # strength is fitted on the window (beta-binomial method of moments), towards the level above.
    Feature(
        "item_ctr_28d",
        "dense",
        0.0,
        "item CTR over the 28 days before dt, shrunk towards its category's CTR (new item: the "
        "window's CTR)",
    ),
    Feature(
        "item_cvr_28d",
        "dense",
        0.0,
        "item conversions per impression over the 28 days before dt, shrunk towards the window's",
    ),
    Feature("item_impressions_28d", "dense", 0.0, "log1p of the item's impressions in 28 days"),
    Feature(
        "user_ctr_28d",
        "dense",
        0.0,
        "user CTR over the 28 days before dt, shrunk towards the window's CTR (new user: the "
        "window's CTR)",
    ),
    Feature("user_impressions_28d", "dense", 0.0, "log1p of the user's impressions in 28 days"),
    Feature(
        "user_category_ctr_28d",
        "dense",
        0.0,
        "the user's CTR on the item's category over 28 days, shrunk towards user_ctr_28d "
        "(a category the user has not seen: user_ctr_28d)",
    ),
    # sparse fields (DeepFM embeddings)
    Feature("user_id", "id", "", "user identifier", min_count=2),
    Feature("item_id", "id", "", "item identifier", min_count=2),
    Feature("item_category", "categorical", "", "item category"),
    Feature("user_region", "categorical", "", "user region"),
    Feature("device", "categorical", "", "device of the request"),
)

RECKIT_FEATURE_COLUMNS: tuple[str, ...] = (
    "item_ctr",
    "item_cvr",
    "item_price",
    "user_age",
    "user_gender",
    "cross_age_x_ctr",
    "cross_gender_x_price",
)
DENSE_COLUMNS: tuple[str, ...] = tuple(f.name for f in FEATURES if f.kind == "dense")
SPARSE_COLUMNS: tuple[str, ...] = tuple(f.name for f in FEATURES if f.kind in ("id", "categorical"))
LABEL_COLUMN = "label"
# Carried with every sample for evaluation (GAUC per user, slices), never fed to a model.
CONTEXT_COLUMNS: tuple[str, ...] = ("request_id", "ts", "converted", "is_new_user", "is_new_item")
BY_NAME = {f.name: f for f in FEATURES}


def sample_columns() -> list[str]:
    """Column order of the training-samples table."""
    return [*CONTEXT_COLUMNS, *SPARSE_COLUMNS, *DENSE_COLUMNS, LABEL_COLUMN]
