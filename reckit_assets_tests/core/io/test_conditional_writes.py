"""Create-if-absent and compare-and-swap, the same contract locally and on a real S3 server."""

from __future__ import annotations

import threading
import uuid

import pytest

from reckit_assets.core.io.storage import PreconditionFailed
from reckit_assets.core.io.uri import storage_from_uri


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_env")
        return storage_from_uri(f"s3://{bucket}/root")
    return storage_from_uri(str(tmp_path))


def test_create_if_absent_refuses_an_existing_key(store):
    tag = store.write_if_absent("m/ledger.json", b"one")
    assert store.read_with_tag("m/ledger.json") == (b"one", tag)
    with pytest.raises(PreconditionFailed):
        store.write_if_absent("m/ledger.json", b"two")
    assert store.read_bytes("m/ledger.json") == b"one"
    assert store.read_with_tag("m/missing.json") is None


def test_compare_and_swap_needs_the_current_tag(store):
    first = store.write_if_absent("k", b"v1")
    second = store.write_if_match("k", b"v2", first)
    assert second != first and store.read_bytes("k") == b"v2"
    with pytest.raises(PreconditionFailed):
        store.write_if_match("k", b"v3", first)  # stale: someone else swapped since
    with pytest.raises(PreconditionFailed):
        store.write_if_match("absent", b"x", first)
    assert store.read_bytes("k") == b"v2"
    assert [i.key for i in store.list("")] == ["k"]  # no temporaries or lock files listed


def test_concurrent_swaps_exactly_one_wins(store):
    tag = store.write_if_absent("k", b"0")
    results: list[str] = []
    barrier = threading.Barrier(6)

    def swap(i: int) -> None:
        barrier.wait()
        try:
            store.write_if_match("k", f"w{i}".encode(), tag)
            results.append(f"w{i}")
        except PreconditionFailed:
            results.append("lost")

    threads = [threading.Thread(target=swap, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r != "lost"]
    assert len(winners) == 1 and store.read_bytes("k") == winners[0].encode()


def test_stat_and_child_listing_match_list(store):
    for dt in ("2026-10-01", "2026-10-02", "2026-10-03"):
        store.write_bytes(f"events/dt={dt}/_SUCCESS", b"")
        store.write_bytes(f"events/dt={dt}/part-0.parquet", b"x")
    assert store.list_prefixes("events") == [f"dt=2026-10-0{i}" for i in (1, 2, 3)]
    assert store.list_prefixes("events", start_after="dt=2026-10-01") == [
        "dt=2026-10-02",
        "dt=2026-10-03",
    ]
    listed = {i.key: i for i in store.list("events")}
    assert store.stat("events/dt=2026-10-02/_SUCCESS") == listed["events/dt=2026-10-02/_SUCCESS"]
    assert store.stat("events/dt=2026-10-09/_SUCCESS") is None


def test_emulated_mode_for_servers_without_preconditions(s3_env, monkeypatch):
    monkeypatch.setenv("RECKIT_S3_CONDITIONAL_WRITES", "emulated")
    store = storage_from_uri(f"s3://{s3_env}/{uuid.uuid4().hex[:6]}")
    tag = store.write_if_absent("k", b"1")
    with pytest.raises(PreconditionFailed):
        store.write_if_absent("k", b"2")
    store.write_if_match("k", b"2", tag)
    with pytest.raises(PreconditionFailed):
        store.write_if_match("k", b"3", tag)
