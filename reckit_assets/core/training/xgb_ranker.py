"""Gradient-boosted trees on the dense features: reckit's ranker, exported in reckit's layout.

The artifact is ``xgb_model.json`` (native xgboost JSON) plus ``feature_meta.json`` with exactly
reckit's keys, so reckit's Python service loads it unchanged. reckit builds its DMatrix from a
bare array ordered by ``feature_meta.feature_columns``, so the exported booster carries no feature
names (xgboost would refuse an unnamed matrix otherwise) and only the trees up to the best
iteration (reckit predicts with all trees).

``xgb_model.json`` is written so that xgboost 2.x reads it the same way 3.x does: xgboost 3 writes
``learner_model_param.base_score`` as a one-element vector (``"[3.25E-1]"``), which 2.x parses
as the default 0.5 without any error (every logit shifts); the export writes the scalar form
(``"3.25E-1"``), which both read. ``compat`` tests load the export with xgboost 2.1.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from pydantic import ConfigDict

from reckit_assets.core.features.spec import DENSE_COLUMNS, LABEL_COLUMN
from reckit_assets.core.training.base import (
    ArtifactError,
    Log,
    TrainReport,
    check_training_frame,
    content_version,
    dense_matrix,
    json_bytes,
    no_log,
    read_json,
    require_file,
)

KIND = "xgboost"
MODEL_FILE = "xgb_model.json"
META_FILE = "feature_meta.json"
PARAMS_FILE = "params.json"  # our hyperparameters; reckit ignores files it does not know
RECKIT_META_KEYS = (
    "feature_columns",
    "feature_count",
    "label_column",
    "model_version",
    "normalized",
    "created_at",
)


@dataclass
class XGBParams:
    # Validated from reckit.yaml by pydantic (reckit_assets.config): unknown keys are errors.
    __pydantic_config__ = ConfigDict(extra="forbid")

    # Shallow, slow, well-supported trees: on two MovieLens datasets (~3,600 impressions a day,
    # most users new each day) depth 6 / min_child_weight 5 fitted noise and lost to the item-CTR
    # prior on a third of the days; depth 3 / 50 / eta 0.05 raised the mean AUC lift over the
    # prior (+0.030 -> +0.032, +0.019 -> +0.021) and the simulator's holdout AUC (0.7850 ->
    # 0.7879 on day 9, 0.7835 -> 0.7856 on day 29). docs/benchmarks.md, "Model quality".
    n_estimators: int = 600
    max_depth: int = 3
    learning_rate: float = 0.05
    subsample: float = 0.9
    colsample_bytree: float = 0.9
    min_child_weight: float = 50.0
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 30
    seed: int = 7
    nthread: int = 2
    feature_columns: tuple[str, ...] = field(default_factory=lambda: tuple(DENSE_COLUMNS))

    def booster_params(self) -> dict:
        return {
            "objective": "binary:logistic",
            "tree_method": "hist",
            # The last metric drives early stopping: logloss, because serving consumes
            # probabilities (calibration matters), while AUC is tracked for the report.
            "eval_metric": ["auc", "logloss"],
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "seed": self.seed,
            "nthread": self.nthread,
            "verbosity": 0,
        }

    @classmethod
    def from_dict(cls, values: dict) -> XGBParams:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if "feature_columns" in known:
            known["feature_columns"] = tuple(known["feature_columns"])
        return cls(**known)


class XGBRanker:
    """A trained booster plus the column order it expects."""

    kind = KIND

    def __init__(self, booster: object, params: XGBParams) -> None:
        self.booster = booster  # xgboost.Booster, without feature names (see module docstring)
        self._params = params
        self.feature_columns = list(params.feature_columns)

    def params(self) -> dict:
        return _params_json(self._params)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        import xgboost as xgb

        x = dense_matrix(frame, self.feature_columns, "XGBRanker.predict")
        if len(x) == 0:
            return np.zeros(0, dtype=np.float64)
        dm = xgb.DMatrix(x, nthread=self._params.nthread)
        return self.booster.predict(dm).astype(np.float64)

    def _model_bytes(self) -> bytes:
        return portable_model_json(bytes(self.booster.save_raw(raw_format="json")))

    def reckit_export(self, model_version: str, created_at: str | None) -> dict[str, bytes]:
        """reckit's two files, with the registry's version and creation time stamped in."""
        meta = {
            "feature_columns": self.feature_columns,
            "feature_count": len(self.feature_columns),
            "label_column": LABEL_COLUMN,
            "model_version": model_version,
            "normalized": False,  # trees need no scaling; reckit then skips feature_scaler.json
            "created_at": created_at,
        }
        return {MODEL_FILE: self._model_bytes(), META_FILE: json_bytes(meta)}

    def content_version(self) -> str:
        return content_version({MODEL_FILE: self._model_bytes()}, "xgb")

    def files(self) -> dict[str, bytes]:
        # Deterministic: the version is a hash of the trees and no wall-clock time is stamped
        # (created_at is null); the registry calls reckit_export to stamp both for release.
        out = self.reckit_export(self.content_version(), None)
        out[PARAMS_FILE] = json_bytes(self.params())
        return out

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> XGBRanker:
        import xgboost as xgb

        meta = read_json(files, META_FILE, KIND)
        if not isinstance(meta, dict) or "feature_columns" not in meta:
            raise ArtifactError(f"{KIND} {META_FILE}: no feature_columns")
        values = read_json(files, PARAMS_FILE, KIND) if PARAMS_FILE in files else {}
        params = XGBParams.from_dict({**values, "feature_columns": meta["feature_columns"]})
        booster = xgb.Booster(params={"nthread": params.nthread})
        booster.load_model(bytearray(require_file(files, MODEL_FILE, KIND)))
        n_features = booster.num_features()
        if n_features != len(params.feature_columns):
            raise ArtifactError(
                f"{KIND}: {MODEL_FILE} expects {n_features} features but {META_FILE} lists "
                f"{len(params.feature_columns)}"
            )
        return cls(booster, params)


# xgboost 3's single-target base_score, e.g. "base_score":"[3.25E-1]" (one number in brackets).
_VECTOR_BASE_SCORE = re.compile(rb'"base_score"\s*:\s*"\[\s*([^",\[\]\s]+)\s*\]"')


def portable_model_json(raw: bytes) -> bytes:
    """xgboost JSON with ``base_score`` as a scalar string, the form xgboost 2.x parses.

    Only a single-target model's one-element vector is rewritten, in place in the text (the
    number's digits are kept, so the value is bit-identical and every other byte is as xgboost
    wrote it); a multi-target vector or an already scalar value is returned unchanged.
    """
    matches = list(_VECTOR_BASE_SCORE.finditer(raw))
    if len(matches) != 1:
        return raw
    return _VECTOR_BASE_SCORE.sub(lambda m: b'"base_score":"' + m.group(1) + b'"', raw)


def _params_json(params: XGBParams) -> dict:
    values = asdict(params)
    values["feature_columns"] = list(params.feature_columns)
    return values


def train_xgb(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    params: XGBParams | None = None,
    log: Log = no_log,
) -> tuple[XGBRanker, TrainReport]:
    """Fit on ``train``, early-stop on ``valid`` logloss, keep only the best rounds."""
    import xgboost as xgb

    params = params or XGBParams()
    columns = list(params.feature_columns)
    check_training_frame(train, columns, LABEL_COLUMN, "train_xgb (train)")
    check_training_frame(valid, columns, LABEL_COLUMN, "train_xgb (valid)")
    started = time.perf_counter()
    dtrain = xgb.DMatrix(
        dense_matrix(train, columns, "train_xgb"),
        label=train[LABEL_COLUMN].to_numpy(dtype=np.float32),
        nthread=params.nthread,
    )
    dvalid = xgb.DMatrix(
        dense_matrix(valid, columns, "train_xgb"),
        label=valid[LABEL_COLUMN].to_numpy(dtype=np.float32),
        nthread=params.nthread,
    )
    evals_result: dict = {}

    log_every = 25

    class _Progress(xgb.callback.TrainingCallback):
        def after_iteration(self, model: object, epoch: int, evals_log: dict) -> bool:
            if epoch % log_every == 0:
                v = evals_log["valid"]
                log(
                    f"xgb round {epoch}: valid logloss {v['logloss'][-1]:.5f} "
                    f"auc {v['auc'][-1]:.4f}"
                )
            return False

    booster = xgb.train(
        params.booster_params(),
        dtrain,
        num_boost_round=params.n_estimators,
        evals=[(dtrain, "train"), (dvalid, "valid")],
        early_stopping_rounds=params.early_stopping_rounds,
        evals_result=evals_result,
        verbose_eval=False,
        callbacks=[_Progress()],
    )
    best = int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1))
    # Keep exactly the trees serving should use: reckit predicts with every tree in the file.
    booster = booster[: best + 1]
    seconds = time.perf_counter() - started
    history = [
        {
            "round": i,
            "train_logloss": float(evals_result["train"]["logloss"][i]),
            "train_auc": float(evals_result["train"]["auc"][i]),
            "valid_logloss": float(evals_result["valid"]["logloss"][i]),
            "valid_auc": float(evals_result["valid"]["auc"][i]),
        }
        for i in range(len(evals_result["valid"]["logloss"]))
    ]
    gain = booster.get_score(importance_type="total_gain")
    importance = {columns[int(k[1:])]: float(v) for k, v in gain.items()}  # "f3" -> column 3
    extra = {
        "train_rows": len(train),
        "valid_rows": len(valid),
        "valid_logloss": history[best]["valid_logloss"],
        "valid_auc": history[best]["valid_auc"],
        "trees": best + 1,
        "feature_importance_gain": dict(sorted(importance.items(), key=lambda kv: -kv[1])),
    }
    log(
        f"xgb done: best round {best} of {len(history)}, valid logloss "
        f"{extra['valid_logloss']:.5f} auc {extra['valid_auc']:.4f}, {seconds:.1f}s"
    )
    model = XGBRanker(booster, params)
    return model, TrainReport(history=history, best_iteration=best, seconds=seconds, extra=extra)
