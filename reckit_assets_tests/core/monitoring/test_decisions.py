"""The day's served decisions and training/serving skew (core.monitoring.decisions)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reckit_assets.core.monitoring import decisions

FEATURES = ("user_ctr", "item_ctr", "position")


def _log(rankings: int = 30, items: int = 4, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A decision log with every feature vector logged, and the samples with the same values."""
    rng = np.random.default_rng(seed)
    n = rankings * items
    ids = {
        "request_id": np.repeat([f"r{k}" for k in range(rankings)], items),
        "item_id": [f"i{k % 17}" for k in range(n)],
    }
    values = {c: rng.random(n) for c in FEATURES}
    log = pd.DataFrame(
        {**ids, "position": np.tile(np.arange(items), rankings), "explored": False,
         "feature_logged": True, "model_version": "v1",
         **{decisions.FEATURE_PREFIX + c: v for c, v in values.items()}}
    )  # fmt: skip
    samples = pd.DataFrame({**ids, **values, "label": 0})
    samples["position"] = log["position"]  # the shown position: never what serving scores
    return log, samples


def test_only_landed_requests_are_kept_with_their_clicks():
    log, _ = _log()
    events = pd.DataFrame(
        {"request_id": ["r1", "r1", "r2"], "item_id": ["i4", "i5", "i8"],
         "event_type": ["impression", "click", "impression"]}
    )  # fmt: skip
    frame, counts = decisions.served_decisions(log, events)
    assert sorted(frame["request_id"].unique()) == ["r1", "r2"]
    assert counts["rankings"] == 2 and counts["not_landed_rankings"] == 28
    assert frame.loc[frame["clicked"] == 1, ["request_id", "item_id"]].values.tolist() == [
        ["r1", "i5"]
    ]
    # a replayed file (the same ranking twice) counts once
    again, _ = decisions.served_decisions(pd.concat([log, log]), events)
    assert len(again) == len(frame)


def test_identical_features_pass_and_float32_serving_is_no_skew():
    log, samples = _log()
    for c in FEATURES:  # the service scores float32
        col = decisions.FEATURE_PREFIX + c
        log[col] = log[col].astype(np.float32).astype(np.float64)
    report = decisions.skew(log, samples, decisions.SkewRules(min_rows=10))
    assert report["compared"] == len(log) and report["failing"] == []
    assert {f["feature"] for f in report["features"]} == {"user_ctr", "item_ctr"}  # not position


def test_a_mis_scaled_feature_is_named_with_its_figures():
    log, samples = _log()
    log[decisions.FEATURE_PREFIX + "user_ctr"] *= 100
    report = decisions.skew(log, samples, decisions.SkewRules(min_rows=10))
    assert report["failing"] == ["user_ctr"]
    worst = report["features"][0]
    assert worst["feature"] == "user_ctr" and worst["mismatch_share"] > 0.9
    assert worst["ks_statistic"] > 0.5 and worst["served_mean"] > 10 * worst["offline_mean"]


def test_a_stale_feature_on_a_few_rows_stays_under_the_limit_and_few_rows_never_block():
    log, samples = _log(rankings=100)
    col = decisions.FEATURE_PREFIX + "item_ctr"
    log.loc[:1, col] += 1.0  # 2 of 400 rows: 0.5%, under the 1% limit
    assert decisions.skew(log, samples, decisions.SkewRules())["failing"] == []
    log[col] += 1.0
    few = decisions.skew(log.iloc[:20], samples, decisions.SkewRules(min_rows=50))
    assert few["compared"] == 20 and few["failing"] == []  # reported, not judged
    assert few["features"][0]["mismatch_share"] == 1.0


def test_a_version_that_does_not_log_a_feature_is_no_mismatch_of_it():
    # A canary with one more input column than production: production's rankings carry no
    # value of it (not logged), which is not a served value that differs.
    log, samples = _log(rankings=100)
    canary = log["request_id"].isin([f"r{k}" for k in range(10)])
    log["feature_columns"] = np.where(canary, "user_ctr,item_ctr,position", "item_ctr,position")
    log.loc[~canary, decisions.FEATURE_PREFIX + "user_ctr"] = np.nan
    report = decisions.skew(log, samples, decisions.SkewRules(min_rows=10))
    assert report["failing"] == []
    user_ctr = next(f for f in report["features"] if f["feature"] == "user_ctr")
    assert user_ctr["rows"] == 40 and user_ctr["mismatched"] == 0
    # ...while a version that logs it as missing is a feature missing online: skew.
    log["feature_columns"] = "user_ctr,item_ctr,position"
    assert decisions.skew(log, samples, decisions.SkewRules(min_rows=10))["failing"] == ["user_ctr"]
