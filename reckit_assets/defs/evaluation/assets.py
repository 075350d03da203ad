"""Evaluation reports with the release gate as blocking checks (candidate vs production)."""

import json

import dagster as dg

from reckit_assets.core.evaluation import gate, plots
from reckit_assets.core.io import warehouse
from reckit_assets.core.monitoring import decisions
from reckit_assets.core.release.registry import Registry
from reckit_assets.core.steps import models as model_steps
from reckit_assets.defs.config import GateOverrides, ProjectConfig, config_metadata, overrides_of
from reckit_assets.defs.environments import model_step_tags
from reckit_assets.defs.partitions import Structure
from reckit_assets.defs.resources import ModelProcesses, ReckitStorage
from reckit_assets.defs.results import blocking_checks, merged_checks


class EvaluationConfig(GateOverrides):
    """Gate rule overrides for one run. Loosening a rule below its configured value (reckit.yaml,
    environment or default) needs a ``reason``; who and why go into the report and the registry
    manifest, like a forced registration."""

    reason: str = ""


def _launch_override(
    context: dg.AssetExecutionContext,
    configured: gate.GateRules,
    effective: gate.GateRules,
    reason: str,
) -> dict | None:
    loosened = gate.loosened(configured, effective)
    if not loosened:
        return None
    if not reason.strip():
        raise dg.Failure(
            description=f"this launch loosens the release gate ({'; '.join(loosened)}) and "
            "gives no reason: set `reason` in the evaluation's run config (it is recorded in "
            "the report and the registry manifest), or change reckit.yaml"
        )
    who = context.run.tags.get("user") or context.run.tags.get("dagster/user") or "unknown"
    return {"by": f"{who} (run {context.run_id})", "reason": reason, "loosened": loosened}


def off_policy_metadata(report: dict) -> dict:
    """The candidate's off-policy CTR (SNIPS, with its interval) beside its AUC, when the day's
    served decisions allowed an estimate."""
    found = report.get("off_policy")
    if not found:
        return {}
    if "candidate" not in found:
        return {"off_policy_ctr": f"not estimated: {found.get('reason')}"}
    e = found["candidate"]["snips"]
    return {
        "off_policy_ctr": float(e["value"]),
        "off_policy_ctr_ci": f"[{e['ci_low']:.4f}, {e['ci_high']:.4f}]",
        "logged_ctr": float(found["logged_ctr"]),
    }


def build_evaluation(kind: str, s: Structure) -> dg.AssetsDefinition:
    name = model_steps.evaluation_asset(kind)
    checks = gate.EMBEDDING_CHECKS if kind == "item2vec" else gate.RANKER_CHECKS

    @dg.asset(
        name=name,
        group_name="evaluation",
        deps=[
            model_steps.candidate_asset(kind),
            model_steps.input_asset(kind),
            # the day's logged traffic: the candidate's off-policy CTR, next to its AUC
            *([] if kind == "item2vec" else [decisions.ASSET]),
        ],
        partitions_def=s.daily,
        code_version=model_steps.CODE_VERSION,
        kinds={"json", "markdown"},
        check_specs=blocking_checks(name, checks),
        op_tags=model_step_tags(kind),
        description=f"{kind} candidate vs the registry's production version vs a trivial "
        "baseline, on day dt (out of time). Its blocking checks are the release gate.",
    )
    def evaluation(
        context: dg.AssetExecutionContext,
        config: EvaluationConfig,
        storage: ReckitStorage,
        project: ProjectConfig,
        model_processes: ModelProcesses,
    ):
        overrides = {k: v for k, v in overrides_of(config).items() if k != "reason"}
        effective = project.load({"gate": overrides})
        store, dt, rules = storage.warehouse(), context.partition_key, effective.config.gate
        override = _launch_override(context, project.load().config.gate, rules, config.reason)
        artifact, outcomes = model_processes.call(
            model_steps.evaluate,
            store,
            Registry(storage.registry()),
            kind,
            dt,
            rules,
            rule_sources=effective.sources,
            override=override,
            what=f"{kind} evaluation dt={dt}",
            uses_torch=kind in model_steps.TORCH_KINDS,
        )
        manifest = warehouse.publish(store, name, dt, artifact)
        failed = [o.name for o in outcomes if not o.passed]
        calibration = model_processes.call(
            plots.reliability_markdown,
            json.loads(artifact.blobs["report.json"]),
            what=f"{kind} reliability diagram dt={dt}",
        )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(manifest["data_version"]),
            metadata={
                **artifact.info,
                "report": dg.MetadataValue.md(artifact.blobs["report.md"].decode()),
                "gate": "passed" if not failed else f"failed: {', '.join(failed)}",
                # released / held / rejected / broken / noop (core.evaluation.outcomes.decide)
                "release_outcome": artifact.info.get("outcome", "unknown"),
                **off_policy_metadata(json.loads(artifact.blobs["report.json"])),
                "rules_loosened_at_launch": dg.MetadataValue.json(override or {}),
                **({"calibration": dg.MetadataValue.md(calibration)} if calibration else {}),
                **config_metadata(effective, ("gate",)),
            },
            check_results=merged_checks(name, {dt: outcomes}),
        )

    return evaluation


def build(s: Structure) -> list[dg.AssetsDefinition]:
    return [build_evaluation(kind, s) for kind in model_steps.KINDS]
