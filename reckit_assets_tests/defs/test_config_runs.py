"""Runs read the project config file whoever launches them; the graph follows its shape keys."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from reckit_assets.core.ingest import landing
from reckit_assets.core.io.frames import read_frame
from reckit_assets.definitions import build_defs
from reckit_assets.settings import load_settings
from reckit_assets_tests.conftest import FIRST_DAY as DT


def _with_click_rate(events: pd.DataFrame, rate: float) -> pd.DataFrame:
    """The day's impressions with clicks on ``rate`` of them (like real logs with a 56% CTR)."""
    impressions = events[events["event_type"] == "impression"].reset_index(drop=True)
    chosen = impressions.sample(frac=rate, random_state=3)
    clicks = chosen.assign(
        event_type="click",
        event_id="c-" + chosen["event_id"].astype(str),
        ts=chosen["ts"] + pd.Timedelta(seconds=5),
    )
    return pd.concat([impressions, clicks], ignore_index=True)


def _defs_for(lake, config_text: str | None):
    env = {"RECKIT_DATA_DIR": str(lake.root)}
    if config_text is not None:
        lake.config_file.write_text(config_text)
        env["RECKIT_CONFIG"] = str(lake.config_file)
    return build_defs(load_settings(env))


def _sensor_run(defs, instance):
    """What the daemon does: tick the arrival sensor, launch its first request as it is."""
    sensor = defs.get_sensor_def("landing_arrival_sensor")
    context = dg.build_sensor_context(
        instance=instance, definitions=defs, resources=dict(defs.resources or {})
    )
    request = sensor(context).run_requests[0]
    assert request.partition_key == DT
    assert not request.run_config  # the sensor carries no run config: the file must be read
    job = defs.resolve_job_def("daily_pipeline")
    return job.execute_in_process(
        partition_key=request.partition_key,
        tags=request.tags,
        run_config=request.run_config or None,
        instance=instance,
        raise_on_error=False,
    )


def _click_rate_check(result) -> dg.AssetCheckEvaluation:
    [evaluation] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "click_rate_bounds"
    ]
    return evaluation


def test_sensor_runs_use_the_limit_set_in_the_config_file(simulated):
    events = read_frame(simulated.landing, f"events/dt={DT}/part-00000.parquet")
    simulated.landing.delete_prefix(f"events/dt={DT}")  # test setup: land a 56%-CTR day
    landing.write_partition(simulated.landing, "events", DT, _with_click_rate(events, 0.56))

    # defaults (max_click_rate 0.5): the day is blocked, and the message names the key
    blocked = _sensor_run(_defs_for(simulated, None), dg.DagsterInstance.ephemeral())
    check = _click_rate_check(blocked)
    assert not check.passed
    assert "data_quality.max_click_rate in reckit.yaml" in check.description
    assert not blocked.success

    # the same sensor-launched run with reckit.yaml saying 0.7: the day passes and flows on
    passed = _sensor_run(
        _defs_for(simulated, "data_quality:\n  max_click_rate: 0.7\n"),
        dg.DagsterInstance.ephemeral(),
    )
    assert _click_rate_check(passed).passed
    mats = {e.asset_key.to_user_string(): e for e in passed.get_asset_materialization_events()}
    assert "training_samples" in mats
    landed = passed.asset_materializations_for_node("landed_logs")[0]
    used = landed.metadata["config"].value["data_quality"]["max_click_rate"]
    assert used == {"value": 0.7, "source": f"file {simulated.config_file}"}


def test_build_defs_takes_partition_start_and_training_window_from_config(simulated):
    defs = _defs_for(simulated, "partitions:\n  start: 2026-09-15\ntraining:\n  window_days: 4\n")
    graph = defs.resolve_asset_graph()
    candidate = dg.AssetKey("xgboost_candidate")
    partitions = graph.get(candidate).partitions_def
    assert partitions.get_first_partition_key() == "2026-09-15"
    assert graph.get(dg.AssetKey("landed_logs")).partitions_def.get_first_partition_key() == (
        "2026-09-15"
    )
    mapping = graph.get_partition_mapping(candidate, dg.AssetKey("training_samples"))
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        partitions.subset_with_partition_keys(["2026-10-10"]), partitions, partitions
    ).partitions_subset.get_partition_keys()
    assert list(upstream) == ["2026-10-06", "2026-10-07", "2026-10-08", "2026-10-09"]
    # item2vec reads its sequences through the same window
    mapping = graph.get_partition_mapping(
        dg.AssetKey("item2vec_candidate"), dg.AssetKey("behaviour_sequences")
    )
    assert mapping.start_offset == -4 and mapping.end_offset == -1
    # the sensor's valid days follow the partitions too
    assert np.all([k >= "2026-09-15" for k in partitions.get_partition_keys()[:3]])
