"""Candidates reach the registry only through the gate; overrides are audited; reruns idempotent."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest

from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.release.registry import CANARY, PRODUCTION, Registry
from reckit_assets.defs.evaluation import assets as evaluation_assets
from reckit_assets.defs.release import assets as release_assets
from reckit_assets.defs.resources import ModelProcesses
from reckit_assets.defs.training import assets as training_assets
from reckit_assets_tests.conftest import days
from reckit_assets_tests.defs.pipeline import (
    STRUCTURE,
    failed_checks,
    materialized,
    run_days,
    step_errors,
)

XGB = [
    a
    for module in (training_assets, evaluation_assets, release_assets)
    for a in module.build(STRUCTURE)
    if a.key.path[0].startswith("xgboost")
]
# The release mechanics under test need a first model the gate releases on these tiny two-day
# windows: the deeper, faster trees of the earlier defaults (60 rounds of the shallow defaults
# are held there: +0.063 AUC over the prior with a CI of +-0.08).
FAST = {
    "ops": {
        "xgboost_candidate": {
            "config": {
                "n_estimators": 60,
                "max_depth": 6,
                "min_child_weight": 5.0,
                "learning_rate": 0.08,
            }
        }
    }
}


def _registry(lake) -> Registry:
    return Registry(LocalStorage(lake.root / "registry"))


# These holdouts have ~4,000 rows (95% CI half-width ~0.03 AUC): the default margins (0.01 AUC,
# 1% logloss) are narrower than that, so no candidate could prove non-inferiority. The file widens
# them, as a project with days this small would; docs/benchmarks.md has the defaults' error rates
# at default scale.
SMALL_HOLDOUT_GATE = {"auc_margin": 0.05, "logloss_margin": 0.05}


def _resources(lake) -> dict:
    resources = lake.resources()
    lake.write_config({"gate": SMALL_HOLDOUT_GATE})
    return resources


def _release(lake, instance, dt: str, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        XGB,
        partition_key=dt,
        resources=_resources(lake),
        instance=instance,
        run_config=run_config or FAST,
        raise_on_error=False,
    )


@pytest.fixture
def prepared(simulated):
    instance = dg.DagsterInstance.ephemeral()
    for dt in days(4):
        assert run_days(simulated.resources(), instance, dt).success
    return simulated, instance


def _shuffle_window_labels(lake, dt_days: list[str]) -> None:
    """Replace the window's samples by the same rows with shuffled labels (a broken upstream)."""
    rng = np.random.default_rng(0)
    for dt in dt_days:
        frame = warehouse.read(lake.warehouse, "training_samples", dt)
        frame["label"] = rng.permutation(frame["label"].to_numpy())
        warehouse.publish(
            lake.warehouse, "training_samples", dt, warehouse.Artifact(frames={"data": frame})
        )


def test_regressing_candidate_is_rejected_green_and_sound_one_registered(prepared):
    """Shown worse than the trivial baseline: rejected, a normal outcome. The run is green, the
    check is a WARN naming the outcome, nothing is registered and the registration is not
    materialized (an observation says why)."""
    lake, instance = prepared
    _shuffle_window_labels(lake, days(3))
    rejected = _release(lake, instance, "2026-10-04")
    assert rejected.success, step_errors(rejected)
    failed = failed_checks(rejected)
    # No production yet: the trivial baseline (item-CTR prior) is what the candidate must beat.
    assert "auc_vs_trivial_baseline" in failed
    assert "does not beat the trivial baseline" in failed["auc_vs_trivial_baseline"]
    assert "[rejected]" in failed["auc_vs_trivial_baseline"]
    severities = {
        e.check_name: e.severity for e in rejected.get_asset_check_evaluations() if not e.passed
    }
    assert severities["auc_vs_trivial_baseline"] == dg.AssetCheckSeverity.WARN
    assert "xgboost_registered" not in materialized(rejected)
    assert _registry(lake).versions("xgboost") == []
    report = __import__("json").loads(
        lake.warehouse.read_bytes("xgboost_evaluation/dt=2026-10-04/report.json")
    )
    assert report["outcome"] == "rejected" and report["passed"] is False
    observed = instance.fetch_observations(dg.AssetKey("xgboost_registered"), limit=5).records
    assert observed and observed[0].asset_observation.metadata["outcome"].value == "rejected"

    # A later run of the registration alone registers nothing either, and stays green.
    alone = dg.materialize(
        [XGB[2]],
        partition_key="2026-10-04",
        resources=_resources(lake),
        instance=instance,
        raise_on_error=False,
    )
    assert alone.success and "xgboost_registered" not in materialized(alone)
    assert _registry(lake).versions("xgboost") == []

    # Sound data again: the candidate passes and becomes the first production version.
    for dt in days(3):
        assert run_days(lake.resources(), instance, dt).success
    sound = _release(lake, instance, "2026-10-04")
    assert sound.success, failed_checks(sound)
    registry = _registry(lake)
    [version] = registry.versions("xgboost")
    assert registry.alias("xgboost", PRODUCTION) == version["version"]
    assert version["gate"] == {"passed": True, "failed": []} and version["override"] is None
    assert set(version["files"]) >= {"xgb_model.json", "feature_meta.json"}
    meta = __import__("json").loads(
        registry.load_files("xgboost", version["version"])["feature_meta.json"]
    )
    assert set(meta) == {
        "feature_columns",
        "feature_count",
        "label_column",
        "model_version",
        "normalized",
        "created_at",
    }
    assert meta["model_version"] == version["version"]


def test_rerun_of_the_production_day_is_a_clear_noop(prepared):
    lake, instance = prepared
    assert _release(lake, instance, "2026-10-04").success
    registry = _registry(lake)
    first = registry.versions("xgboost")
    log = registry.history("xgboost")
    # Rerun the same day: same inputs -> same version id and the same bytes; it is production
    # now, so the gate compares nothing and says so (a no-op that passes, not a failed check).
    again = _release(lake, instance, "2026-10-04")
    assert again.success, failed_checks(again)
    evaluations = {
        e.check_name: e
        for e in again.get_asset_check_evaluations()
        if e.check_name != "production_staleness"  # about production's age, not this rerun
    }
    identity = evaluations["distinct_from_production"].description
    assert identity.startswith("no-op") and "rerun of dt=2026-10-04" in identity
    assert all(e.description.startswith("no-op") for e in evaluations.values())
    report = __import__("json").loads(
        lake.warehouse.read_bytes("xgboost_evaluation/dt=2026-10-04/report.json")
    )
    assert report["noop"] is True and report["passed"] is True
    assert registry.versions("xgboost") == first and registry.history("xgboost") == log


def test_forced_registration_records_the_reason(prepared):
    lake, instance = prepared
    _shuffle_window_labels(lake, days(3))
    assert _release(lake, instance, "2026-10-04").success  # rejected: green, not registered
    assert _registry(lake).versions("xgboost") == []
    no_reason = dg.materialize(
        [XGB[2]],
        partition_key="2026-10-04",
        resources=_resources(lake),
        instance=instance,
        run_config={"ops": {"xgboost_registered": {"config": {"force": True}}}},
        raise_on_error=False,
    )
    assert any("needs a reason" in e for e in step_errors(no_reason))
    forced = dg.materialize(
        [XGB[2]],
        partition_key="2026-10-04",
        resources=_resources(lake),
        instance=instance,
        run_config={
            "ops": {"xgboost_registered": {"config": {"force": True, "reason": "INC-42 hotfix"}}}
        },
        raise_on_error=False,
    )
    assert forced.success
    registry = _registry(lake)
    [version] = registry.versions("xgboost")
    assert version["override"]["reason"] == "INC-42 hotfix"
    assert "auc_vs_trivial_baseline" in version["gate"]["failed"]
    assert "override: INC-42 hotfix" in registry.history("xgboost")[-1].reason


def test_second_passing_version_goes_to_canary_and_production_is_the_baseline(prepared):
    lake, instance = prepared
    assert _release(lake, instance, "2026-10-03").success
    registry = _registry(lake)
    prod = registry.alias("xgboost", PRODUCTION)
    result = _release(lake, instance, "2026-10-04")
    evaluation = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert f"production {prod}" in evaluation["auc_vs_production"].description
    assert result.success, failed_checks(result)  # deterministic data: a sound model passes
    assert registry.alias("xgboost", PRODUCTION) == prod  # the gate never moves production
    canary = registry.alias("xgboost", CANARY)
    assert canary not in (None, prod)
    assert registry.manifest("xgboost", canary)["metrics"]["production_version"] == prod


def test_under_the_shadow_policy_a_released_version_scores_live_traffic_first(prepared):
    """release.new_version_alias: shadow: a passing later version takes the shadow alias (the
    shadow judge moves it to canary after a passing live day), never canary directly."""
    from reckit_assets.core.release.registry import SHADOW

    lake, instance = prepared
    assert _release(lake, instance, "2026-10-03").success
    registry = _registry(lake)
    prod = registry.alias("xgboost", PRODUCTION)
    resources = lake.resources()
    lake.write_config({"gate": SMALL_HOLDOUT_GATE, "release": {"new_version_alias": "shadow"}})
    result = dg.materialize(
        XGB, partition_key="2026-10-04", resources=resources, instance=instance, run_config=FAST
    )
    assert result.success, failed_checks(result)
    shadow = registry.alias("xgboost", SHADOW)
    assert shadow not in (None, prod) and registry.alias("xgboost", CANARY) is None
    assert registry.history("xgboost", SHADOW)[-1].reason.startswith("registered from dt=")


def _canary_under_judgement(lake, instance, version: str, share_since: str, share: float):
    """Release 2026-10-03 (production), then make a copy of production the canary under
    judgement at ``share`` since ``share_since``: (registry, its rollout)."""
    from reckit_assets.core.monitoring.rollout import Rollout, write_rollout

    assert _release(lake, instance, "2026-10-03").success
    registry = _registry(lake)
    prod = registry.alias("xgboost", PRODUCTION)
    registry.register("xgboost", version, registry.load_files("xgboost", prod), {"kind": "xgboost"})
    registry.set_alias("xgboost", CANARY, version, "test", "a canary being judged")
    rollout = Rollout("xgboost", version, share_since, share, share_since)
    write_rollout(registry.storage, "xgboost", rollout)
    return registry, rollout


def test_a_canary_under_judgement_is_held_not_replaced_unless_configured(prepared):
    """release.canary_in_judgement: a daily candidate does not restart a running judgement."""
    lake, instance = prepared
    judged = "xgboost-judged-copy"
    registry, _ = _canary_under_judgement(lake, instance, judged, "2026-10-04", 0.05)
    held = _release(lake, instance, "2026-10-04")
    assert held.success, failed_checks(held)
    assert registry.alias("xgboost", CANARY) == judged  # held: the judgement goes on
    meta = held.asset_materializations_for_node("xgboost_registered")[0].metadata
    new_version = meta["version"].value
    assert meta["held"].value["canary"] == judged
    assert "canary_in_judgement" in meta["held"].value["why"]
    assert registry.manifest("xgboost", new_version) is not None  # registered all the same
    # The other policy replaces the canary (and the rerun finishes the release).
    resources = lake.resources()
    lake.write_config({"gate": SMALL_HOLDOUT_GATE, "release": {"canary_in_judgement": "replace"}})
    replaced = dg.materialize(
        [a for a in XGB if a.key.path[0] == "xgboost_registered"],
        partition_key="2026-10-04",
        resources=resources,
        instance=instance,
        selection=["xgboost_registered"],
    )
    assert replaced.success
    assert registry.alias("xgboost", CANARY) == new_version
    assert registry.history("xgboost", CANARY)[-1].reason.startswith("registered from dt=")


def test_a_stalled_canary_is_handed_over_to_the_days_candidate(prepared):
    """release.stalled_canary_days: a canary at one share for that many days without a decision
    gives way to the day's gated candidate (fresher days), and the ledger says why; a forced
    canary is never handed over."""
    from reckit_assets.core.steps.models import _stalled

    lake, instance = prepared
    judged = "xgboost-stalled-copy"
    # 3 days at 50% on 2026-10-04
    registry, stalled = _canary_under_judgement(lake, instance, judged, "2026-10-01", 0.5)
    prod = registry.alias("xgboost", PRODUCTION)
    result = _release(lake, instance, "2026-10-04")
    assert result.success, failed_checks(result)
    new_version = (
        result.asset_materializations_for_node("xgboost_registered")[0].metadata["version"].value
    )
    assert registry.alias("xgboost", CANARY) == new_version != judged
    reason = registry.history("xgboost", CANARY)[-1].reason
    assert reason.startswith("registered from dt=2026-10-04")
    assert f"canary {judged} stalled: 3 days at share 0.5" in reason
    # the rule's edges, on the same registry: one day short, switched off, a forced canary
    assert _stalled(registry, "xgboost", judged, stalled, "2026-10-03", 3) == ""
    assert _stalled(registry, "xgboost", judged, stalled, "2026-10-04", 0) == ""
    forced = "xgboost-forced-copy"
    files = registry.load_files("xgboost", prod)
    registry.register("xgboost", forced, files, {"kind": "xgboost", "override": "a person"})
    assert _stalled(registry, "xgboost", forced, stalled, "2026-10-09", 3) == ""


TINY = {
    "ops": {
        "xgboost_candidate": {"config": {"n_estimators": 40}},
        "deepfm_candidate": {
            "config": {"max_epochs": 5, "hidden": [32], "embedding_dim": 4, "batch_size": 256}
        },
        "item2vec_candidate": {"config": {"epochs": 20, "vector_size": 16}},
    }
}


def test_daily_job_trains_gates_and_registers_all_three_models(prepared):
    from reckit_assets.definitions import build_defs
    from reckit_assets.settings import load_settings

    lake, instance = prepared
    defs = build_defs(load_settings({"RECKIT_DATA_DIR": str(lake.root)}))
    job = defs.resolve_job_def("daily_pipeline")
    result = job.execute_in_process(
        partition_key="2026-10-04", instance=instance, run_config=TINY, raise_on_error=False
    )
    registry = _registry(lake)
    for kind in ("xgboost", "deepfm"):
        evaluations = {
            e.check_name: e.passed
            for e in result.get_asset_check_evaluations()
            if e.asset_key.to_user_string() == f"{kind}_evaluation"
        }
        assert evaluations and all(evaluations.values()), (kind, failed_checks(result))
        [version] = registry.versions(kind)
        assert registry.alias(kind, PRODUCTION) == version["version"]
        assert version["training_window"] == ["2026-10-01", "2026-10-02", "2026-10-03"]
    # This simulation's day has 39 sessions (67 next-item pairs): too few to judge item2vec,
    # and the gate says so instead of deciding on noise; nothing is registered.
    item2vec = {
        e.check_name: e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.to_user_string() == "item2vec_evaluation"
    }
    usable = item2vec["holdout_usable"]
    assert not usable.passed and "gate.min_next_item_pairs" in usable.description
    assert registry.versions("item2vec") == []
    markdown = lake.warehouse.read_bytes("deepfm_evaluation/dt=2026-10-04/report.md").decode()
    assert "| AUC |" in markdown and "bootstrap CI" in markdown


def test_cli_promote_and_rollback_verify_the_version(prepared, capsys):
    from reckit_assets import cli

    lake, instance = prepared
    assert _release(lake, instance, "2026-10-03").success
    assert _release(lake, instance, "2026-10-04").success
    registry = _registry(lake)
    first, second = registry.alias("xgboost", PRODUCTION), registry.alias("xgboost", CANARY)
    reg = ["registry", "--registry", str(lake.root / "registry"), "--by", "alice"]
    assert cli.main([*reg, "promote", "xgboost", second, "--reason", "canary is better"]) == 0
    assert registry.alias("xgboost", PRODUCTION) == second
    assert cli.main([*reg, "list"]) == 0
    assert "[canary, production]" in capsys.readouterr().out

    # Corrupt the previous version: rollback is refused and production stays.
    model_file = lake.root / f"registry/xgboost/versions/{first}/files/xgb_model.json"
    original = model_file.read_bytes()
    model_file.write_bytes(original.replace(b"1", b"2", 5))
    assert cli.main([*reg, "rollback", "xgboost", "--reason", "try"]) == 2
    assert "xgb_model.json sha256 mismatch" in capsys.readouterr().err
    assert registry.alias("xgboost", PRODUCTION) == second

    model_file.write_bytes(original)
    assert cli.main([*reg, "rollback", "xgboost", "--reason", "CTR dropped"]) == 0
    assert registry.alias("xgboost", PRODUCTION) == first
    last = registry.history("xgboost")[-1]
    assert (last.from_version, last.to_version, last.by) == (second, first, "alice")
    assert last.reason == "rollback: CTR dropped"


def test_backfilled_day_is_not_gated_in_sample_and_never_moves_aliases_back(prepared):
    lake, instance = prepared
    assert _release(lake, instance, "2026-10-04").success  # production: trained on days 1-3
    registry = _registry(lake)
    prod = registry.alias("xgboost", PRODUCTION)
    # Backfilling day 3: production was trained on day 3, so comparing there is refused.
    backfill = _release(lake, instance, "2026-10-03")
    failed = failed_checks(backfill)
    assert "production_out_of_time" in failed
    assert "in-sample" in failed["production_out_of_time"]
    # Forced anyway: the older day's version is registered, but no alias moves back in time.
    forced = dg.materialize(
        [XGB[2]],
        partition_key="2026-10-03",
        resources=_resources(lake),
        instance=instance,
        run_config={
            "ops": {"xgboost_registered": {"config": {"force": True, "reason": "audit copy"}}}
        },
        raise_on_error=False,
    )
    assert forced.success
    assert len(registry.versions("xgboost")) == 2
    assert registry.aliases("xgboost") == {PRODUCTION: prod}


def test_registration_refuses_when_production_moved_after_the_evaluation(prepared):
    lake, instance = prepared
    assert _release(lake, instance, "2026-10-03").success
    registry = _registry(lake)
    evaluated = dg.materialize(
        XGB[:2],
        partition_key="2026-10-04",
        resources=_resources(lake),
        instance=instance,
        run_config=FAST,
        raise_on_error=False,
    )
    assert evaluated.success
    registry.set_alias("xgboost", PRODUCTION, None, "oncall", "pulled")
    late = dg.materialize(
        [XGB[2]],
        partition_key="2026-10-04",
        resources=_resources(lake),
        instance=instance,
        raise_on_error=False,
    )
    assert not late.success
    assert any("production is now None" in e for e in step_errors(late))


def _report(lake, dt: str, kind: str = "xgboost") -> dict:
    import json

    return json.loads(lake.warehouse.read_bytes(f"{kind}_evaluation/dt={dt}/report.json"))


def test_loosening_a_rule_at_launch_needs_a_reason_and_is_recorded(prepared):
    lake, instance = prepared
    loose = {"ops": {**FAST["ops"], "xgboost_evaluation": {"config": {"auc_floor": 0.1}}}}
    refused = _release(lake, instance, "2026-10-04", loose)
    assert not refused.success
    assert any(
        "loosens the release gate" in e and "gate.auc_floor: 0.55 -> 0.1" in e
        for e in step_errors(refused)
    )
    assert _registry(lake).versions("xgboost") == []

    loose["ops"]["xgboost_evaluation"]["config"]["reason"] = "INC-7: cold start"
    allowed = _release(lake, instance, "2026-10-04", loose)
    assert allowed.success, failed_checks(allowed)
    report = _report(lake, "2026-10-04")
    override = report["rules_override"]
    assert override["reason"] == "INC-7: cold start"
    assert override["loosened"] == ["gate.auc_floor: 0.55 -> 0.1"]
    assert report["rules"]["auc_floor"] == {"value": 0.1, "source": "run config", "default": 0.55}
    assert report["rules"]["auc_margin"]["source"].startswith("file ")
    assert report["rules"]["auc_floor"]["default"] == 0.55
    markdown = lake.warehouse.read_bytes("xgboost_evaluation/dt=2026-10-04/report.md").decode()
    assert "Rules loosened at launch by" in markdown and "INC-7: cold start" in markdown


def test_tightening_needs_no_reason_and_file_rules_show_their_source(prepared):
    lake, instance = prepared
    resources = lake.resources()
    lake.write_config({"gate": {**SMALL_HOLDOUT_GATE, "auc_margin": 0.04}})  # reviewed: no launch
    strict = {"ops": {**FAST["ops"], "xgboost_evaluation": {"config": {"auc_floor": 0.6}}}}
    result = dg.materialize(
        XGB[:2],
        partition_key="2026-10-04",
        resources=resources,
        instance=instance,
        run_config=strict,
        raise_on_error=False,
    )
    assert result.success, step_errors(result)
    report = _report(lake, "2026-10-04")
    assert report["rules_override"] is None
    assert report["rules"]["auc_margin"]["source"].startswith("file ")
    assert report["rules"]["auc_floor"]["source"] == "run config"


def test_cleared_production_is_its_own_state_not_a_first_model(prepared):
    lake, instance = prepared
    assert _release(lake, instance, "2026-10-03").success
    registry = _registry(lake)
    cleared = registry.alias("xgboost", PRODUCTION)
    registry.set_alias("xgboost", PRODUCTION, None, "oncall", "pulled: CTR dropped")
    evaluated = dg.materialize(
        XGB[:2],
        partition_key="2026-10-04",
        resources=_resources(lake),
        instance=instance,
        run_config=FAST,
        raise_on_error=False,
    )
    report = _report(lake, "2026-10-04")
    state = report["production_state"]
    assert state["state"] == "cleared" and state["version"] is None
    assert state["cleared"]["by"] == "oncall" and state["cleared"]["last_version"] == cleared
    checks = {e.check_name: e for e in evaluated.get_asset_check_evaluations()}
    assert "cannot go straight to production" in checks["auc_vs_production"].description
    # The trivial baseline is still enforced: the candidate is judged, not waved through.
    assert "trivial baseline" in checks["auc_vs_trivial_baseline"].description
    markdown = lake.warehouse.read_bytes("xgboost_evaluation/dt=2026-10-04/report.md").decode()
    assert "Production: cleared" in markdown


def test_report_holds_the_gate_table(prepared):
    lake, instance = prepared
    assert _release(lake, instance, "2026-10-03").success
    assert _release(lake, instance, "2026-10-04").success
    markdown = lake.warehouse.read_bytes("xgboost_evaluation/dt=2026-10-04/report.md").decode()
    assert "| check | rule | threshold | config key | value | CI | verdict |" in markdown
    for name, _ in __import__(
        "reckit_assets.core.evaluation.gate", fromlist=["RANKER_CHECKS"]
    ).RANKER_CHECKS:
        assert f"| `{name}` |" in markdown
    assert "gate.auc_margin" in markdown and "| pass |" in markdown
    assert "trivial baseline (item_ctr_prior)" in markdown


_CALLS: list[str] = []


class _Recorded(ModelProcesses):
    """The model processes, noting each computation they are asked for."""

    def call(self, fn, /, *args, what, log=None, **kwargs):
        _CALLS.append(what)
        return super().call(fn, *args, what=what, log=log, **kwargs)


def test_a_candidate_and_its_evaluation_are_the_same_bytes_in_a_model_process(prepared):
    """The embedded default trains and evaluates in a process of its own (isolate=True); the
    bytes, and so the data versions, are the ones a step computing in place gives."""
    lake, instance = prepared
    models = [a for a in XGB if a.key.path[0] in ("xgboost_candidate", "xgboost_evaluation")]
    versions = {}
    for isolate in (True, False):
        _CALLS.clear()
        result = dg.materialize(
            models,
            partition_key="2026-10-04",
            resources={**_resources(lake), "model_processes": _Recorded(isolate=isolate)},
            instance=instance,
            run_config=FAST,
        )
        assert result.success
        lines = [entry.user_message for entry in instance.all_logs(result.run_id)]
        versions[isolate] = {
            name: result.asset_materializations_for_node(name)[0].tags["dagster/data_version"]
            for name in ("xgboost_candidate", "xgboost_evaluation")
        }
        # The trainer's progress lines reach the run's log from the model process too.
        assert any("xgb done: best round" in line for line in lines), isolate
    assert versions[True] == versions[False]
    # Every computation of the XGBoost steps (training, evaluation, their plots) goes to a model
    # process: the run's own process never imports the ML stack.
    assert sorted(what.split(" dt=")[0] for what in _CALLS) == [
        "xgboost evaluation",
        "xgboost reliability diagram",
        "xgboost training",
        "xgboost training curve",
    ]


def test_the_xgboost_and_item2vec_steps_never_import_torch(prepared):
    """Where a step has a process or a pod of its own (no model server), an XGBoost or item2vec
    step that imported torch would pay ~2.5 s of imports: each computation, in a fresh
    interpreter, leaves torch unimported."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from reckit_assets.core.steps import models as model_steps
    from reckit_assets_tests.core.training import probe

    lake, instance = prepared
    dt, structure = "2026-10-04", STRUCTURE
    config = lake.resources()["project"].load()
    candidate = [a for a in XGB if a.key.path[0] == "xgboost_candidate"]
    assert dg.materialize(
        candidate, partition_key=dt, resources=_resources(lake), instance=instance, run_config=FAST
    ).success
    calls = {
        f"{kind} training": (
            model_steps.train_candidate,
            lake.warehouse,
            kind,
            dt,
            config.values()[kind],
            structure.training_window_days,
            structure.first_day,
            config.config.training.min_days,
        )
        for kind in ("xgboost", "item2vec")
    }
    calls["xgboost evaluation"] = (
        model_steps.evaluate,
        lake.warehouse,
        _registry(lake),
        "xgboost",
        dt,
        config.config.gate,
    )
    fresh = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=fresh, max_tasks_per_child=1) as pool:
        for what, (fn, *args) in calls.items():
            loaded = pool.submit(probe.loaded_after, ("torch",), fn, *args).result()
            assert loaded == [], f"{what} imported torch"


def test_a_finished_daily_run_records_the_days_summary_without_a_run(prepared):
    """daily_summary_sensor: the day's run status, data gate and each model's release outcome,
    as a runless materialization of the day's partition (what `reckit report` prints)."""
    from reckit_assets.defs.release import summary as day_summary

    lake, instance = prepared
    _shuffle_window_labels(lake, days(3))
    job = dg.Definitions(
        assets=XGB,
        jobs=[dg.define_asset_job("daily_pipeline", selection=XGB)],
        resources=_resources(lake),
    ).resolve_job_def("daily_pipeline")
    assert job.execute_in_process(
        partition_key="2026-10-04", instance=instance, run_config=FAST
    ).success
    sensor = day_summary.build_sensor()
    context = dg.build_sensor_context(instance=instance, resources=_resources(lake))
    result = sensor(context)
    [event] = result.asset_events
    assert event.partition == "2026-10-04"
    assert event.metadata["run"].value == "SUCCESS"
    assert event.metadata["xgboost"].value.startswith("rejected: AUC")
    assert event.metadata["data"].value == "passed"
    again = sensor(
        dg.build_sensor_context(instance=instance, resources=_resources(lake), cursor=result.cursor)
    )
    assert isinstance(again, dg.SkipReason)


def _release_with(lake, instance, dt: str, gate_rules: dict) -> dg.ExecuteInProcessResult:
    resources = lake.resources()
    lake.write_config({"gate": gate_rules})
    return dg.materialize(
        XGB,
        partition_key=dt,
        resources=resources,
        instance=instance,
        run_config=FAST,
        raise_on_error=False,
    )


def test_a_held_candidate_is_a_green_run_that_registers_nothing(prepared):
    """Not shown non-inferior at a zero margin: held, a normal day (WARN checks, no version)."""
    lake, instance = prepared
    assert _release(lake, instance, "2026-10-03").success
    registry = _registry(lake)
    before = registry.versions("xgboost")
    held = _release_with(lake, instance, "2026-10-04", {"auc_margin": 0.0, "logloss_margin": 0.0})
    assert held.success, step_errors(held)
    report = __import__("json").loads(
        lake.warehouse.read_bytes("xgboost_evaluation/dt=2026-10-04/report.json")
    )
    assert report["outcome"] == "held", report["outcome_reasons"]
    warned = [e for e in held.get_asset_check_evaluations() if not e.passed]
    assert warned and all(e.severity == dg.AssetCheckSeverity.WARN for e in warned)
    assert any("minimum detectable effect" in (e.description or "") for e in warned)
    assert "xgboost_registered" not in materialized(held)
    assert registry.versions("xgboost") == before


def test_a_broken_evaluation_is_a_red_run(prepared):
    """An unusable holdout decides nothing: ERROR, the registration never runs."""
    lake, instance = prepared
    broken = _release_with(lake, instance, "2026-10-03", {"min_holdout_rows": 10_000_000})
    assert not broken.success
    usable = next(
        e for e in broken.get_asset_check_evaluations() if e.check_name == "holdout_usable"
    )
    assert not usable.passed and usable.severity == dg.AssetCheckSeverity.ERROR
    assert "[broken]" in usable.description
    assert "xgboost_registered" not in materialized(broken)
    assert _registry(lake).versions("xgboost") == []
