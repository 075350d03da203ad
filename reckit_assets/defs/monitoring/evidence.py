"""Live-traffic evidence from the service's decision log: the day's served decisions (with what
users clicked), training/serving skew and the shadow version's day. The candidate's off-policy CTR is computed by its
evaluation (next to its AUC) from ``served_decisions``."""

import json

import dagster as dg
import pandas as pd

from reckit_assets.core.ingest.landing import is_ready, read_landed
from reckit_assets.core.io import warehouse
from reckit_assets.core.monitoring import decisions, shadow
from reckit_assets.core.release.registry import SHADOW, Registry
from reckit_assets.core.steps import data as data_steps
from reckit_assets.defs.config import ProjectConfig, config_metadata
from reckit_assets.defs.monitoring.assets import REGISTERED, SHADOW_ASSET, offline_scores_of
from reckit_assets.defs.partitions import Structure
from reckit_assets.defs.resources import Monitoring, ReckitStorage

CODE_VERSION = "evidence-1"
SKEW = "serving_skew"
SKEW_CHECK = "features_match"
SHADOW_CHECK = "shadow_day"


def build(s: Structure) -> list:
    @dg.asset(
        name=decisions.ASSET,
        group_name="monitoring",
        partitions_def=s.daily,
        code_version=CODE_VERSION,
        deps=["feedback_landing"],
        kinds={"parquet"},
        description="The service's decision log for the day (serving/decisions.py: shown and "
        "policy positions, exploration share and exact propensities, scores, sampled feature "
        "vectors, shadow scores) for the rankings whose requests landed, with `clicked`. "
        "Evidence for off-policy estimates (each ranker evaluation), `serving_skew` and shadow "
        "scoring.",
    )
    def served_decisions(
        context: dg.AssetExecutionContext, storage: ReckitStorage, monitoring: Monitoring
    ) -> dg.MaterializeResult:
        dt = context.partition_key
        if not monitoring.feedback_uri:
            raise dg.Failure(
                "no feedback log configured (Monitoring.feedback_uri, RECKIT_FEEDBACK_URI): "
                "the decision log is written beside it"
            )
        landing = storage.landing()
        if not is_ready(landing, dt):
            raise dg.Failure(f"landing dt={dt} is not complete (no _SUCCESS on all three tables)")
        events = read_landed(landing, "events", dt).frame
        log = decisions.read_decision_log(monitoring.feedback(), dt)
        frame, counts = decisions.served_decisions(log, events)
        published = warehouse.publish(
            storage.warehouse(),
            decisions.ASSET,
            dt,
            warehouse.Artifact(frames={"data": frame}, info=counts),
        )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(published["data_version"]),
            metadata={k: v for k, v in counts.items() if isinstance(v, int)},
        )

    @dg.asset(
        name=SKEW,
        group_name="monitoring",
        partitions_def=s.daily,
        code_version=CODE_VERSION,
        deps=[decisions.ASSET, data_steps.SAMPLES],
        kinds={"json"},
        check_specs=[dg.AssetCheckSpec(SKEW_CHECK, asset=SKEW, blocking=True)],
        description="Training/serving skew: the feature vectors the service scored (a sample of "
        "rankings, RECKIT_FEATURE_LOG_SHARE) against the same rows' point-in-time features in "
        "the day's training samples, per feature: share of rows differing beyond the tolerance, "
        "largest difference, KS distance. Blocks when a feature's mismatch share exceeds "
        "`skew.max_mismatch_share`.",
    )
    def serving_skew(
        context: dg.AssetExecutionContext, storage: ReckitStorage, project: ProjectConfig
    ) -> dg.MaterializeResult:
        dt, store = context.partition_key, storage.warehouse()
        effective = project.load()
        rules = effective.config.skew
        warehouse.require(store, decisions.ASSET, dt)
        warehouse.require(store, data_steps.SAMPLES, dt)
        report = decisions.skew(
            warehouse.read(store, decisions.ASSET, dt),
            warehouse.read(store, data_steps.SAMPLES, dt),
            rules,
        )
        blob = json.dumps(report, indent=2, sort_keys=True, default=float).encode()
        published = warehouse.publish(
            store, SKEW, dt, warehouse.Artifact(blobs={"skew.json": blob}, info={
                "compared": report["compared"], "failing": report["failing"]})
        )  # fmt: skip
        by_feature = {f["feature"]: f for f in report["features"]}
        failing = report["failing"]
        if failing:
            description = (
                "; ".join(
                    f"{name}: {by_feature[name]['mismatched']} of {by_feature[name]['rows']} rows "
                    f"({100 * by_feature[name]['mismatch_share']:.1f}%) differ from the point-in-"
                    f"time value (served mean {by_feature[name]['served_mean']:.4g} vs "
                    f"{by_feature[name]['offline_mean']:.4g}, KS {by_feature[name]['ks_statistic']:.3f})"
                    for name in failing
                )
                + f" (limit {100 * rules.max_mismatch_share:g}%: skew.max_mismatch_share)"
            )
        elif report["compared"] < rules.min_rows:
            description = (
                f"{report['compared']} served feature rows compared (fewer than skew.min_rows="
                f"{rules.min_rows}): reported, not judged"
            )
        else:
            description = f"{len(by_feature)} features match on {report['compared']} rows"
        table = "\n".join(
            f"| {f['feature']} | {f['rows']} | {100 * f['mismatch_share']:.2f}% | "
            f"{f['max_abs_diff']:.4g} | {f['ks_statistic']:.3f} |"
            for f in report["features"]
        )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(published["data_version"]),
            metadata={
                "compared_rows": report["compared"],
                "failing": ", ".join(failing) or "none",
                "features": dg.MetadataValue.md(
                    "| feature | rows | differ | max diff | KS |\n|---|---|---|---|---|\n" + table
                ),
                **config_metadata(effective, ("skew",)),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=SKEW_CHECK,
                    passed=not failing,
                    description=description,
                    metadata={
                        "failing": ", ".join(failing) or "none",
                        "compared_rows": report["compared"],
                        "worst_mismatch_share": max(
                            (f["mismatch_share"] for f in report["features"]), default=0.0
                        ),
                    },
                )
            ],
        )

    @dg.asset(
        name=SHADOW_ASSET,
        group_name="release",
        partitions_def=s.daily,
        code_version=CODE_VERSION,
        deps=[decisions.ASSET, *REGISTERED],
        kinds={"json"},
        check_specs=[dg.AssetCheckSpec(SHADOW_CHECK, asset=SHADOW_ASSET, blocking=False)],
        description="The registry's `shadow` version judged on the day's live traffic, which it "
        "scored beside the served model without any user seeing it (serving/shadow.py): errors, "
        "score validity, latency p99, score PSI vs its offline holdout, agreement with the served "
        "model (Kendall tau, same first item) and its off-policy CTR. A passing day moves it to "
        "canary (`canary_release`; release.new_version_alias: shadow); a failed one clears it. "
        f"`{SHADOW_CHECK}` warns on a failed day (a rejected shadow is an outcome, not a broken "
        "run).",
    )
    def shadow_evaluation(
        context: dg.AssetExecutionContext,
        storage: ReckitStorage,
        monitoring: Monitoring,
        project: ProjectConfig,
    ) -> dg.MaterializeResult:
        dt, store = context.partition_key, storage.warehouse()
        registry = Registry(storage.registry())
        effective = project.load()
        rules = effective.config.shadow
        # No decisions for the day (no log, or not landed yet): every shadow waits, not judged.
        found = warehouse.manifest(store, decisions.ASSET, dt) is not None
        rows = warehouse.read(store, decisions.ASSET, dt) if found else pd.DataFrame()
        out: dict = {}
        for model in monitoring.model_names():
            version = registry.alias(model, SHADOW)
            if version is None:
                continue
            mine = (
                rows[(rows["model"] == model) & (rows["shadow_version"] == version)]
                if "shadow_version" in rows
                else rows.iloc[:0]
            )
            offline = offline_scores_of(registry, store, model, version)
            out[model] = {
                "version": version,
                **shadow.judge_shadow(mine, offline, rules, effective.config.gate.confidence),
            }
        blob = json.dumps(out, indent=2, sort_keys=True, default=float).encode()
        published = warehouse.publish(
            store, SHADOW_ASSET, dt, warehouse.Artifact(blobs={"shadow.json": blob})
        )
        failed = {m: j for m, j in out.items() if j["verdict"] == shadow.FAILED}
        summary = "; ".join(
            f"{m} {j['version']}: {j['verdict']} ({j['why']})" for m, j in out.items()
        )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(published["data_version"]),
            metadata={
                "shadows": summary or "no shadow version in the registry",
                "figures": dg.MetadataValue.json(json.loads(blob)),
                **config_metadata(effective, ("shadow",)),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=SHADOW_CHECK,
                    passed=not failed,
                    severity=dg.AssetCheckSeverity.WARN,
                    description=summary or "no shadow version in the registry",
                )
            ],
        )

    return [served_decisions, serving_skew, shadow_evaluation]
