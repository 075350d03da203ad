"""Resources: where data lives (from settings) and the project config every run loads."""

from __future__ import annotations

import dagster as dg

from reckit_assets.core.io.storage import Storage
from reckit_assets.core.io.uri import storage_from_uri
from reckit_assets.defs.config import ProjectConfig
from reckit_assets.settings import Settings


class ReckitStorage(dg.ConfigurableResource):
    """The landing zone (read only), the warehouse of pipeline artifacts, and the registry."""

    landing_uri: str
    warehouse_uri: str
    registry_uri: str

    def landing(self) -> Storage:
        return storage_from_uri(self.landing_uri)

    def warehouse(self) -> Storage:
        return storage_from_uri(self.warehouse_uri)

    def registry(self) -> Storage:
        return storage_from_uri(self.registry_uri)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "storage": ReckitStorage(
            landing_uri=settings.landing_uri,
            warehouse_uri=settings.warehouse_uri,
            registry_uri=settings.registry_uri,
        ),
        "project": ProjectConfig(file=settings.config_file),
    }
