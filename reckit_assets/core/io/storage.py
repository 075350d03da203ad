"""Byte storage addressed by ``/``-separated keys under one root (a local folder now, S3 later).

Everything the pipeline persists goes through :class:`Storage`, so no module assumes a local
filesystem. Writes are atomic: a reader sees the old bytes or the new ones, never a torn file.

Two conditional writes make a ledger possible on top of it (the model registry uses them):

- ``write_if_absent(key, data)``: create-if-absent. Exactly one of several concurrent writers of
  a key succeeds; the others get :class:`PreconditionFailed`.
- ``write_if_match(key, data, tag)``: compare-and-swap. The write happens only if the object's
  current tag (from ``read_with_tag``) is still ``tag``; otherwise :class:`PreconditionFailed`.

Locally the tag is the sha256 of the content; on S3 it is the ETag.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    # A token that changes whenever the object is rewritten (mtime_ns locally, ETag on S3).
    version: str


class Storage(Protocol):
    """What the pipeline needs from a blob store."""

    uri: str

    def read_bytes(self, key: str) -> bytes: ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[ObjectInfo]: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def local_path(self, key: str) -> Path | None: ...

    def stat(self, key: str) -> ObjectInfo | None:
        """The object's info (same ``version`` token as ``list``), None if absent."""
        ...

    def list_prefixes(self, prefix: str, start_after: str = "") -> list[str]:
        """Names of the direct children of ``prefix`` ("folders" and objects) sorting after
        ``start_after``, sorted. One listing call, not a walk of everything below."""
        ...

    def read_with_tag(self, key: str) -> tuple[bytes, str] | None:
        """(bytes, tag) of the object, None if absent; the tag feeds ``write_if_match``."""
        ...

    def write_if_absent(self, key: str, data: bytes) -> str:
        """Create ``key``; raise :class:`PreconditionFailed` if it exists. Returns the new tag."""
        ...

    def write_if_match(self, key: str, data: bytes, tag: str) -> str:
        """Replace ``key`` only if its tag is still ``tag`` (else :class:`PreconditionFailed`,
        also when the object is absent). Returns the new tag."""
        ...


class StorageError(RuntimeError):
    pass


class PreconditionFailed(StorageError):
    """A conditional write lost: the object exists already, or changed since it was read."""


def _clean_key(key: str) -> str:
    key = key.strip("/")
    if not key or any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"invalid storage key {key!r}")
    return key


class LocalStorage:
    """A folder on the local disk."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _clean_key(key)

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.uri}/{key}: no such object") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self.root / prefix.strip("/") if prefix.strip("/") else self.root
        if not base.exists():
            return []
        out = []
        for path in base.rglob("*"):
            # Hidden names are in-flight temporaries of atomic writes.
            if path.is_file() and not path.name.startswith("."):
                stat = path.stat()
                key = path.relative_to(self.root).as_posix()
                out.append(ObjectInfo(key=key, size=stat.st_size, version=str(stat.st_mtime_ns)))
        return sorted(out, key=lambda info: info.key)

    def delete_prefix(self, prefix: str) -> int:
        infos = self.list(prefix)
        for info in infos:
            (self.root / info.key).unlink(missing_ok=True)
        return len(infos)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key=_clean_key(key), size=st.st_size, version=str(st.st_mtime_ns))

    def list_prefixes(self, prefix: str, start_after: str = "") -> list[str]:
        base = self.root / prefix.strip("/") if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        return sorted(
            p.name for p in base.iterdir() if not p.name.startswith(".") and p.name > start_after
        )

    # -- conditional writes ---------------------------------------------------------------------
    def read_with_tag(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        return data, sha256_bytes(data)

    def _staged(self, path: Path, data: bytes) -> str:
        """A hidden, fsynced temporary next to ``path`` holding ``data`` (caller moves it)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def write_if_absent(self, key: str, data: bytes) -> str:
        # link(2) refuses an existing target atomically, and the name appears with its full
        # content (the temporary was complete and fsynced before it got a visible name).
        path = self._path(key)
        tmp = self._staged(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise PreconditionFailed(f"{self.uri}/{key} exists already") from None
        finally:
            Path(tmp).unlink(missing_ok=True)
        _fsync_dir(path.parent)
        return sha256_bytes(data)

    def write_if_match(self, key: str, data: bytes, tag: str) -> str:
        # Every compare-and-swap of a key holds an exclusive flock on a hidden lock file next to
        # it; the kernel drops the lock when the holder dies (SIGKILL included), so a crashed
        # writer never blocks the next one. The swap itself is a rename: atomic for readers.
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(path.parent / f".{path.name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read_with_tag(key)
            if current is None:
                raise PreconditionFailed(f"{self.uri}/{key} does not exist (expected tag {tag})")
            if current[1] != tag:
                raise PreconditionFailed(f"{self.uri}/{key} changed since it was read")
            tmp = self._staged(path, data)
            try:
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(path.parent)
        finally:
            os.close(lock)  # releases the flock
        return sha256_bytes(data)


def _fsync_dir(path: Path) -> None:
    """Make a rename or link in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
