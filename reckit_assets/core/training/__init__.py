"""Model code: training functions and artifacts in native formats, no dagster, no pickle.

- ``xgb_ranker``: XGBoost on the dense features, exported in reckit's layout.
- ``deepfm``: DeepFM over ids, categoricals and dense features (torch, safetensors).
- ``item2vec``: skip-gram item embeddings from click sessions (gensim), next-item evaluation.
- ``baselines``: item-CTR ranker and popularity recommender, the bars the models must clear.

torch, xgboost and gensim are imported only inside the functions that need them.
"""

from reckit_assets.core.training.base import (
    ArtifactError,
    Model,
    Ranker,
    TrainReport,
    load_model,
    split_by_time,
)

__all__ = ["ArtifactError", "Model", "Ranker", "TrainReport", "load_model", "split_by_time"]
