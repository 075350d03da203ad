"""One function per model asset: train a candidate, evaluate it against production, register it.

Framework-free: the Dagster assets and the benchmark call these. Inputs are addressed by
partition and data version (never "the newest file"), so a rerun gives the same candidate.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pandas as pd

from reckit_assets.core.checks import Outcome
from reckit_assets.core.evaluation import gate, off_policy
from reckit_assets.core.evaluation import outcomes as gate_outcomes
from reckit_assets.core.evaluation import production as gate_production
from reckit_assets.core.evaluation import report as evaluation
from reckit_assets.core.features.sequences import corpus
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import Storage, sha256_bytes
from reckit_assets.core.monitoring import decisions
from reckit_assets.core.monitoring.rollout_state import Rollout, read_rollout
from reckit_assets.core.release.policy import ReleasePolicy
from reckit_assets.core.release.registry import (
    CANARY,
    PRODUCTION,
    SHADOW,
    Registry,
    RegistryError,
    version_id,
)
from reckit_assets.core.steps import data as data_steps
from reckit_assets.core.training import tuning
from reckit_assets.core.training.base import load_model, no_log

CODE_VERSION = "1"
RANKERS = ("xgboost", "deepfm")
KINDS = (*RANKERS, "item2vec")
TORCH_KINDS = ("deepfm",)  # trained and scored with torch; the others never import it
IMPORT_ORDER = ("item2vec", "xgboost", "deepfm")  # by the import time of their libraries


class NotEnoughDataError(RuntimeError):
    """Too few training days before dt: the day is skipped, not failed."""


def candidate_asset(kind: str) -> str:
    return f"{kind}_candidate"


def evaluation_asset(kind: str) -> str:
    return f"{kind}_evaluation"


def input_asset(kind: str) -> str:
    return data_steps.SEQUENCES if kind == "item2vec" else data_steps.SAMPLES


@dataclass
class Window:
    days: list[str]  # usable days, oldest first
    skipped: dict[str, str]  # day -> why (quarantined)
    versions: dict[str, str]  # day -> data version of the input partition


def training_window(
    store: Storage, kind: str, dt: str, days: int, first_day: str, landing: Storage | None = None
) -> Window:
    """The published input partitions of the ``days`` days before dt.

    Quarantined days, days the data gate blocked and days that never landed are skipped and
    named (``data_steps.window_days``); a day that landed but was not built is an error, because
    training without it silently would make the candidate depend on timing.
    """
    asset = input_asset(kind)
    status = data_steps.window_days(store, asset, warehouse.window(dt, days, first_day), landing)
    if status.pending:
        raise warehouse.MissingPartitionError(
            f"{kind} dt={dt} needs {asset} for {len(status.pending)} day(s) that landed but "
            f"were not built: {', '.join(status.pending)}; materialize them first (in date "
            "order)"
        )
    versions = {d: warehouse.require(store, asset, d)["data_version"] for d in status.usable}
    return Window(status.usable, status.skipped, versions)


def usable_window(
    store: Storage,
    kind: str,
    dt: str,
    days: int,
    first_day: str,
    min_days: int,
    landing: Storage | None = None,
) -> Window:
    """:func:`training_window`, or :class:`NotEnoughDataError` with fewer than ``min_days``
    usable days. Cheap (manifests only): callers check it before starting a training process.
    With ``landing``, a day that landed but was not checked yet is an error, not a skip."""
    window = training_window(store, kind, dt, days, first_day, landing)
    if len(window.days) < min_days:
        raise NotEnoughDataError(
            f"{kind} dt={dt}: {len(window.days)} usable training day(s) before dt "
            f"(need {min_days}; skipped: {window.skipped or 'none'})"
        )
    return window


def _params(kind: str, overrides: dict):
    if kind == "xgboost":
        from reckit_assets.core.training.xgb_ranker import XGBParams as cls
    elif kind == "deepfm":
        from reckit_assets.core.training.deepfm import DeepFMParams as cls
    else:
        from reckit_assets.core.training.item2vec import Item2VecParams as cls
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{kind}: unknown hyperparameter(s) {unknown}; known: {sorted(fields)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return cls(**values)


def train_candidate(
    store: Storage,
    kind: str,
    dt: str,
    hyperparameters: dict,
    window_days: int,
    first_day: str,
    min_days: int = 2,
    log: Callable[[str], None] = no_log,
    landing: Storage | None = None,
    tuned: dict | None = None,
) -> warehouse.Artifact:
    """Train ``kind`` on the window before dt; the last usable day is the validation split.

    ``tuned`` (:func:`accepted_tuning`): an accepted study's parameters, applied over
    ``hyperparameters`` and recorded (week, data version, values) in the manifest and the
    version's inputs."""
    window = usable_window(store, kind, dt, window_days, first_day, min_days, landing)
    if tuned is not None:
        hyperparameters = {**hyperparameters, **tuned["params"]}
    params = _params(kind, hyperparameters)
    started = time.perf_counter()
    if kind == "item2vec":
        from reckit_assets.core.training.item2vec import train_item2vec

        sessions = corpus([warehouse.read(store, data_steps.SEQUENCES, d) for d in window.days])
        model, report = train_item2vec(sessions, params, log)
        extra = {"corpus_sessions": len(sessions)}
    else:
        frames = [warehouse.read(store, data_steps.SAMPLES, d) for d in window.days]
        train, valid = pd.concat(frames[:-1], ignore_index=True), frames[-1]
        if kind == "xgboost":
            from reckit_assets.core.training.xgb_ranker import train_xgb as train_fn
        else:
            from reckit_assets.core.training.deepfm import train_deepfm as train_fn
        model, report = train_fn(train, valid, params, log)
        extra = {"train_rows": len(train), "valid_rows": len(valid), "valid_day": window.days[-1]}
    inputs = {
        "kind": kind,
        "code_version": CODE_VERSION,
        "params": model.params(),
        # CPU and CUDA training give different bytes: the device is an input of the version.
        "trained_on": report.extra.get("device", "cpu"),
        "input_asset": input_asset(kind),
        "inputs": window.versions,
        **({"tuning": tuned} if tuned is not None else {}),
    }
    info = {
        "kind": kind,
        "version": version_id(kind, dt, inputs),
        "partition": dt,
        "training_window": window.days,
        "skipped_days": window.skipped,
        "input_data_versions": window.versions,
        "params": model.params(),
        "tuning": tuned or "none accepted (the configured parameters)",
        "code_version": CODE_VERSION,
        "history": report.history,
        "best_iteration": report.best_iteration,
        "train_seconds": round(time.perf_counter() - started, 2),
        **extra,
        **{f"report_{k}": v for k, v in report.extra.items() if isinstance(v, int | float | str)},
    }
    return warehouse.Artifact(blobs=model.files(), info=info)


def tune_week(
    store: Storage,
    week: str,
    hyperparameters: dict,
    config: tuning.TuningConfig,
    first_day: str,
    log: Callable[[str], None] = no_log,
    landing: Storage | None = None,
) -> warehouse.Artifact:
    """The XGBoost study of ``week`` (its Monday) over the week's usable training samples:
    blocked and quarantined days skipped and named, a day landed but not built an error."""
    days = [d for d in tuning.week_days(week) if d >= first_day]
    status = data_steps.window_days(store, data_steps.SAMPLES, days, landing)
    if status.pending:
        raise warehouse.MissingPartitionError(
            f"{tuning.ASSET} week {week} reads {len(status.pending)} day(s) of "
            f"{data_steps.SAMPLES} that landed but were not built: {', '.join(status.pending)}"
        )
    frames = {d: warehouse.read(store, data_steps.SAMPLES, d) for d in status.usable}
    study = tuning.tune(frames, _params("xgboost", hyperparameters), config, week, log)
    versions = {
        d: warehouse.manifest(store, data_steps.SAMPLES, d)["data_version"] for d in status.usable
    }
    return warehouse.Artifact(
        frames={"trials": study.trials},
        blobs={"study.json": tuning.study_json(study)},
        info={
            **study.info(),
            **status.metadata(),
            "input_data_versions": versions,
            "trials_config": config.trials,
            "seed": config.seed,
        },
    )


def accepted_tuning(store: Storage, dt: str) -> tuple[dict | None, str]:
    """(the accepted study's parameters for the candidate of ``dt``, or None; why), from the
    study of the last week that ended before dt (:func:`tuning.week_for`), by partition."""
    week = tuning.week_for(dt)
    found = warehouse.manifest(store, tuning.ASSET, week)
    if found is None:
        return None, f"no {tuning.ASSET} for week {week}: the configured parameters"
    info = found["info"]
    if not info.get("accepted"):
        return None, f"{tuning.ASSET} week {week} not accepted ({info.get('reason')})"
    return (
        {"week": week, "data_version": found["data_version"], "params": info["best_params"]},
        f"{tuning.ASSET} week {week} ({found['data_version']})",
    )


def load_candidate(store: Storage, kind: str, dt: str) -> tuple[dict, dict[str, bytes]]:
    """(manifest info, files) of the candidate trained for dt, verified against its manifest."""
    found = warehouse.require(store, candidate_asset(kind), dt)
    files = {
        name: warehouse.read_file(store, candidate_asset(kind), dt, name) for name in found["files"]
    }
    return found["info"], files


def production_state(registry: Registry, kind: str) -> gate_production.ProductionState:
    """The ``production`` alias as the gate sees it: never set, cleared by a person, or present
    (with the version's partition, training window and file hashes)."""
    current = registry.alias(kind, PRODUCTION)
    moves = [m.as_dict() for m in registry.history(kind, PRODUCTION)]
    manifest = registry.manifest(kind, current) if current else None
    return gate_production.production_state(current, moves, manifest)


def evaluate(
    store: Storage,
    registry: Registry,
    kind: str,
    dt: str,
    rules: gate.GateRules,
    bootstrap_n: int | None = None,
    rule_sources: dict[str, str] | None = None,
    override: dict | None = None,
) -> tuple[warehouse.Artifact, list[Outcome]]:
    """Candidate vs production (the ``production`` alias) vs a trivial baseline on day dt.

    report.json carries, for registration and the registry manifest: ``passed``, ``gate`` (every
    outcome), ``noop`` (the candidate is production: release nothing), ``production_state``
    (never / cleared / present; cleared is never a first model), ``rules`` (every rule's value,
    source and default) and ``rules_override`` (who loosened what at launch, and why; or None).
    """
    info, files = load_candidate(store, kind, dt)
    artifact_version = warehouse.require(store, candidate_asset(kind), dt)["data_version"]
    candidate = (info["version"], load_model(kind, files))
    state = production_state(registry, kind)
    ident = gate_production.identity(
        info["version"],
        artifact_version,
        {name: sha256_bytes(data) for name, data in files.items()},
        str(info.get("trained_on") or info.get("report_device") or "cpu"),
        dt,
        state,
    )
    noop = ident[1]
    # Production is scored even on a no-op, so the report shows the same figures side by side.
    production = (
        (state.version, load_model(kind, registry.load_files(kind, state.version)))
        if state.state == "present"
        else None
    )
    n = bootstrap_n or rules.bootstrap_samples
    if kind == "item2vec":
        from reckit_assets.core.training.baselines import PopularityRecommender

        day = warehouse.read(store, data_steps.SEQUENCES, dt)
        train = corpus(
            [warehouse.read(store, data_steps.SEQUENCES, d) for d in info["training_window"]]
        )
        report = evaluation.embedding_report(
            corpus([day]),
            candidate,
            production,
            PopularityRecommender().fit(train),
            bootstrap_n=n,
            level=rules.confidence,
        )
        report["production_state"], report["identity"], report["dt"] = (
            state.as_dict(),
            ident,
            dt,
        )
        outcomes = gate.embedding_gate(report, rules)
        markdown = evaluation.embedding_markdown(report)
    else:
        from reckit_assets.core.training.baselines import ItemCTRPrior

        holdout = warehouse.read(store, data_steps.SAMPLES, dt)
        report = evaluation.ranker_report(
            holdout,
            candidate,
            production,
            ("item_ctr_prior", ItemCTRPrior()),
            bootstrap_n=n,
            level=rules.confidence,
        )
        report["production_state"], report["identity"], report["dt"] = (
            state.as_dict(),
            ident,
            dt,
        )
        outcomes = gate.ranker_gate(report, rules)
        markdown = evaluation.ranker_markdown(report)
        if warehouse.manifest(store, decisions.ASSET, dt) is not None:
            # The candidate's CTR estimated from the day's logged traffic, next to its AUC.
            try:
                report["off_policy"] = off_policy.ranker_estimates(
                    warehouse.read(store, decisions.ASSET, dt),
                    holdout,
                    candidate[1].predict,
                    rules.confidence,
                )
            except (KeyError, ValueError) as exc:  # reported, never in the gate's way
                report["off_policy"] = {"reason": f"{type(exc).__name__}: {exc}"}
            markdown += "\n\n" + evaluation.off_policy_markdown(report["off_policy"])
    outcomes.append(
        gate_outcomes.noop(["production_out_of_time"], ident[0].description)[0]
        if noop
        else gate_production.out_of_time(dt, state)
    )
    del report["identity"]
    report["candidate"]["artifact_data_version"] = artifact_version
    report["gate"] = [dataclasses.asdict(o) for o in outcomes]
    report["passed"] = all(o.passed for o in outcomes)
    report["noop"] = noop
    report["outcome"], report["outcome_reasons"] = gate_outcomes.decide(outcomes, noop)
    report["rules"] = gate.rules_in_force(rules, rule_sources)
    report["rules_override"] = override
    report["kind"] = kind
    markdown += (
        "\n\n### Release gate: "
        + {
            gate_outcomes.NOOP: "no-op (the candidate is production)",
            gate_outcomes.RELEASED: "passed: released",
            gate_outcomes.HELD: "HELD: not shown better or not shown non-inferior on this holdout "
            "(nothing better today; not registered, the run stays green)",
            gate_outcomes.REJECTED: "REJECTED: shown worse (not registered, the run stays green)",
            gate_outcomes.BROKEN: "BROKEN: nothing can be decided (the run is red)",
        }[report["outcome"]]
        + f"\n\nProduction: {state.state}"
        + (f" ({state.version})" if state.version else "")
        + "\n\n"
        + evaluation.gate_markdown(outcomes)
        + "\n\n"
        + evaluation.rules_markdown(report["rules"])
        + (
            f"\n\nRules loosened at launch by {override['by']}: {override['reason']!r} "
            f"({'; '.join(override['loosened'])})"
            if override
            else ""
        )
    )
    blobs = {
        "report.json": json.dumps(report, indent=2, sort_keys=True, default=float).encode(),
        "report.md": markdown.encode(),
    }
    info_out = {
        "candidate": info["version"],
        "production": state.version or f"none ({state.state})",
        "production_state": state.state,
        "passed": report["passed"],
        "noop": noop,
        "outcome": report["outcome"],
    }
    return warehouse.Artifact(blobs=blobs, info=info_out), outcomes


def register(
    store: Storage,
    registry: Registry,
    kind: str,
    dt: str,
    by: str,
    force: bool = False,
    reason: str = "",
    git_commit: str | None = None,
    policy: ReleasePolicy | None = None,
) -> dict:
    """Ensure the gated candidate of dt is released: registered, and ``canary`` moved to it
    (``production`` if there is none yet).

    Refuses a candidate whose gate failed unless ``force`` with a ``reason`` (recorded in the
    manifest and the alias log). Idempotent and resumable: "released" means the ledger holds a
    registration move to this version. A retry after the process died anywhere (files written,
    manifest created, alias not yet moved) finishes the release; once released, a rerun is a
    no-op even if a person has moved the alias elsewhere since. The alias move is a
    compare-and-swap on the alias value this call based its decision on: a concurrent
    registration that moved it first makes this one fail with ``Conflict`` (nothing moved).
    """
    report = warehouse.read_json(store, evaluation_asset(kind), dt, "report.json")
    info, files = load_candidate(store, kind, dt)
    artifact_version = warehouse.require(store, candidate_asset(kind), dt)["data_version"]
    evaluated = report["candidate"].get("artifact_data_version")
    if report["candidate"]["version"] != info["version"] or evaluated != artifact_version:
        raise RegistryError(
            f"{kind} dt={dt}: the evaluation is of {report['candidate']['version']} "
            f"(files {evaluated}) but the candidate is now {info['version']} (files "
            f"{artifact_version}); rematerialize {evaluation_asset(kind)} first"
        )
    if report.get("noop"):
        # The gate found the candidate to be what production already is (same version, or a
        # CUDA retrain of it): nothing to release, no alias moves.
        stored = registry.manifest(kind, info["version"])
        return {"manifest": stored, "created": False, "alias_move": None, "released": None}
    released = _registration_move(registry, kind, info["version"])
    if released is not None:
        stored = registry.manifest(kind, info["version"])
        return {"manifest": stored, "created": False, "alias_move": None, "released": released}
    compared_with = (report.get("production") or {}).get("version")
    production_now = registry.alias(kind, PRODUCTION)
    if compared_with != production_now:
        raise RegistryError(
            f"{kind} dt={dt}: evaluated against production {compared_with} but production is "
            f"now {production_now}; rematerialize {evaluation_asset(kind)} first"
        )
    failed = [g for g in report["gate"] if not g["passed"]]
    outcome = report.get("outcome") or (
        gate_outcomes.RELEASED if not failed else gate_outcomes.BROKEN
    )
    if failed and not force and outcome in (gate_outcomes.HELD, gate_outcomes.REJECTED):
        # A normal outcome: nothing better today (held) or shown worse (rejected). Nothing is
        # registered and the caller records why; a run stays green.
        return {
            "manifest": None,
            "created": False,
            "alias_move": None,
            "released": None,
            "outcome": outcome,
            "reasons": report.get("outcome_reasons") or [g["name"] for g in failed],
        }
    if failed and not force:
        raise RegistryError(
            f"{kind} {info['version']} failed the gate ({outcome}) and is not registered: "
            + "; ".join(f"{g['name']}: {g['description']}" for g in failed)
        )
    if force and not reason.strip():
        raise RegistryError("a forced registration needs a reason (it is recorded in the registry)")
    manifest = {
        "kind": kind,
        "partition": dt,
        "training_window": info["training_window"],
        "input_data_versions": info["input_data_versions"],
        "code_version": info["code_version"],
        "git_commit": git_commit,
        "hyperparameters": info["params"],
        "metrics": {
            "candidate": {k: v for k, v in report["candidate"].items() if k != "slices"},
            "production_version": (report.get("production") or {}).get("version"),
            # gain over production on its holdout, with CI (release.canary_in_judgement)
            "gain": {k: v for k, v in _gain(report).items() if k in ("diff", "ci_low", "ci_high")},
        },
        "gate": {"passed": not failed, "failed": [g["name"] for g in failed]},
        # the rules in force and their sources, and any loosening at launch (audited)
        "gate_rules": {
            "rules": report.get("rules"),
            "loosened_at_launch": report.get("rules_override"),
            "production_state": (report.get("production_state") or {}).get("state"),
        },
        "override": {"by": by, "reason": reason} if failed else None,
    }
    if kind == "xgboost":
        # reckit's feature_meta.json carries the registry's version; created_at is the day the
        # model was trained for, so re-registering gives identical bytes.
        files = {
            **files,
            **load_model(kind, files).reckit_export(info["version"], f"{dt}T00:00:00Z"),
        }
    stored, created = registry.register(kind, info["version"], files, manifest)
    aliases = registry.aliases(kind)
    policy = policy or ReleasePolicy()
    # Only a model that never had production takes the first-version path: production cleared
    # by a person is a decision, so the next candidate goes through canary like any other.
    never = (report.get("production_state") or {}).get("state", "never") == "never"
    first = PRODUCTION not in aliases and never
    target = policy.first_version_alias if first else policy.new_version_alias
    if target == SHADOW and kind not in policy.shadow_models:
        target = CANARY  # the service shadows only these: another would never be judged
    moved = None
    # Never back in time: re-running or backfilling an older day registers its version
    # (idempotently) but leaves the aliases on the newer model.
    newest = max(
        ((registry.manifest(kind, v) or {}).get("partition", "") for v in aliases.values()),
        default="",
    )
    # Under judgement: the canary alias is set and the release stage runs a rollout for it (a
    # model whose canaries are not judged online keeps the old behaviour: the newer one replaces).
    judged = aliases.get(target) if target in (CANARY, SHADOW) else None
    rollout = read_rollout(registry.storage, kind) if judged is not None else None
    if target == CANARY and judged is not None and (rollout is None or rollout.version != judged):
        judged = None
    # A shadow waits for its live day like a canary for its verdict (no rollout: never stalled)
    better = judged is not None and _better_than_the_canary(registry, kind, judged, report)
    stalled = (
        _stalled(registry, kind, judged, rollout, dt, policy.stalled_canary_days)
        if judged is not None
        and target == CANARY
        and policy.canary_in_judgement == "replace_if_better"
        else ""
    )
    holds = policy.canary_in_judgement == "hold" or (
        policy.canary_in_judgement == "replace_if_better" and not better and not stalled
    )
    if judged is not None and holds and not force:
        if info["version"] in aliases.values():
            return {"manifest": stored, "created": created, "alias_move": None, "released": None}
        # Registered (immutable, verifiable) but not released: the canary under judgement stays.
        held = {
            "version": info["version"],
            "canary": judged,
            "why": f"{target} {judged} is still being judged (release.canary_in_judgement: "
            f"{policy.canary_in_judgement}"
            + (
                f", and this candidate's gain over production is not shown beyond the {target}'s"
                f" and the {target} is not stalled ({policy.stalled_canary_days} days at one share, "
                "release.stalled_canary_days)"
                if not better
                else ""
            )
            + f"); {info['version']} is registered but not released",
        }
        return {
            "manifest": stored,
            "created": created,
            "alias_move": None,
            "released": None,
            "held": held,
        }
    if dt >= newest and info["version"] not in aliases.values():
        why = f"{REGISTERED_FROM}{dt}" + (f" (override: {reason})" if failed else "")
        if stalled and not force:
            why += f" (replaces {stalled})"
        # CAS on what the decision above was based on (``expected``): production for a first
        # version must still be empty, canary must still be where it was read.
        moved = registry.set_alias(
            kind, target, info["version"], by, why, expected=aliases.get(target)
        ).as_dict()
    return {"manifest": stored, "created": created, "alias_move": moved, "released": moved}


REGISTERED_FROM = "registered from dt="


def _gain(report: dict) -> dict:
    """The candidate's gain over production on its holdout (AUC for a ranker, hit rate for
    item2vec), with its CI; {} when there was no production."""
    diff = (report.get("diff") or {}).get("production") or {}
    return diff.get("auc") or diff.get("hit_rate") or {}


def _better_than_the_canary(registry: Registry, kind: str, canary: str, report: dict) -> bool:
    """``replace_if_better``: the fresh candidate's gain over production is shown (lower CI
    bound) above 0 and above the gain the canary under judgement showed when it was registered.
    In steady state successive candidates gain alike and the canary finishes its judgement;
    after a shift in the data production falls behind on fresh holdouts, a fresh candidate's
    gain jumps, and it replaces a canary trained before the shift."""
    low = _gain(report).get("ci_low")
    if low is None or not low > 0:
        return False
    manifest = registry.manifest(kind, canary) or {}
    if manifest.get("override"):
        return False  # a person forced this canary (audited): the judge decides it, not a retrain
    recorded = (manifest.get("metrics") or {}).get("gain")
    return low > max(float((recorded or {}).get("diff", 0.0)), 0.0)


def _stalled(
    registry: Registry, kind: str, canary: str, rollout: Rollout | None, dt: str, days: int
) -> str:
    """Why the canary under judgement counts as stalled (served at one share for ``days`` days
    or more on ``dt`` without a decision), or "" when it does not (or ``days`` is 0, or a person
    forced it: the judge decides a forced canary)."""
    if days <= 0 or rollout is None:
        return ""
    if (registry.manifest(kind, canary) or {}).get("override"):
        return ""
    at_share = (date.fromisoformat(dt) - date.fromisoformat(rollout.share_since)).days
    if at_share < days:
        return ""
    return (
        f"canary {canary} stalled: {at_share} days at share {rollout.share:g} since "
        f"{rollout.share_since} without a decision (release.stalled_canary_days: {days})"
    )


def _registration_move(registry: Registry, kind: str, version: str) -> dict | None:
    """The ledger entry that released ``version`` (a registration's alias move), if any."""
    for move in registry.history(kind):
        if move.to_version == version and move.reason.startswith(REGISTERED_FROM):
            return move.as_dict()
    return None
