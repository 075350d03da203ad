"""One registry version, verified, smoke-tested and ready to answer requests.

Loading goes through the registry (every file's sha256 checked against the manifest) and the
pipeline's smoke test (the model loads and scores a synthetic batch), so the service never serves
a version the rollback path would refuse. Artifacts are native formats; nothing is unpickled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reckit_assets.core.features.spec import DENSE_COLUMNS, FEATURES
from reckit_assets.core.release.registry import CorruptVersionError, Registry
from reckit_assets.core.release.smoke import SmokeTestError, smoke_test
from serving.features import OnlineFeatures

SPEC_COLUMNS = frozenset(f.name for f in FEATURES)


class ModelLoadError(RuntimeError):
    """A version cannot be served (and is not): says which and why.

    ``permanent``: the version's bytes are wrong (hash mismatch, missing file, fails to load or
    score); versions are immutable, so retrying cannot help. Otherwise (I/O) a retry may.
    """

    def __init__(self, message: str, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, eq=False)  # compared by identity: one object per loaded version
class LoadedModel:
    name: str  # the registry model ("xgboost", "item2vec", ...)
    kind: str
    version: str
    model: object
    manifest: dict = field(repr=False)
    input_columns: tuple[str, ...] = ()  # feature columns a ranker reads; () for embeddings
    loaded_at: float = 0.0
    load_seconds: float = 0.0

    @property
    def is_ranker(self) -> bool:
        return hasattr(self.model, "predict")

    @property
    def is_embedding(self) -> bool:
        return hasattr(self.model, "similar")

    @property
    def dense_columns(self) -> frozenset[str]:
        return frozenset(c for c in self.input_columns if c in DENSE_COLUMNS)

    def score_request(
        self, features: OnlineFeatures, user_id: str, item_ids: Sequence[str], device: str | None
    ) -> np.ndarray:
        """Scores for one ranking request, features gathered from the online snapshot."""
        booster = _xgb_booster(self.model)
        if booster is not None:
            x = features.dense_matrix(user_id, item_ids, self.input_columns)
            return np.asarray(booster.inplace_predict(x), dtype=np.float64)
        return self.score(features.assemble(user_id, item_ids, device, self.input_columns))

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Click probabilities, one per row of ``frame`` (which holds ``input_columns``)."""
        booster = _xgb_booster(self.model)
        if booster is not None:
            # Same trees, same inputs as XGBRanker.predict, without building a DMatrix per call
            # (a third of the request's cost); test_models proves the scores are identical.
            x = frame.loc[:, list(self.input_columns)].to_numpy(dtype=np.float32, na_value=np.nan)
            return np.asarray(booster.inplace_predict(x), dtype=np.float64)
        return np.asarray(self.model.predict(frame), dtype=np.float64)

    # -- embeddings --------------------------------------------------------------------------
    @property
    def item_ids(self) -> list[str]:
        return list(getattr(self.model, "item_ids", None) or getattr(self.model, "items", []))

    def vector(self, item_id: str) -> list[float] | None:
        getter = getattr(self.model, "vector", None)
        value = getter(item_id) if getter is not None else None
        return None if value is None else [float(x) for x in np.asarray(value).ravel()]

    def similar(self, item_id: str, k: int) -> list[tuple[str, float]]:
        return [(str(i), float(s)) for i, s in self.model.similar(item_id, k)]

    def knows_item(self, item_id: str) -> bool:
        contains = getattr(self.model, "__contains__", None)
        if contains is not None:
            return bool(contains(item_id))
        return item_id in set(self.item_ids)


def input_columns(model: object) -> tuple[str, ...]:
    """The feature columns a ranker reads: xgboost's feature_meta columns, DeepFM's fields."""
    columns = getattr(model, "feature_columns", None)
    if columns:
        return tuple(columns)
    pre = getattr(model, "pre", None)
    if pre is not None and hasattr(pre, "sparse_fields"):
        return (*pre.sparse_fields, *pre.dense_fields)
    return tuple(f.name for f in FEATURES)  # a model that reads the frame by name: all of it


def _xgb_booster(model: object) -> object | None:
    if getattr(model, "kind", None) == "xgboost" and hasattr(model, "booster"):
        return model.booster
    return None


def load_version(
    registry: Registry, name: str, version: str, scoring_threads: int = 1
) -> LoadedModel:
    """Verify, load and smoke-test ``name`` ``version``; :class:`ModelLoadError` if it cannot
    be served. Runs in a worker thread: it must not touch the serving state."""
    started = time.perf_counter()
    manifest = registry.manifest(name, version)
    if manifest is None:
        raise ModelLoadError(
            f"{name} {version}: no manifest in the registry (incomplete version)", permanent=False
        )
    kind = str(manifest.get("kind") or name)
    try:
        files = registry.load_files(name, version)  # every file's sha256 against the manifest
        model = smoke_test(kind, files)
    except (CorruptVersionError, SmokeTestError) as exc:
        raise ModelLoadError(f"{name} {version}: {exc}") from exc
    except Exception as exc:  # storage trouble: not the version's fault
        raise ModelLoadError(
            f"{name} {version}: {type(exc).__name__}: {exc}", permanent=False
        ) from exc
    columns: tuple[str, ...] = ()
    if hasattr(model, "predict"):
        columns = input_columns(model)
        unknown = sorted(set(columns) - SPEC_COLUMNS)
        if unknown:
            # /v1/rank could not build these: refuse now rather than fail every request later.
            raise ModelLoadError(
                f"{name} {version}: reads column(s) the feature spec does not define: {unknown}"
            )
        _limit_threads(model, kind, scoring_threads)
    elif not hasattr(model, "similar"):
        raise ModelLoadError(
            f"{name} {version}: kind {kind!r} neither scores nor finds similar items"
        )
    return LoadedModel(
        name=name,
        kind=kind,
        version=version,
        model=model,
        manifest=manifest,
        input_columns=columns,
        loaded_at=time.time(),
        load_seconds=time.perf_counter() - started,
    )


def _limit_threads(model: object, kind: str, threads: int) -> None:
    """One request is ~100 rows: parallelism belongs across requests (workers), and OpenMP or
    intra-op threads spinning on a small batch steal the CPU the event loop needs."""
    booster = _xgb_booster(model)
    if booster is not None:
        booster.set_param({"nthread": threads})
    if kind == "deepfm":
        import torch

        torch.set_num_threads(threads)


def check_feature_rows(rows: Sequence[dict], model: LoadedModel) -> tuple[pd.DataFrame, list[str]]:
    """Feature dicts (``/predict``) -> a frame of the model's columns, or the problems found.

    Dense columns must be finite numbers, sparse ones strings; missing columns are named.
    Extra keys are ignored, as reckit's service does.
    """
    problems: list[str] = []
    missing: set[str] = set()
    dense = model.dense_columns
    data: dict[str, list] = {c: [] for c in model.input_columns}
    for i, row in enumerate(rows):
        for col in model.input_columns:
            if col not in row:
                missing.add(col)
                continue
            value = row[col]
            if col in dense:
                number = _finite(value)
                if number is None:
                    problems.append(f"row {i}: {col} must be a finite number, got {value!r:.40}")
                    continue
                data[col].append(number)
            else:
                if not isinstance(value, str):
                    problems.append(f"row {i}: {col} must be a string, got {value!r}")
                    continue
                data[col].append(value)
    if missing:
        ordered = [c for c in model.input_columns if c in missing]
        problems.insert(
            0,
            f"missing feature column(s) {ordered} (the model {model.version} reads {list(model.input_columns)})",
        )
    if problems:
        return pd.DataFrame(), problems[:20]
    frame = pd.DataFrame(
        {
            c: np.asarray(v, dtype=np.float64) if c in dense else pd.array(v, dtype="string")
            for c, v in data.items()
        }
    )
    return frame, []


def _finite(value: object) -> float | None:
    """``value`` as a finite float, or None (bools, strings, NaN, inf, ints beyond float range)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
