"""How stale production is: the age of the served model, and why it has not been replaced.

Age is counted in partition days, so it is the same whenever a day is (re)built: ``dt`` minus
the partition the production version was trained for (its manifest's ``partition``). With no
production version, the age counts from the first day a candidate could exist (the partitions'
start plus the training window): a model that never reached production is as stale as one that
stopped being replaced. The check warns past ``release.stale_warn_days`` and fails past
``release.stale_fail_days``; its description says why (the last production move, by whom and why,
and what today's candidate did).
"""

from __future__ import annotations

from datetime import date

from reckit_assets.core.checks import Outcome
from reckit_assets.core.release.policy import ReleasePolicy
from reckit_assets.core.release.registry import PRODUCTION, Registry

OK, WARN, FAIL = "ok", "warn", "fail"
NAME = "production_staleness"


def _days(a: str, b: str) -> int:
    return (date.fromisoformat(b) - date.fromisoformat(a)).days


def staleness(
    registry: Registry,
    kind: str,
    dt: str,
    first_day: str,
    window_days: int,
    policy: ReleasePolicy,
    today: str = "",
) -> tuple[Outcome, str]:
    """(outcome, level) where level is ``ok``, ``warn`` or ``fail``. ``today`` says what dt's
    candidate did (skipped and why, gate failed, held...), for the description."""
    current = registry.alias(kind, PRODUCTION)
    moves = registry.history(kind, PRODUCTION)
    last = moves[-1] if moves else None
    since_move = ""
    if last is not None:
        since_move = (
            f"last production move: {last.from_version} -> {last.to_version} by {last.by} "
            f"({last.reason[:200]})"
        )
    if current is not None:
        manifest = registry.manifest(kind, current) or {}
        trained_for = manifest.get("partition") or dt
        age = max(_days(trained_for, dt), 0)
        what = f"production {current} was trained for dt={trained_for}: {age} day(s) old"
    else:
        earliest = date.fromordinal(date.fromisoformat(first_day).toordinal() + window_days)
        age = max(_days(earliest.isoformat(), dt), 0)
        cleared = last is not None and last.to_version is None
        what = (
            f"no production version since it was cleared ({age} day(s) of candidates since "
            f"{earliest})"
            if cleared
            else f"no production version ever: {age} day(s) since the first day a candidate "
            f"could exist ({earliest})"
        )
    level = OK
    if age > policy.stale_fail_days:
        level = FAIL
    elif age > policy.stale_warn_days:
        level = WARN
    limits = (
        f"warn > {policy.stale_warn_days} (release.stale_warn_days), "
        f"fail > {policy.stale_fail_days} (release.stale_fail_days)"
    )
    parts = [what, limits]
    if last is not None:
        parts.append(since_move)
    if today:
        parts.append(f"today: {today}")
    return (
        Outcome(
            NAME,
            level == OK,
            "; ".join(parts),
            {
                "age_days": age,
                "level": level,
                "production": current,
                "stale_warn_days": policy.stale_warn_days,
                "stale_fail_days": policy.stale_fail_days,
                "last_move": last.as_dict() if last else None,
                "today": today,
            },
        ),
        level,
    )
