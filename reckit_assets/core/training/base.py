"""What every model artifact looks like to the rest of the pipeline.

A model is a set of files in its library's native format (xgboost JSON, safetensors, npy + JSON):
the registry stores ``files()`` as they are, serving rebuilds the model with :func:`load_model`,
and nothing is ever pickled, so an artifact can be loaded by another process, another version of
this code or reckit itself without executing anything.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field

Log = Callable[[str], None]


def no_log(_: str) -> None:
    """Default progress sink: training functions stay silent unless given a logger."""


@runtime_checkable
class Model(Protocol):
    kind: str  # "xgboost" | "deepfm" | "item2vec" | a baseline's kind

    def files(self) -> dict[str, bytes]:
        """Every file of the artifact, native formats, deterministic for a given training."""
        ...

    def params(self) -> dict:
        """Hyperparameters (JSON-able)."""
        ...


@runtime_checkable
class Ranker(Model, Protocol):
    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Click probabilities in [0, 1], one per row of ``frame`` (spec columns)."""
        ...


@dataclass(frozen=True)
class TrainingWindow:
    """How many days before dt a candidate trains on (the ``training`` section of reckit.yaml).

    The window is also the declared lineage: the candidate assets' partition mapping reads
    exactly ``window_days`` days before dt, so changing it changes the graph, not one run.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    window_days: Annotated[int, Field(ge=2, le=60)] = 7
    # Fewer usable (non-quarantined) days than this and the candidate is skipped, with a reason.
    min_days: Annotated[int, Field(ge=2, le=60)] = 2


@dataclass
class TrainReport:
    history: list[dict]  # per boosting round / epoch: metrics
    best_iteration: int  # round or epoch whose model was kept (0-based)
    seconds: float
    extra: dict = field(default_factory=dict)


class ArtifactError(ValueError):
    """A model artifact is incomplete or does not match the code reading it."""


# kind -> "module:loader"; modules are imported only when their kind is loaded, so serving an
# xgboost model never imports torch or gensim.
LOADERS: dict[str, str] = {
    "xgboost": "reckit_assets.core.training.xgb_ranker:XGBRanker.from_files",
    "deepfm": "reckit_assets.core.training.deepfm:DeepFMRanker.from_files",
    "item2vec": "reckit_assets.core.training.item2vec:Item2Vec.from_files",
    "item_ctr_prior": "reckit_assets.core.training.baselines:ItemCTRPrior.from_files",
    "popularity": "reckit_assets.core.training.baselines:PopularityRecommender.from_files",
}


def load_model(kind: str, files: dict[str, bytes]) -> Model:
    """Rebuild a model of ``kind`` from its files (as returned by ``files()``); never unpickles."""
    target = LOADERS.get(kind)
    if target is None:
        raise ArtifactError(f"unknown model kind {kind!r}; known kinds: {sorted(LOADERS)}")
    module_name, attr = target.split(":")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj(files)  # type: ignore[operator]


# ---------------------------------------------------------------------------------------------
# Helpers shared by the model modules.


def json_bytes(value: object) -> bytes:
    """Canonical JSON (sorted keys, fixed separators): equal content gives equal bytes."""
    return (json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def read_json(files: dict[str, bytes], name: str, kind: str) -> object:
    return json.loads(require_file(files, name, kind))


def require_file(files: dict[str, bytes], name: str, kind: str) -> bytes:
    if name not in files:
        raise ArtifactError(f"{kind} artifact lacks {name!r} (has {sorted(files)})")
    return files[name]


def content_version(files: dict[str, bytes], prefix: str) -> str:
    """A version string derived from the artifact's bytes: same model, same version."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return f"{prefix}-{h.hexdigest()[:12]}"


def require_columns(frame: pd.DataFrame, columns: list[str] | tuple[str, ...], who: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{who}: frame lacks {len(missing)} feature column(s): {missing}")


def dense_matrix(frame: pd.DataFrame, columns: list[str] | tuple[str, ...], who: str) -> np.ndarray:
    """``frame[columns]`` as float32, with a clear error when a column is missing."""
    require_columns(frame, columns, who)
    return frame.loc[:, list(columns)].to_numpy(dtype=np.float32, na_value=np.nan)


def check_training_frame(
    frame: pd.DataFrame, columns: list[str] | tuple[str, ...], label: str, who: str
) -> None:
    require_columns(frame, [*columns, label], who)
    if len(frame) == 0:
        raise ValueError(f"{who}: training frame is empty")
    values = set(pd.unique(frame[label]).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"{who}: {label} must be 0/1, found {sorted(values)[:5]}")


def split_by_time(
    frame: pd.DataFrame, valid_fraction: float = 0.1, ts_column: str = "ts"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, valid): the latest ``valid_fraction`` of rows by time is the validation set.

    Validating on the future, not a random sample, is what early stopping should imitate: the
    model will score tomorrow's traffic. Rows sharing a timestamp stay on the same side.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    require_columns(frame, [ts_column], "split_by_time")
    ordered = frame.sort_values(ts_column, kind="stable").reset_index(drop=True)
    cut_ts = ordered[ts_column].iloc[int(len(ordered) * (1.0 - valid_fraction))]
    is_valid = ordered[ts_column] >= cut_ts
    return ordered[~is_valid].reset_index(drop=True), ordered[is_valid].reset_index(drop=True)
