"""The storage resource of ``prod``: S3 locations opened with a dagster-aws S3Resource's client.

Its own module so that the local default never imports dagster_aws (seconds per step process).
"""

from __future__ import annotations

from dagster_aws.s3 import S3Resource

from reckit_assets.core.io.s3 import S3Storage
from reckit_assets.core.io.storage import Storage
from reckit_assets.core.io.uri import storage_from_uri
from reckit_assets.defs.resources import ReckitStorage


class S3ReckitStorage(ReckitStorage):
    """:class:`ReckitStorage` whose ``s3://`` locations use the client of a dagster-aws S3Resource."""

    s3: S3Resource

    def _open(self, uri: str) -> Storage:
        if uri.startswith("s3://"):
            return S3Storage.from_uri(uri, client=self.s3.get_client())
        return storage_from_uri(uri)

    def landing(self) -> Storage:
        return self._open(self.landing_uri)

    def warehouse(self) -> Storage:
        return self._open(self.warehouse_uri)

    def registry(self) -> Storage:
        return self._open(self.registry_uri)
