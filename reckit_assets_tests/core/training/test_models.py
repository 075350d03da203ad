"""Model code: each model learns a known function, round-trips through its files without pickle,
and gives byte-identical artifacts when trained twice with the same seed."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from reckit_assets.core.evaluation import metrics
from reckit_assets.core.evaluation.next_item import evaluate_next_item, next_item_pairs
from reckit_assets.core.features.spec import (
    DENSE_COLUMNS,
    LABEL_COLUMN,
    RECKIT_FEATURE_COLUMNS,
    SPARSE_COLUMNS,
    sample_columns,
)
from reckit_assets.core.training import ArtifactError, Model, Ranker, load_model, split_by_time
from reckit_assets.core.training.baselines import ItemCTRPrior, PopularityRecommender
from reckit_assets.core.training.deepfm import DeepFMParams, DeepFMRanker, train_deepfm
from reckit_assets.core.training.item2vec import Item2Vec, Item2VecParams, train_item2vec
from reckit_assets.core.training.xgb_ranker import RECKIT_META_KEYS, XGBParams, train_xgb

N_USERS, N_ITEMS, N_CATS = 80, 60, 6


def synthetic_samples(n: int, seed: int) -> pd.DataFrame:
    """Samples in the spec's layout whose click probability is a known function of
    item quality (seen through item_ctr), position, device and a user x category affinity."""
    world = np.random.default_rng(1234)  # the same users and items for every split
    quality = world.normal(0, 1, N_ITEMS)
    affinity = world.normal(0, 1.2, (N_USERS, N_CATS))
    age = world.integers(18, 70, N_USERS).astype(float)
    price = np.round(np.exp(world.normal(3, 0.6, N_ITEMS)), 2)
    rng = np.random.default_rng(seed)
    u = rng.integers(0, N_USERS, n)
    i = rng.integers(0, N_ITEMS, n)
    cat = i % N_CATS
    device = rng.integers(0, 3, n)
    position = rng.integers(0, 10, n).astype(float)
    item_ctr = 1 / (1 + np.exp(-(quality[i] - 2.5))) + rng.normal(0, 0.005, n)
    logit = -2.0 + 1.2 * quality[i] + affinity[u, cat] - 0.2 * position + 0.4 * (device == 0)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    frame = pd.DataFrame(
        {
            "request_id": [f"r{seed}-{k // 8}" for k in range(n)],
            "ts": pd.Timestamp("2026-10-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s"),
            "converted": np.zeros(n, dtype=np.int8),
            "is_new_user": np.zeros(n, dtype=np.int8),
            "is_new_item": np.zeros(n, dtype=np.int8),
            "user_id": [f"u{x}" for x in u],
            "item_id": [f"i{x}" for x in i],
            "item_category": [f"c{x}" for x in cat],
            "user_region": [f"r{x % 3}" for x in u],
            "device": np.array(["ios", "android", "web"])[device],
            "item_ctr": item_ctr,
            "item_cvr": rng.uniform(0.05, 0.2, n),
            "item_price": price[i],
            "user_age": age[u],
            "user_gender": (u % 2).astype(float),
            "cross_age_x_ctr": age[u] * item_ctr,
            "cross_gender_x_price": (u % 2) * price[i],
            "user_ctr": rng.uniform(0.02, 0.08, n),
            "item_impressions_7d": rng.uniform(2, 8, n),
            "user_impressions_7d": rng.uniform(1, 6, n),
            "user_category_ctr": rng.uniform(0.02, 0.08, n),
            "user_category_impressions_7d": rng.uniform(0, 4, n),
            "item_ctr_28d": item_ctr + rng.normal(0, 0.002, n),
            "item_cvr_28d": rng.uniform(0.005, 0.02, n),
            "item_impressions_28d": rng.uniform(3, 9, n),
            "user_ctr_28d": rng.uniform(0.02, 0.08, n),
            "user_impressions_28d": rng.uniform(2, 7, n),
            "user_category_ctr_28d": rng.uniform(0.02, 0.08, n),
            "position": position,
            LABEL_COLUMN: label,
        }
    )
    return frame[sample_columns()]


@pytest.fixture(scope="module")
def splits() -> dict[str, pd.DataFrame]:
    return {
        "train": synthetic_samples(6000, seed=1),
        "valid": synthetic_samples(1500, seed=2),
        "test": synthetic_samples(3000, seed=3),
    }


FAST_XGB = XGBParams(n_estimators=60, early_stopping_rounds=10, max_depth=4)
FAST_DEEPFM = DeepFMParams(hidden=(32, 32), batch_size=256, max_epochs=4, lr=3e-3, device="cpu")


@pytest.fixture(scope="module")
def xgb_trained(splits):
    return train_xgb(splits["train"], splits["valid"], FAST_XGB)


@pytest.fixture(scope="module")
def deepfm_trained(splits):
    return train_deepfm(splits["train"], splits["valid"], FAST_DEEPFM)


def _auc(model: Ranker, frame: pd.DataFrame) -> float:
    return metrics.auc(frame[LABEL_COLUMN], model.predict(frame))


def assert_no_pickle(files: dict[str, bytes]) -> None:
    # Pickle protocols 2+ start with 0x80; our formats start with '{', '[', NumPy's magic or the
    # 8-byte safetensors header length, and every file must load with its pickle-free reader.
    for name, data in files.items():
        assert not data.startswith(b"\x80"), name
        if name.endswith(".json"):
            json.loads(data)
        elif name.endswith(".npy"):
            np.load(io.BytesIO(data), allow_pickle=False)
        elif name.endswith(".safetensors"):
            from safetensors.numpy import load

            assert load(data)
        else:
            pytest.fail(f"unexpected artifact file {name}")


# ---------------------------------------------------------------------------------------------
# Shared base.


def test_importing_model_modules_does_not_import_the_ml_libraries():
    code = (
        "import sys\n"
        "import reckit_assets.core.training as m\n"
        "import reckit_assets.core.training.xgb_ranker, reckit_assets.core.training.deepfm\n"
        "import reckit_assets.core.training.item2vec, reckit_assets.core.training.baselines\n"
        "import reckit_assets.core.evaluation.metrics\n"
        "heavy = [x for x in ('torch', 'xgboost', 'gensim', 'dagster') if x in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_model_rejects_unknown_kinds_and_missing_files():
    with pytest.raises(ArtifactError, match="unknown model kind"):
        load_model("svm", {})
    with pytest.raises(ArtifactError, match=r"xgb_model\.json"):
        load_model("xgboost", {"feature_meta.json": b'{"feature_columns": ["a"]}'})


def test_split_by_time_keeps_the_latest_rows_for_validation(splits):
    frame = splits["train"].sample(frac=1.0, random_state=0)
    train, valid = split_by_time(frame, 0.1)
    assert len(train) + len(valid) == len(frame)
    assert len(valid) == pytest.approx(0.1 * len(frame), abs=2)
    assert train["ts"].max() < valid["ts"].min()


# ---------------------------------------------------------------------------------------------
# XGBoost.


def test_xgb_learns_the_known_function(xgb_trained, splits):
    model, report = xgb_trained
    assert isinstance(model, Ranker)
    assert model.kind == "xgboost"
    assert _auc(model, splits["test"]) > 0.7
    assert report.history and report.seconds > 0
    assert report.best_iteration == report.extra["trees"] - 1
    assert model.booster.num_boosted_rounds() == report.best_iteration + 1
    assert report.extra["feature_importance_gain"]


def test_xgb_files_round_trip_and_have_reckit_meta(xgb_trained, splits):
    model, _ = xgb_trained
    files = model.files()
    assert set(files) == {"xgb_model.json", "feature_meta.json", "params.json"}
    assert_no_pickle(files)
    meta = json.loads(files["feature_meta.json"])
    assert tuple(sorted(meta)) == tuple(sorted(RECKIT_META_KEYS))
    assert meta["feature_columns"] == list(DENSE_COLUMNS)
    assert meta["feature_count"] == len(DENSE_COLUMNS)
    assert meta["label_column"] == LABEL_COLUMN and meta["normalized"] is False
    assert set(RECKIT_FEATURE_COLUMNS) <= set(meta["feature_columns"])
    loaded = load_model("xgboost", files)
    np.testing.assert_array_equal(loaded.predict(splits["test"]), model.predict(splits["test"]))
    assert loaded.params() == model.params()


def test_xgb_reckit_export_stamps_version_and_loads_like_reckit(xgb_trained, splits):
    import xgboost as xgb

    model, _ = xgb_trained
    files = model.reckit_export("v20261008", "2026-10-08T03:00:00+00:00")
    meta = json.loads(files["feature_meta.json"])
    assert meta["model_version"] == "v20261008"
    assert meta["created_at"] == "2026-10-08T03:00:00+00:00"
    # reckit: Booster().load_model(path), then DMatrix(bare array in feature_meta order).
    booster = xgb.Booster()
    booster.load_model(bytearray(files["xgb_model.json"]))
    x = splits["test"][meta["feature_columns"]].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(
        booster.predict(xgb.DMatrix(x)), model.predict(splits["test"]), rtol=1e-6
    )


def test_xgb_training_is_deterministic(xgb_trained, splits):
    model, _ = xgb_trained
    again, _ = train_xgb(splits["train"], splits["valid"], FAST_XGB)
    assert again.files() == model.files()


def test_xgb_reports_missing_columns_clearly(xgb_trained, splits):
    model, _ = xgb_trained
    with pytest.raises(ValueError, match="item_ctr"):
        model.predict(splits["test"].drop(columns=["item_ctr"]))


def test_xgb_can_train_on_reckit_columns_only(splits):
    params = XGBParams(
        n_estimators=20, early_stopping_rounds=5, feature_columns=RECKIT_FEATURE_COLUMNS
    )
    model, _ = train_xgb(splits["train"], splits["valid"], params)
    meta = json.loads(model.files()["feature_meta.json"])
    assert meta["feature_columns"] == list(RECKIT_FEATURE_COLUMNS)
    reckit_only = splits["test"][[*RECKIT_FEATURE_COLUMNS, LABEL_COLUMN]]
    assert _auc(load_model("xgboost", model.files()), reckit_only) > 0.65


# ---------------------------------------------------------------------------------------------
# DeepFM.


def test_deepfm_learns_the_known_function(deepfm_trained, xgb_trained, splits):
    model, report = deepfm_trained
    assert isinstance(model, Ranker)
    auc = _auc(model, splits["test"])
    assert auc > 0.7
    # The user x category affinity is only visible through the ids: DeepFM must use them.
    assert auc > _auc(xgb_trained[0], splits["test"])
    # One history row per evaluation: evals_per_epoch a epoch, steps increasing.
    assert 0 <= report.best_iteration < len(report.history)
    assert len(report.history) <= FAST_DEEPFM.max_epochs * FAST_DEEPFM.evals_per_epoch
    steps = [h["step"] for h in report.history]
    assert steps == sorted(set(steps))
    best = report.history[report.best_iteration]["valid_logloss"]
    assert best == min(h["valid_logloss"] for h in report.history)
    assert report.extra["device"] == "cpu"


def test_deepfm_files_round_trip_without_pickle(deepfm_trained, splits):
    model, _ = deepfm_trained
    files = model.files()
    assert set(files) == {"model.safetensors", "config.json", "vocab.json", "scaler.json"}
    assert_no_pickle(files)
    config = json.loads(files["config.json"])
    assert [f["name"] for f in config["sparse_fields"]] == list(SPARSE_COLUMNS)
    assert config["dense_fields"] == list(DENSE_COLUMNS)
    scaler = json.loads(files["scaler.json"])
    assert set(scaler) == set(DENSE_COLUMNS) and all(s["std"] > 0 for s in scaler.values())
    loaded = load_model("deepfm", files)
    assert isinstance(loaded, DeepFMRanker)
    np.testing.assert_array_equal(loaded.predict(splits["test"]), model.predict(splits["test"]))
    assert loaded.files() == files


def test_deepfm_training_is_deterministic_on_cpu(deepfm_trained, splits):
    import torch

    threads = torch.get_num_threads()
    model, _ = deepfm_trained
    again, _ = train_deepfm(splits["train"], splits["valid"], FAST_DEEPFM)
    assert again.files() == model.files()
    # The caller's torch settings are left as they were.
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_deepfm_unseen_and_rare_values_use_the_reserved_bucket(deepfm_trained, splits):
    model, _ = deepfm_trained
    pre = model.pre
    # Every training user and item occurs many times; min_count=2 keeps them all.
    assert len(pre.vocab["user_id"]) == splits["train"]["user_id"].nunique()
    cold = splits["test"].head(50).copy()
    cold["user_id"] = "u-never-seen"
    cold["item_id"] = "i-never-seen"
    cold["device"] = "smart-fridge"
    cold.loc[cold.index[:5], "item_price"] = np.nan  # missing dense value -> training mean
    idx = pre.encode_sparse(cold)
    offsets = dict(zip(pre.sparse_fields, pre.offsets, strict=True))
    for field in ("user_id", "item_id", "device"):
        assert (idx[:, pre.sparse_fields.index(field)] == offsets[field]).all()
    scores = model.predict(cold)
    assert np.isfinite(scores).all() and ((scores > 0) & (scores < 1)).all()


def test_deepfm_vocabulary_drops_values_below_min_count():
    from reckit_assets.core.training.deepfm import Preprocessor

    frame = synthetic_samples(200, seed=9)
    frame.loc[0, "user_id"] = "u-once"  # user_id has min_count=2 in the spec
    frame.loc[0, "device"] = "tv"  # device has min_count=1
    pre = Preprocessor.fit(frame)
    assert "u-once" not in pre.vocab["user_id"]
    assert "tv" in pre.vocab["device"]
    assert pre.encode_sparse(frame.head(1))[0, 0] == 0


# ---------------------------------------------------------------------------------------------
# item2vec and the popularity baseline.


def cluster_sessions(n: int, seed: int) -> list[list[str]]:
    """Sessions that stay inside one of 5 clusters of 12 items, popular items more often."""
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, 13) ** 0.8
    weights /= weights.sum()
    sessions = []
    for _ in range(n):
        c = rng.integers(0, 5)
        length = rng.integers(2, 6)
        sessions.append([f"c{c}-i{j}" for j in rng.choice(12, size=length, p=weights)])
    return sessions


# Pure cosine: these tests are about what the vectors learnt, not the popularity prior.
FAST_I2V = Item2VecParams(epochs=20, vector_size=16, popularity_weight=0.0)


@pytest.fixture(scope="module")
def item2vec_trained():
    return train_item2vec(cluster_sessions(800, seed=1), FAST_I2V)


def test_item2vec_learns_clusters_and_beats_popularity(item2vec_trained):
    model, report = item2vec_trained
    assert model.kind == "item2vec"
    assert isinstance(model, Model)
    assert report.extra["sessions"] == 800 and len(report.history) == FAST_I2V.epochs
    neighbours = model.similar("c0-i0", k=5)
    assert len(neighbours) == 5
    assert all(item.startswith("c0-") for item, _ in neighbours)
    assert "c0-i0" not in [item for item, _ in neighbours]
    test = cluster_sessions(300, seed=2)
    mine = evaluate_next_item(model, test, k=10)
    popular = evaluate_next_item(PopularityRecommender().fit(cluster_sessions(800, seed=1)), test)
    assert mine["pairs"] == popular["pairs"] > 0
    assert mine["hit_rate@10"] > 1.5 * popular["hit_rate@10"]
    assert mine["coverage"] == 1.0
    assert 0 < mine["recall@10"] <= 1


def test_item2vec_files_round_trip_without_pickle(item2vec_trained):
    model, _ = item2vec_trained
    files = model.files()
    assert set(files) == {
        "vectors.npy",
        "items.json",
        "item_counts.json",
        "params.json",
        "item2vec.json",
    }
    assert_no_pickle(files)
    vectors = np.load(io.BytesIO(files["vectors.npy"]), allow_pickle=False)
    assert vectors.dtype == np.float32 and vectors.shape == (len(model.items), 16)
    reckit = json.loads(files["item2vec.json"])
    assert list(reckit) == json.loads(files["items.json"])
    np.testing.assert_allclose(reckit["c0-i0"], model.vector("c0-i0"), atol=1e-6)
    loaded = load_model("item2vec", files)
    assert isinstance(loaded, Item2Vec)
    assert loaded.similar("c1-i3", 7) == model.similar("c1-i3", 7)
    assert loaded.files() == files


def test_item2vec_is_deterministic_across_processes(item2vec_trained):
    # Another process, with another str-hash seed, must produce the same vectors.
    model, _ = item2vec_trained
    code = (
        "import sys, hashlib\n"
        "from reckit_assets_tests.core.training.test_models import cluster_sessions, FAST_I2V\n"
        "from reckit_assets.core.training.item2vec import train_item2vec\n"
        "m, _ = train_item2vec(cluster_sessions(800, seed=1), FAST_I2V)\n"
        "print(hashlib.sha256(m.files()['vectors.npy']).hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONHASHSEED": "random", "PATH": ""},
    )
    import hashlib

    assert out.stdout.strip() == hashlib.sha256(model.files()["vectors.npy"]).hexdigest()


def test_item2vec_unknown_items_and_popularity_prior(item2vec_trained):
    model, _ = item2vec_trained
    assert model.similar("never-seen", 5) == []
    assert model.top_k(["never-seen", "c2-i1"], 3)[0] == []
    blended = load_model(
        "item2vec",
        {
            **model.files(),
            "params.json": json.dumps({**model.params(), "popularity_weight": 0.1}).encode(),
        },
    )
    cold, warm = blended.top_k(["never-seen", "c2-i1"], 3)
    most_clicked = [model.items[j] for j in np.argsort(-np.asarray(model.counts), kind="stable")]
    assert cold == most_clicked[:3]  # cold anchors fall back to popularity
    assert "c2-i1" not in warm and len(warm) == 3


def test_next_item_evaluation_counts_pairs_hits_and_recall():
    sessions = [["a", "b", "c"], ["a", "a", "d"], ["x"]]
    anchors, nexts, rests = next_item_pairs(sessions)
    # ("a", "a") is a re-click and is left out; ["x"] has no pair.
    assert list(zip(anchors, nexts, strict=True)) == [("a", "b"), ("b", "c"), ("a", "d")]
    assert rests == [{"b", "c"}, {"c"}, {"d"}]

    class Fixed:
        def top_k(self, anchors, k):
            return [["b"] if a == "a" else [] for a in anchors]

    out = evaluate_next_item(Fixed(), sessions, k=10)
    assert out["pairs"] == 3
    assert out["hit_rate@10"] == pytest.approx(1 / 3)
    assert out["recall@10"] == pytest.approx((1 / 2 + 0 + 0) / 3)
    assert out["coverage"] == pytest.approx(2 / 3)


def test_popularity_recommender_excludes_the_anchor_and_round_trips():
    pop = PopularityRecommender().fit([["a", "b"], ["a", "c"], ["a", "b", "d"]])
    assert pop.top_k(["a", "z"], 2) == [["b", "c"], ["a", "b"]]
    assert [i for i, _ in pop.similar("b", 2)] == ["a", "c"]
    files = pop.files()
    assert_no_pickle(files)
    assert load_model("popularity", files).top_k(["a"], 3) == [["b", "c", "d"]]


def test_item_ctr_prior_scores_with_the_item_ctr_feature(splits):
    prior = ItemCTRPrior()
    assert isinstance(prior, Ranker)
    frame = splits["test"]
    np.testing.assert_array_equal(prior.predict(frame), frame["item_ctr"].clip(0, 1).to_numpy())
    loaded = load_model("item_ctr_prior", prior.files())
    np.testing.assert_array_equal(loaded.predict(frame), prior.predict(frame))
    assert _auc(prior, frame) > 0.6  # item quality is part of the known function


def test_xgb_export_writes_base_score_in_the_form_xgboost_2_reads(xgb_trained, splits):
    # xgboost 3 writes "[5.1E-2]"; 2.x parses that as 0.5 with no error (serving -m compat
    # checks 2.1 itself). The export keeps the digits and drops the brackets.
    model, _ = xgb_trained
    raw = bytes(model.booster.save_raw(raw_format="json"))
    native = json.loads(raw)["learner"]["learner_model_param"]["base_score"]
    exported = model.reckit_export("v1", None)["xgb_model.json"]
    scalar = json.loads(exported)["learner"]["learner_model_param"]["base_score"]
    assert native.startswith("[") and scalar == native.strip("[]")
    assert len(raw) - len(exported) == 2  # nothing else changed
    loaded = load_model("xgboost", model.files())
    np.testing.assert_array_equal(loaded.predict(splits["test"]), model.predict(splits["test"]))


def test_deepfm_decays_the_learning_rate_on_a_plateau_and_keeps_the_best_step(splits):
    """Evaluations inside epochs; after ``lr_patience`` evaluations without a better validation
    logloss the rate drops by ``lr_decay``; the kept weights are the best evaluation's."""
    params = replace(FAST_DEEPFM, max_epochs=3, evals_per_epoch=3, patience=20, lr_patience=0)
    model, report = train_deepfm(splits["train"], splits["valid"], params)
    h = report.history
    assert len(h) == 9 and {r["epoch"] for r in h} == {0, 1, 2}
    best = float("inf")
    for before, after in pairwise(h):
        best = min(best, before["valid_logloss"])
        improved = before["valid_logloss"] <= best
        expected = before["lr"] if improved else before["lr"] * params.lr_decay
        assert after["lr"] == pytest.approx(expected), (before, after)
    assert h[0]["lr"] == params.lr
    kept = h[report.best_iteration]["valid_logloss"]
    assert kept == min(r["valid_logloss"] for r in h)
    assert metrics.logloss(splits["valid"]["label"], model.predict(splits["valid"])) == (
        pytest.approx(kept, abs=1e-6)
    )
