"""Registration: downstream of the gate, so its materialization history is the registry's."""

import os

import dagster as dg

from reckit_assets.core.evaluation import gate
from reckit_assets.core.release.registry import Registry, RegistryError
from reckit_assets.core.steps import models as model_steps
from reckit_assets.defs.config import ProjectConfig, config_metadata
from reckit_assets.defs.partitions import Structure
from reckit_assets.defs.resources import ReckitStorage


class RegistrationConfig(dg.Config):
    """Set ``force`` with a ``reason`` to register a candidate whose gate failed (audited)."""

    force: bool = False
    reason: str = ""


def build_registration(kind: str, s: Structure) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{kind}_registered",
        group_name="registry",
        deps=[model_steps.evaluation_asset(kind)],
        partitions_def=s.daily,
        code_version=model_steps.CODE_VERSION,
        kinds={"json"},
        # Not materialized when the gate held or rejected the candidate: a normal outcome, the
        # run stays green and an observation says why.
        output_required=False,
        # Alias moves are serialized across runs: the prod instance limits this pool to 1.
        pool="registry",
        description=f"The {kind} candidate that passed the gate (or was forced, with a reason) "
        "registered; a candidate the gate held (not shown better) or rejected (shown worse) is "
        "not registered and this asset is not materialized for the day (an observation says "
        "why). "
        "registered as an immutable version; `canary` moves to it (`production` for a model's "
        "first version) unless the alias already holds a newer day's version, or a canary is still "
        "being judged (release.canary_in_judgement: hold, the default).",
    )
    def registered(
        context: dg.AssetExecutionContext,
        config: RegistrationConfig,
        storage: ReckitStorage,
        project: ProjectConfig,
    ):
        effective = project.load()
        who = context.run.tags.get("user") or context.run.tags.get("dagster/user") or "pipeline"
        try:
            out = model_steps.register(
                storage.warehouse(),
                Registry(storage.registry()),
                kind,
                context.partition_key,
                by=f"{who} (run {context.run_id})",
                force=config.force,
                reason=config.reason,
                git_commit=os.environ.get("RECKIT_GIT_COMMIT"),
                policy=effective.config.release,
            )
        except RegistryError as exc:
            raise dg.Failure(description=str(exc)) from exc
        if out.get("outcome") in (gate.HELD, gate.REJECTED):
            reasons = out.get("reasons") or []
            context.log.info(
                f"{kind} dt={context.partition_key}: {out['outcome']}, not registered: "
                + "; ".join(reasons)[:2000]
            )
            yield dg.AssetObservation(
                asset_key=f"{kind}_registered",
                partition=context.partition_key,
                metadata={
                    "outcome": out["outcome"],
                    "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in reasons)),
                    "registered": False,
                },
            )
            return
        manifest = out["manifest"]
        yield dg.MaterializeResult(
            data_version=dg.DataVersion(manifest["version"]),
            metadata={
                "version": manifest["version"],
                "newly_registered": out["created"],
                "alias_move": dg.MetadataValue.json(out["alias_move"] or {}),
                # a canary still under judgement is not replaced (release.canary_in_judgement)
                "held": dg.MetadataValue.json(out.get("held") or {}),
                "override": dg.MetadataValue.json(manifest.get("override") or {}),
                "files": dg.MetadataValue.json(manifest["files"]),
                **config_metadata(effective, ("release",)),
            },
        )

    return registered


def build(s: Structure) -> list[dg.AssetsDefinition]:
    return [build_registration(kind, s) for kind in model_steps.KINDS]
