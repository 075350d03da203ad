"""The model registry, on the project's storage layer (a local folder or S3).

Layout under the registry root::

    <model>/versions/<version>/files/<name>     the artifact, native formats
    <model>/versions/<version>/manifest.json    created LAST, create-if-absent: the version
                                                exists once it exists, and only one writer
                                                ever creates it
    <model>/ledger.json                         the aliases AND their full log, one object

Write protocol (the invariants every reader relies on):

- A version is immutable; its id is derived from its inputs. Its files are written first, then
  its manifest with a create-if-absent write. A registration killed before the manifest leaves
  files no reader sees (``versions()`` and ``manifest()`` look at manifests only); the retry
  overwrites them. Two writers of one version: one creates the manifest, the other finds it and
  succeeds only if its files have the same hashes.
- Every alias move is ONE compare-and-swap of ``ledger.json`` on the alias value the mover
  expects, and that one write carries the move's log entry. Alias and log therefore cannot
  diverge: the alias is the ledger's ``aliases`` field, and every change of it is the last
  entry of its ``log``. Sequence numbers are ``len(log) + 1`` at the time of a successful swap,
  so they are unique and gap-free. A writer whose expected value is stale gets
  :class:`Conflict` naming the version it lost to; a writer that lost the swap only to a move
  of another alias re-reads and tries again.
- An alias only ever points at a version whose manifest exists.

Registries written before the ledger (``aliases/<alias>.json`` + ``alias_log/``) are read as they
are; the first alias move folds them into ``ledger.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reckit_assets.core.io.storage import PreconditionFailed, Storage, sha256_bytes

PRODUCTION = "production"
CANARY = "canary"
# Scores live traffic beside production, logged and judged, never shown to users.
SHADOW = "shadow"
ALIASES = (PRODUCTION, CANARY, SHADOW)
ROLLBACK_PREFIX = "rollback: "
LEDGER = "ledger.json"
LEDGER_FORMAT = 1
# A swap that lost only to moves of OTHER aliases is retried; this bounds a pathological storm.
_SWAP_ATTEMPTS = 50


class RegistryError(RuntimeError):
    pass


class CorruptVersionError(RegistryError):
    """A version's files are missing or do not match the hashes in its manifest."""


class Conflict(RegistryError):
    """Another writer moved the alias first: the expected current version is no longer current."""

    def __init__(self, model: str, alias: str, expected: str | None, actual: str | None, by: str):
        self.model, self.alias, self.expected, self.actual = model, alias, expected, actual
        super().__init__(
            f"{model} {alias}: expected it at {expected or 'nothing'} but it is at "
            f"{actual or 'nothing'} (moved by {by or 'unknown'}); lost to {actual or 'a clear'}"
        )


class _Current:
    """Sentinel: compare-and-swap on whatever the alias points at when the call starts."""

    def __repr__(self) -> str:
        return "CURRENT"


CURRENT = _Current()


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    by: str
    reason: str
    at: str
    seq: int = 0  # 1-based position in the model's ledger; 0 only for pre-ledger entries

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class _Ledger:
    aliases: dict[str, str | None] = field(default_factory=dict)
    log: list[dict] = field(default_factory=list)
    tag: str | None = None  # storage tag of ledger.json; None: there is no ledger.json yet

    def encode(self) -> bytes:
        return json.dumps(
            {"format": LEDGER_FORMAT, "aliases": self.aliases, "log": self.log},
            indent=1,
            sort_keys=True,
        ).encode()


def version_id(model: str, partition: str, inputs: dict) -> str:
    """``<model>-<dt>-<hash of everything the version is made from>``: same inputs, same id."""
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
    return f"{model}-{partition}-{digest[:10]}"


def _same_move(entry: dict, expected: object, version: str | None, by: str, reason: str) -> bool:
    return (entry["from_version"], entry["to_version"], entry["by"], entry["reason"]) == (
        expected,
        version,
        by,
        reason,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Registry:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    # -- versions -------------------------------------------------------------------------------
    def _vdir(self, model: str, version: str) -> str:
        return f"{model}/versions/{version}"

    def register(
        self, model: str, version: str, files: dict[str, bytes], manifest: dict
    ) -> tuple[dict, bool]:
        """Store ``files``, then create the manifest if absent. Returns (manifest, created).

        Idempotent: if the version exists with the same files, nothing is written and the
        stored manifest is returned (created=False); the same id with different bytes is
        refused, whether it was there before or another writer created it concurrently.
        """
        hashes = {name: sha256_bytes(data) for name, data in files.items()}
        existing = self.manifest(model, version)
        if existing is not None:
            return self._same_files(model, version, existing, hashes), False
        base = self._vdir(model, version)
        for name, data in sorted(files.items()):
            self.storage.write_bytes(f"{base}/files/{name}", data)
        full = {
            **manifest,
            "model": model,
            "version": version,
            "files": {n: {"sha256": hashes[n], "bytes": len(files[n])} for n in sorted(files)},
            "created_at": manifest.get("created_at") or _now(),
        }
        try:
            self.storage.write_if_absent(
                f"{base}/manifest.json", json.dumps(full, indent=2, sort_keys=True).encode()
            )
        except PreconditionFailed:
            existing = self.manifest(model, version)
            assert existing is not None  # create-if-absent lost: someone created it
            return self._same_files(model, version, existing, hashes), False
        return full, True

    @staticmethod
    def _same_files(model: str, version: str, existing: dict, hashes: dict[str, str]) -> dict:
        if {n: f["sha256"] for n, f in existing["files"].items()} != hashes:
            raise RegistryError(
                f"{model} {version} already exists with different files; versions are immutable"
            )
        return existing

    def manifest(self, model: str, version: str) -> dict | None:
        key = f"{self._vdir(model, version)}/manifest.json"
        if not self.storage.exists(key):
            return None
        return json.loads(self.storage.read_bytes(key))

    def versions(self, model: str) -> list[dict]:
        """Every complete version (manifest present), oldest first."""
        out = []
        for info in self.storage.list(f"{model}/versions"):
            parts = info.key.split("/")
            if len(parts) == 4 and parts[3] == "manifest.json":
                out.append(json.loads(self.storage.read_bytes(info.key)))
        return sorted(out, key=lambda m: (m.get("partition", ""), m["created_at"], m["version"]))

    def models(self) -> list[str]:
        names = set()
        for info in self.storage.list(""):
            parts = info.key.split("/")
            if len(parts) >= 4 and parts[1] == "versions" and parts[3] == "manifest.json":
                names.add(parts[0])
        return sorted(names)

    def load_files(self, model: str, version: str) -> dict[str, bytes]:
        """The version's files, each verified against its sha256 in the manifest."""
        manifest = self.manifest(model, version)
        if manifest is None:
            raise RegistryError(f"{model} has no version {version!r}")
        files, bad = {}, []
        for name, meta in manifest["files"].items():
            key = f"{self._vdir(model, version)}/files/{name}"
            if not self.storage.exists(key):
                bad.append(f"{name} missing")
                continue
            data = self.storage.read_bytes(key)
            if sha256_bytes(data) != meta["sha256"]:
                bad.append(f"{name} sha256 mismatch")
                continue
            files[name] = data
        if bad:
            raise CorruptVersionError(f"{model} {version} is corrupt: {', '.join(bad)}")
        return files

    # -- the ledger -----------------------------------------------------------------------------
    def _ledger(self, model: str) -> _Ledger:
        found = self.storage.read_with_tag(f"{model}/{LEDGER}")
        if found is None:
            return self._legacy(model)
        data, tag = found
        doc = json.loads(data)
        if doc.get("format") != LEDGER_FORMAT:
            raise RegistryError(f"{model}/{LEDGER}: unknown ledger format {doc.get('format')!r}")
        return _Ledger(aliases=doc["aliases"], log=doc["log"], tag=tag)

    def _legacy(self, model: str) -> _Ledger:
        """A pre-ledger registry (alias files + one log object per move), read as a ledger."""
        aliases: dict[str, str | None] = {}
        for info in self.storage.list(f"{model}/aliases"):
            name = info.key.rsplit("/", 1)[-1].removesuffix(".json")
            aliases[name] = json.loads(self.storage.read_bytes(info.key)).get("version")
        log = []
        for info in self.storage.list(f"{model}/alias_log"):  # sorted by key: write order
            entry = json.loads(self.storage.read_bytes(info.key))
            log.append({**entry, "seq": len(log) + 1})
        return _Ledger(aliases=aliases, log=log, tag=None)

    def alias(self, model: str, alias: str) -> str | None:
        return self._ledger(model).aliases.get(alias)

    def aliases(self, model: str) -> dict[str, str]:
        return {a: v for a, v in self._ledger(model).aliases.items() if v}

    def set_alias(
        self,
        model: str,
        alias: str,
        version: str | None,
        by: str,
        reason: str,
        expected: str | _Current | None = CURRENT,
    ) -> AliasMove:
        """Point ``alias`` at ``version`` (None clears it) with one conditional write.

        ``expected``: the version the caller believes the alias points at now (None: nothing);
        if another writer moved it meanwhile, :class:`Conflict` names the version it lost to
        and nothing is written. The default compares against the value read when the call
        starts, so two concurrent movers can never both believe they succeeded. Retrying a
        move that already happened (the alias's last move is this one: same expected, version,
        ``by`` and ``reason``) returns that move instead of failing, so a mover killed after
        its write can simply run again.
        """
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}; aliases are {', '.join(ALIASES)}")
        if version is not None and self.manifest(model, version) is None:
            raise RegistryError(f"cannot point {model} {alias} at {version!r}: no such version")
        key = f"{model}/{LEDGER}"
        for _ in range(_SWAP_ATTEMPTS):
            ledger = self._ledger(model)
            current = ledger.aliases.get(alias)
            if isinstance(expected, _Current):
                expected = current
            last = next((m for m in reversed(ledger.log) if m["alias"] == alias), None)
            if current != expected:
                if last is not None and _same_move(last, expected, version, by, reason):
                    return AliasMove(**last)  # a retry of this very move, which happened
                raise Conflict(model, alias, expected, current, (last or {}).get("by", ""))
            move = AliasMove(
                model, alias, current, version, by, reason, _now(), seq=len(ledger.log) + 1
            )
            ledger.aliases[alias] = version
            ledger.log.append(move.as_dict())
            try:
                if ledger.tag is None:
                    self.storage.write_if_absent(key, ledger.encode())
                else:
                    self.storage.write_if_match(key, ledger.encode(), ledger.tag)
            except PreconditionFailed:
                continue  # someone else moved an alias: re-read, re-check ``expected``
            return move
        raise RegistryError(
            f"{model} {alias}: gave up after {_SWAP_ATTEMPTS} lost swaps of {key}; retry"
        )

    def history(self, model: str, alias: str | None = None) -> list[AliasMove]:
        """Every alias move, oldest first (``seq`` order)."""
        moves = [AliasMove(**entry) for entry in self._ledger(model).log]
        return [m for m in moves if alias is None or m.alias == alias]

    def previous_production(self, model: str) -> str | None:
        """The version production pointed at before the current one was put there.

        Rollbacks are not promotions: after v1 -> v2 -> v3, rollback goes to v2 and a second
        rollback to v1 (never back to v3), so the walk skips moves made by rollbacks.
        """
        current = self.alias(model, PRODUCTION)
        for move in reversed(self.history(model, PRODUCTION)):
            if move.reason.startswith(ROLLBACK_PREFIX):
                continue
            if move.to_version == current:
                return move.from_version if move.from_version != current else None
        return None

    def rollback(
        self, model: str, by: str, reason: str, smoke: Callable[[str, dict[str, bytes]], None]
    ) -> AliasMove:
        """Point production back at the previous version after verifying it.

        ``smoke(kind, files)`` must load and score the version (raise on failure); hashes are
        verified first. A corrupt or unloadable version is refused and production stays put.
        The move is a compare-and-swap on the production version the target was derived from.
        """
        current = self.alias(model, PRODUCTION)
        target = self.previous_production(model)
        if target is None:
            raise RegistryError(f"{model}: no previous production version to roll back to")
        files = self.load_files(model, target)  # raises CorruptVersionError
        smoke(self.manifest(model, target)["kind"], files)
        return self.set_alias(
            model, PRODUCTION, target, by, f"{ROLLBACK_PREFIX}{reason}", expected=current
        )

    # -- verification ---------------------------------------------------------------------------
    def verify(self, model: str | None = None) -> list[str]:
        """Every problem found (empty: the registry is sound).

        Checks every version's files against its manifest, that every alias points at an
        existing version whose files verify, and that the ledger is consistent: sequence
        numbers 1..n, each move starts where the previous move of its alias ended, and
        replaying the log gives the aliases. Files without a manifest (a registration killed
        before its last write) are invisible to readers, so they are not a problem.
        """
        problems: list[str] = []
        names = [model] if model else sorted(set(self.models()) | set(self._ledger_models()))
        for name in names:
            sound: dict[str, bool] = {}
            for m in self.versions(name):
                try:
                    self.load_files(name, m["version"])
                    sound[m["version"]] = True
                except CorruptVersionError as exc:
                    problems.append(str(exc))
                    sound[m["version"]] = False
            ledger = self._ledger(name)
            for alias, version in sorted(ledger.aliases.items()):
                if version is None:
                    continue
                if version not in sound:
                    problems.append(f"{name} {alias} -> {version}: no such version")
                elif not sound[version]:
                    problems.append(f"{name} {alias} -> {version}: the version is corrupt")
            replay: dict[str, str | None] = {}
            for i, entry in enumerate(ledger.log, start=1):
                if ledger.tag is not None and entry.get("seq") != i:
                    problems.append(f"{name} ledger entry {i} has seq {entry.get('seq')}")
                if entry["from_version"] != replay.get(entry["alias"]):
                    problems.append(
                        f"{name} ledger entry {i} moves {entry['alias']} from "
                        f"{entry['from_version']} but it was at {replay.get(entry['alias'])}"
                    )
                replay[entry["alias"]] = entry["to_version"]
            if {a: v for a, v in replay.items() if v} != {
                a: v for a, v in ledger.aliases.items() if v
            }:
                problems.append(f"{name}: aliases {ledger.aliases} differ from the log {replay}")
        return problems

    def _ledger_models(self) -> list[str]:
        return [n for n in self.storage.list_prefixes("") if self.storage.exists(f"{n}/{LEDGER}")]
