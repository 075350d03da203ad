"""Hyperparameters as Dagster config (run config in the UI's launchpad).

A field left empty (None) takes the model's default from core.models; the resolved set is stored
with the artifact and in the registry manifest.
"""

import dagster as dg


class TrainingConfig(dg.Config):
    window_days: int = 7
    min_days: int = 2

    def overrides(self) -> dict:
        skip = set(TrainingConfig.model_fields)
        return {k: v for k, v in self.model_dump().items() if v is not None and k not in skip}


class XGBoostConfig(TrainingConfig):
    n_estimators: int | None = None
    max_depth: int | None = None
    learning_rate: float | None = None
    subsample: float | None = None
    colsample_bytree: float | None = None
    min_child_weight: float | None = None
    early_stopping_rounds: int | None = None
    seed: int | None = None


class DeepFMConfig(TrainingConfig):
    embedding_dim: int | None = None
    hidden: list[int] | None = None
    dropout: float | None = None
    lr: float | None = None
    batch_size: int | None = None
    max_epochs: int | None = None
    patience: int | None = None
    seed: int | None = None
    device: str | None = None


class Item2VecConfig(TrainingConfig):
    vector_size: int | None = None
    window: int | None = None
    min_count: int | None = None
    negative: int | None = None
    ns_exponent: float | None = None
    sample: float | None = None
    epochs: int | None = None
    seed: int | None = None
    popularity_weight: float | None = None


CONFIGS: dict[str, type[TrainingConfig]] = {
    "xgboost": XGBoostConfig,
    "deepfm": DeepFMConfig,
    "item2vec": Item2VecConfig,
}
