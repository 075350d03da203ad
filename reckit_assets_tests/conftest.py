"""Shared fixtures: a private data directory per test and small deterministic simulated days."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.simulation.simulate import SimulationConfig, write_simulation

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

FIRST_DAY = "2026-10-01"
SMALL = SimulationConfig(
    start=FIRST_DAY, days=4, n_users=400, n_items=120, impressions_per_day=4000, seed=11
)


@dataclass
class Lake:
    root: Path
    landing: LocalStorage
    warehouse: LocalStorage
    oracle: LocalStorage

    def resources(self, **quality) -> dict:
        """Resources for this lake; ``quality`` limits go into its own reckit.yaml."""
        from reckit_assets.defs.config import ProjectConfig
        from reckit_assets.defs.resources import ModelProcesses, ReckitStorage

        self.write_config({"data_quality": quality} if quality else {})
        return {
            "storage": ReckitStorage(
                landing_uri=self.landing.uri,
                warehouse_uri=self.warehouse.uri,
                registry_uri=str(self.root / "registry"),
            ),
            "project": ProjectConfig(file=str(self.config_file)),
            # Model steps in the test's process (one test covers isolate=True end to end).
            "model_processes": ModelProcesses(),
        }

    @property
    def config_file(self) -> Path:
        return self.root / "reckit.yaml"

    def write_config(self, sections: dict) -> Path:
        import yaml

        self.config_file.write_text(yaml.safe_dump(sections, sort_keys=True))
        return self.config_file

    def landing_digest(self) -> dict[str, str]:
        """sha256 of every landed file: landed data must never change."""
        return {
            p.relative_to(self.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((self.root / "landing").rglob("*"))
            if p.is_file()
        }


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(
        root=tmp_path,
        landing=LocalStorage(tmp_path / "landing"),
        warehouse=LocalStorage(tmp_path / "warehouse"),
        oracle=LocalStorage(tmp_path / "oracle"),
    )


@pytest.fixture
def simulated(lake: Lake) -> Lake:
    write_simulation(SMALL, lake.landing, lake.oracle)
    return lake


def days(n: int, start: str = FIRST_DAY) -> list[str]:
    from datetime import date, timedelta

    first = date.fromisoformat(start)
    return [(first + timedelta(days=k)).isoformat() for k in range(n)]


# A real S3-protocol server on loopback (moto), shared by the S3 tests; one bucket per test.
@pytest.fixture(scope="session")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    bucket = f"reckit-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket
