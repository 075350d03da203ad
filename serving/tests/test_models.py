"""Loading a registry version: verified, smoke-tested, and scored exactly as the model would."""

from __future__ import annotations

import numpy as np
import pytest

from reckit_assets.core.features import online
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.training.base import load_model
from serving.features import OnlineFeatures
from serving.models import ModelLoadError, check_feature_rows, load_version


@pytest.fixture(scope="module")
def features(demo) -> OnlineFeatures:
    return OnlineFeatures(online.load(LocalStorage(demo.registry_uri)))


@pytest.mark.parametrize("name", ["xgboost", "deepfm"])
def test_serving_scores_equal_the_models_own_predict(demo, features, name):
    registry = demo.registry
    for version in demo.versions[name]:
        loaded = load_version(registry, name, version)
        reference = load_model(name, registry.load_files(name, version))
        items = [*features.snapshot.items["item_id"][:60], "unknown-item"]
        for user in (str(features.snapshot.users["user_id"].iloc[0]), "unknown-user"):
            expected = reference.predict(features.reference(user, items, "ios"))
            # What /v1/rank does (xgboost: a float32 matrix; others: the feature frame)...
            served = loaded.score_request(features, user, items, "ios")
            np.testing.assert_array_equal(served, expected)
            # ...and what /predict does with the frame.
            frame = features.assemble(user, items, "ios", loaded.input_columns)
            np.testing.assert_array_equal(loaded.score(frame), expected)


def test_input_columns_are_the_models_own(demo):
    xgb = load_version(demo.registry, "xgboost", demo.versions["xgboost"][0])
    assert list(xgb.input_columns) == xgb.model.feature_columns  # feature_meta.json's order
    dfm = load_version(demo.registry, "deepfm", demo.versions["deepfm"][0])
    assert {"user_id", "item_id", "device", "item_ctr"} <= set(dfm.input_columns)


def test_a_corrupt_version_is_refused_and_says_which_file(registry, registry_dir, demo):
    version = demo.versions["xgboost"][1]
    path = registry_dir / "xgboost" / "versions" / version / "files" / "xgb_model.json"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"xgb_model\.json sha256 mismatch") as info:
        load_version(registry, "xgboost", version)
    assert info.value.permanent


def test_an_unknown_version_is_a_retryable_error(registry):
    with pytest.raises(ModelLoadError, match="no manifest") as info:
        load_version(registry, "xgboost", "xgboost-nope")
    assert not info.value.permanent


def test_feature_rows_are_checked_column_by_column(demo):
    model = load_version(demo.registry, "xgboost", demo.versions["xgboost"][0])
    row = {c: 0.5 for c in model.input_columns}
    frame, problems, filled = check_feature_rows([row, row], model)
    assert problems == [] and frame.shape == (2, len(model.input_columns)) and filled == {}

    partial = {k: v for k, v in row.items() if k not in ("item_ctr", "user_age")}
    _, problems, _ = check_feature_rows([row, partial], model)
    assert "missing feature column(s) ['item_ctr', 'user_age']" in problems[0]
    frame, problems, filled = check_feature_rows([row, partial], model, fill_missing=True)
    assert problems == [] and filled == {"item_ctr": 1, "user_age": 1}
    assert frame.loc[1, "item_ctr"] == 0.0 and frame.loc[0, "item_ctr"] == 0.5

    _, problems, _ = check_feature_rows(
        [{**row, "item_price": "cheap"}, {**row, "user_ctr": True}], model
    )
    finite = "must be a number finite in float32 (|x| <= 3.40282e+38), got"
    assert problems == [
        f"row 0: item_price {finite} a string of 5 characters",
        f"row 1: user_ctr {finite} True",
    ]
    _, problems, _ = check_feature_rows([{**row, "item_ctr": float("nan")}], model)
    assert problems == [f"row 0: item_ctr {finite} nan"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (3.4028234663852886e38, True),  # float32's largest
        (-3.4028234663852886e38, True),
        (3.5e38, False),  # finite in float64, inf in float32: refused, never scored
        (1.7e308, False),
        (-1e300, False),
        (10**39, False),
        (1e-45, True),  # underflows to 0 in float32: still a number
    ],
)
def test_inputs_must_be_finite_in_the_models_float32(demo, value, ok):
    model = load_version(demo.registry, "xgboost", demo.versions["xgboost"][0])
    row = {c: 0.5 for c in model.input_columns}
    frame, problems, _ = check_feature_rows([{**row, "item_ctr": value}], model)
    assert (problems == []) is ok, problems
    if ok:
        assert np.isfinite(frame.to_numpy(dtype=np.float32)).all()
        assert np.isfinite(model.score(frame)).all()


def test_positional_rows_follow_feature_columns_and_deepfm_refuses_them(demo):
    xgb = load_version(demo.registry, "xgboost", demo.versions["xgboost"][0])
    row = {c: 0.1 * k for k, c in enumerate(xgb.input_columns)}
    by_name, _, _ = check_feature_rows([row], xgb)
    by_position, problems, _ = check_feature_rows([list(row.values())], xgb)
    assert problems == [] and by_position.equals(by_name)
    _, problems, _ = check_feature_rows([[0.1, 0.2]], xgb)
    assert "2 values" in problems[0] and "in this order" in problems[0]

    deepfm = load_version(demo.registry, "deepfm", demo.versions["deepfm"][0])
    _, problems, _ = check_feature_rows([[0.0] * len(deepfm.input_columns)], deepfm)
    assert "cannot carry" in problems[0] and "/v1/rank" in problems[0]
