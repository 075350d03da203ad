"""The model registry, on the project's storage layer (a local folder, or S3 later).

Layout under the registry root::

    <model>/versions/<version>/files/<name>     the artifact, native formats
    <model>/versions/<version>/manifest.json    written LAST: the version exists once it exists
    <model>/aliases/<alias>.json                one atomic write moves an alias
    <model>/alias_log/<time>-<id>.json          append-only: one object per alias move

A version is immutable and its id is derived from its inputs, so re-registering a day is a no-op.
A registration killed half-way leaves files without a manifest: invisible to every reader, and
overwritten by the next attempt. An alias only ever points at a version whose manifest exists.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from reckit_assets.core.io.storage import Storage, sha256_bytes

PRODUCTION = "production"
CANARY = "canary"
ALIASES = (PRODUCTION, CANARY)
ROLLBACK_PREFIX = "rollback: "


class RegistryError(RuntimeError):
    pass


class CorruptVersionError(RegistryError):
    """A version's files are missing or do not match the hashes in its manifest."""


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    by: str
    reason: str
    at: str

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def version_id(model: str, partition: str, inputs: dict) -> str:
    """``<model>-<dt>-<hash of everything the version is made from>``: same inputs, same id."""
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
    return f"{model}-{partition}-{digest[:10]}"


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
        """Store ``files`` and the manifest (last). Returns (manifest, created).

        Idempotent: if the version exists with the same files, nothing is written and the
        stored manifest is returned; the same id with different bytes is refused.
        """
        existing = self.manifest(model, version)
        hashes = {name: sha256_bytes(data) for name, data in files.items()}
        if existing is not None:
            if {n: f["sha256"] for n, f in existing["files"].items()} != hashes:
                raise RegistryError(
                    f"{model} {version} already exists with different files; versions are immutable"
                )
            return existing, False
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
        self.storage.write_bytes(
            f"{base}/manifest.json", json.dumps(full, indent=2, sort_keys=True).encode()
        )
        return full, True

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

    # -- aliases --------------------------------------------------------------------------------
    def alias(self, model: str, alias: str) -> str | None:
        key = f"{model}/aliases/{alias}.json"
        if not self.storage.exists(key):
            return None
        return json.loads(self.storage.read_bytes(key)).get("version")

    def aliases(self, model: str) -> dict[str, str]:
        out = {}
        for info in self.storage.list(f"{model}/aliases"):
            name = info.key.rsplit("/", 1)[-1].removesuffix(".json")
            version = json.loads(self.storage.read_bytes(info.key)).get("version")
            if version:
                out[name] = version
        return out

    def set_alias(
        self, model: str, alias: str, version: str | None, by: str, reason: str
    ) -> AliasMove:
        """Point ``alias`` at ``version`` (None clears it): one atomic write, then the log entry."""
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}; aliases are {', '.join(ALIASES)}")
        if version is not None and self.manifest(model, version) is None:
            raise RegistryError(f"cannot point {model} {alias} at {version!r}: no such version")
        move = AliasMove(model, alias, self.alias(model, alias), version, by, reason, _now())
        self.storage.write_bytes(
            f"{model}/aliases/{alias}.json",
            json.dumps(
                {"version": version, "moved_at": move.at, "by": by, "reason": reason},
                sort_keys=True,
            ).encode(),
        )
        # Keys sort in write order (a sequence number first); the uuid keeps two concurrent
        # writers from overwriting each other's entry.
        seq = len(self.storage.list(f"{model}/alias_log"))
        stamp = move.at.replace(":", "").replace("-", "").replace(".", "")
        self.storage.write_bytes(
            f"{model}/alias_log/{seq:08d}-{stamp}-{uuid.uuid4().hex[:8]}.json",
            json.dumps(move.as_dict(), sort_keys=True).encode(),
        )
        return move

    def history(self, model: str, alias: str | None = None) -> list[AliasMove]:
        moves = [
            AliasMove(**json.loads(self.storage.read_bytes(info.key)))
            for info in self.storage.list(f"{model}/alias_log")  # sorted by key: write order
        ]
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
        """
        target = self.previous_production(model)
        if target is None:
            raise RegistryError(f"{model}: no previous production version to roll back to")
        files = self.load_files(model, target)  # raises CorruptVersionError
        smoke(self.manifest(model, target)["kind"], files)
        return self.set_alias(model, PRODUCTION, target, by, f"{ROLLBACK_PREFIX}{reason}")
