"""Plots render real PNGs from the trainers' histories and from holdout scores."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from reckit_assets.core.evaluation import plots

PNG = b"\x89PNG\r\n\x1a\n"


def _png_size(png: bytes) -> tuple[int, int]:
    # IHDR: width and height as big-endian uint32 at bytes 16..24.
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_training_curve_is_a_small_png_for_each_trainer_history():
    xgb = [
        {
            "round": i,
            "train_logloss": 0.5 - i / 100,
            "train_auc": 0.6 + i / 100,
            "valid_logloss": 0.5 - i / 200,
            "valid_auc": 0.6 + i / 200,
        }
        for i in range(30)
    ]
    deepfm = [
        {
            "epoch": i,
            "train_logloss": 0.4,
            "valid_logloss": 0.41,
            "valid_auc": float("nan"),
            "seconds": 1.0,
        }
        for i in range(3)
    ]
    item2vec = [{"epoch": i, "loss": 100.0 - i} for i in range(5)]
    for history, best in ((xgb, 12), (deepfm, 0), (item2vec, 4)):
        png = plots.training_curve_png(history, best, "model dt=2026-10-05")
        assert png.startswith(PNG)
        assert _png_size(png) == (440, 240)
        assert len(png) < 80_000


def test_training_curve_refuses_a_history_it_cannot_read():
    with pytest.raises(ValueError, match="empty training history"):
        plots.training_curve_png([], None, "xgboost")
    with pytest.raises(ValueError, match="no 'round', 'step' or 'epoch'"):
        plots.training_curve_png([{"iteration": 1, "loss": 1.0}], None, "xgboost")


def test_reliability_bins_recover_the_observed_rate_per_score_range():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.0, 0.3, size=20_000)
    labels = rng.uniform(size=scores.size) < scores  # perfectly calibrated
    bins = plots.reliability_bins(labels, scores, n_bins=10)
    assert len(bins) == 10
    assert sum(b["rows"] for b in bins) == scores.size
    for b in bins:
        assert abs(b["observed"] - b["mean_predicted"]) < 0.03
    # An over-predicting model sits below the diagonal.
    over = plots.reliability_bins(labels, np.minimum(scores * 2, 1.0))
    assert all(b["observed"] < b["mean_predicted"] for b in over[2:])


def test_reliability_bins_merge_tied_scores_and_refuse_mismatched_inputs():
    bins = plots.reliability_bins([0, 1, 0, 1], [0.1, 0.1, 0.1, 0.1])
    assert bins == [{"mean_predicted": 0.1, "observed": 0.5, "rows": 4}]
    with pytest.raises(ValueError, match="3 labels vs 2 scores"):
        plots.reliability_bins([0, 1, 0], [0.1, 0.2])


def test_reliability_markdown_embeds_a_png_and_skips_reports_without_bins():
    report = {
        "kind": "xgboost",
        "dt": "2026-10-05",
        "reliability": {
            "candidate": [{"mean_predicted": 0.02, "observed": 0.03, "rows": 10}],
            "baseline (item_ctr_prior)": [{"mean_predicted": 0.04, "observed": 0.03, "rows": 10}],
        },
    }
    text = plots.reliability_markdown(report)
    prefix = "![reliability diagram](data:image/png;base64,"
    assert text is not None and text.startswith(prefix) and text.endswith(")")
    assert base64.b64decode(text[len(prefix) : -1]).startswith(PNG)
    assert plots.reliability_markdown({"kind": "item2vec"}) is None
