"""The Polars data layer gives what the pandas one gave, on messy days (golden reference).

``legacy_pandas`` keeps the pandas implementation as it was before the switch, in the tests only.
Both run on the same landed days (the simulator's duplicates, late and orphan events, null model
versions, plus a CSV file with null ids, unknown event types, repeated impressions under new event
ids, blank strings, text timestamps, unknown items and broken snapshot rows); every published file
must decode to the same table (schema, values, order) and the counts must match.
"""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reckit_assets.core.features.compute import FeatureTables
from reckit_assets.core.features.spec import WINDOW_DAYS
from reckit_assets.core.ingest import landing
from reckit_assets.core.ingest.quality import Thresholds
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.frames import frame_to_parquet_bytes, parquet_bytes_to_frame, read_frame
from reckit_assets.core.steps import data as steps
from reckit_assets_tests.conftest import FIRST_DAY, days
from reckit_assets_tests.core import legacy_pandas as old

MESSY_DAY = days(2)[1]


def _add_messy_files(lake) -> None:
    """A second events file (CSV) and broken snapshot rows on MESSY_DAY."""
    base = read_frame(lake.landing, f"events/dt={MESSY_DAY}/part-00000.parquet")
    imps = base[base["event_type"] == "impression"].head(40).reset_index(drop=True)
    rows = []
    # The same impression again under new event ids, one earlier and one later.
    for k, shift in enumerate((-5, 7)):
        again = imps.head(6).copy()
        again["event_id"] = again["event_id"] + f"-again{k}"
        again["ts"] = again["ts"] + pd.Timedelta(seconds=shift)
        rows.append(again)
    nulls = imps.iloc[6:10].copy()
    nulls.loc[nulls.index[0], "user_id"] = None
    nulls.loc[nulls.index[1], "item_id"] = "   "  # blank after strip -> null id
    nulls.loc[nulls.index[2], "request_id"] = None
    nulls["event_id"] = nulls["event_id"] + "-null"
    rows.append(nulls)
    unknown = imps.iloc[10:13].assign(event_id=lambda d: d["event_id"] + "-like", event_type="like")
    rows.append(unknown)
    blanks = imps.iloc[13:18].assign(
        event_id=lambda d: d["event_id"] + "-blank",
        request_id=lambda d: d["request_id"] + "-b",
        device=" ",
        position=None,
        item_id="i-not-in-catalog",
    )
    rows.append(blanks)
    # A click and a conversion on one of the new impressions; a conversion without a click.
    clicks = blanks.head(2).assign(event_id=lambda d: d["event_id"] + "-click", event_type="click")
    convs = blanks.iloc[1:3].assign(
        event_id=lambda d: d["event_id"] + "-conv", event_type="conversion"
    )
    rows += [clicks, convs]
    # Exact duplicates of rows of the Parquet file: the Parquet row wins (smaller file name).
    rows.append(base.head(5))
    extra = pd.concat(rows, ignore_index=True)
    text = extra.copy()
    text["ts"] = extra["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text["position"] = extra["position"].astype("Int64").astype("string")
    lake.landing.write_bytes(
        f"events/dt={MESSY_DAY}/part-00001.csv", text.to_csv(index=False).encode()
    )
    for table, key in (("users", "user_id"), ("items", "item_id")):
        snap = read_frame(lake.landing, f"{table}/dt={MESSY_DAY}/part-00000.parquet")
        broken = pd.concat([snap.head(3), snap.head(2).assign(**{key: None})], ignore_index=True)
        landing.write_partition(lake.landing, table, MESSY_DAY, broken, part="part-00001")


def _reread(df: pd.DataFrame) -> pd.DataFrame:
    return parquet_bytes_to_frame(frame_to_parquet_bytes(df))


def _legacy_day(lake, dt: str, history: dict) -> dict[str, dict[str, bytes] | dict]:
    """Every data step of one day through the legacy pandas functions, encoded like publish."""
    landed = {t: old.read_landed(lake.landing, t, dt) for t in ("events", "users", "items")}
    users, user_counts = old.clean_snapshot(landed["users"], "user_id")
    items, item_counts = old.clean_snapshot(landed["items"], "item_id")
    events, counts = old.validate_events(landed["events"], dt, users=users, items=items)
    # Each step reads its inputs back from Parquet, as in the pipeline.
    events_in, users_in, items_in = _reread(events), _reread(users), _reread(items)
    activity = old.daily_activity(events_in, items_in)
    history[dt] = [_reread(f) for f in activity]
    window = warehouse.window(dt, WINDOW_DAYS, FIRST_DAY)
    tables = old.point_in_time_features(
        [history[d][0] for d in window],
        [history[d][1] for d in window],
        [history[d][2] for d in window],
    )
    reread_tables = FeatureTables(
        items=_reread(tables.items),
        users=_reread(tables.users),
        priors=tables.priors,
        user_categories=_reread(tables.user_categories),
    )
    # Samples of dt join the profile snapshots as of the end of dt-1 (what serving had on dt);
    # before any, empty snapshots. The legacy function is unchanged; only its inputs follow.
    snapshots = history.setdefault("_snapshots", {})
    earlier = [d for d in sorted(snapshots) if d < dt]
    prev_users, prev_items = (
        snapshots[earlier[-1]] if earlier else (users_in.head(0), items_in.head(0))
    )
    snapshots[dt] = (users_in, items_in)
    samples = old.build_samples(events_in, reread_tables, prev_users, prev_items)
    sequences = old.behaviour_sequences(events_in)
    enc = frame_to_parquet_bytes
    return {
        steps.EVENTS: {"data.parquet": enc(events)},
        steps.USERS: {"data.parquet": enc(users)},
        steps.ITEMS: {"data.parquet": enc(items)},
        steps.ACTIVITY: {
            f"{n}.parquet": enc(f)
            for n, f in zip(("items", "users", "user_categories"), activity, strict=True)
        },
        steps.FEATURES: {
            "items.parquet": enc(tables.items),
            "users.parquet": enc(tables.users),
            "user_categories.parquet": enc(tables.user_categories),
        },
        steps.SAMPLES: {"data.parquet": enc(samples)},
        steps.SEQUENCES: {"data.parquet": enc(sequences)},
        "counts": {"events": counts.as_metadata(), "users": user_counts, "items": item_counts},
        "priors": tables.priors.as_dict(),
    }


def _new_day(lake, dt: str) -> None:
    store = lake.warehouse
    limits = Thresholds(max_duplicate_rate=1.0, max_orphan_click_rate=1.0)
    checked = steps.check_landing(lake.landing, dt, limits)
    # The messy day breaks the contract on purpose (null ids): publish it as passed so that the
    # comparison covers every step; what the checks decide is tested elsewhere.
    checked.artifact.blobs["landing.json"] = checked.artifact.blobs["landing.json"].replace(
        b'"passed": false', b'"passed": true'
    )
    warehouse.publish(store, steps.LANDED, dt, checked.artifact)
    for asset, art in steps.validate(lake.landing, store, dt).items():
        warehouse.publish(store, asset, dt, art)
    warehouse.publish(store, steps.ACTIVITY, dt, steps.activity(store, dt))
    warehouse.publish(store, steps.FEATURES, dt, steps.features(store, dt, FIRST_DAY))
    warehouse.publish(store, steps.SAMPLES, dt, steps.samples(store, dt, limits).artifact)
    warehouse.publish(store, steps.SEQUENCES, dt, steps.sequences(store, dt))


def _table(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.simulation.simulate import write_simulation
    from reckit_assets_tests.conftest import SMALL, Lake

    root = tmp_path_factory.mktemp("equivalence")
    lake = Lake(
        root=root,
        landing=LocalStorage(root / "landing"),
        warehouse=LocalStorage(root / "warehouse"),
        oracle=LocalStorage(root / "oracle"),
    )
    write_simulation(SMALL, lake.landing, lake.oracle)
    _add_messy_files(lake)
    history: dict = {}
    legacy = {}
    for dt in days(SMALL.days):
        legacy[dt] = _legacy_day(lake, dt, history)
        _new_day(lake, dt)
    return lake, legacy


def test_messy_day_really_is_messy(both):
    _, legacy = both
    counts = legacy[MESSY_DAY]["counts"]["events"]
    for key in (
        "duplicate_events",
        "out_of_day",
        "orphan_clicks",
        "null_id_rows",
        "unknown_event_type",
        "duplicate_impressions",
        "missing_position",
        "items_not_in_catalog",
    ):
        assert counts[key] > 0, key
    assert legacy[MESSY_DAY]["counts"]["users"]["null_keys"] == 2
    assert legacy[MESSY_DAY]["counts"]["users"]["duplicate_keys"] == 3


@pytest.mark.parametrize("dt", days(4))
def test_same_counts_as_the_pandas_layer(both, dt):
    lake, legacy = both
    info = {
        "events": warehouse.manifest(lake.warehouse, steps.EVENTS, dt)["info"],
        "users": warehouse.manifest(lake.warehouse, steps.USERS, dt)["info"],
        "items": warehouse.manifest(lake.warehouse, steps.ITEMS, dt)["info"],
    }
    assert info == legacy[dt]["counts"]
    priors = warehouse.read_json(lake.warehouse, steps.FEATURES, dt, "priors.json")
    priors.pop("long")  # the long window's rates and strengths came after (issue 20)
    assert priors == legacy[dt]["priors"]


@pytest.mark.parametrize("dt", days(4))
@pytest.mark.parametrize(
    "asset",
    [
        steps.EVENTS,
        steps.USERS,
        steps.ITEMS,
        steps.ACTIVITY,
        steps.FEATURES,
        steps.SAMPLES,
        steps.SEQUENCES,
    ],
)
def test_same_tables_as_the_pandas_layer(both, dt, asset):
    """Same schema, same values, same row order: labels, features and samples are unchanged.

    The feature tables and samples have gained the long-window target encodings (``*_28d``)
    since: their other columns are compared (these days have no key outside the short window),
    and their bytes are new data versions."""
    lake, legacy = both
    expected = legacy[dt][asset]
    extended = asset in (steps.FEATURES, steps.SAMPLES)
    for name, data in expected.items():
        published = warehouse.read_file(lake.warehouse, asset, dt, name)
        got, want = _table(published), _table(data)
        if extended and name.endswith(".parquet"):
            added = [c for c in got.column_names if c.endswith("_28d")]
            assert added, f"{asset}/{name} has no long-window columns"
            got = got.drop_columns(added)
            assert got.equals(want), f"{asset}/{name} differs"
            continue
        if extended:  # priors.json: the short window's priors unchanged, the long one's added
            import json

            got_priors = json.loads(published)
            assert "long" in got_priors
            assert {k: v for k, v in got_priors.items() if k != "long"} == json.loads(data)
            continue
        assert got.schema == want.schema, f"{asset}/{name}"
        assert got.num_rows == want.num_rows, f"{asset}/{name}"
        assert got.equals(want), f"{asset}/{name} differs"
        # Same bytes, so the switch left every data version as it was.
        assert published == data, f"{asset}/{name}: same rows, different bytes"


@pytest.mark.parametrize("dt", [MESSY_DAY, days(4)[-1]])
def test_samples_built_in_chunks_are_the_same_rows_and_bytes(both, dt, monkeypatch):
    """A large day is built a chunk of rows at a time (and written a row group at a time): with
    chunks and row groups far smaller than the day, rows and Parquet bytes equal the whole-day
    build's."""
    from reckit_assets.core.features.compute import build_samples
    from reckit_assets.core.io import frames

    lake, _ = both
    store = lake.warehouse
    events = warehouse.read_polars(store, steps.EVENTS, dt)
    features = steps.load_features(store, dt, polars=True)
    users, _ = steps.profile_snapshot(store, steps.USERS, dt, 28)
    items, _ = steps.profile_snapshot(store, steps.ITEMS, dt, 28)
    whole = build_samples(events, features, users, items, chunk_rows=events.height)
    chunked = build_samples(events, features, users, items, chunk_rows=777)
    assert events.height > 3 * 777 and chunked.n_chunks() > 1
    assert chunked.equals(whole)
    monkeypatch.setattr(frames, "ROW_GROUP_ROWS", 1000)  # row groups across chunk boundaries
    assert frames.frame_to_parquet_bytes(chunked) == frames.frame_to_parquet_bytes(whole.rechunk())
