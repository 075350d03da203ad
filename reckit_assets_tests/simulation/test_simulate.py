"""The simulated warehouse: deterministic, contract-conformant, and carrying the signal the
downstream models are supposed to learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reckit_assets.core.ingest import landing
from reckit_assets.core.io import frames
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.simulation.simulate import (
    SimulatedDay,
    SimulationConfig,
    _world,
    simulate_day,
    write_simulation,
)

SMALL = SimulationConfig(
    start="2026-03-01", days=4, n_users=500, n_items=150, impressions_per_day=4000, seed=11
)
CLEAN = SimulationConfig(
    start="2026-03-01", days=3, n_users=500, n_items=150, impressions_per_day=4000, messy=False
)
# Enough traffic for rates to be measured to within a few tenths of a percent.
MEDIUM = SimulationConfig(days=2, n_users=2000, n_items=400, impressions_per_day=40_000)


def _tree(storage: LocalStorage) -> dict[str, bytes]:
    return {info.key: storage.read_bytes(info.key) for info in storage.list("")}


def _impressions(day: SimulatedDay) -> pd.DataFrame:
    return day.events[day.events["event_type"] == "impression"]


def _ctr(day: SimulatedDay) -> float:
    return day.counts["clicks"] / day.counts["impressions"]


@pytest.fixture(scope="module")
def clean_landing(tmp_path_factory) -> tuple[LocalStorage, LocalStorage, list[dict]]:
    root = tmp_path_factory.mktemp("clean")
    land, oracle = LocalStorage(root / "landing"), LocalStorage(root / "oracle")
    return land, oracle, write_simulation(CLEAN, land, oracle)


@pytest.fixture(scope="module")
def medium_day() -> SimulatedDay:
    return simulate_day(MEDIUM, 1)


def test_same_config_writes_identical_bytes(tmp_path):
    outputs = []
    for run in ("a", "b"):
        land, oracle = LocalStorage(tmp_path / run / "landing"), LocalStorage(tmp_path / run / "o")
        write_simulation(SMALL, land, oracle)
        outputs.append((_tree(land), _tree(oracle)))
    assert outputs[0] == outputs[1]
    land_files, oracle_files = outputs[0]
    # 4 days x 3 tables x (parquet + _SUCCESS), one oracle file per day.
    assert len(land_files) == 24
    assert sorted(oracle_files) == [f"oracle/dt={dt}/part-00000.parquet" for dt in SMALL.dates]


def test_one_day_resimulated_alone_equals_that_day_of_a_full_run(tmp_path):
    land, oracle = LocalStorage(tmp_path / "landing"), LocalStorage(tmp_path / "oracle")
    write_simulation(SMALL, land, oracle)
    _world.cache_clear()  # rebuild the world from the seed, as a fresh process would
    day = simulate_day(SMALL, 2)
    assert day.dt == "2026-03-03"
    for table, frame in (("events", day.events), ("users", day.users), ("items", day.items)):
        key = f"{table}/dt={day.dt}/part-00000.parquet"
        assert land.read_bytes(key) == frames.frame_to_parquet_bytes(frame), table
    key = f"oracle/dt={day.dt}/part-00000.parquet"
    assert oracle.read_bytes(key) == frames.frame_to_parquet_bytes(day.oracle)


def test_different_seeds_give_different_data():
    other = SimulationConfig(**{**SMALL.__dict__, "seed": SMALL.seed + 1})
    a, b = simulate_day(SMALL, 0), simulate_day(other, 0)
    assert not a.users["user_id"].isin(b.users["user_id"]).any()
    assert not a.events["event_id"].isin(b.events["event_id"]).any()
    assert not a.oracle["p_click"].equals(b.oracle["p_click"])


def test_clean_data_meets_the_landing_contract(clean_landing):
    land, oracle, counts = clean_landing
    assert list(landing.ready_days(land)) == CLEAN.dates
    event_ids = []
    for dt, day_counts in zip(CLEAN.dates, counts, strict=True):
        for table in landing.TABLES:
            landed = landing.read_landed(land, table, dt)
            assert landed.issues == [], [str(i) for i in landed.issues]
            assert landed.missing_optional == []
        events = landing.read_landed(land, "events", dt).frame
        assert len(events) == day_counts["events"]
        assert events["event_id"].is_unique
        event_ids.extend(events["event_id"])
        assert set(events["event_type"]) == set(landing.EVENT_TYPES)
        assert events["model_version"].notna().all()
        assert set(events["device"]) <= {"ios", "android", "web"}
        day_start = pd.Timestamp(dt, tz="UTC")
        assert events["ts"].between(day_start, day_start + pd.Timedelta(days=1), "left").all()
        assert day_counts["duplicates"] == day_counts["orphan_clicks"] == 0
        assert day_counts["out_of_day"] == day_counts["null_model_version"] == 0
        # Every click follows its impression: same request, item and position, later ts.
        imps = events[events["event_type"] == "impression"]
        clicks = events[events["event_type"] == "click"]
        joined = clicks.merge(
            imps, on=["request_id", "item_id"], suffixes=("", "_imp"), validate="one_to_one"
        )
        assert len(joined) == len(clicks) == day_counts["clicks"]
        assert (joined["position"] == joined["position_imp"]).all()
        assert (joined["ts"] > joined["ts_imp"]).all()
        assert frames.read_frame(oracle, f"oracle/dt={dt}/part-00000.parquet").shape[0] == len(imps)
    assert len(set(event_ids)) == len(event_ids)  # unique across days, not just within one


def test_ids_are_strings_not_numbers(clean_landing):
    land, _, _ = clean_landing
    events = landing.read_landed(land, "events", CLEAN.dates[0]).frame
    for column in ("event_id", "user_id", "item_id", "request_id"):
        values = events[column].astype(str)
        assert not values.str.fullmatch(r"\d+").any(), column
    assert events["user_id"].str.startswith("u_").all()
    assert events["item_id"].str.match(r"^(i-\d{6}|sku-[0-9a-f]{10})$").all()


def test_messy_data_is_injected_and_counted():
    day = simulate_day(SMALL, 1)
    ev, counts = day.events, day.counts
    assert counts["duplicates"] >= 1
    assert counts["duplicates"] == len(ev) - ev["event_id"].nunique()
    assert ev.duplicated().sum() == counts["duplicates"]  # exact copies, not just the same id
    # Orphans: clicks with no impression for their (request_id, item_id).
    imps = ev.loc[ev["event_type"] == "impression", ["request_id", "item_id"]].drop_duplicates()
    clicks = ev[ev["event_type"] == "click"].drop_duplicates()
    matched = clicks.merge(imps, on=["request_id", "item_id"], how="left", indicator=True)
    assert counts["orphan_clicks"] >= 1
    assert (matched["_merge"] == "left_only").sum() == counts["orphan_clicks"]
    day_start = pd.Timestamp(day.dt, tz="UTC")
    outside = ~ev["ts"].between(day_start, day_start + pd.Timedelta(days=1), "left")
    assert counts["out_of_day"] >= 1
    assert outside.sum() == counts["out_of_day"]
    assert (ev.loc[outside, "ts"] - day_start).abs().max() < pd.Timedelta(hours=29)
    assert 0 < ev["model_version"].isna().sum() == counts["null_model_version"]
    assert ev["model_version"].dropna().str.match(r"^(xgb|tt)-[0-9a-f]{6}$").all()
    # Messy rates stay small, and the mess is still within the contract's types.
    assert counts["duplicates"] / len(ev) < 0.01
    assert counts["out_of_day"] / len(ev) < 0.005


def test_messy_data_still_parses_under_the_contract(tmp_path):
    land, oracle = LocalStorage(tmp_path / "landing"), LocalStorage(tmp_path / "oracle")
    config = SimulationConfig(**{**SMALL.__dict__, "days": 1})
    write_simulation(config, land, oracle)
    for table in landing.TABLES:
        assert landing.read_landed(land, table, config.start).issues == []


def test_click_through_and_conversion_rates_are_realistic(medium_day):
    assert 0.03 <= _ctr(medium_day) <= 0.08
    conv_rate = medium_day.counts["conversions"] / medium_day.counts["clicks"]
    assert 0.05 <= conv_rate <= 0.20


def test_oracle_has_one_row_per_impression_and_is_calibrated(medium_day):
    oracle, imps = medium_day.oracle, _impressions(medium_day).drop_duplicates("event_id")
    assert len(oracle) == medium_day.counts["impressions"] == len(imps)
    keys = ["request_id", "item_id"]
    assert not oracle.duplicated(keys).any()
    both = oracle.merge(imps, on=keys, validate="one_to_one", suffixes=("", "_event"))
    assert len(both) == len(oracle)
    assert (both["user_id"] == both["user_id_event"]).all()
    assert (both["position"] == both["position_event"]).all()
    assert oracle["p_click"].between(0, 1).all()
    assert oracle["p_conversion_given_click"].between(0, 1).all()

    # The observed clicks are draws from p_click: overall and per decile.
    clicks = medium_day.events.loc[medium_day.events["event_type"] == "click", keys]
    oracle = oracle.merge(clicks.drop_duplicates().assign(clicked=1), on=keys, how="left")
    oracle["clicked"] = oracle["clicked"].fillna(0)
    p = oracle["p_click"]
    stderr = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(oracle["clicked"].mean() - p.mean()) < 4 * stderr
    deciles = oracle.groupby(pd.qcut(p, 10), observed=True)[["p_click", "clicked"]].mean()
    assert np.allclose(deciles["clicked"], deciles["p_click"], atol=0.02)
    assert deciles["clicked"].iloc[-1] > 4 * deciles["clicked"].iloc[0]  # real signal to learn


def test_users_and_items_appear_over_time_and_act_only_after_they_exist():
    config = SimulationConfig(days=5, n_users=600, n_items=200, impressions_per_day=3000)
    days = [simulate_day(config, i) for i in range(config.days)]
    n_users = [len(d.users) for d in days]
    n_items = [len(d.items) for d in days]
    assert n_users == sorted(n_users) and n_items == sorted(n_items)
    assert 0.5 * config.n_users < n_users[0] < 0.8 * config.n_users
    assert 0.65 * config.n_items < n_items[0] < 0.9 * config.n_items
    assert n_users[-1] == config.n_users and n_items[-1] == config.n_items
    for d in days:
        assert d.users["user_id"].is_unique and d.items["item_id"].is_unique
        assert (d.users["signup_dt"] <= d.dt).all()
        assert (d.items["launch_dt"] <= d.dt).all()
        assert d.events["user_id"].isin(d.users["user_id"]).all()
        assert d.events["item_id"].isin(d.items["item_id"]).all()
        assert d.users["age"].between(16, 75).all()
        assert set(d.users["gender"]) <= {"F", "M", "U"}
        assert d.users["region"].nunique() == 8
        assert (d.items["price"] > 0).all()
    # New users show up in the events on the day they sign up.
    last = days[-1]
    new_users = last.users.loc[last.users["signup_dt"] == last.dt, "user_id"]
    assert last.events["user_id"].isin(new_users).any()


def test_activity_and_popularity_are_heavy_tailed(medium_day):
    imps = _impressions(medium_day).drop_duplicates("event_id")
    per_user = medium_day.events.groupby("user_id").size()
    assert (per_user == 1).any()  # some users with a single event
    assert per_user.max() > 10 * per_user.median()
    per_item = imps["item_id"].value_counts()
    top = per_item.head(max(1, len(per_item) // 100)).sum() / len(imps)
    assert top > 0.05  # the top 1% of items take a large share of the impressions
    slate = imps.groupby("request_id").size()
    assert 8 <= slate.mean() <= 11 and slate.max() <= 14
    # Several requests per user and day, grouped in sessions.
    assert medium_day.counts["requests"] > 2 * medium_day.counts["active_users"]


def test_position_and_device_shift_the_click_probability(medium_day):
    oracle = medium_day.oracle
    by_position = oracle.groupby("position")["p_click"].mean()
    assert by_position.loc[0] > by_position.loc[5] > by_position.loc[10]
    device = _impressions(medium_day).drop_duplicates("event_id")[
        ["request_id", "item_id", "device"]
    ]
    by_device = oracle.merge(device, on=["request_id", "item_id"]).groupby("device")["p_click"]
    assert by_device.mean()["ios"] > by_device.mean()["web"]


def test_requests_cluster_items_by_category(medium_day):
    imps = _impressions(medium_day).drop_duplicates("event_id")
    imps = imps.merge(medium_day.items[["item_id", "category"]], on="item_id")
    per_cat = imps.groupby(["request_id", "category"]).size()
    per_req = imps.groupby("request_id").size()
    same_pairs = (per_cat * (per_cat - 1)).sum() / (per_req * (per_req - 1)).sum()
    share = imps["category"].value_counts(normalize=True)
    random_pairs = (share**2).sum()
    assert same_pairs > 5 * random_pairs


def test_drift_changes_click_behaviour_from_drift_from_on():
    base = SimulationConfig(days=4, n_users=1500, n_items=300, impressions_per_day=20_000)
    drifted = SimulationConfig(**{**base.__dict__, "drift_from": base.day(2)})
    before, before_d = simulate_day(base, 1), simulate_day(drifted, 1)
    assert frames.frame_to_parquet_bytes(before.events) == frames.frame_to_parquet_bytes(
        before_d.events
    )
    assert before_d.counts["drift_strength"] == 0.0

    after, after_d = simulate_day(base, 3), simulate_day(drifted, 3)
    assert after_d.counts["drift_strength"] == 1.0
    assert _ctr(after_d) < 0.85 * _ctr(after)

    def per_category_ctr(day: SimulatedDay) -> pd.Series:
        oracle = day.oracle.merge(day.items[["item_id", "category"]], on="item_id")
        return oracle.groupby("category")["p_click"].mean()

    shift = (per_category_ctr(after_d) - per_category_ctr(after)).abs()
    assert shift.median() > 0.005
    assert (per_category_ctr(after_d) > per_category_ctr(after)).any()  # not only a level shift


def test_drift_strength_is_the_share_of_users_who_drift():
    base = SimulationConfig(days=2, n_users=1500, n_items=300, impressions_per_day=20_000)
    days = {}
    for strength in (0.0, 0.5, 1.0):
        config = SimulationConfig(
            **{**base.__dict__, "drift_from": base.start, "drift_strength": strength}
        )
        days[strength] = simulate_day(config, 1)
    drifted = {s: d.counts["drifted_users"] for s, d in days.items()}
    assert drifted[0.0] == 0 and drifted[1.0] == base.n_users
    assert 0.4 < drifted[0.5] / base.n_users < 0.6
    mean_p = {s: d.oracle["p_click"].mean() for s, d in days.items()}
    assert mean_p[0.0] > mean_p[0.5] > mean_p[1.0]


def test_invalid_configs_and_days_are_rejected():
    with pytest.raises(ValueError, match="start"):
        SimulationConfig(start="2026-13-01")
    with pytest.raises(ValueError, match="drift_from"):
        SimulationConfig(drift_from="yesterday")
    with pytest.raises(ValueError, match="impressions_per_day"):
        SimulationConfig(impressions_per_day=0)
    with pytest.raises(ValueError, match="day_index 4"):
        simulate_day(SMALL, 4)
