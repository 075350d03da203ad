"""Evaluation reports with the release gate as blocking checks (candidate vs production)."""

import dagster as dg

from reckit_assets.core.evaluation import gate
from reckit_assets.core.io import warehouse
from reckit_assets.core.release.registry import Registry
from reckit_assets.core.steps import models as model_steps
from reckit_assets.defs.config import GateOverrides, ProjectConfig, config_metadata, overrides_of
from reckit_assets.defs.partitions import Structure
from reckit_assets.defs.resources import ReckitStorage
from reckit_assets.defs.results import blocking_checks, merged_checks


def build_evaluation(kind: str, s: Structure) -> dg.AssetsDefinition:
    name = model_steps.evaluation_asset(kind)
    checks = gate.EMBEDDING_CHECKS if kind == "item2vec" else gate.RANKER_CHECKS

    @dg.asset(
        name=name,
        group_name="evaluation",
        deps=[model_steps.candidate_asset(kind), model_steps.input_asset(kind)],
        partitions_def=s.daily,
        code_version=model_steps.CODE_VERSION,
        kinds={"json", "markdown"},
        check_specs=blocking_checks(name, checks),
        description=f"{kind} candidate vs the registry's production version vs a trivial "
        "baseline, on day dt (out of time). Its blocking checks are the release gate.",
    )
    def evaluation(
        context: dg.AssetExecutionContext,
        config: GateOverrides,
        storage: ReckitStorage,
        project: ProjectConfig,
    ):
        effective = project.load({"gate": overrides_of(config)})
        store, dt, rules = storage.warehouse(), context.partition_key, effective.config.gate
        artifact, outcomes = model_steps.evaluate(
            store, Registry(storage.registry()), kind, dt, rules, rules.bootstrap_samples
        )
        manifest = warehouse.publish(store, name, dt, artifact)
        failed = [o.name for o in outcomes if not o.passed]
        return dg.MaterializeResult(
            data_version=dg.DataVersion(manifest["data_version"]),
            metadata={
                **artifact.info,
                "report": dg.MetadataValue.md(artifact.blobs["report.md"].decode()),
                "gate": "passed" if not failed else f"FAILED: {', '.join(failed)}",
                **config_metadata(effective, ("gate",)),
            },
            check_results=merged_checks(name, {dt: outcomes}),
        )

    return evaluation


def build(s: Structure) -> list[dg.AssetsDefinition]:
    return [build_evaluation(kind, s) for kind in model_steps.KINDS]
