"""The weekly XGBoost study: out of time, seeded, judged against today's parameters, addressed by
week; the daily candidate uses an accepted study and says which."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import pytest

from reckit_assets.core.ingest.quality import Thresholds
from reckit_assets.core.io import warehouse
from reckit_assets.core.steps import data as steps
from reckit_assets.core.steps import models as model_steps
from reckit_assets.core.training import tuning
from reckit_assets.core.training.xgb_ranker import XGBParams
from reckit_assets.defs.training.assets import LAST_COMPLETED_WEEK
from reckit_assets_tests.conftest import FIRST_DAY, days

# 2026-09-28 is the Monday of the simulated days' first week (10-01 is a Thursday).
WEEK = "2026-09-28"
FAST = {"n_estimators": 40, "early_stopping_rounds": 10}


def test_week_for_is_the_last_week_that_ended_before_the_day_as_the_graph_maps_it():
    daily = dg.DailyPartitionsDefinition(start_date="2026-10-01")
    weekly = dg.WeeklyPartitionsDefinition(start_date="2026-10-01", day_offset=1)
    first = date(2026, 10, 12)
    for k in range(21):
        d = (first + timedelta(days=k)).isoformat()
        mapped = LAST_COMPLETED_WEEK.get_upstream_mapped_partitions_result_for_partitions(
            daily.subset_with_partition_keys([d]), daily, weekly
        ).partitions_subset.get_partition_keys()
        assert list(mapped) == [tuning.week_for(d)], d
        sunday = date.fromisoformat(tuning.week_for(d)) + timedelta(days=6)
        assert sunday < date.fromisoformat(d) <= sunday + timedelta(days=7)


def _build(lake, n: int) -> None:
    for dt in days(n):
        warehouse.publish(
            lake.warehouse,
            steps.LANDED,
            dt,
            steps.check_landing(lake.landing, dt, Thresholds()).artifact,
        )
        for asset, art in steps.validate(lake.landing, lake.warehouse, dt).items():
            warehouse.publish(lake.warehouse, asset, dt, art)
        warehouse.publish(lake.warehouse, steps.ACTIVITY, dt, steps.activity(lake.warehouse, dt))
        warehouse.publish(
            lake.warehouse, steps.FEATURES, dt, steps.features(lake.warehouse, dt, FIRST_DAY)
        )
        result = steps.samples(lake.warehouse, dt, Thresholds(), first_day=FIRST_DAY)
        warehouse.publish(lake.warehouse, steps.SAMPLES, dt, result.artifact)


@pytest.fixture
def built(simulated):
    _build(simulated, 4)
    return simulated


def test_a_study_is_out_of_time_seeded_and_starts_from_todays_parameters(built):
    config = tuning.TuningConfig(trials=4, min_relative_gain=0.0)
    first = model_steps.tune_week(built.warehouse, WEEK, FAST, config, FIRST_DAY)
    again = model_steps.tune_week(built.warehouse, WEEK, FAST, config, FIRST_DAY)
    info = first.info
    assert info["days"] == days(4)  # the week's days from the first partition on
    assert len(first.frames["trials"]) == 4
    assert first.frames["trials"].equals(again.frames["trials"])  # seeded: the same study
    trial0 = first.frames["trials"].iloc[0]
    base = XGBParams(**FAST)
    for name in tuning.SEARCHED:
        assert trial0[f"params_{name}"] == pytest.approx(getattr(base, name))
    assert info["baseline_logloss"] == pytest.approx(trial0["value"])
    assert info["best_logloss"] == pytest.approx(first.frames["trials"]["value"].min())
    assert set(info["best_params"]) == set(tuning.SEARCHED)


def test_acceptance_needs_the_configured_gain_and_the_candidate_says_which_study(built):
    store = built.warehouse
    strict = tuning.TuningConfig(trials=3, min_relative_gain=0.99)
    rejected = model_steps.tune_week(store, WEEK, FAST, strict, FIRST_DAY)
    assert not rejected.info["accepted"] and "tuning.min_relative_gain" in rejected.info["reason"]
    warehouse.publish(store, tuning.ASSET, WEEK, rejected)
    tuned, why = model_steps.accepted_tuning(store, "2026-10-05")
    assert tuned is None and "not accepted" in why

    lenient = tuning.TuningConfig(trials=6, min_relative_gain=0.0)
    study = model_steps.tune_week(store, WEEK, FAST, lenient, FIRST_DAY)
    if study.info["best_logloss"] >= study.info["baseline_logloss"]:
        pytest.skip("no trial beat trial 0 on this tiny week (nothing to accept)")
    assert study.info["accepted"]
    manifest = warehouse.publish(store, tuning.ASSET, WEEK, study)
    # Days 10-05 .. 10-11 use the week of 09-28; 10-04 (its Sunday) does not.
    assert model_steps.accepted_tuning(store, "2026-10-04")[0] is None
    tuned, _ = model_steps.accepted_tuning(store, "2026-10-05")
    assert tuned == {
        "week": WEEK,
        "data_version": manifest["data_version"],
        "params": study.info["best_params"],
    }
    artifact = model_steps.train_candidate(
        store, "xgboost", "2026-10-04", FAST, 7, FIRST_DAY, tuned=tuned
    )
    assert artifact.info["tuning"] == tuned
    for name, value in tuned["params"].items():
        assert artifact.info["params"][name] == pytest.approx(value)
    untuned = model_steps.train_candidate(store, "xgboost", "2026-10-04", FAST, 7, FIRST_DAY)
    assert untuned.info["version"] != artifact.info["version"]
    assert "none accepted" in untuned.info["tuning"]


def test_a_week_with_too_few_days_is_a_clear_error(built):
    with pytest.raises(ValueError, match=r"tuning\.min_days"):
        model_steps.tune_week(
            built.warehouse, WEEK, FAST, tuning.TuningConfig(trials=2, min_days=5), FIRST_DAY
        )
