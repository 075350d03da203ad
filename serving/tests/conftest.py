"""A real registry built once per session (simulator -> pipeline core steps -> trainers), a
private copy of it per test (tests move aliases and corrupt files), and clients to talk to it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.release.registry import Registry
from reckit_assets_tests.support.registries import DemoRegistry, build_demo_registry
from serving.app import create_app
from serving.config import ServingConfig
from serving.tests.support import TOKEN, TestClient, ready, wait_until


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRegistry:
    """Two xgboost versions, one DeepFM and one item2vec, plus the online snapshot (~5 s)."""
    return build_demo_registry(tmp_path_factory.mktemp("demo"), deepfm=True)


@pytest.fixture
def registry_dir(demo: DemoRegistry, tmp_path: Path) -> Path:
    target = tmp_path / "registry"
    shutil.copytree(demo.registry_uri, target)
    return target


@pytest.fixture
def registry(registry_dir: Path) -> Registry:
    return Registry(LocalStorage(registry_dir))


@pytest.fixture
def config(registry_dir: Path, tmp_path: Path) -> ServingConfig:
    return ServingConfig(
        registry_uri=str(registry_dir),
        models=("xgboost", "item2vec"),
        poll_seconds=3600,  # tests reload explicitly unless they test the poll
        admin_token=TOKEN,
        feedback_uri=str(tmp_path / "feedback"),
        # Tests hammer one server from one address; the limiter has its own tests.
        rate_limit_rank=0,
        rate_limit_feedback=0,
    )


@pytest.fixture
def client(config: ServingConfig) -> Iterator[TestClient]:
    with TestClient(create_app(config)) as c:
        wait_until(lambda: ready(c))
        yield c
