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
from reckit_assets.core.training.item2vec import RECKIT_DECIMALS
from serving.features import OnlineFeatures

SPEC_COLUMNS = frozenset(f.name for f in FEATURES)
# Models score float32 (xgboost's inplace_predict input, torch's tensors): a finite float64 beyond
# this becomes inf there, so it is refused as out of range rather than scored.
FLOAT32_MAX = float(np.finfo(np.float32).max)


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
    # Embeddings: the vectors exactly as reckit's item2vec.json carries them (rounded to its
    # decimals), as float64, for reckit's plain cosine (``cosine``).
    reckit_vectors: np.ndarray | None = field(default=None, repr=False)

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
        self,
        features: OnlineFeatures,
        user_id: str,
        item_ids: Sequence[str],
        device: str | None,
        capture: list[np.ndarray] | None = None,
    ) -> np.ndarray:
        """Scores for one ranking request, features gathered from the online snapshot.
        ``capture``: the exact values scored (items x ``input_columns``) are appended to it."""
        booster = _xgb_booster(self.model)
        if booster is not None:
            x = features.dense_matrix(user_id, item_ids, self.input_columns)
            if capture is not None:
                capture.append(x)
            return np.asarray(booster.inplace_predict(x), dtype=np.float64)
        frame = features.assemble(user_id, item_ids, device, self.input_columns)
        if capture is not None:
            columns = frame.loc[:, list(self.input_columns)]
            capture.append(columns.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64))
        return self.score(frame)

    @property
    def dense(self) -> bool:
        """Scores from a numeric matrix of ``input_columns`` (an XGBoost booster): what
        ``score_request`` captures is exactly what it scores."""
        return _xgb_booster(self.model) is not None

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        """Click probabilities for rows of ``input_columns`` values (what ``score_request``
        captured)."""
        booster = _xgb_booster(self.model)
        if booster is not None:
            return np.asarray(booster.inplace_predict(x), dtype=np.float64)
        return self.score(pd.DataFrame(x, columns=list(self.input_columns)))

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

    def cosine(self, item_id: str, k: int) -> list[tuple[str, float]]:
        """reckit's ``Word2VecModel.Similarity`` from ``item_id`` to every other item, best first.

        Same inputs (item2vec.json's rounded values), same arithmetic: float64, dot and both
        squared norms summed dimension by dimension in order, ``dot / (sqrt(n1) * sqrt(n2))``,
        0.0 for a zero vector. Ties keep item2vec.json's order. The anchor itself is excluded.
        """
        vectors = self.reckit_vectors
        items = self.item_ids
        if vectors is None or item_id not in items:
            return []
        i = items.index(item_id)
        q = vectors[i]
        dot = np.zeros(len(items))
        n1 = 0.0
        n2 = np.zeros(len(items))
        for d in range(vectors.shape[1]):  # Go's loop order, vectorised across items
            column = vectors[:, d]
            dot = dot + column * q[d]
            n1 = n1 + q[d] * q[d]
            n2 = n2 + column * column
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = dot / (np.sqrt(n1) * np.sqrt(n2))
        scores = np.where((n1 == 0) | (n2 == 0), 0.0, scores)
        scores[i] = -np.inf
        order = np.argsort(-scores, kind="stable")[: min(k, len(items) - 1)]
        return [(items[j], float(scores[j])) for j in order]

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
    reckit_vectors = None
    raw_vectors = getattr(model, "vectors", None)
    if raw_vectors is not None and hasattr(model, "similar"):
        # What item2vec.json holds: round(float(x), RECKIT_DECIMALS) of each float32 value.
        reckit_vectors = np.round(np.asarray(raw_vectors, dtype=np.float64), RECKIT_DECIMALS)
    return LoadedModel(
        name=name,
        kind=kind,
        version=version,
        model=model,
        manifest=manifest,
        input_columns=columns,
        loaded_at=time.time(),
        load_seconds=time.perf_counter() - started,
        reckit_vectors=reckit_vectors,
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


def check_feature_rows(
    rows: Sequence[dict | list], model: LoadedModel, fill_missing: bool = False
) -> tuple[pd.DataFrame, list[str], dict[str, int]]:
    """Client rows (``/predict``) -> (a frame of the model's columns, problems, filled counts).

    A row is a dict of feature columns (extra keys ignored, as reckit's service does) or, for a
    model whose columns are all numeric, a list of numbers in ``input_columns`` order (reckit's
    TorchServe client's ``Instances``). Dense values must be numbers finite in float32; sparse
    (id) values strings. An absent dense column is filled with 0.0 when ``fill_missing``
    (reckit's behaviour; counted per column in the third value), else named as a problem; an
    absent sparse column is always a problem (no number stands for an id).
    """
    problems: list[str] = []
    missing: set[str] = set()
    filled: dict[str, int] = {}
    dense = model.dense_columns
    columns = model.input_columns
    data: dict[str, list] = {c: [] for c in columns}
    for i, row in enumerate(rows):
        if isinstance(row, list):
            if len(dense) != len(columns):
                sparse = [c for c in columns if c not in dense]
                problems.append(
                    f"row {i}: a list of numbers cannot carry {model.name}'s id fields {sparse}: "
                    f"send an object of feature columns (or rank with /v1/rank)"
                )
                continue
            if len(row) != len(columns):
                problems.append(
                    f"row {i}: {len(row)} values; {model.name} {model.version} reads "
                    f"{len(columns)} columns in this order: {list(columns)}"
                )
                continue
            row = dict(zip(columns, row, strict=True))
        for col in columns:
            if col not in row:
                if fill_missing and col in dense:
                    data[col].append(0.0)
                    filled[col] = filled.get(col, 0) + 1
                else:
                    missing.add(col)
                continue
            value = row[col]
            if col in dense:
                number = _finite(value)
                if number is None:
                    problems.append(
                        f"row {i}: {col} must be a number finite in float32 "
                        f"(|x| <= {FLOAT32_MAX:.6g}), got {_describe(value)}"
                    )
                    continue
                data[col].append(number)
            else:
                if not isinstance(value, str):
                    problems.append(f"row {i}: {col} must be a string, got {_describe(value)}")
                    continue
                data[col].append(value)
    if missing:
        ordered = [c for c in columns if c in missing]
        how = "" if fill_missing else " (RECKIT_MISSING_FEATURES=reject)"
        problems.insert(
            0,
            f"missing feature column(s) {ordered}{how} (the model {model.version} reads "
            f"{list(columns)})",
        )
    if problems:
        return pd.DataFrame(), problems[:20], {}
    frame = pd.DataFrame(
        {
            c: np.asarray(v, dtype=np.float64) if c in dense else pd.array(v, dtype="string")
            for c, v in data.items()
        }
    )
    return frame, [], filled


def _describe(value: object) -> str:
    """A rejected value described by its kind (never echoed)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, str):  # never the text itself: error bodies echo no client values
        return f"a string of {len(value)} characters"
    if isinstance(value, float):
        if value != value:
            return "nan"
        return "a number beyond float32's range"
    return type(value).__name__


def _finite(value: object) -> float | None:
    """``value`` as a float finite in float32, or None (bools, strings, NaN, inf, beyond the
    float32 range)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and abs(number) <= FLOAT32_MAX else None
