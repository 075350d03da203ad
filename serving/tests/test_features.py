"""The serving fast path gives exactly assemble_features' features: no train/serve skew."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from reckit_assets.core.features import online
from reckit_assets.core.features.spec import BY_NAME, DENSE_COLUMNS, GENDER_UNKNOWN
from reckit_assets.core.io.storage import LocalStorage
from serving.features import OnlineFeatures


@pytest.fixture(scope="module")
def snapshot(demo) -> online.OnlineSnapshot:
    full = online.load(LocalStorage(demo.registry_uri))
    # Make every kind of id occur: users/items with statistics but no profile/catalog row (drop
    # a few profiles and catalog rows) besides profile-only ones and complete ones; and users
    # with statistics on the unknown category (items that were not in the catalog).
    features = full.features
    pairs = getattr(features, "user_categories", None)
    if pairs is not None:
        extra = pairs.drop_duplicates("user_id").head(10).copy()
        extra = extra[~extra["user_id"].isin(pairs.loc[pairs["item_category"] == "", "user_id"])]
        extra["item_category"] = pd.array([""] * len(extra), dtype=pairs["item_category"].dtype)
        extra["user_category_ctr"] = 0.123
        pairs = pd.concat([pairs, extra], ignore_index=True)
        features = replace(features, user_categories=pairs)
    return replace(
        full, features=features, users=full.users.iloc[5:].copy(), items=full.items.iloc[3:].copy()
    )


@pytest.fixture(scope="module")
def features(snapshot) -> OnlineFeatures:
    return OnlineFeatures(snapshot)


def _kinds_of_ids(snapshot) -> tuple[list[str], list[str]]:
    stats_users = set(snapshot.features.users["user_id"])
    profile_users = set(snapshot.users["user_id"])
    pairs = getattr(snapshot.features, "user_categories", None)
    unknown_category_users = (
        sorted(set(pairs.loc[pairs["item_category"] == "", "user_id"]) & stats_users)[:1]
        if pairs is not None
        else []
    )
    users = [
        *unknown_category_users,  # statistics on items outside the catalog
        sorted(stats_users & profile_users)[0],  # complete
        sorted(stats_users - profile_users)[0],  # statistics, no profile
        sorted(profile_users - stats_users)[0],  # profile, no activity in the window
        "never-seen-user",
        "",
    ]
    stats_items = set(snapshot.features.items["item_id"])
    catalog = set(snapshot.items["item_id"])
    items = [
        *sorted(stats_items & catalog)[:40],
        *sorted(stats_items - catalog)[:2],
        *sorted(catalog - stats_items)[:2],
        "never-seen-item",
        "another unknown item",
    ]
    return users, items


def test_the_fast_path_covers_every_column(features):
    # Fails when assemble_features grows a column serving does not know how to gather: the
    # service then falls back to assemble_features per request (correct, slow) until taught.
    assert features.fast and features.uncovered == []


@pytest.mark.parametrize("device", ["ios", "web", None])
def test_fast_features_equal_assemble_features(snapshot, features, device):
    users, items = _kinds_of_ids(snapshot)
    for user in users:
        fast = features.assemble(user, items, device)
        reference = features.reference(user, items, device)
        pd.testing.assert_frame_equal(fast, reference, check_exact=True)


def test_per_user_category_features_are_exercised(snapshot, features):
    if "user_category_ctr" not in features.columns:
        pytest.skip("the feature code has no (user, category) features")
    users, items = _kinds_of_ids(snapshot)
    seen = features.reference(users[0], items, None)
    # Both the pair rows and the per-user fallback occur in the requests compared above.
    assert (seen["user_category_impressions_7d"] > 0).any()
    assert (seen["user_category_impressions_7d"] == 0).any()
    assert (seen["user_category_ctr"] == 0.123).any()  # the unknown-category pair


def test_a_column_subset_is_the_same_subset(snapshot, features):
    users, items = _kinds_of_ids(snapshot)
    subset = ["cross_gender_x_price", "item_ctr", "user_id", "device"]
    pd.testing.assert_frame_equal(
        features.assemble(users[0], items, "ios", subset),
        features.reference(users[0], items, "ios")[subset],
        check_exact=True,
    )


def test_the_dense_matrix_equals_the_frame_as_float32(snapshot, features):
    users, items = _kinds_of_ids(snapshot)
    columns = list(DENSE_COLUMNS)
    for user in users:
        reference = features.reference(user, items, None)[columns].to_numpy(dtype=np.float32)
        np.testing.assert_array_equal(features.dense_matrix(user, items, columns), reference)


def test_unknown_users_and_items_get_spec_defaults_and_window_priors(snapshot, features):
    priors = snapshot.features.priors
    row = features.assemble("never-seen-user", ["never-seen-item"], "ios").iloc[0]
    assert row["item_ctr"] == priors.ctr and row["user_ctr"] == priors.ctr
    assert row["item_cvr"] == priors.cvr
    assert row["user_age"] == BY_NAME["user_age"].default
    assert row["item_price"] == BY_NAME["item_price"].default
    assert row["user_gender"] == GENDER_UNKNOWN
    assert row["item_impressions_7d"] == 0.0 and row["user_impressions_7d"] == 0.0
    assert row["is_new_user"] == 1 and row["is_new_item"] == 1
    assert row["position"] == 0.0
    assert features.novelty("never-seen-user", ["never-seen-item", "x"]) == (True, 2)


def test_dense_columns_are_finite_for_any_request(features):
    frame = features.assemble("u", ["a", "b"], None, DENSE_COLUMNS)
    assert np.isfinite(frame.to_numpy(dtype=float)).all()
