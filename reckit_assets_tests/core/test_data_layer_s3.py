"""The Polars data layer reads an ``s3://`` landing zone and warehouse through the Storage layer
(boto3, credentials from the environment), on a real S3-protocol server (moto) on loopback, and
publishes the same bytes as on local disk."""

from __future__ import annotations

import pytest

from reckit_assets.core.ingest.quality import Thresholds
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import LocalStorage, Storage
from reckit_assets.core.io.uri import storage_from_uri
from reckit_assets.core.steps import data as steps
from reckit_assets.simulation.simulate import SimulationConfig, write_simulation

TINY = SimulationConfig(
    start="2026-10-01", days=1, n_users=200, n_items=60, impressions_per_day=1500, seed=3
)
ASSETS = (steps.EVENTS, steps.USERS, steps.ITEMS, steps.ACTIVITY, steps.FEATURES, steps.SAMPLES)


@pytest.fixture
def bucket(s3_env: str) -> str:
    return s3_env


def _run_days(landing: Storage, store: Storage) -> dict[str, dict[str, str]]:
    limits = Thresholds()
    for dt in TINY.dates:
        warehouse.publish(
            store, steps.LANDED, dt, steps.check_landing(landing, dt, limits).artifact
        )
        for asset, artifact in steps.validate(landing, store, dt).items():
            warehouse.publish(store, asset, dt, artifact)
        warehouse.publish(store, steps.ACTIVITY, dt, steps.activity(store, dt))
        warehouse.publish(store, steps.FEATURES, dt, steps.features(store, dt, TINY.start))
        warehouse.publish(store, steps.SAMPLES, dt, steps.samples(store, dt, limits).artifact)
    return {
        dt: {a: warehouse.manifest(store, a, dt)["data_version"] for a in ASSETS}
        for dt in TINY.dates
    }


def test_data_steps_on_s3_publish_the_same_bytes_as_on_local_disk(bucket, tmp_path):
    s3_landing = storage_from_uri(f"s3://{bucket}/landing")
    write_simulation(TINY, s3_landing, LocalStorage(tmp_path / "oracle"))
    local_landing = LocalStorage(tmp_path / "landing")
    write_simulation(TINY, local_landing, LocalStorage(tmp_path / "oracle2"))

    on_s3 = _run_days(s3_landing, storage_from_uri(f"s3://{bucket}/warehouse"))
    on_disk = _run_days(local_landing, LocalStorage(tmp_path / "warehouse"))

    assert on_s3 == on_disk
    s3_store = storage_from_uri(f"s3://{bucket}/warehouse")
    events = warehouse.read_polars(s3_store, steps.EVENTS, TINY.dates[-1])
    assert events.height == warehouse.manifest(s3_store, steps.EVENTS, TINY.dates[-1])["rows"] > 0
