"""The feedback abuse screen: clean simulated days lose 0 events; issue 21's attacks, replayed as
log rows on top of a clean day, are quarantined and named, and leave the landed day equal to the
clean one.

Bound (the measure of issue 21): for each attack the landed events equal the clean day's landed
events, row for row (so the attacked item's click count equals its clean count: difference 0),
because every attacker id here has no honest event that day; an attacker impersonating a real
user would also take that user's honest events of the day with it (at most their own count).
"""

from __future__ import annotations

import pandas as pd
import pytest

from reckit_assets.core.ingest.landing import read_landed, write_partition
from reckit_assets.core.io.frames import frame_to_parquet_bytes, parquet_bytes_to_frame
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.monitoring.abuse import AbuseRules, screen
from reckit_assets.core.monitoring.feedback import QUARANTINE, attribute, land_feedback
from reckit_assets.simulation.simulate import SimulationConfig, simulate_day

SIM = SimulationConfig(
    start="2026-10-01", days=4, n_users=400, n_items=120, impressions_per_day=4000, seed=3
)
DAY = 3


def _world(root, extra: pd.DataFrame | None = None):
    """Landing with the day's snapshots and the days before landed; the day's service log
    (plus ``extra`` rows) under the feedback root."""
    landing, feedback = LocalStorage(root / "landing"), LocalStorage(root / "feedback")
    for k in range(DAY):
        write_partition(landing, "events", SIM.day(k), simulate_day(SIM, k).events)
    day = simulate_day(SIM, DAY)
    write_partition(landing, "users", day.dt, day.users)
    write_partition(landing, "items", day.dt, day.items)
    log = day.events if extra is None else pd.concat([day.events, extra], ignore_index=True)
    feedback.write_bytes(f"events/dt={day.dt}/serving-0.parquet", frame_to_parquet_bytes(log))
    return day, feedback, landing, LocalStorage(root / "warehouse")


def _land(root, extra=None):
    day, feedback, landing, apart = _world(root, extra)
    report = land_feedback(feedback, landing, apart, day.dt)
    return day, report, read_landed(landing, "events", day.dt).frame, apart


def _rows(day, n_requests, user, items, clicks=True, conversions=False, tag="x"):
    """Served-looking rows: one request per ranking, every item an impression, then a click
    (and a conversion) on the first item."""
    version = day.events["model_version"].dropna().iloc[0]
    t0 = pd.Timestamp(day.dt, tz="UTC") + pd.Timedelta(hours=12)
    rows = []
    for r in range(n_requests):
        req, ts = f"r-{tag}-{r}", t0 + pd.Timedelta(milliseconds=25 * r)
        u = user(r) if callable(user) else user
        its = items(r) if callable(items) else items
        kinds = [("impression", i, p) for p, i in enumerate(its)]
        kinds += [("click", its[0], 0)] * clicks + [("conversion", its[0], 0)] * conversions
        for k, (kind, item, pos) in enumerate(kinds):
            rows.append({"event_id": f"{req}-{k}", "ts": ts + pd.Timedelta(seconds=k),
                         "user_id": u, "item_id": item, "event_type": kind, "request_id": req,
                         "position": pos, "device": "web", "model_version": version})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return _land(tmp_path_factory.mktemp("clean"))


def _clicks_on(frame, item):
    return int(((frame["item_id"] == item) & (frame["event_type"] == "click")).sum())


def _idle_user(day):
    active = set(day.events["user_id"])
    return next(u for u in day.users["user_id"] if u not in active)


@pytest.mark.parametrize(
    "sim",
    [SIM, SimulationConfig(n_users=3000, n_items=600, impressions_per_day=30000, seed=11)],
)
def test_clean_simulated_days_lose_no_event(sim):
    for k in (2, sim.days - 1):
        day = simulate_day(sim, k)
        attributed = attribute(day.events, day.dt).landed
        trailing = pd.concat([attribute(simulate_day(sim, j).events, sim.day(j)).landed
                              for j in range(k)])  # fmt: skip
        out = screen(attributed, AbuseRules(), log=day.events, users=set(day.users["user_id"]),
                     items=set(day.items["item_id"]), trailing=trailing)  # fmt: skip
        assert out.counts["quarantined"] == 0, [o.description for o in out.outcomes]
        assert all(o.passed for o in out.outcomes) and len(out.kept) == len(attributed)


def test_a_clean_day_read_back_from_the_landing_zone_is_screened_whole(tmp_path):
    """Ids as the landing reader types them (Arrow-backed strings): a clean real MovieLens day
    crashed here (an all-missing per-user reason column could not take "")."""
    day = simulate_day(SIM, 3)
    store = LocalStorage(tmp_path)
    write_partition(store, "events", day.dt, day.events)
    events = read_landed(store, "events", day.dt).frame
    assert str(events["user_id"].dtype) != "object"  # the dtype that broke it
    attributed = attribute(events, day.dt).landed
    out = screen(attributed, AbuseRules(), log=events, users=set(day.users["user_id"]),
                 items=set(day.items["item_id"]))  # fmt: skip
    assert out.counts["quarantined"] == 0 and len(out.kept) == len(attributed)


def test_a_clean_day_lands_whole_and_writes_no_quarantine(clean):
    day, report, landed, apart = clean
    assert report["quarantined"] == 0 and len(landed) == report["attributable"]
    assert {o.name for o in report["abuse"]} == {
        "unknown_id", "impossible_ratio", "user_click_rate", "user_volume", "item_click_rate"
    }  # fmt: skip
    assert all(o.passed and not o.blocks for o in report["abuse"])
    assert not apart.exists(f"{QUARANTINE}/dt={day.dt}/part-00000.parquet")


def _assert_landed_as_clean(landed, clean_landed):
    assert sorted(landed["event_id"]) == sorted(clean_landed["event_id"])


def test_300_fabricated_clicks_and_conversions_on_one_item_are_quarantined(tmp_path, clean):
    cday, _, clean_landed, _ = clean
    target = clean_landed["item_id"].value_counts().index[0]
    attacker = _idle_user(cday)  # a real, signed-up user with no honest event today
    extra = _rows(cday, 300, attacker, [target], conversions=True)
    day, report, landed, apart = _land(tmp_path, extra)
    assert _clicks_on(landed, target) == _clicks_on(clean_landed, target)  # bound: difference 0
    _assert_landed_as_clean(landed, clean_landed)
    assert report["quarantined"] == 900 and report["quarantined_user_click_rate"] == 900
    assert report["quarantined_users"] == 1
    rate = next(o for o in report["abuse"] if o.name == "user_click_rate")
    assert not rate.passed and not rate.blocks and rate.metadata["named"] == [attacker]
    assert "abuse.user_alpha" in rate.metadata and "300 clicks in 300" in rate.description
    kept = parquet_bytes_to_frame(apart.read_bytes(f"{QUARANTINE}/dt={day.dt}/part-00000.parquet"))
    assert len(kept) == 900 and set(kept["rule"]) == {"user_click_rate"}


def test_300_clicks_hidden_in_padded_rankings_are_caught_by_volume(tmp_path, clean):
    cday, _, clean_landed, _ = clean
    items = list(cday.items["item_id"][:20])
    attacker = _idle_user(cday)
    # 20 items per ranking: the attacker's CTR is 5%, like an honest user; the volume is not.
    _, report, landed, _ = _land(tmp_path, _rows(cday, 300, attacker, items))
    _assert_landed_as_clean(landed, clean_landed)
    assert report["quarantined"] == 300 * 21 and report["quarantined_user_volume"] == 300 * 21


def test_rankings_of_made_up_users_and_items_are_quarantined_as_unknown_ids(tmp_path, clean):
    cday, _, clean_landed, _ = clean
    extra = _rows(cday, 50, lambda r: f"ghost-{r}", lambda r: [f"fake-{r}-{k}" for k in range(20)])
    _, report, landed, _ = _land(tmp_path, extra)
    _assert_landed_as_clean(landed, clean_landed)
    assert report["quarantined"] == 50 * 21 == report["quarantined_unknown_id"]
    assert report["quarantined_users"] == 50 and report["quarantined_items"] == 1000


def test_an_impression_flood_from_one_client_is_quarantined(tmp_path, clean):
    cday, _, clean_landed, _ = clean
    items = list(cday.items["item_id"][:20])
    flood = _rows(cday, 1000, _idle_user(cday), items, clicks=False)  # 20k impressions, 5x the day
    _, report, landed, _ = _land(tmp_path, flood)
    _assert_landed_as_clean(landed, clean_landed)
    assert report["quarantined"] == 20_000 == report["quarantined_user_volume"]
    volume = next(o for o in report["abuse"] if o.name == "user_volume")
    assert "abuse.volume_mad_k" in volume.metadata and volume.metadata["users"] == 1


def test_impossible_ratios_quarantine_only_the_excess(tmp_path, clean):
    cday, _, clean_landed, _ = clean
    user, item = cday.users["user_id"].iloc[0], cday.items["item_id"].iloc[0]
    rows = _rows(cday, 1, user, [item], clicks=True, tag="ratio")
    again = rows[rows["event_type"] == "click"].assign(event_id="second-click")
    orphan_conv = _rows(cday, 1, user, [item], clicks=False, conversions=True, tag="conv")
    _, report, landed, _ = _land(tmp_path, pd.concat([rows, again, orphan_conv]))
    assert report["quarantined_impossible_ratio"] == 2  # the second click, the clickless conversion
    assert {"r-ratio-0-0", "r-ratio-0-1", "r-conv-0-0"} <= set(landed["event_id"])
    assert len(landed) == len(clean_landed) + 3


def test_repeat_clickers_on_an_item_far_above_its_trailing_rate_are_quarantined():
    day = simulate_day(SIM, DAY)
    base = attribute(day.events, day.dt).landed
    item = base["item_id"].value_counts().index[-1]
    users = list(day.users["user_id"][:8])
    # 8 users, 6 requests each, a click each time: 48 clicks on a rarely shown item.
    extra = _rows(day, 48, lambda r: users[r % 8], [item], tag="item")
    landed = attribute(pd.concat([day.events, extra], ignore_index=True), day.dt).landed
    rules = AbuseRules(min_user_clicks=100)  # the per-user rules alone would not catch it
    out = screen(landed, rules, log=landed)
    outcome = next(o for o in out.outcomes if o.name == "item_click_rate")
    assert not outcome.passed and outcome.metadata["named"] == [item]
    theirs = (landed["item_id"] == item) & landed["user_id"].isin(users)
    assert out.counts["quarantined_item_click_rate"] == out.counts["quarantined"] == theirs.sum()
    assert theirs.sum() >= 96  # 48 impressions + 48 clicks, plus their honest rows on the item
