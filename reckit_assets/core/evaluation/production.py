"""Production's state as the release gate needs it, and the rules about the candidate's identity:
is it production itself (a no-op, or broken when the id matches but the bytes do not), and is the
holdout day out of production's training window (a fair test)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from reckit_assets.core.checks import Outcome
from reckit_assets.core.evaluation.outcomes import BROKEN, HELD, mark


@dataclass(frozen=True)
class ProductionState:
    """What the registry's ``production`` alias says, as the gate needs it.

    ``never``: no model of this kind was ever in production (a first model). ``cleared``: it was
    and a person cleared it; the next candidate is NOT a first model: registration must take the
    release policy's new-version path (canary), never production directly. ``present``: a
    version is serving and is the reference of every ``*_vs_production`` rule.
    """

    state: Literal["never", "cleared", "present"]
    version: str | None = None
    partition: str | None = None
    training_window: list[str] = field(default_factory=list)
    file_sha256: dict[str, str] = field(default_factory=dict)
    # Content hash of the candidate artifact this version was registered from (the warehouse's
    # data version of ``<kind>_candidate``): registration rewrites some files (reckit's
    # feature_meta.json), so the registry's own file hashes cannot be compared with a candidate's.
    content_version: str | None = None
    cleared: dict | None = None  # by, at, reason, last_version of the clearing move

    def as_dict(self) -> dict:
        return asdict(self)


def production_state(
    current: str | None, moves: list[dict], manifest: dict | None = None
) -> ProductionState:
    """From the alias (``current``), its history (``moves``: dicts with ``to_version``,
    ``from_version``, ``by``, ``reason``, ``at``; oldest first) and the current version's
    manifest. An alias with history but no version now was cleared."""
    if current is not None:
        manifest = manifest or {}
        return ProductionState(
            "present",
            current,
            manifest.get("partition"),
            list(manifest.get("training_window", [])),
            {n: f["sha256"] for n, f in manifest.get("files", {}).items()},
            manifest.get("candidate_data_version")
            or manifest.get("metrics", {}).get("candidate", {}).get("artifact_data_version"),
        )
    if not moves:
        return ProductionState("never")
    last = moves[-1]
    last_version = next((m.get("to_version") for m in reversed(moves) if m.get("to_version")), None)
    return ProductionState(
        "cleared",
        cleared={
            "by": last.get("by"),
            "at": last.get("at"),
            "reason": last.get("reason"),
            "last_version": last_version,
        },
    )


def no_production(state: ProductionState) -> str:
    if state.state == "cleared":
        c = state.cleared or {}
        return (
            f"production was cleared by {c.get('by')} at {c.get('at')} ({c.get('reason')!r}; "
            f"last version {c.get('last_version')}): nothing to compare with; not a first "
            "model, so it cannot go straight to production"
        )
    return "no production version yet (a first model)"


def identity(
    candidate: str,
    content_version: str | None,
    candidate_sha256: dict[str, str],
    trained_on: str,
    dt: str,
    state: ProductionState,
) -> tuple[Outcome, bool]:
    """Is the candidate production? Returns (outcome, no-op).

    The same file contents (``content_version``, the candidate artifact's content hash, equal
    to the one production was registered from; or else the sha256 of every candidate file equal
    to production's file of that name) means the same model: the evaluation is a no-op that
    passes, saying so, and registration must release nothing. One case fails: the same version
    id with different bytes from CPU training, which is deterministic here, so something
    changed that the version id does not cover. CUDA training is not guaranteed to be
    byte-reproducible: there the same id with other bytes is the same version (production's
    files are kept).
    """
    name = "distinct_from_production"
    meta: dict[str, Any] = {"candidate": candidate, "production": state.version or "none"}
    if state.state != "present":
        return Outcome(name, True, no_production(state), meta), False
    prod = state.version
    same_id = candidate == prod
    same_bytes = (content_version is not None and content_version == state.content_version) or (
        bool(candidate_sha256)
        and all(state.file_sha256.get(n) == h for n, h in candidate_sha256.items())
    )
    meta.update(same_version_id=same_id, same_file_sha256=same_bytes)
    rerun = (
        f" (a rerun of dt={dt}, the day production was trained for)"
        if state.partition == dt
        else ""
    )
    if same_bytes:
        how = "is" if same_id else "has the same files (sha256) as"
        return (
            Outcome(
                name,
                True,
                f"no-op: candidate {candidate} {how} production {prod}{rerun}; nothing to "
                "release, nothing compared",
                meta,
            ),
            True,
        )
    if same_id:
        if trained_on.startswith("cuda"):
            return (
                Outcome(
                    name,
                    True,
                    f"no-op: candidate {candidate} is production{rerun}; its files differ "
                    f"because {trained_on} training is not byte-reproducible; production's "
                    "files are kept, nothing to release",
                    {**meta, "trained_on": trained_on},
                ),
                True,
            )
        return (
            mark(
                Outcome(
                    name,
                    False,
                    f"candidate {candidate} has production's version id but different files, "
                    f"trained on {trained_on} (deterministic): an input the version id does not "
                    "cover changed; investigate before releasing",
                    {**meta, "trained_on": trained_on},
                ),
                BROKEN,
            ),
            False,
        )
    return Outcome(name, True, f"candidate {candidate} vs production {prod}", meta), False


def out_of_time(dt: str, state: ProductionState) -> Outcome:
    """Production scored on a day it was trained on looks better than it is (a backfill of an
    old day): such a comparison is refused rather than silently biased against the candidate."""
    name = "production_out_of_time"
    if state.state != "present":
        return Outcome(name, True, no_production(state))
    inside = dt in state.training_window
    outcome = Outcome(
        name,
        not inside,
        (
            f"production {state.version} was trained on dt={dt}: scoring it there is in-sample; "
            "gate this day against a version trained before it"
            if inside
            else f"dt={dt} is out of time for production {state.version}"
        ),
        {"production_window": ", ".join(state.training_window)},
    )
    # No fair comparison today (a backfill of a day production trained on): held, not broken.
    return mark(outcome, HELD)
