"""The release gate: candidate vs production vs a trivial baseline on one holdout, as rules.

Every rule is a pure function of the evaluation report (see ``report.py``) and the rules in
force, returning an :class:`Outcome` with every figure it used. Decisions (mode ``bootstrap``,
the default) use the paired per-user bootstrap of the report:

- **vs production** (non-inferiority): the candidate passes when the lower bound of the
  ``confidence`` CI of (candidate − production) AUC is >= −``auc_margin``, and the upper bound of
  (candidate − production) logloss is <= ``logloss_margin`` x production's logloss. A candidate
  truly worse than production by the margin passes with probability <= (1 − confidence) / 2.
- **vs trivial baseline** (superiority, always, whether or not production exists): the lower CI
  bound of (candidate − item-CTR prior) AUC is > ``trivial_auc_margin`` and the candidate's AUC
  is >= ``auc_floor`` (it ranks better, significantly); its logloss is no worse than the prior's
  by the ``logloss_margin`` rule above (calibration at least as good: on a few thousand rows a
  significant logloss gain is often not provable). item2vec: hit rate and recall significantly
  above popularity's.
- **slices**: a slice is gated only with >= ``slice_min_rows`` rows and ``slice_min_positives``
  / ``slice_min_negatives``; it fails when its AUC is significantly (one-sided test, bootstrap
  standard error) more than ``slice_auc_tolerance`` below production's, after Holm's correction
  across the gated slices (family-wise error ``slice_alpha``; statsmodels ``multipletests``).

Mode ``ratio`` is reckit's point-estimate rule (AUC >= 0.99 x, logloss <= 1.01 x production),
kept for compatibility; the trivial-baseline, holdout and identity rules apply in both modes.

**Release outcomes.** Every failing rule says which of three things it found
(``metadata["outcome"]``), and the candidate's outcome is the worst of them (:func:`decide`):

- ``broken`` (blocks: the run is red): an unusable holdout, non-finite scores (the evaluation
  step fails), a candidate with production's version id and other bytes, or nothing measured
  (item2vec 0 vs 0).
- ``rejected`` (green, not registered): shown worse than production beyond the margin (the CI
  lies wholly beyond it), a slice significantly regressed, or shown worse than the trivial
  baseline (the CI of the difference lies wholly below 0), below the floor, or constant (it
  learned nothing from its window).
- ``held`` (green, not registered: "nothing better today"): not shown non-inferior or not shown
  better; the report states each rule's minimum detectable effect on this holdout and how many
  more rows would decide it.
- ``released`` when every rule passes (``noop`` when the candidate is production).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from reckit_assets.core.checks import Outcome
from reckit_assets.core.evaluation.metrics import p_below
from reckit_assets.core.evaluation.outcomes import (
    BROKEN,
    HELD,
    REJECTED,
    fmt,
    mark,
    minimum_detectable,
    noop,
    not_evaluated,
    rounded,
    rows_to_decide,
    table_row,
    worse_beyond,
)
from reckit_assets.core.evaluation.production import ProductionState, identity, no_production

RANKER_CHECKS = (
    ("holdout_usable", "The holdout has enough rows, positives and negatives to decide on"),
    ("distinct_from_production", "The candidate is not production (version id and file hashes)"),
    ("auc_vs_production", "Lower CI bound of candidate − production AUC >= −gate.auc_margin"),
    (
        "logloss_vs_production",
        "Upper CI bound of candidate − production logloss <= gate.logloss_margin x production's",
    ),
    ("slices_vs_production", "No gated slice's AUC significantly below production's (Holm)"),
    ("auc_vs_trivial_baseline", "Candidate AUC significantly above the item-CTR prior's"),
    ("logloss_vs_trivial_baseline", "Candidate logloss no worse than the item-CTR prior's (CI)"),
    ("production_out_of_time", "Day dt is not in production's training window (a fair test)"),
)
EMBEDDING_CHECKS = (
    ("holdout_usable", "The day has enough next-item pairs to decide on"),
    ("distinct_from_production", "The candidate is not production (version id and file hashes)"),
    ("hit_rate_vs_production", "Lower CI bound of candidate − production hit rate >= −margin"),
    ("recall_vs_production", "Lower CI bound of candidate − production recall >= −margin"),
    ("hit_rate_vs_trivial_baseline", "Candidate hit rate significantly above popularity's"),
    ("recall_vs_trivial_baseline", "Candidate recall significantly above popularity's"),
    ("production_out_of_time", "Day dt is not in production's training window (a fair test)"),
)


Share = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=1)]


@dataclass(frozen=True)
class GateRules:
    """The release gate's rules: the ``gate`` section of reckit.yaml."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    # bootstrap: decide on paired per-user bootstrap CIs; ratio: reckit's point-estimate ratios.
    mode: Literal["bootstrap", "ratio"] = "bootstrap"
    confidence: Annotated[float, Field(ge=0.5, lt=1.0)] = 0.95  # two-sided CI level
    auc_margin: Share = 0.01  # bootstrap: largest AUC loss vs production still accepted
    logloss_margin: Share = 0.01  # bootstrap: largest logloss rise, share of production's
    min_auc_ratio: Share = 0.99  # ratio mode: candidate AUC >= ratio x production
    max_logloss_ratio: Annotated[float, Field(ge=1.0)] = 1.01  # ratio mode
    slice_auc_tolerance: Share = 0.02  # a slice may lose this much AUC vs production
    slice_min_rows: Count = 200  # smaller slices are too noisy to gate on
    slice_min_positives: Count = 30  # ... and slices with fewer clicks
    slice_min_negatives: Count = 30  # ... or fewer non-clicks
    slice_alpha: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05  # family-wise error, all slices
    auc_floor: Share = 0.55  # every candidate's minimum AUC
    trivial_auc_margin: Share = 0.0  # lower CI bound of AUC gain over the prior must exceed it
    min_holdout_rows: Count = 500  # fewer holdout rows: no decision (fails, saying so)
    min_holdout_positives: Count = 25
    min_holdout_negatives: Count = 25
    min_hit_rate_ratio: Share = 0.99  # item2vec, ratio mode
    # item2vec: largest hit-rate / recall loss vs production still accepted. Two seeds of the same
    # item2vec differ by more than 0.01 on ~1,000 next-item pairs (A/A held 11 of 12 at 30k a
    # day with 0.01; bench/gates_release_models.py); a 20% hit-rate loss is ~0.1.
    hit_rate_margin: Share = 0.03
    hit_rate_floor: Share = 0.01  # item2vec: every candidate's minimum hit rate@10
    min_next_item_pairs: Count = 100  # item2vec: fewer pairs in the day: no decision
    # Resamples of users (sessions): the CIs are point ± z x the bootstrap SE, whose Monte Carlo
    # error at the bound is ~1.96 / sqrt(2 x 400) ~ 0.07 standard errors.
    bootstrap_samples: Annotated[int, Field(ge=50)] = 400


# Which direction makes each rule easier to pass: +1 a larger value, -1 a smaller value.
# A launch that moves a rule this way from its configured value needs a reason (audited).
LOOSER: dict[str, int] = {
    "confidence": -1,
    "auc_margin": +1,
    "logloss_margin": +1,
    "min_auc_ratio": -1,
    "max_logloss_ratio": +1,
    "slice_auc_tolerance": +1,
    "slice_min_rows": +1,
    "slice_min_positives": +1,
    "slice_min_negatives": +1,
    "slice_alpha": -1,
    "auc_floor": -1,
    "trivial_auc_margin": -1,
    "min_holdout_rows": -1,
    "min_holdout_positives": -1,
    "min_holdout_negatives": -1,
    "min_hit_rate_ratio": -1,
    "hit_rate_margin": +1,
    "hit_rate_floor": -1,
    "min_next_item_pairs": -1,
}
# Not an ordering of strictness: ``mode: ratio`` counts as loosening (point estimates ignore
# noise); fewer bootstrap samples only make the CIs rougher, in either direction.
NEUTRAL = {"bootstrap_samples"}


def key(name: str) -> str:
    """Where a rule is set, for messages: ``gate.auc_margin``."""
    return f"gate.{name}"


def loosened(configured: GateRules, effective: GateRules) -> list[str]:
    """Rules the launch made easier to pass than configured, as ``key: configured -> now``."""
    out = []
    for f in fields(GateRules):
        before, now = getattr(configured, f.name), getattr(effective, f.name)
        if before == now or f.name in NEUTRAL:
            continue
        looser = now == "ratio" if f.name == "mode" else (now - before) * LOOSER[f.name] > 0
        if looser:
            out.append(f"{key(f.name)}: {before} -> {now}")
    return out


def rules_in_force(rules: GateRules, sources: dict[str, str] | None = None) -> dict[str, dict]:
    """Every rule's value, its source (default / file / environment / run config) and default."""
    default = GateRules()
    sources = sources or {}
    return {
        name: {
            "value": value,
            "source": sources.get(key(name), "default"),
            "default": getattr(default, name),
        }
        for name, value in asdict(rules).items()
    }


# -- rankers ------------------------------------------------------------------------------------


def holdout_usable(report: dict, rules: GateRules) -> Outcome:
    """Too few rows, positives or negatives and no metric can be trusted: fail, saying which."""
    rows = int(report.get("holdout_rows", 0))
    pos = int(report.get("holdout_positives", 0))
    neg = rows - pos
    problems = []
    for what, have, need in (
        ("rows", rows, rules.min_holdout_rows),
        ("positives (clicks)", pos, rules.min_holdout_positives),
        ("negatives", neg, rules.min_holdout_negatives),
    ):
        if have < need:
            setting = {"rows": "min_holdout_rows", "negatives": "min_holdout_negatives"}.get(
                what, "min_holdout_positives"
            )
            problems.append(f"{have} {what} < {need} ({key(setting)})")
    one_class = rows > 0 and (pos == 0 or neg == 0)
    text = (
        f"holdout dt={report.get('dt', '?')} unusable: "
        + "; ".join(problems)
        + ("; one class only: AUC is undefined" if one_class else "")
        if problems or one_class
        else f"holdout: {rows} rows, {pos} positives, {neg} negatives"
    )
    return _mark_outcome(
        "holdout_usable",
        not problems and not one_class and rows > 0,
        text,
        table_row(
            "holdout rows / positives / negatives",
            f">= {rules.min_holdout_rows} / {rules.min_holdout_positives} / "
            f"{rules.min_holdout_negatives}",
            "gate.min_holdout_rows / _positives / _negatives",
            f"{rows} / {pos} / {neg}",
        ),
    )


def _mark_outcome(name: str, passed: bool, text: str, meta: dict) -> Outcome:
    """An unusable holdout decides nothing: the evaluation is broken (the run is red)."""
    return mark(Outcome(name, passed, text, meta), BROKEN)


def ranker_gate(report: dict, rules: GateRules) -> list[Outcome]:
    """Every ranker rule but ``production_out_of_time``, in ``RANKER_CHECKS`` order.

    ``report`` is ``report.ranker_report``'s output plus ``production_state`` (a
    :class:`ProductionState` dict) and ``identity`` (the :func:`identity` outcome and no-op flag).
    """
    state = ProductionState(**report.get("production_state", {"state": "never"}))
    ident, is_noop = report.get("identity") or identity(
        "?", None, {}, "cpu", "", ProductionState("never")
    )
    usable = holdout_usable(report, rules)
    names = [n for n, _ in RANKER_CHECKS[2:-1]]
    if is_noop:
        return [*noop([usable.name], ident.description), ident, *noop(names, ident.description)]
    if not usable.passed:
        return [usable, ident, *(not_evaluated(n, usable.description) for n in names)]
    if not ident.passed:
        why = "the candidate's identity check failed"
        return [
            usable,
            ident,
            *(not_evaluated(n, why) for n in names[:3]),
            *_vs_trivial(report, rules),
        ]
    return [usable, ident, *_vs_production(report, rules, state), *_vs_trivial(report, rules)]


def _vs_production(report: dict, rules: GateRules, state: ProductionState) -> list[Outcome]:
    if state.state != "present":
        why = no_production(state)
        return [
            Outcome(n, True, why, {"rule": "no production to compare with"})
            for n in ("auc_vs_production", "logloss_vs_production", "slices_vs_production")
        ]
    cand, prod = report["candidate"], report["production"]
    d = report["diff"]["production"]
    who = f"production {prod['version']}"
    out = []
    c_auc, p_auc = cand["auc"], prod["auc"]
    c_ll, p_ll = cand["logloss"], prod["logloss"]
    level = f"{rules.confidence:.0%}"
    a, lg, limit = d["auc"], d["logloss"], rules.logloss_margin * p_ll
    if rules.mode == "ratio":
        need = rules.min_auc_ratio * p_auc
        out.append(
            Outcome(
                "auc_vs_production",
                c_auc >= need,
                f"candidate AUC {c_auc:.4f} vs {who} {p_auc:.4f}: needs >= {need:.4f} "
                f"({rules.min_auc_ratio} x, {key('min_auc_ratio')}; mode ratio)",
                table_row(
                    "AUC candidate / production",
                    f">= {rules.min_auc_ratio}",
                    key("min_auc_ratio"),
                    c_auc / p_auc,
                    d["auc"],
                    candidate_auc=c_auc,
                    production_auc=p_auc,
                ),
            )
        )
        limit = rules.max_logloss_ratio * p_ll
        out.append(
            Outcome(
                "logloss_vs_production",
                c_ll <= limit,
                f"candidate logloss {c_ll:.5f} vs {who} {p_ll:.5f}: needs <= {limit:.5f} "
                f"({rules.max_logloss_ratio} x, {key('max_logloss_ratio')}; mode ratio)",
                table_row(
                    "logloss candidate / production",
                    f"<= {rules.max_logloss_ratio}",
                    key("max_logloss_ratio"),
                    c_ll / p_ll,
                    d["logloss"],
                    candidate_logloss=c_ll,
                    production_logloss=p_ll,
                ),
            )
        )
    else:
        a = d["auc"]
        out.append(
            Outcome(
                "auc_vs_production",
                a["ci_low"] >= -rules.auc_margin,
                f"candidate − {who} AUC {fmt(a['diff'], sign=True)}, {level} CI "
                f"[{fmt(a['ci_low'], sign=True)}, {fmt(a['ci_high'], sign=True)}]: lower bound "
                f"needs >= −{rules.auc_margin} ({key('auc_margin')}); AUC {c_auc:.4f} vs "
                f"{p_auc:.4f}",
                table_row(
                    "AUC candidate − production, lower CI bound",
                    f">= −{rules.auc_margin}",
                    key("auc_margin"),
                    a["diff"],
                    a,
                    candidate_auc=c_auc,
                    production_auc=p_auc,
                ),
            )
        )
        lg = d["logloss"]
        limit = rules.logloss_margin * p_ll
        out.append(
            Outcome(
                "logloss_vs_production",
                lg["ci_high"] <= limit,
                f"candidate − {who} logloss {fmt(lg['diff'], 5, True)}, {level} CI "
                f"[{fmt(lg['ci_low'], 5, True)}, {fmt(lg['ci_high'], 5, True)}]: upper bound "
                f"needs <= {limit:.5f} ({rules.logloss_margin} x production's {p_ll:.5f}, "
                f"{key('logloss_margin')})",
                table_row(
                    "logloss candidate − production, upper CI bound",
                    f"<= {fmt(limit, 5)}",
                    key("logloss_margin"),
                    lg["diff"],
                    lg,
                    candidate_logloss=c_ll,
                    production_logloss=p_ll,
                ),
            )
        )
    out.append(mark(_slices(report, rules, who), REJECTED))
    if rules.mode == "ratio":
        for o in out[:2]:
            mark(o, REJECTED)  # a point-estimate rule has no "not shown": a failure rejects
    else:
        mark(out[0], REJECTED if worse_beyond(a, -rules.auc_margin) else HELD)
        mark(out[1], REJECTED if worse_beyond(lg, limit, larger_is_worse=True) else HELD)
        _add_mde(out[0], a, rules, rules.auc_margin, report)
        _add_mde(out[1], lg, rules, limit, report)
    return out


def _add_mde(o: Outcome, ci: dict, rules: GateRules, margin: float, report: dict) -> None:
    """For a held rule: the holdout's minimum detectable effect and the rows that would decide."""
    if o.passed or o.metadata.get("outcome") != HELD:
        return
    mde = minimum_detectable(ci, rules.confidence)
    rows = int(report.get("holdout_rows") or report.get("sessions") or 0)
    # To decide non-inferiority at the margin, the CI's half-width must fall below the distance
    # between the point estimate and the margin (when the estimate is on the right side of it).
    gap = abs(abs(ci.get("diff", math.nan)) - margin) if margin else math.nan
    need = rows_to_decide(ci, gap, rows) if math.isfinite(gap) else None
    o.metadata["minimum_detectable_effect"] = rounded(mde) if mde is not None else "unknown"
    o.metadata["rows_to_decide"] = need if need is not None else "unknown"
    o.description += (
        f"; not shown either way on this holdout: minimum detectable effect "
        f"{fmt(mde)} at 80% power"
        + (
            f", ~{need} rows (~{need / rows:.1f} days like this one) would decide it"
            if need and rows
            else ""
        )
    )


def _slices(report: dict, rules: GateRules, who: str) -> Outcome:
    """Gate each slice with enough rows, positives and negatives; Holm across them."""
    from statsmodels.stats.multitest import multipletests

    tol = rules.slice_auc_tolerance
    gated, skipped = [], []
    for name, s in sorted(report.get("slice_diff", {}).items()):
        neg = s["rows"] - s["positives"]
        if (
            s["rows"] < rules.slice_min_rows
            or s["positives"] < rules.slice_min_positives
            or neg < rules.slice_min_negatives
            or s.get("diff") is None
        ):
            skipped.append(f"{name} (n={s['rows']}, {s['positives']} pos)")
            continue
        gated.append((name, s))
    meta_base = {
        "slices_gated": len(gated),
        "slices_skipped": len(skipped),
        "min_rows_pos_neg": f"{rules.slice_min_rows}/{rules.slice_min_positives}/"
        f"{rules.slice_min_negatives}",
    }
    skipped_text = (
        f"; not gated (too few rows/positives/negatives): {', '.join(skipped)}" if skipped else ""
    )
    if not gated:
        return Outcome(
            "slices_vs_production",
            True,
            f"no slice has >= {rules.slice_min_rows} rows, {rules.slice_min_positives} positives "
            f"and {rules.slice_min_negatives} negatives{skipped_text}",
            table_row(
                "slices significantly > tolerance below production",
                "none",
                key("slice_alpha"),
                0,
                **meta_base,
            ),
        )
    if rules.mode == "ratio":
        bad = [(n, s) for n, s in gated if s["diff"] < -tol]
        pvals: list[float] = [float("nan")] * len(gated)
        rejected = [s["diff"] < -tol for _, s in gated]
    else:
        pvals = [p_below(s, -tol) for _, s in gated]
        rejected, _, _, _ = multipletests(pvals, alpha=rules.slice_alpha, method="holm")
        bad = [g for g, r in zip(gated, rejected, strict=True) if r]
    details = []
    for (name, s), p, r in zip(gated, pvals, rejected, strict=True):
        if r:
            details.append(
                f"{name}: AUC {s['candidate_auc']:.4f} vs {s['production_auc']:.4f} "
                f"(diff {s['diff']:+.4f}" + (f", p={p:.2g}" if math.isfinite(p) else "") + ")"
            )
    how = (
        f"point diff < −{tol}"
        if rules.mode == "ratio"
        else f"one-sided test of diff < −{tol}, Holm-corrected at {rules.slice_alpha}"
    )
    worst = min(gated, key=lambda g: g[1]["diff"])
    return Outcome(
        "slices_vs_production",
        not bad,
        (
            f"{len(bad)} of {len(gated)} slice(s) regressed vs {who} ({how}): " + "; ".join(details)
            if bad
            else f"{len(gated)} slice(s) within {tol} AUC of {who} ({how}); worst "
            f"{worst[0]} {worst[1]['diff']:+.4f}"
        )
        + skipped_text,
        table_row(
            "slices with AUC significantly > tolerance below production",
            f"none (tolerance {tol}, α {rules.slice_alpha})",
            key("slice_auc_tolerance"),
            len(bad),
            worst_slice=worst[0],
            worst_diff=worst[1]["diff"],
            min_p=min(pvals) if rules.mode != "ratio" else float("nan"),
            **meta_base,
        ),
    )


def _vs_trivial(report: dict, rules: GateRules) -> list[Outcome]:
    cand, base = report["candidate"], report["baseline"]
    d = report["diff"]["trivial_baseline"]
    who = f"trivial baseline ({base['kind']})"
    level = f"{rules.confidence:.0%}"
    c_auc, b_auc = cand["auc"], base["auc"]
    a = d["auc"]
    floor_ok = c_auc >= rules.auc_floor
    constant = cand.get("score_range", 1.0) == 0.0
    if rules.mode == "ratio":
        beat, how = c_auc > b_auc, "point estimate (mode ratio)"
    else:
        beat = a["ci_low"] > rules.trivial_auc_margin
        how = (
            f"lower bound of the {level} CI [{fmt(a['ci_low'], sign=True)}, "
            f"{fmt(a['ci_high'], sign=True)}] must be > {rules.trivial_auc_margin} "
            f"({key('trivial_auc_margin')})"
        )
    auc_out = Outcome(
        "auc_vs_trivial_baseline",
        beat and floor_ok and not constant,
        f"candidate AUC {c_auc:.4f} vs {who} {b_auc:.4f} (diff {a['diff']:+.4f}): {how}; "
        f"and >= floor {rules.auc_floor} ({key('auc_floor')})"
        + ("" if floor_ok else ": BELOW the floor")
        + ("" if beat else ": does not beat the trivial baseline")
        + (": the candidate's scores are CONSTANT on the holdout" if constant else ""),
        table_row(
            "AUC candidate − trivial baseline, lower CI bound",
            f"> {rules.trivial_auc_margin} and AUC >= {rules.auc_floor}",
            f"{key('trivial_auc_margin')}, {key('auc_floor')}",
            a["diff"],
            a,
            candidate_auc=c_auc,
            trivial_baseline_auc=b_auc,
        ),
    )
    c_ll, b_ll = cand["logloss"], base["logloss"]
    lg = d["logloss"]
    if rules.mode == "ratio":
        ok, how = c_ll < b_ll, "point estimate (mode ratio)"
    else:
        limit = rules.logloss_margin * b_ll
        ok = lg["ci_high"] <= limit
        how = (
            f"upper bound of the {level} CI [{fmt(lg['ci_low'], 5, True)}, "
            f"{fmt(lg['ci_high'], 5, True)}] must be <= {limit:.5f} ({rules.logloss_margin} x "
            f"the baseline's, {key('logloss_margin')})"
        )
    ll_out = Outcome(
        "logloss_vs_trivial_baseline",
        ok,
        f"candidate logloss {c_ll:.5f} vs {who} {b_ll:.5f} (diff {lg['diff']:+.5f}): {how}"
        + ("" if ok else ": does not beat the trivial baseline"),
        table_row(
            "logloss candidate − trivial baseline, upper CI bound",
            f"<= {rules.logloss_margin} x baseline's" if rules.mode != "ratio" else "< 0",
            key("logloss_margin"),
            lg["diff"],
            lg,
            candidate_logloss=c_ll,
            trivial_baseline_logloss=b_ll,
        ),
    )
    # A constant scorer learned nothing that generalizes from its window (e.g. XGBoost early-
    # stopped at round 0 on a new site whose first days carry no feature history): it is shown
    # no better than the prior, a rejection, and the description says it is constant. (A model
    # that cannot score at all, NaN or a crash, fails the evaluation step: broken.)
    if constant or rules.mode == "ratio" or not floor_ok or worse_beyond(a, 0.0):
        mark(auc_out, REJECTED)
    else:
        mark(auc_out, HELD)
        _add_mde(auc_out, a, rules, rules.trivial_auc_margin, report)
    if rules.mode == "ratio" or worse_beyond(lg, rules.logloss_margin * b_ll, True):
        mark(ll_out, REJECTED)
    else:
        mark(ll_out, HELD)
    return [auc_out, ll_out]


# -- item2vec -----------------------------------------------------------------------------------


def pairs_usable(report: dict, rules: GateRules) -> Outcome:
    pairs = int(report["candidate"].get("pairs", 0))
    ok = pairs >= rules.min_next_item_pairs
    return _mark_outcome(
        "holdout_usable",
        ok,
        (
            f"{report['sessions']} sessions, {pairs} next-item pairs"
            if ok
            else f"dt={report.get('dt', '?')}: {pairs} next-item pairs in {report['sessions']} "
            f"sessions < {rules.min_next_item_pairs} ({key('min_next_item_pairs')}): hit rate "
            "and recall cannot be judged"
        ),
        table_row(
            "next-item pairs",
            f">= {rules.min_next_item_pairs}",
            key("min_next_item_pairs"),
            pairs,
        ),
    )


def embedding_gate(report: dict, rules: GateRules) -> list[Outcome]:
    """Every item2vec rule but ``production_out_of_time``, in ``EMBEDDING_CHECKS`` order."""
    state = ProductionState(**report.get("production_state", {"state": "never"}))
    ident, is_noop = report.get("identity") or identity(
        "?", None, {}, "cpu", "", ProductionState("never")
    )
    usable = pairs_usable(report, rules)
    names = [n for n, _ in EMBEDDING_CHECKS[2:-1]]
    if is_noop:
        return [*noop([usable.name], ident.description), ident, *noop(names, ident.description)]
    if not usable.passed:
        return [usable, ident, *(not_evaluated(n, usable.description) for n in names)]
    k = report["k"]
    cand, base, prod = report["candidate"], report["baseline"], report.get("production")
    level = f"{rules.confidence:.0%}"
    out: list[Outcome] = []
    for metric, check in ((f"hit_rate@{k}", "hit_rate"), (f"recall@{k}", "recall")):
        name = f"{check}_vs_production"
        if not ident.passed:
            out.append(not_evaluated(name, "the candidate's identity check failed"))
        elif state.state != "present":
            out.append(Outcome(name, True, no_production(state), {"rule": "no production"}))
        else:
            c, p = cand[metric], prod[metric]
            d = report["diff"]["production"][check]
            who = f"production {prod['version']}"
            if c == 0 and p == 0:
                failed_as = BROKEN
                ok, text = (
                    False,
                    (
                        f"{metric} is 0.0 for the candidate and {who}: nothing was measured "
                        "(no pair was ever a hit); a comparison of zeros cannot pass"
                    ),
                )
            elif rules.mode == "ratio":
                failed_as = REJECTED
                need = rules.min_hit_rate_ratio * p
                ok = c >= need
                text = (
                    f"candidate {metric} {c:.4f} vs {who} {p:.4f}: needs >= {need:.4f} "
                    f"({key('min_hit_rate_ratio')}; mode ratio)"
                )
            else:
                failed_as = REJECTED if worse_beyond(d, -rules.hit_rate_margin) else HELD
                ok = d["ci_low"] >= -rules.hit_rate_margin
                text = (
                    f"candidate − {who} {metric} {d['diff']:+.4f}, {level} CI "
                    f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]: lower bound needs >= "
                    f"−{rules.hit_rate_margin} ({key('hit_rate_margin')}); {c:.4f} vs {p:.4f}"
                )
            out.append(
                mark(
                    Outcome(
                        name,
                        ok,
                        text,
                        table_row(
                            f"{metric} candidate − production, lower CI bound",
                            f">= −{rules.hit_rate_margin}"
                            if rules.mode != "ratio"
                            else f">= {rules.min_hit_rate_ratio} x",
                            key(
                                "hit_rate_margin" if rules.mode != "ratio" else "min_hit_rate_ratio"
                            ),
                            d["diff"],
                            d,
                            candidate=c,
                            production=p,
                        ),
                    ),
                    failed_as,
                )
            )
    for metric, check in ((f"hit_rate@{k}", "hit_rate"), (f"recall@{k}", "recall")):
        c, b = cand[metric], base[metric]
        d = report["diff"]["trivial_baseline"][check]
        floor = rules.hit_rate_floor if check == "hit_rate" else 0.0
        if c == 0 and b == 0:
            failed_as = BROKEN
            ok, text = (
                False,
                (f"{metric} is 0.0 for the candidate and popularity: nothing was measured"),
            )
        else:
            # Hit/miss is paired per next-item pair: the exact McNemar test decides (one-sided
            # at (1 - confidence) / 2); recall (a fraction per pair) keeps the session bootstrap.
            exact = d.get("mcnemar") if check == "hit_rate" else None
            alpha = (1 - rules.confidence) / 2
            if rules.mode == "ratio":
                beat = c > b
            elif exact is not None:
                beat = exact["p_better"] < alpha
            else:
                beat = d["ci_low"] > 0
            ok = beat and c >= floor
            worse = exact["p_worse"] < alpha if exact is not None else worse_beyond(d, 0.0)
            shown_worse = rules.mode == "ratio" or c < floor or worse
            failed_as = REJECTED if shown_worse else HELD
            text = (
                f"candidate {metric} {c:.4f} vs popularity {b:.4f} (diff {d['diff']:+.4f}, "
                f"{level} CI [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]): "
                + (
                    "point estimate must be higher"
                    if rules.mode == "ratio"
                    else (
                        f"exact McNemar: {exact['wins']} pairs won, {exact['losses']} lost, "
                        f"one-sided p={exact['p_better']:.3g} must be < {alpha:g}"
                    )
                    if exact is not None
                    else "lower bound must be > 0"
                )
                + (f"; and >= floor {floor} ({key('hit_rate_floor')})" if floor else "")
                + ("" if beat else ": does not beat popularity")
                + ("" if c >= floor else ": BELOW the floor")
            )
        out.append(
            mark(
                Outcome(
                    f"{check}_vs_trivial_baseline",
                    ok,
                    text,
                    table_row(
                        f"{metric} candidate − popularity, lower CI bound",
                        "> 0" + (f" and >= {floor}" if floor else ""),
                        key("hit_rate_floor") if floor else key("confidence"),
                        d["diff"],
                        d,
                        candidate=c,
                        trivial_baseline=b,
                    ),
                ),
                failed_as,
            )
        )
    # RANKER order: production rules first, then trivial ones.
    return [usable, ident, *out]
