"""The same storage contract on a real S3-protocol server (moto) on loopback."""

from __future__ import annotations

import pandas as pd
import pytest

from reckit_assets.core.ingest import landing
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.io.uri import storage_from_uri
from reckit_assets.core.release.registry import PRODUCTION, Registry


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_storage_contract(backend, s3_env, tmp_path):
    store = storage_from_uri(f"s3://{s3_env}/lake" if backend == "s3" else str(tmp_path))
    store.write_bytes("a/dt=1/x.parquet", b"one")
    store.write_bytes("a/dt=1/y.csv", b"two")
    store.write_bytes("a/dt=2/x.parquet", b"three")
    assert store.read_bytes("a/dt=1/y.csv") == b"two"
    assert store.exists("a/dt=1/x.parquet") and not store.exists("a/dt=3/x.parquet")
    assert [i.key for i in store.list("a/dt=1")] == ["a/dt=1/x.parquet", "a/dt=1/y.csv"]
    before = store.list("a/dt=1")[0].version
    store.write_bytes("a/dt=1/x.parquet", b"ONE")
    assert store.list("a/dt=1")[0].version != before  # re-landing is visible to the sensor
    assert store.delete_prefix("a/dt=1") == 2
    assert [i.key for i in store.list("a")] == ["a/dt=2/x.parquet"]
    with pytest.raises(FileNotFoundError, match="no such object"):
        store.read_bytes("a/dt=9/missing")


def test_landing_warehouse_and_registry_on_s3(s3_env, tmp_path):
    landing_store = storage_from_uri(f"s3://{s3_env}/landing")
    frame = pd.DataFrame({"user_id": ["u1"], "age": [30], "gender": ["F"], "region": ["north"]})
    for table in landing.TABLES:
        landing.write_partition(landing_store, table, "2026-10-01", frame)
    first = landing.ready_days(landing_store)
    assert list(first) == ["2026-10-01"]
    import time

    time.sleep(1.1)  # S3 timestamps have one-second resolution
    landing_store.write_bytes(landing.marker_key("events", "2026-10-01"), b"")
    assert landing.ready_days(landing_store) != first  # a re-landed day looks new on S3 too
    assert landing.read_landed(landing_store, "users", "2026-10-01").issues == []

    wh = storage_from_uri(f"s3://{s3_env}/warehouse")
    manifest = warehouse.publish(wh, "t", "2026-10-01", warehouse.Artifact(frames={"data": frame}))
    local = warehouse.publish(
        LocalStorage(tmp_path), "t", "2026-10-01", warehouse.Artifact(frames={"data": frame})
    )
    assert manifest["data_version"] == local["data_version"]  # same bytes on either backend
    pd.testing.assert_frame_equal(warehouse.read(wh, "t", "2026-10-01"), frame)

    registry = Registry(storage_from_uri(f"s3://{s3_env}/registry"))
    registry.register("toy", "v1", {"m.bin": b"weights"}, {"kind": "toy"})
    registry.set_alias("toy", PRODUCTION, "v1", "test", "first")
    assert registry.alias("toy", PRODUCTION) == "v1"
    assert registry.load_files("toy", "v1") == {"m.bin": b"weights"}
    assert [m.to_version for m in registry.history("toy")] == ["v1"]


def test_a_pickled_s3_storage_reopens_the_same_place_in_the_same_mode(s3_env, monkeypatch):
    """What a model process receives (core/training/isolation.py): no client travels, the copy
    opens its own to the same endpoint, bucket and prefix, with the same conditional-write mode."""
    import pickle

    monkeypatch.setenv("RECKIT_S3_CONDITIONAL_WRITES", "emulated")
    store = storage_from_uri(f"s3://{s3_env}/warehouse")
    store.write_bytes("t/dt=1/x.bin", b"payload")
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the copy must not depend on this process's variables
    monkeypatch.delenv("RECKIT_S3_CONDITIONAL_WRITES")
    copy = pickle.loads(pickle.dumps(store))
    assert copy.client is not store.client
    assert (copy.uri, copy.conditional) == (store.uri, "emulated")
    assert copy.client.meta.endpoint_url == store.client.meta.endpoint_url
    assert copy.read_bytes("t/dt=1/x.bin") == b"payload"
