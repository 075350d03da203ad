"""S3 (or any S3-protocol server) behind the :class:`~reckit_assets.core.io.storage.Storage` protocol.

``s3://bucket/prefix``: keys live under the prefix. Credentials and endpoint come from the
environment as boto3 reads them (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
AWS_ENDPOINT_URL for a non-AWS server); nothing secret is ever configured in code.

A PUT of one object is atomic on S3 (readers see the old or the new object), so write_bytes has
the same guarantee as the local implementation.

Conditional writes use S3's own preconditions: ``write_if_absent`` is a PUT with
``If-None-Match: *`` and ``write_if_match`` a PUT with ``If-Match: <ETag>``; the server refuses
the loser with 412 (or 409 when two conditional PUTs race), which becomes
:class:`~reckit_assets.core.io.storage.PreconditionFailed`. AWS S3 honours both since 2024 (and
moto 5.2 does). Some S3-compatible servers silently ignore the headers, which would make every
conditional write unconditional; so before the first conditional write the store probes the
server once (a key written twice with ``If-None-Match``: the second PUT must be refused) and
refuses to go on if it is not. Fallback for such servers: ``RECKIT_S3_CONDITIONAL_WRITES=emulated``
checks the precondition with a read before an ordinary PUT. That is NOT atomic: it is correct
only with a single writer, so serialize registrations (one run at a time that registers, e.g. a
Dagster pool of size 1) when you use it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from reckit_assets.core.io.storage import ObjectInfo, PreconditionFailed, StorageError, _clean_key

CONDITIONAL_ENV = "RECKIT_S3_CONDITIONAL_WRITES"  # "native" (default) or "emulated"
_LOST = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


class S3Storage:
    def __init__(self, bucket: str, prefix: str = "", client=None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.conditional = os.environ.get(CONDITIONAL_ENV, "native")
        if self.conditional not in ("native", "emulated"):
            raise StorageError(
                f"{CONDITIONAL_ENV} must be 'native' or 'emulated', not {self.conditional!r}"
            )
        self._probed = False

    def __reduce__(self):
        # Pickled to reach a model process (core/training/isolation.py): a boto3 client does not
        # travel, so the copy opens one to the same endpoint and region, in the same write mode;
        # credentials come from that process's environment, as they do here.
        meta = self.client.meta
        return (
            _reopen,
            (self.bucket, self.prefix, meta.endpoint_url, meta.region_name, self.conditional),
        )

    @classmethod
    def from_uri(cls, uri: str, client=None) -> S3Storage:
        if not uri.startswith("s3://"):
            raise StorageError(f"not an s3:// URI: {uri!r}")
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise StorageError(f"no bucket in {uri!r}")
        return cls(bucket, prefix, client)

    def _key(self, key: str) -> str:
        key = _clean_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _strip(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"{self.uri}/{key}: no such object") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = prefix.strip("/")
        full = self._key(base) + "/" if base else (f"{self.prefix}/" if self.prefix else "")
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        ):
            for obj in page.get("Contents", []):
                key = self._strip(obj["Key"])
                if not key.rsplit("/", 1)[-1].startswith("."):
                    # ETag alone is a content hash: an empty marker rewritten keeps it, so the
                    # write time is part of the version (a re-landed day must look new).
                    version = f"{obj['ETag'].strip(chr(34))}@{obj['LastModified'].isoformat()}"
                    out.append(ObjectInfo(key=key, size=obj["Size"], version=version))
        return sorted(out, key=lambda info: info.key)

    def delete_prefix(self, prefix: str) -> int:
        infos = self.list(prefix)
        for start in range(0, len(infos), 1000):
            batch = infos[start : start + 1000]
            self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self._key(i.key)} for i in batch], "Quiet": True},
            )
        return len(infos)

    def local_path(self, key: str) -> Path | None:
        return None

    def stat(self, key: str) -> ObjectInfo | None:
        # A one-key listing, not HEAD: the version token must be the one ``list`` gives
        # (ListObjects and HEAD format LastModified differently).
        full = self._key(key)
        page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=full, MaxKeys=1)
        for obj in page.get("Contents", []):
            if obj["Key"] == full:
                version = f"{obj['ETag'].strip(chr(34))}@{obj['LastModified'].isoformat()}"
                return ObjectInfo(key=self._strip(full), size=obj["Size"], version=version)
        return None

    def list_prefixes(self, prefix: str, start_after: str = "") -> list[str]:
        base = prefix.strip("/")
        full = self._key(base) + "/" if base else (f"{self.prefix}/" if self.prefix else "")
        kwargs = {"Bucket": self.bucket, "Prefix": full, "Delimiter": "/"}
        if start_after:
            # StartAfter is a key: everything under "<start_after>/" sorts after it, so "~"
            # (sorting after every name character used here) skips that child entirely.
            kwargs["StartAfter"] = f"{full}{start_after}~"
        names = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
            for cp in page.get("CommonPrefixes", []):
                names.add(cp["Prefix"][len(full) :].rstrip("/"))
            for obj in page.get("Contents", []):
                names.add(obj["Key"][len(full) :])
        return sorted(n for n in names if n and not n.startswith(".") and n > start_after)

    # -- conditional writes ---------------------------------------------------------------------
    def read_with_tag(self, key: str) -> tuple[bytes, str] | None:
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        return got["Body"].read(), got["ETag"]

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> str:
        from botocore.exceptions import ClientError

        try:
            out = self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, **condition
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            # If-Match on a missing key is refused as 404 NoSuchKey: also a lost precondition.
            missing = "IfMatch" in condition and (error.get("Code") in ("NoSuchKey", "404"))
            if missing or error.get("Code") in _LOST or status in ("412", "409"):
                raise PreconditionFailed(
                    f"{self.uri}/{key}: precondition {condition} failed ({error.get('Code')})"
                ) from None
            raise
        return out["ETag"]

    def _check_server(self) -> None:
        if self._probed or self.conditional == "emulated":
            return
        probe = f".reckit-conditional-probe/{uuid.uuid4().hex}"
        self._conditional_put(probe, b"1", IfNoneMatch="*")
        try:
            self._conditional_put(probe, b"2", IfNoneMatch="*")
            honoured = False
        except PreconditionFailed:
            honoured = True
        finally:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(probe))
        if not honoured:
            raise StorageError(
                f"{self.uri}: this S3 server ignores If-None-Match, so conditional writes would "
                f"silently be unconditional. Use a server that supports them, or set "
                f"{CONDITIONAL_ENV}=emulated and run a single writer (see docs/registry.md)"
            )
        self._probed = True

    def write_if_absent(self, key: str, data: bytes) -> str:
        self._check_server()
        if self.conditional == "emulated":
            if self.exists(key):
                raise PreconditionFailed(f"{self.uri}/{key} exists already")
            return self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)["ETag"]
        return self._conditional_put(key, data, IfNoneMatch="*")

    def write_if_match(self, key: str, data: bytes, tag: str) -> str:
        self._check_server()
        if self.conditional == "emulated":
            current = self.read_with_tag(key)
            if current is None or current[1] != tag:
                raise PreconditionFailed(f"{self.uri}/{key} changed since it was read")
            return self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)["ETag"]
        return self._conditional_put(key, data, IfMatch=tag)


def _reopen(
    bucket: str, prefix: str, endpoint_url: str | None, region: str | None, conditional: str
) -> S3Storage:
    import boto3

    storage = S3Storage(
        bucket, prefix, boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
    )
    storage.conditional = conditional
    return storage
