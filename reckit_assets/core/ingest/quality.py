"""Data-quality rules (the first gate) as plain functions returning :class:`Outcome`.

The Dagster layer turns each outcome into a blocking asset check; every outcome carries the
measured figures, passing or not, so the UI shows them either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import ConfigDict, Field

from reckit_assets.core.checks import Outcome
from reckit_assets.core.ingest.events import EventCounts
from reckit_assets.core.ingest.landing import ContractIssue

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
SECTION = "data_quality"  # the key of these limits in reckit.yaml


def key(name: str) -> str:
    """Where a limit is set, for failure messages: ``data_quality.max_click_rate``."""
    return f"{SECTION}.{name}"


@dataclass(frozen=True)
class Thresholds:
    """Limits of the blocking data checks: the ``data_quality`` section of reckit.yaml."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    max_duplicate_rate: Rate = 0.02
    max_out_of_day_rate: Rate = 0.01
    max_orphan_click_rate: Rate = 0.02
    min_click_rate: Rate = 0.002
    max_click_rate: Rate = 0.5
    max_row_count_change: Annotated[float, Field(ge=0.0)] = 0.5  # |rows / previous rows - 1|
    max_feature_psi: Annotated[float, Field(ge=0.0)] = 0.25
    max_feature_js: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1


def contract(issues: list[ContractIssue]) -> Outcome:
    """Required columns present, types coercible, no null IDs, in every landed file."""
    if not issues:
        return Outcome("landing_contract", True, "every file meets the landing contract")
    lines = [str(i) for i in issues[:20]]
    more = f" (+{len(issues) - 20} more)" if len(issues) > 20 else ""
    return Outcome(
        "landing_contract",
        False,
        f"{len(issues)} contract violation(s): " + "; ".join(lines) + more,
        {"violations": len(issues), "first": lines[0]},
    )


def _rate(
    name: str, value: float, limit: float, what: str, count: int, files: str, setting: str
) -> Outcome:
    passed = value <= limit
    verdict = "within" if passed else "exceeds"
    return Outcome(
        name,
        passed,
        f"{what}: {count} rows ({value:.4%}) {verdict} the limit {limit:.2%} in {files} "
        f"({key(setting)} in reckit.yaml)",
        {"rate": round(value, 6), "limit": limit, "count": count, "config_key": key(setting)},
    )


def event_rates(counts: EventCounts, t: Thresholds, files: str) -> list[Outcome]:
    out = [
        _rate(
            "duplicate_rate",
            counts.duplicate_rate,
            t.max_duplicate_rate,
            "duplicated event_id",
            counts.duplicate_events,
            files,
            "max_duplicate_rate",
        ),
        _rate(
            "out_of_day_rate",
            counts.out_of_day_rate,
            t.max_out_of_day_rate,
            "column `ts` outside the day",
            counts.out_of_day,
            files,
            "max_out_of_day_rate",
        ),
        _rate(
            "orphan_click_rate",
            counts.orphan_click_rate,
            t.max_orphan_click_rate,
            "clicks without their impression",
            counts.orphan_clicks,
            files,
            "max_orphan_click_rate",
        ),
    ]
    if counts.impressions == 0:
        out.append(
            Outcome(
                "click_rate_bounds",
                True,
                "no impressions: an empty day has no label rate",
                {"impressions": 0},
            )
        )
    else:
        rate = counts.click_rate
        ok = t.min_click_rate <= rate <= t.max_click_rate
        out.append(
            Outcome(
                "click_rate_bounds",
                ok,
                f"click rate {rate:.4%} over {counts.impressions} impressions "
                f"{'within' if ok else 'outside'} [{t.min_click_rate:.2%}, {t.max_click_rate:.2%}] "
                f"({key('min_click_rate')} / {key('max_click_rate')} in reckit.yaml)",
                {
                    "rate": round(rate, 6),
                    "impressions": counts.impressions,
                    "config_key": f"{key('min_click_rate')}, {key('max_click_rate')}",
                },
            )
        )
    return out


def row_count_change(rows: int, previous_rows: int | None, t: Thresholds, what: str) -> Outcome:
    if previous_rows is None:
        return Outcome(
            "row_count_change", True, f"{what}: no previous partition to compare", {"rows": rows}
        )
    if previous_rows == 0:
        change = 0.0 if rows == 0 else float("inf")
    else:
        change = rows / previous_rows - 1
    ok = rows > 0 and abs(change) <= t.max_row_count_change
    return Outcome(
        "row_count_change",
        ok,
        f"{what}: {rows} rows vs {previous_rows} in the previous partition "
        f"({change:+.1%}; limit ±{t.max_row_count_change:.0%}, "
        f"{key('max_row_count_change')} in reckit.yaml"
        + ("; an empty partition never trains" if rows == 0 else "")
        + ")",
        {
            "rows": rows,
            "previous_rows": previous_rows,
            "change": round(change, 6) if change != float("inf") else 1e9,
        },
    )


def drift(
    scores: dict[str, float] | None, dense: set[str], t: Thresholds, warming_up: bool = False
) -> Outcome:
    if scores is None:
        return Outcome("feature_drift", True, "no previous partition to compare")
    bad = [
        f"{k}={v:.3f}"
        for k, v in scores.items()
        if v > (t.max_feature_psi if k in dense else t.max_feature_js)
    ]
    meta = {f"drift_{k}": v for k, v in scores.items()}
    if bad and warming_up:
        # While the feature windows fill up, window statistics shift by construction.
        return Outcome(
            "feature_drift",
            True,
            "recorded, not enforced while the 7-day feature windows fill up: " + ", ".join(bad),
            meta,
        )
    if bad:
        return Outcome(
            "feature_drift",
            False,
            f"{len(bad)} feature(s) drifted beyond PSI {t.max_feature_psi} / JS "
            f"{t.max_feature_js} ({key('max_feature_psi')} / {key('max_feature_js')} in "
            "reckit.yaml) vs the previous partition: " + ", ".join(bad),
            meta,
        )
    return Outcome("feature_drift", True, "no feature drifted beyond its limit", meta)
