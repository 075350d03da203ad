"""S3 (or any S3-protocol server) behind the :class:`~reckit_assets.core.io.storage.Storage` protocol.

``s3://bucket/prefix``: keys live under the prefix. Credentials and endpoint come from the
environment as boto3 reads them (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
AWS_ENDPOINT_URL for a non-AWS server); nothing secret is ever configured in code.

A PUT of one object is atomic on S3 (readers see the old or the new object), so write_bytes has
the same guarantee as the local implementation.
"""

from __future__ import annotations

from pathlib import Path

from reckit_assets.core.io.storage import ObjectInfo, StorageError, _clean_key


class S3Storage:
    def __init__(self, bucket: str, prefix: str = "", client=None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

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
