"""Audited waivers: an operator accepts one blocked check of one day, without loosening a limit.

``reckit data accept --dt D --check volume --reason "..."`` writes a waiver beside the warehouse
(``waivers/dt=D/<asset>.<check>.<at>.json``, write-once: a waiver is never edited, only
superseded by a newer one). The next run of that day turns the waived check's failure into a
pass that says who waived it, when and why (the figures stay in the metadata); every other check
still applies. The arrival sensor folds the day's waivers into its signature, so a new waiver
re-runs the day and the days that read it, as a re-landing does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from reckit_assets.core.checks import Outcome
from reckit_assets.core.io.storage import Storage

PREFIX = "waivers"
# The blocking checks a waiver may name, per asset (the data gate's).
WAIVABLE = {
    "landed_logs": (
        "landing_contract",
        "duplicate_rate",
        "out_of_day_rate",
        "orphan_click_rate",
        "click_rate_bounds",
        "unknown_event_type_rate",
        "volume",
        "null_share",
        "value_range",
        "clicks_stopped",
    ),
    "training_samples": ("row_count_change", "feature_drift"),
}


class WaiverError(ValueError):
    """A waiver that cannot be recorded (unknown check, no reason)."""


@dataclass(frozen=True)
class Waiver:
    dt: str
    asset: str
    check: str
    by: str
    reason: str
    at: str  # ISO time, UTC

    def key(self) -> str:
        stamp = self.at.replace(":", "").replace("-", "")
        return f"{PREFIX}/dt={self.dt}/{self.asset}.{self.check}.{stamp}.json"


def asset_of(check: str, asset: str | None = None) -> str:
    """The asset whose blocking check is ``check`` (or ``asset``, verified)."""
    owners = [a for a, checks in WAIVABLE.items() if check in checks]
    if asset is not None:
        if asset not in WAIVABLE or check not in WAIVABLE[asset]:
            raise WaiverError(
                f"{asset}.{check} is not a blocking data check; waivable: "
                + "; ".join(f"{a}: {', '.join(c)}" for a, c in WAIVABLE.items())
            )
        return asset
    if not owners:
        raise WaiverError(
            f"unknown check {check!r}; waivable: "
            + "; ".join(f"{a}: {', '.join(c)}" for a, c in WAIVABLE.items())
        )
    return owners[0]


def accept(
    store: Storage, dt: str, check: str, by: str, reason: str, asset: str | None = None
) -> Waiver:
    """Record a waiver (write-once) and return it."""
    if not reason.strip():
        raise WaiverError("a waiver needs a reason (it is recorded and shown with the check)")
    waiver = Waiver(
        dt=dt,
        asset=asset_of(check, asset),
        check=check,
        by=by,
        reason=reason.strip(),
        at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    store.write_bytes(waiver.key(), json.dumps(asdict(waiver), sort_keys=True).encode())
    return waiver


def waivers_for(store: Storage, dt: str) -> dict[tuple[str, str], Waiver]:
    """The day's waivers by (asset, check): the newest one of each."""
    out: dict[tuple[str, str], Waiver] = {}
    for info in sorted(store.list(f"{PREFIX}/dt={dt}"), key=lambda i: i.key):
        if not info.key.endswith(".json"):
            continue
        w = Waiver(**json.loads(store.read_bytes(info.key)))
        out[(w.asset, w.check)] = w
    return out


def all_waivers(store: Storage) -> list[Waiver]:
    return [
        Waiver(**json.loads(store.read_bytes(info.key)))
        for info in sorted(store.list(PREFIX), key=lambda i: i.key)
        if info.key.endswith(".json")
    ]


def days_with_waivers(store: Storage) -> set[str]:
    """The days that have a waiver: one listing of the waivers folder."""
    return {p.removeprefix("dt=") for p in store.list_prefixes(PREFIX) if p.startswith("dt=")}


def signature(store: Storage, dt: str) -> str:
    """A digest of the day's waivers ("" without any): part of the arrival sensor's signature."""
    # One listing of the day's folder (not a walk): the sensor calls this every tick.
    keys = [k for k in store.list_prefixes(f"{PREFIX}/dt={dt}") if k.endswith(".json")]
    if not keys:
        return ""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]


def apply(outcomes: list[Outcome], waivers: dict[tuple[str, str], Waiver], asset: str) -> None:
    """Turn each waived blocking failure into a pass that says who, when and why."""
    for o in outcomes:
        w = waivers.get((asset, o.name))
        if w is None or o.passed:
            continue
        o.passed = True
        o.description = (
            f"WAIVED by {w.by} at {w.at}: {w.reason!r} (the check found: {o.description})"
        )
        o.metadata.update(waived_by=w.by, waived_at=w.at, waiver_reason=w.reason)
