"""Data-quality rules (the first gate) as plain functions returning :class:`Outcome`.

The Dagster layer turns each outcome into a blocking asset check; every outcome carries the
measured figures, passing or not, so the UI shows them either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import ConfigDict, Field
from scipy import stats

from reckit_assets.core.checks import Outcome
from reckit_assets.core.ingest.events import EventCounts
from reckit_assets.core.ingest.landing import SCHEMAS, ContractIssue

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
SECTION = "data_quality"  # the key of these limits in reckit.yaml


def key(name: str) -> str:
    """Where a limit is set, for failure messages: ``data_quality.max_click_rate``."""
    return f"{SECTION}.{name}"


@dataclass(frozen=True)
class Thresholds:
    """Limits of the blocking data checks: the ``data_quality`` section of reckit.yaml.

    Defaults were chosen from ``bench/gates_data.py`` (clean simulated days at 10k and 100k
    impressions per day, realistic variations, injected defects; figures in docs/benchmarks.md).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    max_duplicate_rate: Rate = 0.02
    max_out_of_day_rate: Rate = 0.01
    max_orphan_click_rate: Rate = 0.02
    min_click_rate: Rate = 0.002
    max_click_rate: Rate = 0.5
    # |rows / reference rows - 1| beyond it is a warning (never blocks: the landing's volume check
    # already blocks a collapse); an empty day blocks.
    max_row_count_change: Annotated[float, Field(ge=0.0)] = 0.5
    # Reference: the last `reference_days` passing days before dt, looked for this far back.
    reference_days: Annotated[int, Field(ge=1)] = 7
    reference_lookback_days: Annotated[int, Field(ge=1)] = 28
    max_unknown_event_type_rate: Rate = 0.01  # share of events with an unknown event_type
    # Impressions vs the reference median: outside [1/x, x] is recorded as a warning (real days
    # swing 0.5x-4.4x); below ``volume_collapse_ratio`` x the median the day blocks (logging broke).
    max_volume_ratio: Annotated[float, Field(ge=1.0)] = 2.0
    volume_collapse_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    max_null_rate: Rate = 0.35  # null share of a required (non-ID) column
    max_optional_null_rate: Rate = 0.5  # null share of an optional column that is present
    max_value_scale_change: Annotated[float, Field(ge=1.0)] = 3.0  # column median vs reference
    clicks_stopped_alpha: Rate = 1e-6  # P(no click in the longest click-free run of hours)
    drift_alpha: Rate = 0.001  # significance of a feature drift (Bonferroni over features)
    max_feature_shift: Annotated[float, Field(ge=0.0)] = 0.5  # Wasserstein-1 / reference std
    max_feature_js: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1  # Jensen-Shannon divergence
    # Rows per day the drift tests read: a seeded uniform sample above it (memory stays bounded
    # at 10M rows a day; 200k rows still detect effects far below the limits above).
    drift_max_rows: Annotated[int, Field(ge=1000)] = 200_000
    # The data description: columns this site does not have (``table.column``, e.g.
    # ``users.age``, ``items.price``). They may be all null; their null share and medians are not
    # checked, and the features use the spec's defaults for them. Listing them is how a dataset
    # without prices or ages is described, instead of loosening ``max_null_rate`` for every column.
    absent_columns: tuple[str, ...] = ()
    # Checking a day whose landing lacks a _SUCCESS marker; recorded in the check's metadata.
    allow_not_ready: bool = False

    def __post_init__(self) -> None:
        known = {f"{t}.{c.name}" for t, cols in SCHEMAS.items() for c in cols if not c.is_id}
        unknown = sorted(set(self.absent_columns) - known)
        if unknown:
            raise ValueError(
                f"{key('absent_columns')}: unknown column(s) {unknown}; known (non-ID): "
                f"{', '.join(sorted(known))}"
            )


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's shift vs the reference: a test's p-value and an effect size."""

    kind: str  # "dense" | "categorical"
    effect: float  # Wasserstein-1 / reference std (dense), Jensen-Shannon divergence (categorical)
    p_value: float  # two-sample Kolmogorov-Smirnov (dense), chi-square contingency (categorical)
    n_reference: int  # units (or rows) the test compared
    n_current: int
    # A feature that varied over the reference is constant today: a broken join or a default
    # filled everywhere, not a new population (blocks).
    collapsed: bool = False

    @property
    def effect_name(self) -> str:
        return "W1/std" if self.kind == "dense" else "JS"


@dataclass(frozen=True)
class Reference:
    """The days a check compares ``dt`` with: the last passing days before it, by partition.

    Built from recorded decisions of earlier partitions only, so it is the same whatever order the
    days were built in (a day whose decision is not recorded yet is an error, not a gap).
    ``stats`` holds what each passing day recorded (same order as ``days``, oldest first).
    """

    dt: str
    days: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    stats: tuple[dict, ...] = ()
    first_partition: bool = False
    what: str = "passing"  # how the days were chosen, for messages ("passing", "built")

    @property
    def empty(self) -> bool:
        return not self.days

    def describe(self) -> str:
        if self.first_partition:
            return "first partition: no earlier day to compare with"
        if self.empty:
            return f"no passing day before {self.dt} within the lookback" + (
                f" (failed: {', '.join(self.failed)})" if self.failed else ""
            )
        text = f"reference: {len(self.days)} {self.what} day(s) {self.days[0]}..{self.days[-1]}"
        if self.failed:
            text += f", skipping failed {', '.join(self.failed)}"
        return text

    def metadata(self) -> dict:
        return {
            "reference_days": ", ".join(self.days) or "none",
            "reference_skipped_failed": ", ".join(self.failed) or "none",
            "reference_absent": ", ".join(self.absent) or "none",
        }

    def values(self, section: str, name: str | None = None) -> list[float]:
        """One recorded figure (``values("counts", "impressions")``, ``values("rows")``) of every
        reference day that has it."""
        out = []
        for s in self.stats:
            value = s.get(section)
            if name is not None:
                value = value.get(name) if isinstance(value, dict) else None
            if isinstance(value, int | float) and math.isfinite(value):
                out.append(float(value))
        return out


def _no_reference(name: str, ref: Reference, what: str) -> Outcome | None:
    """A check that needs a reference: passes on the first partition, fails on an empty one."""
    if ref.first_partition:
        return Outcome(name, True, f"{what}: {ref.describe()}", ref.metadata())
    if ref.empty:
        return Outcome(
            name,
            False,
            f"{what}: {ref.describe()}; nothing to compare with, so the day cannot pass. Fix or "
            f"rematerialize an earlier day, or widen {key('reference_lookback_days')} in "
            "reckit.yaml",
            ref.metadata(),
        )
    return None


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


def unknown_event_types(counts: EventCounts, t: Thresholds, files: str) -> Outcome:
    """Share of events whose ``event_type`` is none of impression, click, conversion."""
    rate = counts.unknown_event_type / counts.raw_rows if counts.raw_rows else 0.0
    return _rate(
        "unknown_event_type_rate",
        rate,
        t.max_unknown_event_type_rate,
        "column `event_type` not impression/click/conversion",
        counts.unknown_event_type,
        files,
        "max_unknown_event_type_rate",
    )


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def volume(impressions: int, ref: Reference, t: Thresholds, what: str) -> Outcome:
    """Impressions of the day vs the median of the reference days: within a factor, never 0."""
    name = "volume"
    if impressions == 0:
        return Outcome(
            name,
            False,
            f"{what}: 0 impressions; an empty day never trains ({ref.describe()})",
            {"impressions": 0, **ref.metadata()},
        )
    early = _no_reference(name, ref, f"{what}: {impressions} impressions")
    if early:
        return early
    median = _median(ref.values("counts", "impressions"))
    ratio = impressions / median if median > 0 else float("inf")
    ok = 1 / t.max_volume_ratio <= ratio <= t.max_volume_ratio
    collapsed = ratio < t.volume_collapse_ratio
    if collapsed:
        verdict = (
            f"COLLAPSED below {t.volume_collapse_ratio:g}x ({key('volume_collapse_ratio')}): "
            "logging or the export broke; the day blocks"
        )
    elif ok:
        verdict = f"within [1/{t.max_volume_ratio:g}, {t.max_volume_ratio:g}]x"
    else:
        verdict = (
            f"outside [1/{t.max_volume_ratio:g}, {t.max_volume_ratio:g}]x: recorded as a "
            f"warning (real traffic swings; only a collapse below {t.volume_collapse_ratio:g}x "
            "blocks)"
        )
    return Outcome(
        name,
        ok,
        f"{what}: {impressions} impressions = {ratio:.2f}x the median {median:.0f} of the "
        f"{ref.describe()}: {verdict} ({key('max_volume_ratio')} / "
        f"{key('volume_collapse_ratio')} in reckit.yaml)",
        {
            "impressions": impressions,
            "reference_median": median,
            "ratio": round(ratio, 6) if math.isfinite(ratio) else 1e9,
            "config_key": f"{key('max_volume_ratio')}, {key('volume_collapse_ratio')}",
            "severity": "block" if collapsed else ("ok" if ok else "warn"),
            **ref.metadata(),
        },
        blocking=collapsed,
    )


def null_shares(shares: dict[str, tuple[float, int, bool]], t: Thresholds) -> Outcome:
    """Null share of every non-ID column: ``{"items.price": (share, nulls, required)}``.

    Required columns are held to ``max_null_rate``, optional ones (when present at all) to
    ``max_optional_null_rate``. ID columns are the contract's (no null IDs at all).
    """
    bad = []
    for col, (share, nulls, required) in sorted(shares.items()):
        limit = t.max_null_rate if required else t.max_optional_null_rate
        if share > limit:
            setting = "max_null_rate" if required else "max_optional_null_rate"
            bad.append(
                f"{'required' if required else 'optional'} column `{col}` is null in "
                f"{nulls} rows ({share:.1%} > {limit:.0%}, {key(setting)} in reckit.yaml)"
            )
    meta = {f"null_{c}": round(v[0], 6) for c, v in shares.items()}
    if bad:
        return Outcome("null_share", False, "; ".join(bad), meta)
    worst = max(shares.items(), key=lambda kv: kv[1][0], default=None)
    text = (
        f"every column within its null limit (highest: `{worst[0]}` {worst[1][0]:.1%})"
        if worst
        else "no column to check"
    )
    return Outcome("null_share", True, text, meta)


def value_range(medians: dict[str, float], ref: Reference, t: Thresholds) -> Outcome:
    """Median of each numeric column vs the reference days' medians: a unit or scale change
    (price in cents instead of units, age in months) moves it by a large factor."""
    name = "value_range"
    early = _no_reference(name, ref, "column medians " + ", ".join(sorted(medians)))
    if early:
        return Outcome(name, early.passed, early.description, {**early.metadata, **_m(medians)})
    bad, parts = [], []
    meta = {**_m(medians), **ref.metadata()}
    for col, today in sorted(medians.items()):
        base = _median(ref.values("medians", col))
        meta[f"reference_median_{col}"] = base
        if not (math.isfinite(today) and math.isfinite(base)) or min(abs(today), abs(base)) == 0:
            parts.append(f"`{col}` not comparable ({today:g} vs {base:g})")
            continue
        factor = max(abs(today), abs(base)) / min(abs(today), abs(base))
        sign_flip = (today > 0) != (base > 0)
        meta[f"scale_{col}"] = round(factor, 6)
        text = f"`{col}` median {today:g} vs {base:g} ({factor:.2f}x)"
        if factor > t.max_value_scale_change or sign_flip:
            bad.append(text)
        else:
            parts.append(text)
    if bad:
        return Outcome(
            name,
            False,
            "value scale changed beyond "
            f"{t.max_value_scale_change:g}x ({key('max_value_scale_change')} in reckit.yaml) vs "
            f"the {ref.describe()}: " + "; ".join(bad),
            meta,
        )
    return Outcome(name, True, "; ".join(parts) + f" ({ref.describe()})", meta)


def _m(medians: dict[str, float]) -> dict:
    return {f"median_{c}": v for c, v in medians.items() if math.isfinite(v)}


def clicks_stopped(
    hourly_requests: list[int], hourly_clicked: list[int], ref: Reference, t: Thresholds
) -> Outcome:
    """The longest run of hours whose requests (slates) got no click at all, tested against the
    reference share ``q`` of requests with a click: P(none of R requests clicked) =
    Binomial(R, q) at 0; below ``clicks_stopped_alpha`` fails (click logging broke part-way
    through the day). Requests, not impressions, are the trials: a user's slate is one decision,
    so a session of low-interest impressions is not read as many independent misses."""
    name = "clicks_stopped"
    requests = sum(ref.values("counts", "requests"))
    clicked = sum(ref.values("counts", "clicked_requests"))
    source = ref.describe()
    if requests == 0:
        requests, clicked = sum(hourly_requests), sum(hourly_clicked)
        source = "today's own rate (no reference)"
    q = clicked / requests if requests else 0.0
    best = (1.0, 0, -1, -1)  # P(0), requests, first hour, last hour
    run_start, run_requests = None, 0
    for hour, (n, c) in enumerate(zip(hourly_requests, hourly_clicked, strict=True)):
        if c == 0:
            run_start = hour if run_start is None else run_start
            run_requests += n
            p = float(stats.binom.pmf(0, run_requests, q)) if run_requests else 1.0
            if p < best[0]:
                best = (p, run_requests, run_start, hour)
        else:
            run_start, run_requests = None, 0
    p, n, first, last = best
    meta = {
        "requests_in_gap": n,
        "p_value": p,
        "alpha": t.clicks_stopped_alpha,
        "gap_hours": f"{first:02d}-{last:02d}h UTC" if first >= 0 else "none",
        "reference_clicked_request_share": round(q, 6),
        "config_key": key("clicks_stopped_alpha"),
        **ref.metadata(),
    }
    if first < 0:
        return Outcome(name, True, "every hour with requests has clicks", meta)
    ok = p >= t.clicks_stopped_alpha
    return Outcome(
        name,
        ok,
        f"no click from {first:02d}:00 to {last:02d}:59 UTC over {n} requests, where "
        f"{q:.1%} of requests get one ({source}; Binomial P(0) = {p:.2e}, "
        f"{'>=' if ok else '<'} {key('clicks_stopped_alpha')} = {t.clicks_stopped_alpha:g})",
        meta,
    )


def row_count_change(rows: int, ref: Reference, t: Thresholds, what: str) -> Outcome:
    """Rows vs the median rows of the reference days; an empty partition never passes."""
    name = "row_count_change"
    if rows == 0:
        return Outcome(
            name,
            False,
            f"{what}: 0 rows; an empty partition never trains ({ref.describe()})",
            {"rows": 0, **ref.metadata()},
        )
    early = _no_reference(name, ref, f"{what}: {rows} rows")
    if early:
        return Outcome(name, early.passed, early.description, {"rows": rows, **early.metadata})
    median = _median(ref.values("rows"))
    change = rows / median - 1 if median > 0 else float("inf")
    ok = abs(change) <= t.max_row_count_change
    return Outcome(
        name,
        ok,
        f"{what}: {rows} rows vs the median {median:.0f} of the {ref.describe()} "
        f"({change:+.1%}; limit ±{t.max_row_count_change:.0%}, "
        f"{key('max_row_count_change')} in reckit.yaml)"
        + ("" if ok else ": recorded as a warning, the day is used"),
        {
            "rows": rows,
            "reference_rows": median,
            "change": round(change, 6) if math.isfinite(change) else 1e9,
            **ref.metadata(),
        },
        blocking=False,
    )


def drift(
    results: dict[str, FeatureDrift] | None,
    ref: Reference,
    t: Thresholds,
    warming_up: bool = False,
) -> Outcome:
    """Distribution drift per feature vs the reference days: informs, and blocks only a collapse.

    A feature is flagged when its shift is both significant (p below ``drift_alpha`` divided by
    the number of features: Bonferroni; tested over units, see ``core.features.drift``) and large
    (effect size above its limit). Flagged features are a **warning** with every figure: a new
    population is the reason to retrain, not a corrupt day. The day **blocks** only when a
    feature that varied over the reference days is constant today (``collapsed``): a broken
    join or a default filled everywhere, which a change of population does not produce.
    """
    name = "feature_drift"
    if results is None and warming_up:
        return Outcome(
            name,
            True,
            "not compared while the 7-day feature windows fill up (no earlier day with a full "
            "window yet)",
            ref.metadata(),
        )
    if results is None:
        if ref.empty and not ref.first_partition:
            return Outcome(
                name,
                False,
                f"feature drift: {ref.describe()}; nothing to compare with (recorded, the day "
                "is used)",
                ref.metadata(),
                blocking=False,
            )
        return Outcome(name, True, f"nothing to compare ({ref.describe()})", ref.metadata())
    alpha = t.drift_alpha / max(len(results), 1)
    meta: dict = {"alpha_per_feature": alpha, **ref.metadata()}
    bad, collapsed = [], []
    for col, r in results.items():
        limit = t.max_feature_shift if r.kind == "dense" else t.max_feature_js
        meta[f"drift_{col}"] = round(r.effect, 6)
        meta[f"p_{col}"] = r.p_value
        if r.collapsed:
            collapsed.append(
                f"{col}: constant today over {r.n_current} units while it varied over the reference"
            )
        elif r.p_value < alpha and r.effect > limit:
            bad.append(f"{col}: {r.effect_name}={r.effect:.3f} > {limit:g} (p={r.p_value:.1e})")
    meta["drifted_features"] = ", ".join(b.split(":")[0] for b in bad) or "none"
    meta["collapsed_features"] = ", ".join(c.split(":")[0] for c in collapsed) or "none"
    limits = (
        f"{key('max_feature_shift')} = {t.max_feature_shift:g} / {key('max_feature_js')} = "
        f"{t.max_feature_js:g}, significance {key('drift_alpha')} = {t.drift_alpha:g} "
        "Bonferroni-corrected, in reckit.yaml"
    )
    if collapsed and not warming_up:
        return Outcome(
            name,
            False,
            f"{len(collapsed)} feature(s) collapsed vs the {ref.describe()} (a broken pipeline, "
            "not a new population): " + "; ".join(collapsed + bad),
            meta,
        )
    if bad and warming_up:
        # While the feature windows fill up, window statistics shift by construction.
        return Outcome(
            name,
            True,
            "recorded, not enforced while the 7-day feature windows fill up: " + ", ".join(bad),
            meta,
        )
    if bad:
        return Outcome(
            name,
            False,
            f"{len(bad)} feature(s) drifted vs the {ref.describe()} ({limits}): "
            + "; ".join(bad)
            + " (a warning: the day is used, and the drift is a reason to retrain)",
            meta,
            blocking=False,
        )
    return Outcome(
        name, True, f"no feature drifted beyond its limit vs the {ref.describe()} ({limits})", meta
    )
