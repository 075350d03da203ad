"""A small real registry for tests and the benchmarks, built with the pipeline's own core steps.

Simulated days go through the same framework-free functions the Dagster assets call (landing
checks, validation, activity, point-in-time features, samples, sequences); models are trained with
the real trainers and registered in the real registry; the online feature snapshot is published
beside it exactly as the pipeline does. Nothing here imports dagster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reckit_assets.core.features import online
from reckit_assets.core.ingest.quality import Thresholds
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.release.registry import PRODUCTION, Registry
from reckit_assets.core.steps import data as steps
from reckit_assets.simulation.simulate import SimulationConfig, write_simulation

BY = "serving-tests"


@dataclass
class DemoRegistry:
    root: Path
    registry_uri: str
    dt: str  # the day the online snapshot was published for
    versions: dict[str, list[str]] = field(default_factory=dict)  # model -> versions, oldest first

    @property
    def registry(self) -> Registry:
        return Registry(LocalStorage(self.registry_uri))


def build_demo_registry(
    root: str | Path,
    sim: SimulationConfig | None = None,
    xgb_trees: tuple[int, ...] = (30, 20),
    xgb_depth: int | None = None,
    deepfm: bool = False,
    item2vec: bool = True,
) -> DemoRegistry:
    """Simulate, build features and samples, train, register; production -> the first version.

    ``xgb_trees`` gives one xgboost version per entry (different tree counts: different scores);
    ``xgb_depth`` their depth (default 4, 5, ...: small and fast for tests).
    """
    root = Path(root)
    sim = sim or SimulationConfig(
        start="2026-10-01", days=4, n_users=600, n_items=150, impressions_per_day=3000, seed=5
    )
    landing, store = LocalStorage(root / "landing"), LocalStorage(root / "warehouse")
    registry_storage = LocalStorage(root / "registry")
    write_simulation(sim, landing, LocalStorage(root / "oracle"))
    limits = Thresholds()
    for dt in sim.dates:
        warehouse.publish(
            store, steps.LANDED, dt, steps.check_landing(landing, dt, limits).artifact
        )
        for asset, artifact in steps.validate(landing, store, dt).items():
            warehouse.publish(store, asset, dt, artifact)
        warehouse.publish(store, steps.ACTIVITY, dt, steps.activity(store, dt))
        warehouse.publish(store, steps.FEATURES, dt, steps.features(store, dt, sim.start))
        warehouse.publish(store, steps.SAMPLES, dt, steps.samples(store, dt, limits).artifact)
        warehouse.publish(store, steps.SEQUENCES, dt, steps.sequences(store, dt))
    last = sim.dates[-1]
    samples = [warehouse.read(store, steps.SAMPLES, d) for d in sim.dates[1:]]
    train, valid = pd.concat(samples[:-1], ignore_index=True), samples[-1]

    registry = Registry(registry_storage)
    demo = DemoRegistry(root=root, registry_uri=registry_storage.uri, dt=last)

    def register(model: object, kind: str, n: int) -> None:
        version = f"{kind}-{last}-v{n}"
        files = model.files()
        if kind == "xgboost":  # as model_steps.register does: reckit's meta carries the version
            files = {**files, **model.reckit_export(version, f"{last}T00:00:00Z")}
        registry.register(kind, version, files, {"kind": kind, "partition": last})
        demo.versions.setdefault(kind, []).append(version)
        if n == 1:
            registry.set_alias(kind, PRODUCTION, version, BY, "demo registry")

    from reckit_assets.core.features.spec import DENSE_COLUMNS
    from reckit_assets.core.training.xgb_ranker import XGBParams, train_xgb

    # The 13 columns reckit's recorded requests (serving/tests/fixtures/reckit) were made
    # against: a model trained before the long-window features, as a reckit user's would be.
    recorded_columns = tuple(c for c in DENSE_COLUMNS if not c.endswith("_28d"))
    for n, trees in enumerate(xgb_trees, start=1):
        params = XGBParams(
            n_estimators=trees,
            max_depth=xgb_depth or 3 + n,
            learning_rate=0.08,
            min_child_weight=5.0,
            early_stopping_rounds=trees,  # keep every tree: a known model size
            seed=n,
            feature_columns=recorded_columns,
        )
        register(train_xgb(train, valid, params)[0], "xgboost", n)
    if deepfm:
        from reckit_assets.core.training.deepfm import DeepFMParams, train_deepfm

        params = DeepFMParams(max_epochs=1, hidden=(16,), embedding_dim=4, device="cpu")
        register(train_deepfm(train, valid, params)[0], "deepfm", 1)
    if item2vec:
        from reckit_assets.core.features.sequences import corpus
        from reckit_assets.core.training.item2vec import Item2VecParams, train_item2vec

        sessions = corpus([warehouse.read(store, steps.SEQUENCES, d) for d in sim.dates])
        params = Item2VecParams(vector_size=8, epochs=2, min_count=1)
        register(train_item2vec(sessions, params)[0], "item2vec", 1)

    online.publish(registry_storage, last, steps.online_snapshot(store, last, sim.start))
    return demo
