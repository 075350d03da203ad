"""How a release-gate rule reports: its outcome's meaning (released / held / rejected / broken /
noop, and which is worse), the row of the report's gate table it carries, the candidate's
overall outcome, and what more data would decide a rule that did not."""

from __future__ import annotations

import math
from typing import Any

from reckit_assets.core.checks import Outcome

RELEASED, HELD, REJECTED, BROKEN, NOOP = "released", "held", "rejected", "broken", "noop"
SEVERITY = {RELEASED: 0, NOOP: 0, HELD: 1, REJECTED: 2, BROKEN: 3}


def rounded(value: Any, digits: int = 4) -> Any:
    """Rounded for reading (check metadata and the report's gate table)."""
    if isinstance(value, float):
        return value if not math.isfinite(value) else round(value, digits)
    return value


def fmt(value: float | None, digits: int = 4, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "undefined"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def table_row(
    rule: str, threshold: str, config_key: str, value: Any, ci: dict | None = None, **extra
) -> dict:
    """The metadata every gate outcome carries: one row of the report's gate table."""
    meta = {"rule": rule, "threshold": threshold, "config_key": config_key, "value": rounded(value)}
    if ci is not None:
        meta["ci_low"], meta["ci_high"] = rounded(ci["ci_low"]), rounded(ci["ci_high"])
    meta.update({k: rounded(v) for k, v in extra.items()})
    return meta


def mark(outcome: Outcome, failed_as: str) -> Outcome:
    """Record what a failure of ``outcome`` means (held / rejected / broken); only a broken one
    blocks. A passing outcome is left as is."""
    if not outcome.passed:
        outcome.metadata["outcome"] = failed_as
        outcome.blocking = failed_as == BROKEN
        outcome.description += f" [{failed_as}]"
    return outcome


def worse_beyond(ci: dict, bound: float, larger_is_worse: bool = False) -> bool:
    """The whole CI lies beyond ``bound`` on the bad side: shown worse (a rejection)."""
    if larger_is_worse:
        return ci.get("ci_low", -math.inf) > bound
    return ci.get("ci_high", math.inf) < bound


def decide(outcomes: list[Outcome], noop: bool = False) -> tuple[str, list[str]]:
    """The candidate's release outcome (the worst of its failing rules) and the reasons."""
    if noop:
        return NOOP, []
    failed = [o for o in outcomes if not o.passed]
    if not failed:
        return RELEASED, []
    worst = max((o.metadata.get("outcome", BROKEN) for o in failed), key=SEVERITY.__getitem__)
    return worst, [
        f"{o.name}: {o.description}" for o in failed if o.metadata.get("outcome", BROKEN) == worst
    ]


def minimum_detectable(ci: dict, level: float, power: float = 0.8) -> float | None:
    """The smallest true difference this holdout would detect with ``power`` at one-sided
    ``(1 - level) / 2``: (z_alpha + z_power) x the bootstrap standard error."""
    from scipy import stats

    se = ci.get("se")
    if se is None or not math.isfinite(se):
        return None
    return float((stats.norm.ppf(1 - (1 - level) / 2) + stats.norm.ppf(power)) * se)


def rows_to_decide(ci: dict, needed_half_width: float, rows: int) -> int | None:
    """How many holdout rows would shrink the CI's half-width to ``needed_half_width`` (the
    standard error falls as 1/sqrt(rows)); None when it cannot be said."""
    half = (ci.get("ci_high", math.nan) - ci.get("ci_low", math.nan)) / 2
    if not (math.isfinite(half) and half > 0 and needed_half_width > 0 and rows > 0):
        return None
    return math.ceil(rows * (half / needed_half_width) ** 2)


def not_evaluated(name: str, why: str) -> Outcome:
    # Follows from another rule's failure, which carries the outcome: this one only informs.
    return Outcome(
        name, False, f"not evaluated: {why}", {"rule": "not evaluated", "outcome": HELD}, False
    )


def noop(names: list[str], why: str) -> list[Outcome]:
    return [Outcome(n, True, f"no-op: {why}", {"rule": "no-op"}) for n in names]
