"""The registry: immutable versions, atomic aliases with an audit log, safe rollback."""

from __future__ import annotations

import pytest

from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.release.registry import (
    CANARY,
    PRODUCTION,
    CorruptVersionError,
    Registry,
    RegistryError,
    version_id,
)

FILES_A = {"model.bin": b"model a", "meta.json": b"{}"}
FILES_B = {"model.bin": b"model b", "meta.json": b"{}"}


def _ok(kind: str, files: dict[str, bytes]) -> None:
    assert kind == "toy" and files


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(LocalStorage(tmp_path / "registry"))


def test_version_ids_come_from_inputs():
    a = version_id("xgboost", "2026-10-08", {"inputs": {"2026-10-07": "abc"}, "params": {"x": 1}})
    assert a == version_id(
        "xgboost", "2026-10-08", {"params": {"x": 1}, "inputs": {"2026-10-07": "abc"}}
    )
    assert a != version_id(
        "xgboost", "2026-10-08", {"inputs": {"2026-10-07": "abd"}, "params": {"x": 1}}
    )
    assert a.startswith("xgboost-2026-10-08-")


def test_register_is_idempotent_and_versions_are_immutable(registry):
    first, created = registry.register("toy", "v1", FILES_A, {"kind": "toy", "partition": "d1"})
    again, created_again = registry.register(
        "toy", "v1", FILES_A, {"kind": "toy", "partition": "d1"}
    )
    assert created and not created_again and again == first
    with pytest.raises(RegistryError, match="immutable"):
        registry.register("toy", "v1", FILES_B, {"kind": "toy"})
    assert registry.load_files("toy", "v1") == FILES_A


class _Crash(Exception):
    pass


class _CrashingStorage(LocalStorage):
    """Dies after ``budget`` writes, like a process killed mid-registration."""

    def __init__(self, root, budget: int) -> None:
        super().__init__(root)
        self.budget = budget

    def write_bytes(self, key: str, data: bytes) -> None:
        if self.budget == 0:
            raise _Crash(key)
        self.budget -= 1
        super().write_bytes(key, data)


def test_a_registration_killed_half_way_is_invisible_and_retried_cleanly(tmp_path):
    root = tmp_path / "registry"
    crashing = Registry(_CrashingStorage(root, budget=1))  # one file written, then death
    with pytest.raises(_Crash):
        crashing.register("toy", "v1", FILES_A, {"kind": "toy"})
    registry = Registry(LocalStorage(root))
    assert registry.versions("toy") == [] and registry.manifest("toy", "v1") is None
    with pytest.raises(RegistryError, match="no such version"):
        registry.set_alias("toy", PRODUCTION, "v1", "test", "must not point at a partial version")
    assert registry.alias("toy", PRODUCTION) is None
    _, created = registry.register("toy", "v1", FILES_A, {"kind": "toy"})
    assert created and registry.load_files("toy", "v1") == FILES_A


def test_alias_moves_are_logged_with_who_and_why(registry):
    registry.register("toy", "v1", FILES_A, {"kind": "toy"})
    registry.register("toy", "v2", FILES_B, {"kind": "toy"})
    registry.set_alias("toy", PRODUCTION, "v1", "alice", "first model")
    registry.set_alias("toy", CANARY, "v2", "run 42", "registered from dt=d2")
    registry.set_alias("toy", PRODUCTION, "v2", "bob", "canary looked good")
    assert registry.aliases("toy") == {PRODUCTION: "v2", CANARY: "v2"}
    log = [(m.alias, m.from_version, m.to_version, m.by, m.reason) for m in registry.history("toy")]
    assert log == [
        (PRODUCTION, None, "v1", "alice", "first model"),
        (CANARY, None, "v2", "run 42", "registered from dt=d2"),
        (PRODUCTION, "v1", "v2", "bob", "canary looked good"),
    ]


def test_rollback_verifies_and_moves_production_back(registry):
    registry.register("toy", "v1", FILES_A, {"kind": "toy"})
    registry.register("toy", "v2", FILES_B, {"kind": "toy"})
    registry.set_alias("toy", PRODUCTION, "v1", "alice", "first")
    registry.set_alias("toy", PRODUCTION, "v2", "alice", "second")
    move = registry.rollback("toy", "oncall", "v2 hurts CTR", smoke=_ok)
    assert (move.from_version, move.to_version) == ("v2", "v1")
    assert registry.alias("toy", PRODUCTION) == "v1"
    assert registry.history("toy")[-1].reason == "rollback: v2 hurts CTR"


def test_rollback_is_refused_for_a_corrupt_version(registry, tmp_path):
    registry.register("toy", "v1", FILES_A, {"kind": "toy"})
    registry.register("toy", "v2", FILES_B, {"kind": "toy"})
    registry.set_alias("toy", PRODUCTION, "v1", "alice", "first")
    registry.set_alias("toy", PRODUCTION, "v2", "alice", "second")
    (tmp_path / "registry/toy/versions/v1/files/model.bin").write_bytes(b"bit rot")
    with pytest.raises(CorruptVersionError, match=r"model\.bin sha256 mismatch"):
        registry.rollback("toy", "oncall", "try", smoke=_ok)
    assert registry.alias("toy", PRODUCTION) == "v2"


def test_rollback_is_refused_when_the_version_does_not_load(registry):
    registry.register("toy", "v1", FILES_A, {"kind": "toy"})
    registry.register("toy", "v2", FILES_B, {"kind": "toy"})
    registry.set_alias("toy", PRODUCTION, "v1", "a", "first")
    registry.set_alias("toy", PRODUCTION, "v2", "a", "second")

    def broken(kind: str, files: dict[str, bytes]) -> None:
        raise RuntimeError("does not load")

    with pytest.raises(RuntimeError, match="does not load"):
        registry.rollback("toy", "oncall", "try", smoke=broken)
    assert registry.alias("toy", PRODUCTION) == "v2"


def test_repeated_rollbacks_walk_back_and_never_return_to_the_rolled_back_version(registry):
    for v, files in (("v1", FILES_A), ("v2", FILES_B), ("v3", {"model.bin": b"c"})):
        registry.register("toy", v, files, {"kind": "toy"})
        registry.set_alias("toy", PRODUCTION, v, "ci", f"promote {v}")
    assert registry.rollback("toy", "oncall", "bad", smoke=_ok).to_version == "v2"
    assert registry.rollback("toy", "oncall", "worse", smoke=_ok).to_version == "v1"
    with pytest.raises(RegistryError, match="no previous production"):
        registry.rollback("toy", "oncall", "again", smoke=_ok)
    assert registry.alias("toy", PRODUCTION) == "v1"


def test_unknown_alias_is_refused(registry):
    registry.register("toy", "v1", FILES_A, {"kind": "toy"})
    with pytest.raises(RegistryError, match="unknown alias"):
        registry.set_alias("toy", "../x", "v1", "a", "b")


def test_a_stale_alias_move_is_refused_with_the_version_it_lost_to(registry):
    from reckit_assets.core.release.registry import Conflict

    for v, files in (("v1", FILES_A), ("v2", FILES_B)):
        registry.register("toy", v, files, {"kind": "toy"})
    registry.set_alias("toy", PRODUCTION, "v1", "run 1", "registered from dt=d1", expected=None)
    with pytest.raises(Conflict, match="lost to v1") as lost:
        registry.set_alias("toy", PRODUCTION, "v2", "run 2", "registered", expected=None)
    assert (lost.value.expected, lost.value.actual) == (None, "v1")
    assert registry.alias("toy", PRODUCTION) == "v1"
    assert [m.seq for m in registry.history("toy")] == [1]


def test_verify_finds_corrupt_versions_and_aliases_on_them(registry, tmp_path):
    registry.register("toy", "v1", FILES_A, {"kind": "toy"})
    registry.set_alias("toy", PRODUCTION, "v1", "a", "first")
    registry.storage.write_bytes("toy/versions/v2/files/model.bin", b"no manifest: invisible")
    assert registry.verify() == []
    (tmp_path / "registry/toy/versions/v1/files/model.bin").write_bytes(b"bit rot")
    problems = registry.verify()
    assert any("v1 is corrupt: model.bin sha256 mismatch" in p for p in problems)
    assert any("production -> v1: the version is corrupt" in p for p in problems)


def test_a_pre_ledger_registry_is_read_and_folded_into_the_ledger(registry):
    import json

    registry.register("toy", "v1", FILES_A, {"kind": "toy"})
    registry.register("toy", "v2", FILES_B, {"kind": "toy"})
    old = {"version": "v1", "moved_at": "t", "by": "a", "reason": "first"}
    registry.storage.write_bytes("toy/aliases/production.json", json.dumps(old).encode())
    entry = {"model": "toy", "alias": PRODUCTION, "from_version": None, "to_version": "v1"}
    entry |= {"by": "a", "reason": "first", "at": "t"}
    registry.storage.write_bytes("toy/alias_log/00000000-x.json", json.dumps(entry).encode())
    assert registry.aliases("toy") == {PRODUCTION: "v1"}
    registry.set_alias("toy", PRODUCTION, "v2", "b", "second")
    assert [(m.seq, m.to_version) for m in registry.history("toy")] == [(1, "v1"), (2, "v2")]
    assert registry.previous_production("toy") == "v1" and registry.verify() == []
