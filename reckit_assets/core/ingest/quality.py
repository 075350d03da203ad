"""Data-quality rules (the first gate) as plain functions returning :class:`Outcome`.

The Dagster layer turns each outcome into a blocking asset check; every outcome carries the
measured figures, passing or not, so the UI shows them either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from reckit_assets.core.checks import Outcome
from reckit_assets.core.ingest.events import EventCounts
from reckit_assets.core.ingest.landing import ContractIssue


@dataclass(frozen=True)
class Thresholds:
    max_duplicate_rate: float = 0.02
    max_out_of_day_rate: float = 0.01
    max_orphan_click_rate: float = 0.02
    min_click_rate: float = 0.002
    max_click_rate: float = 0.5
    max_row_count_change: float = 0.5  # |rows / previous rows - 1|
    max_feature_psi: float = 0.25
    max_feature_js: float = 0.1


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


def _rate(name: str, value: float, limit: float, what: str, count: int, files: str) -> Outcome:
    passed = value <= limit
    verdict = "within" if passed else "exceeds"
    return Outcome(
        name,
        passed,
        f"{what}: {count} rows ({value:.4%}) {verdict} the limit {limit:.2%} in {files}",
        {"rate": round(value, 6), "limit": limit, "count": count},
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
        ),
        _rate(
            "out_of_day_rate",
            counts.out_of_day_rate,
            t.max_out_of_day_rate,
            "column `ts` outside the day",
            counts.out_of_day,
            files,
        ),
        _rate(
            "orphan_click_rate",
            counts.orphan_click_rate,
            t.max_orphan_click_rate,
            "clicks without their impression",
            counts.orphan_clicks,
            files,
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
                f"{'within' if ok else 'outside'} [{t.min_click_rate:.2%}, {t.max_click_rate:.2%}]",
                {"rate": round(rate, 6), "impressions": counts.impressions},
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
        f"({change:+.1%}; limit ±{t.max_row_count_change:.0%}"
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
            f"{t.max_feature_js} vs the previous partition: " + ", ".join(bad),
            meta,
        )
    return Outcome("feature_drift", True, "no feature drifted beyond its limit", meta)
