"""Per-model candidates, trained daily on the window of days before dt."""

import dagster as dg

from reckit_assets.core.io import warehouse
from reckit_assets.core.steps import models as model_steps
from reckit_assets.defs.environments import k8s_op_tags
from reckit_assets.defs.features.assets import PREVIOUS_WINDOW
from reckit_assets.defs.partitions import DAILY, FIRST_DAY
from reckit_assets.defs.resources import ReckitStorage
from reckit_assets.defs.results import to_result
from reckit_assets.defs.training.config import CONFIGS, TrainingConfig

KINDS_META = {
    "xgboost": {"kinds": {"xgboost"}, "label": "XGBoost CTR ranker (hist, early stopping)"},
    "deepfm": {"kinds": {"pytorch"}, "label": "DeepFM ranker (FM + deep MLP on shared embeddings)"},
    "item2vec": {"kinds": {"gensim"}, "label": "item2vec embeddings (skip-gram word2vec)"},
}


def build_candidate(kind: str) -> dg.AssetsDefinition:
    config_cls = CONFIGS[kind]

    @dg.asset(
        name=model_steps.candidate_asset(kind),
        group_name="models",
        deps=[dg.AssetDep(model_steps.input_asset(kind), partition_mapping=PREVIOUS_WINDOW)],
        partitions_def=DAILY,
        code_version=model_steps.CODE_VERSION,
        kinds=KINDS_META[kind]["kinds"],
        output_required=False,
        # GPU-bound on Kubernetes: the deployment maps this pool to a GPU node (see deploy/).
        pool="gpu" if kind == "deepfm" else None,
        # Pod settings under k8s_job_executor (deepfm: a GPU node); see defs/environments.py.
        op_tags=k8s_op_tags(model_steps.candidate_asset(kind)),
        description=f"{KINDS_META[kind]['label']}, trained on the 7 days before dt. Skipped "
        "(no output) while fewer than `min_days` days are available.",
    )
    def candidate(context: dg.AssetExecutionContext, config: config_cls, storage: ReckitStorage):  # type: ignore[valid-type]
        store = storage.warehouse()
        cfg: TrainingConfig = config
        dt = context.partition_key
        try:
            artifact = model_steps.train_candidate(
                store,
                kind,
                dt,
                cfg.overrides(),
                cfg.window_days,
                FIRST_DAY,
                cfg.min_days,
                log=context.log.info,
            )
        except model_steps.NotEnoughDataError as exc:
            context.log.warning(f"skipped: {exc}")
            return
        manifest = warehouse.publish(store, model_steps.candidate_asset(kind), dt, artifact)
        result = to_result(model_steps.candidate_asset(kind), {dt: (manifest, [], artifact)})
        info = artifact.info
        history = info["history"]
        extra = {
            "version": info["version"],
            "training_window": ", ".join(info["training_window"]),
            "skipped_days": ", ".join(info["skipped_days"]) or "none",
            "hyperparameters": dg.MetadataValue.json(info["params"]),
            "best_iteration": info["best_iteration"],
            "train_seconds": info["train_seconds"],
            "learning_curve": dg.MetadataValue.md(_curve(history)),
        }
        yield dg.MaterializeResult(
            data_version=result.data_version, metadata={**(result.metadata or {}), **extra}
        )

    return candidate


def _curve(history: list[dict]) -> str:
    if not history:
        return "(no history)"
    keys = list(history[0].keys())
    step = max(1, len(history) // 25)  # a readable table, not 400 rows
    rows = [history[i] for i in range(0, len(history), step)]
    if rows[-1] is not history[-1]:
        rows.append(history[-1])
    fmt = lambda v: f"{v:.5f}" if isinstance(v, float) else str(v)  # noqa: E731
    return (
        "| "
        + " | ".join(keys)
        + " |\n|"
        + "---|" * len(keys)
        + "\n"
        + "\n".join("| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows)
    )


CANDIDATES = [build_candidate(kind) for kind in model_steps.KINDS]
