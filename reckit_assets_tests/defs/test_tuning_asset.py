"""The weekly study through Dagster: a week partition, its study in the UI's metadata; the next
week's XGBoost candidate trains with it."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from reckit_assets.core.ingest.quality import Thresholds
from reckit_assets.core.io import warehouse
from reckit_assets.core.steps import data as steps
from reckit_assets.core.training import tuning
from reckit_assets.defs.partitions import Structure
from reckit_assets.defs.training import assets as training_assets
from reckit_assets.defs.training import tuning as tuning_assets
from reckit_assets.simulation.simulate import write_simulation
from reckit_assets_tests.conftest import SMALL, days

MONDAY = "2026-09-28"


def test_a_week_is_studied_in_dagster_and_the_next_weeks_candidate_uses_it(lake):
    sim = replace(SMALL, start=MONDAY, days=5)
    write_simulation(sim, lake.landing, lake.oracle)
    for dt in days(5, MONDAY):
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
            lake.warehouse, steps.FEATURES, dt, steps.features(lake.warehouse, dt, MONDAY)
        )
        result = steps.samples(lake.warehouse, dt, Thresholds(), first_day=MONDAY)
        warehouse.publish(lake.warehouse, steps.SAMPLES, dt, result.artifact)
    s = Structure(first_day=MONDAY, training_window_days=7)
    resources = lake.resources()
    # min_relative_gain 0: any trial better than trial 0 is accepted (the wiring under test)
    lake.write_config(
        {
            "tuning": {"trials": 4, "min_relative_gain": 0.0},
            "xgboost": {"n_estimators": 40, "early_stopping_rounds": 10},
        }
    )
    instance = dg.DagsterInstance.ephemeral()
    studied = dg.materialize(
        tuning_assets.build(s), partition_key=MONDAY, resources=resources, instance=instance
    )
    assert studied.success
    (event,) = studied.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta["trials"].value == 4
    assert "| max_depth |" in meta["study"].value
    info = warehouse.manifest(lake.warehouse, tuning.ASSET, MONDAY)["info"]
    assert info["days"] == days(5, MONDAY)

    candidate = training_assets.build_candidate("xgboost", s)
    trained = dg.materialize(
        [candidate], partition_key="2026-10-05", resources=resources, instance=instance
    )
    assert trained.success
    found = warehouse.manifest(lake.warehouse, "xgboost_candidate", "2026-10-05")["info"]
    # seeded: this study's best trial beats trial 0 (+0.67% logloss), so it is accepted
    assert info["accepted"], info["reason"]
    assert found["tuning"]["week"] == MONDAY
    for name, value in info["best_params"].items():
        assert found["params"][name] == value
