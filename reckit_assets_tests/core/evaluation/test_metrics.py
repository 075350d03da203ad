"""Offline metrics: agreement with scikit-learn, GAUC's skipping rule, bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from reckit_assets.core.evaluation import metrics


def _scored(n: int = 5000, users: int = 200, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    truth = rng.random(n)
    label = (rng.random(n) < 0.05 + 0.3 * truth).astype(np.int8)
    good = np.clip(truth + rng.normal(0, 0.2, n), 0.001, 0.999)
    weak = np.clip(truth + rng.normal(0, 1.0, n), 0.001, 0.999)
    return label, good, weak, user


def test_auc_and_logloss_match_sklearn_including_ties():
    label, good, _, _ = _scored()
    tied = np.round(good, 1)  # many ties: they must count half, as in sklearn
    assert metrics.auc(label, good) == pytest.approx(roc_auc_score(label, good), abs=1e-12)
    assert metrics.auc(label, tied) == pytest.approx(roc_auc_score(label, tied), abs=1e-12)
    assert metrics.logloss(label, good) == pytest.approx(log_loss(label, good), rel=1e-9)


def test_logloss_is_clipped_so_certain_mistakes_stay_finite():
    value = metrics.logloss([1, 0], [0.0, 1.0])
    assert np.isfinite(value)
    assert value == pytest.approx(-np.log(metrics.LOGLOSS_EPS), rel=1e-6)


def test_auc_needs_both_classes_and_clean_inputs():
    with pytest.raises(ValueError, match="both classes"):
        metrics.auc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="rows"):
        metrics.auc([0, 1], [0.1])
    with pytest.raises(ValueError, match="non-finite"):
        metrics.auc([0, 1], [0.1, np.nan])


def test_gauc_weights_users_by_rows_and_skips_single_class_users():
    frame = pd.DataFrame(
        {
            "user": ["a"] * 4 + ["b"] * 2 + ["c"] * 3 + ["d"] * 2,
            "label": [1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1],
            "score": [0.9, 0.1, 0.5, 0.4, 0.2, 0.8, 0.3, 0.2, 0.1, 0.6, 0.7],
        }
    )
    # a: positives 0.9, 0.4 vs negatives 0.1, 0.5 -> 3 of 4 pairs; b: 0 of 1; c and d single-class.
    expected = (4 * 0.75 + 2 * 0.0) / 6
    assert metrics.gauc(frame["label"], frame["score"], frame["user"]) == pytest.approx(expected)
    stats = metrics.gauc_stats(frame["label"], frame["score"], frame["user"])
    assert stats["users"] == 2 and stats["rows"] == 6


def test_gauc_matches_per_user_sklearn_on_random_data():
    label, good, _, user = _scored(n=3000, users=50, seed=3)
    num = den = 0.0
    for u in np.unique(user):
        m = user == u
        if 0 < label[m].sum() < m.sum():
            num += m.sum() * roc_auc_score(label[m], good[m])
            den += m.sum()
    assert metrics.gauc(label, good, user) == pytest.approx(num / den, abs=1e-12)


def test_gauc_is_nan_when_no_user_has_both_classes():
    assert np.isnan(metrics.gauc([0, 1], [0.2, 0.3], ["a", "b"]))


def test_calibration_reports_ratio_of_predicted_to_observed():
    cal = metrics.calibration([0, 0, 0, 1], [0.5, 0.5, 0.5, 0.5])
    assert cal == {"mean_predicted": 0.5, "observed": 0.25, "ratio": 2.0}


def test_ranking_report_slices_by_user_freshness_and_device():
    label, good, _, user = _scored(n=4000, users=100, seed=5)
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "label": label,
            "user_id": [f"u{u}" for u in user],
            "device": rng.choice(["ios", "android", "web"], len(label)),
            "is_new_user": (user < 10).astype(np.int8),
        }
    )
    # A slice with a single class must not break the report.
    frame.loc[frame["device"] == "web", "label"] = 0
    report = metrics.ranking_report(frame, good)
    assert report["rows"] == len(frame)
    assert report["auc"] == pytest.approx(roc_auc_score(frame["label"], good))
    assert set(report["slices"]) == {
        "new_users",
        "returning_users",
        "device=android",
        "device=ios",
        "device=web",
    }
    assert report["slices"]["device=web"]["auc"] is None
    assert report["slices"]["device=ios"]["auc"] > 0.6
    rows = report["slices"]["new_users"]["rows"] + report["slices"]["returning_users"]["rows"]
    assert rows == len(frame)
    with pytest.raises(ValueError, match="device"):
        metrics.ranking_report(frame.drop(columns=["device"]), good)


@pytest.mark.parametrize("metric", ["auc", "logloss"])
def test_bootstrap_ci_contains_the_difference_and_is_deterministic(metric):
    label, good, weak, user = _scored(n=6000, users=300)
    first = metrics.bootstrap_diff(label, good, weak, user, metric=metric, n=200, seed=7)
    again = metrics.bootstrap_diff(label, good, weak, user, metric=metric, n=200, seed=7)
    other = metrics.bootstrap_diff(label, good, weak, user, metric=metric, n=200, seed=8)
    assert first == again
    assert first != other
    assert first["ci_low"] <= first["diff"] <= first["ci_high"]
    if metric == "auc":
        expected = roc_auc_score(label, good) - roc_auc_score(label, weak)
        assert first["diff"] == pytest.approx(expected, abs=1e-12)
        assert first["ci_low"] > 0  # the better model is significantly better
    else:
        assert first["diff"] == pytest.approx(log_loss(label, good) - log_loss(label, weak))
        assert first["ci_high"] < 0


def test_bootstrap_ci_straddles_zero_for_identical_models():
    label, good, _, user = _scored()
    out = metrics.bootstrap_diff(label, good, good.copy(), user, metric="auc", n=50)
    assert (out["diff"], out["ci_low"], out["ci_high"], out["se"]) == (0.0, 0.0, 0.0, 0.0)
    assert out["replicates"] == 50 and out["level"] == 0.95


def test_bootstrap_runs_on_100k_rows():
    # Speed is a benchmark's business (bench/models.py), not a timed test's.
    label, good, weak, user = _scored(n=100_000, users=3000)
    auc = metrics.bootstrap_diff(label, good, weak, user, metric="auc", n=200)
    loss = metrics.bootstrap_diff(label, good, weak, user, metric="logloss", n=200)
    assert auc is not None and loss is not None


def test_bootstrap_rejects_unknown_metric():
    with pytest.raises(ValueError, match="metric"):
        metrics.bootstrap_diff([0, 1], [0.1, 0.2], [0.2, 0.1], ["a", "b"], metric="gauc")
