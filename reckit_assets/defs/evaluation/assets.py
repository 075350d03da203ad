"""Evaluation reports with the release gate as blocking checks (candidate vs production)."""

import dagster as dg

from reckit_assets.core.evaluation import gate
from reckit_assets.core.io import warehouse
from reckit_assets.core.release.registry import Registry
from reckit_assets.core.steps import models as model_steps
from reckit_assets.defs.partitions import DAILY
from reckit_assets.defs.resources import ReckitStorage
from reckit_assets.defs.results import blocking_checks, merged_checks


class GateConfig(dg.Config):
    """Gate rules (reckit's defaults). See core.gate.GateRules."""

    min_auc_ratio: float = gate.GateRules.min_auc_ratio
    max_logloss_ratio: float = gate.GateRules.max_logloss_ratio
    slice_auc_tolerance: float = gate.GateRules.slice_auc_tolerance
    slice_min_rows: int = gate.GateRules.slice_min_rows
    auc_floor: float = gate.GateRules.auc_floor
    min_hit_rate_ratio: float = gate.GateRules.min_hit_rate_ratio
    bootstrap_samples: int = 200

    def rules(self) -> gate.GateRules:
        values = self.model_dump()
        values.pop("bootstrap_samples")
        return gate.GateRules(**values)


def build_evaluation(kind: str) -> dg.AssetsDefinition:
    name = model_steps.evaluation_asset(kind)
    checks = gate.EMBEDDING_CHECKS if kind == "item2vec" else gate.RANKER_CHECKS

    @dg.asset(
        name=name,
        group_name="evaluation",
        deps=[model_steps.candidate_asset(kind), model_steps.input_asset(kind)],
        partitions_def=DAILY,
        code_version=model_steps.CODE_VERSION,
        kinds={"json", "markdown"},
        check_specs=blocking_checks(name, checks),
        description=f"{kind} candidate vs the registry's production version vs a trivial "
        "baseline, on day dt (out of time). Its blocking checks are the release gate.",
    )
    def evaluation(context: dg.AssetExecutionContext, config: GateConfig, storage: ReckitStorage):
        store, dt = storage.warehouse(), context.partition_key
        artifact, outcomes = model_steps.evaluate(
            store, Registry(storage.registry()), kind, dt, config.rules(), config.bootstrap_samples
        )
        manifest = warehouse.publish(store, name, dt, artifact)
        failed = [o.name for o in outcomes if not o.passed]
        return dg.MaterializeResult(
            data_version=dg.DataVersion(manifest["data_version"]),
            metadata={
                **artifact.info,
                "report": dg.MetadataValue.md(artifact.blobs["report.md"].decode()),
                "gate": "passed" if not failed else f"FAILED: {', '.join(failed)}",
            },
            check_results=merged_checks(name, {dt: outcomes}),
        )

    return evaluation


EVALUATIONS = [build_evaluation(kind) for kind in model_steps.KINDS]
