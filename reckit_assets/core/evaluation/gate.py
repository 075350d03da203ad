"""The release gate: candidate vs baseline on the same holdout, as :class:`Outcome` rules.

The baseline is the version the registry's ``production`` alias points at (what is serving).
With no production yet, the candidate must clear absolute floors and beat the trivial baseline
(the item CTR prior for rankers, popularity for item2vec). Defaults are reckit's: AUC >= 0.99 x,
logloss <= 1.01 x.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ConfigDict

from reckit_assets.core.checks import Outcome

RANKER_CHECKS = (
    ("distinct_versions", "Candidate and production are different versions"),
    ("auc_vs_baseline", "Candidate AUC >= ratio x production AUC (or floor and trivial baseline)"),
    (
        "logloss_vs_baseline",
        "Candidate logloss <= ratio x production logloss (or trivial baseline)",
    ),
    ("slices_vs_baseline", "No slice's AUC regresses beyond its tolerance"),
    ("baseline_out_of_time", "Day dt is not in production's training window (a fair comparison)"),
)
EMBEDDING_CHECKS = (
    ("distinct_versions", "Candidate and production are different versions"),
    (
        "hit_rate_vs_baseline",
        "Candidate hit rate@K >= ratio x production (or floor and popularity)",
    ),
    ("recall_vs_baseline", "Candidate recall@K >= ratio x production (or popularity)"),
    ("baseline_out_of_time", "Day dt is not in production's training window (a fair comparison)"),
)


@dataclass(frozen=True)
class GateRules:
    """The release gate's rules: the ``gate`` section of reckit.yaml."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    min_auc_ratio: float = 0.99
    max_logloss_ratio: float = 1.01
    slice_auc_tolerance: float = 0.02
    slice_min_rows: int = 200  # smaller slices are too noisy to gate on
    auc_floor: float = 0.55  # first model ever
    min_hit_rate_ratio: float = 0.99
    hit_rate_floor: float = 0.01
    bootstrap_samples: int = 200  # paired bootstrap over users for the report's CIs


def _distinct(candidate: str, production: str | None) -> Outcome:
    if production is None:
        return Outcome(
            "distinct_versions",
            True,
            f"no production version yet; candidate {candidate}",
            {"candidate": candidate},
        )
    same = candidate == production
    return Outcome(
        "distinct_versions",
        not same,
        (
            f"candidate {candidate} IS the production version: a gate comparing a model with itself "
            "proves nothing"
            if same
            else f"candidate {candidate} vs production {production}"
        ),
        {"candidate": candidate, "production": production},
    )


def ranker_gate(report: dict, rules: GateRules) -> list[Outcome]:
    """``report`` from evaluation.ranker_report: candidate, production (or None), baseline."""
    cand = report["candidate"]
    prod = report.get("production")
    base = prod or report["baseline"]
    who = (
        f"production {prod['version']}"
        if prod
        else f"trivial baseline ({report['baseline']['kind']})"
    )
    out = [_distinct(cand["version"], prod["version"] if prod else None)]

    c_auc, b_auc = cand["auc"], base["auc"]
    if c_auc is None or b_auc is None:
        out.append(
            Outcome("auc_vs_baseline", False, "AUC undefined: the holdout has one class only")
        )
    elif prod:
        need = rules.min_auc_ratio * b_auc
        out.append(
            Outcome(
                "auc_vs_baseline",
                c_auc >= need,
                f"candidate AUC {c_auc:.4f} vs {who} {b_auc:.4f}: needs >= {need:.4f} ({rules.min_auc_ratio} x)",
                {"candidate_auc": c_auc, "baseline_auc": b_auc, "required": need},
            )
        )
    else:
        ok = c_auc >= rules.auc_floor and c_auc > b_auc
        out.append(
            Outcome(
                "auc_vs_baseline",
                ok,
                f"first model: candidate AUC {c_auc:.4f} needs >= floor {rules.auc_floor} and > {who} {b_auc:.4f}",
                {"candidate_auc": c_auc, "baseline_auc": b_auc, "floor": rules.auc_floor},
            )
        )

    c_ll, b_ll = cand["logloss"], base["logloss"]
    limit = rules.max_logloss_ratio * b_ll if prod else b_ll
    out.append(
        Outcome(
            "logloss_vs_baseline",
            c_ll <= limit,
            f"candidate logloss {c_ll:.5f} vs {who} {b_ll:.5f}: needs <= {limit:.5f}",
            {"candidate_logloss": c_ll, "baseline_logloss": b_ll, "limit": limit},
        )
    )

    regressions, compared = [], 0
    for name, c_slice in cand.get("slices", {}).items():
        b_slice = base.get("slices", {}).get(name)
        if not b_slice or c_slice["auc"] is None or b_slice["auc"] is None:
            continue
        if c_slice["rows"] < rules.slice_min_rows:
            continue
        compared += 1
        if c_slice["auc"] < b_slice["auc"] - rules.slice_auc_tolerance:
            regressions.append(
                f"{name}: {c_slice['auc']:.4f} < {b_slice['auc']:.4f} - {rules.slice_auc_tolerance}"
            )
    out.append(
        Outcome(
            "slices_vs_baseline",
            not regressions,
            (f"{len(regressions)} slice(s) regressed vs {who}: " + "; ".join(regressions))
            if regressions
            else f"{compared} slice(s) within {rules.slice_auc_tolerance} AUC of {who}",
            {"slices_compared": compared, "regressions": len(regressions)},
        )
    )
    return out


def embedding_gate(report: dict, rules: GateRules) -> list[Outcome]:
    """``report`` from evaluation.embedding_report."""
    cand, prod = report["candidate"], report.get("production")
    base = prod or report["baseline"]
    who = f"production {prod['version']}" if prod else "popularity"
    k = report["k"]
    out = [_distinct(cand["version"], prod["version"] if prod else None)]
    for check, metric in (
        ("hit_rate_vs_baseline", f"hit_rate@{k}"),
        ("recall_vs_baseline", f"recall@{k}"),
    ):
        c, b = cand[metric], base[metric]
        if prod:
            need = rules.min_hit_rate_ratio * b
            ok = c >= need
            text = f"candidate {metric} {c:.4f} vs {who} {b:.4f}: needs >= {need:.4f}"
        else:
            ok = c > b and (check != "hit_rate_vs_baseline" or c >= rules.hit_rate_floor)
            text = f"first model: candidate {metric} {c:.4f} needs > {who} {b:.4f}"
        out.append(Outcome(check, ok, text, {"candidate": c, "baseline": b}))
    return out


def out_of_time(dt: str, production: str | None, production_window: list[str]) -> Outcome:
    """Production scored on a day it was trained on looks better than it is (a backfill of an
    old day): such a comparison is refused rather than silently biased against the candidate."""
    if production is None:
        return Outcome("baseline_out_of_time", True, "no production version yet")
    inside = dt in production_window
    return Outcome(
        "baseline_out_of_time",
        not inside,
        (
            f"production {production} was trained on dt={dt}: scoring it there is in-sample; "
            "gate this day against a version trained before it"
            if inside
            else f"dt={dt} is out of time for production {production}"
        ),
        {"production_window": ", ".join(production_window)},
    )
