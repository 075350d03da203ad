"""Evaluation reports: candidate, production and a trivial baseline side by side on one holdout,
with paired bootstrap confidence intervals on the differences, rendered as Markdown for the UI.

The report is plain JSON-able data; the release gate (``gate.py``) decides from it alone. All
bootstraps of one report use the same seed, so they resample the same users (or sessions).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reckit_assets.core.checks import Outcome
from reckit_assets.core.evaluation import metrics, plots


def _scored(name: str, version: str, model, holdout: pd.DataFrame) -> tuple[dict, np.ndarray]:
    scores = np.asarray(model.predict(holdout), dtype="float64")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name} {version} produced non-finite scores on the holdout")
    return {"version": version, **metrics.ranking_report(holdout, scores)}, scores


def _slice_masks(holdout: pd.DataFrame) -> dict[str, np.ndarray]:
    """The same slices as ``metrics.ranking_report``."""
    new = holdout["is_new_user"].to_numpy().astype(bool)
    masks = {"new_users": new, "returning_users": ~new}
    device = holdout["device"].astype("string").fillna("").to_numpy()
    for value in sorted(set(device.tolist())):
        masks[f"device={value}"] = device == value
    return {k: m for k, m in masks.items() if m.any()}


def _cold_start_masks(holdout: pd.DataFrame) -> dict[str, np.ndarray]:
    """Users by history, for the lift over the trivial baseline (reported, not gated):
    ``new_users`` (no impression in the 7-day window), ``returning_users``, and
    ``unseen_users_28d`` (none in the 28-day window either: a true cold start)."""
    new = holdout["is_new_user"].to_numpy().astype(bool)
    masks = {"new_users": new, "returning_users": ~new}
    if "user_impressions_28d" in holdout:
        masks["unseen_users_28d"] = holdout["user_impressions_28d"].to_numpy() == 0
    return {k: m for k, m in masks.items() if m.any()}


def ranker_report(
    holdout: pd.DataFrame,
    candidate: tuple[str, object],
    production: tuple[str, object] | None,
    baseline: tuple[str, object],
    bootstrap_n: int = 400,
    seed: int = 7,
    level: float = 0.95,
) -> dict:
    """Score every model on ``holdout`` (day dt's samples) and bootstrap the differences.

    ``diff.production`` / ``diff.trivial_baseline``: candidate minus that model, AUC and logloss,
    each with its ``level`` percentile CI and standard error (present when the holdout has both
    classes). ``slice_diff``: per slice, candidate − production AUC with its bootstrap, when
    production exists and the slice has both classes. ``slice_lift``: per cold-start slice (new,
    returning, unseen in 28 days), candidate − trivial baseline AUC with its bootstrap (reported,
    not gated). An empty holdout gives a report with
    zero rows and no metrics (the gate then fails ``holdout_usable``), never ``nan`` figures.
    """
    labels = holdout["label"].to_numpy() if "label" in holdout else np.array([])
    report: dict = {
        "holdout_rows": len(holdout),
        "holdout_positives": int(labels.sum()) if len(holdout) else 0,
        "production": None,
        "diff": {},
        "slice_diff": {},
        "bootstrap": {"samples": bootstrap_n, "seed": seed, "level": level, "unit": "user"},
    }
    if not len(holdout):
        report["candidate"] = {"version": candidate[0], "rows": 0}
        report["baseline"] = {"version": baseline[0], "kind": baseline[0], "rows": 0}
        if production is not None:
            report["production"] = {"version": production[0], "rows": 0}
        return report
    cand, c_scores = _scored("candidate", *candidate, holdout)
    # A constant scorer (AUC exactly 0.5) is a broken model, not a weak one: the gate says so.
    cand["score_range"] = float(np.ptp(c_scores)) if len(c_scores) else 0.0
    base, b_scores = _scored("baseline", *baseline, holdout)
    base["kind"] = baseline[0]
    report["candidate"], report["baseline"] = cand, base
    references = {"trivial_baseline": b_scores}
    if production is not None:
        report["production"], references["production"] = _scored("production", *production, holdout)
    users = holdout["user_id"].to_numpy()
    # Reliability (calibration) curve points per model, for plots.reliability_markdown.
    report["reliability"] = {
        "candidate": plots.reliability_bins(labels, c_scores),
        **(
            {"production": plots.reliability_bins(labels, references["production"])}
            if production is not None
            else {}
        ),
        f"baseline ({baseline[0]})": plots.reliability_bins(labels, b_scores),
    }
    if not 0 < labels.sum() < len(labels):
        return report
    for against, ref in references.items():
        report["diff"][against] = {
            m: metrics.bootstrap_diff(
                labels, c_scores, ref, users, metric=m, n=bootstrap_n, seed=seed, level=level
            )
            for m in ("auc", "logloss")
        }
    # Cold start: the lift over the trivial baseline among new and returning users.
    report["slice_lift"] = {}
    for name, mask in _cold_start_masks(holdout).items():
        y = labels[mask]
        entry = {"rows": int(mask.sum()), "positives": int(y.sum()), "diff": None}
        if 0 < y.sum() < y.size:
            entry.update(
                metrics.bootstrap_diff(
                    y, c_scores[mask], b_scores[mask], users[mask], "auc", bootstrap_n, seed, level
                ),
                candidate_auc=metrics.auc(y, c_scores[mask]),
                baseline_auc=metrics.auc(y, b_scores[mask]),
            )
        report["slice_lift"][name] = entry
    if production is not None:
        p_scores = references["production"]
        for name, mask in _slice_masks(holdout).items():
            y = labels[mask]
            entry: dict = {"rows": int(mask.sum()), "positives": int(y.sum()), "diff": None}
            if 0 < y.sum() < y.size:
                boot = metrics.bootstrap_diff(
                    y, c_scores[mask], p_scores[mask], users[mask], "auc", bootstrap_n, seed, level
                )
                entry.update(
                    boot,
                    candidate_auc=report["candidate"]["slices"][name]["auc"],
                    production_auc=report["production"]["slices"][name]["auc"],
                )
            report["slice_diff"][name] = entry
    return report


def embedding_report(
    sequences: list[list[str]],
    candidate: tuple[str, object],
    production: tuple[str, object] | None,
    popularity: object,
    k: int = 10,
    bootstrap_n: int = 400,
    seed: int = 7,
    level: float = 0.95,
) -> dict:
    """Next-item hit rate and recall of each model, with session-bootstrap CIs on the
    candidate's differences from production and from popularity (``diff``)."""
    from reckit_assets.core.evaluation.next_item import next_item_values, summarize

    values = {"candidate": next_item_values(candidate[1], sequences, k)}
    values["baseline"] = next_item_values(popularity, sequences, k)
    report: dict = {
        "k": k,
        "sessions": len(sequences),
        "candidate": {"version": candidate[0], **summarize(values["candidate"], k)},
        "baseline": {"kind": "popularity", **summarize(values["baseline"], k)},
        "production": None,
        "diff": {},
        "bootstrap": {"samples": bootstrap_n, "seed": seed, "level": level, "unit": "session"},
    }
    refs = {"trivial_baseline": values["baseline"]}
    if production is not None:
        refs["production"] = next_item_values(production[1], sequences, k)
        report["production"] = {"version": production[0], **summarize(refs["production"], k)}
    c = values["candidate"]
    if c["hit"].size:
        for against, ref in refs.items():
            report["diff"][against] = {
                m: metrics.bootstrap_mean_diff(
                    c[m], ref[m], c["session"], n=bootstrap_n, seed=seed, level=level
                )
                for m in ("hit", "recall")
            }
            report["diff"][against]["hit_rate"] = report["diff"][against].pop("hit")
            report["diff"][against]["hit_rate"]["mcnemar"] = mcnemar(c["hit"], ref["hit"])
    return report


def mcnemar(candidate_hits: np.ndarray, reference_hits: np.ndarray) -> dict:
    """Exact McNemar test of paired hit/miss outcomes (the same next-item pairs scored by two
    models): only discordant pairs carry evidence; under equal hit rates the candidate wins each
    with probability 1/2 (``scipy.stats.binomtest``). ``p_better`` is one-sided (candidate
    better), ``p_worse`` the other side."""
    from scipy import stats

    c = np.asarray(candidate_hits) > 0
    r = np.asarray(reference_hits) > 0
    wins, losses = int((c & ~r).sum()), int((~c & r).sum())
    n = wins + losses
    if n == 0:
        return {"wins": 0, "losses": 0, "p_better": 1.0, "p_worse": 1.0}
    return {
        "wins": wins,
        "losses": losses,
        "p_better": float(stats.binomtest(wins, n, 0.5, alternative="greater").pvalue),
        "p_worse": float(stats.binomtest(wins, n, 0.5, alternative="less").pvalue),
    }


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def ranker_markdown(report: dict) -> str:
    if not report["holdout_rows"]:
        return "Holdout: 0 impressions: nothing to evaluate (see `holdout_usable`)."
    cols = [("candidate", report["candidate"])]
    if report.get("production"):
        cols.append(("production", report["production"]))
    cols.append((f"trivial baseline ({report['baseline']['kind']})", report["baseline"]))
    head = "| metric | " + " | ".join(n for n, _ in cols) + " |\n|---|" + "---:|" * len(cols) + "\n"
    rows = []
    for label, get in (
        ("version", lambda r: r.get("version", "–")),
        ("AUC", lambda r: r["auc"]),
        ("GAUC", lambda r: r["gauc"]),
        ("logloss", lambda r: r["logloss"]),
        ("mean predicted", lambda r: r["calibration"]["mean_predicted"]),
        ("observed CTR", lambda r: r["calibration"]["observed"]),
    ):
        rows.append(f"| {label} | " + " | ".join(_fmt(get(r)) for _, r in cols) + " |")
    for name in report["candidate"].get("slices", {}):
        cells = []
        for _, r in cols:
            s = r.get("slices", {}).get(name)
            cells.append(f"{_fmt(s['auc'])} (n={s['rows']})" if s else "–")
        rows.append(f"| AUC {name} | " + " | ".join(cells) + " |")
    text = f"Holdout: {report['holdout_rows']} impressions\n\n" + head + "\n".join(rows)
    level = report.get("bootstrap", {}).get("level", 0.95)
    for against, d in report.get("diff", {}).items():
        text += (
            f"\n\nCandidate − {against.replace('_', ' ')} ({level:.0%} bootstrap CI over users): "
            f"AUC {d['auc']['diff']:+.4f} [{d['auc']['ci_low']:+.4f}, {d['auc']['ci_high']:+.4f}], "
            f"logloss {d['logloss']['diff']:+.5f} [{d['logloss']['ci_low']:+.5f}, "
            f"{d['logloss']['ci_high']:+.5f}]"
        )
    lifts = report.get("slice_lift") or {}
    if lifts:
        text += (
            f"\n\nCold start: AUC lift over the trivial baseline by user history ({level:.0%} "
            "bootstrap CI over users; reported, not gated)\n\n"
            "| users | rows | candidate AUC | baseline AUC | lift [CI] |\n|---|---:|---:|---:|---|\n"
        )
        for name, e in lifts.items():
            lift = (
                f"{e['diff']:+.4f} [{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]"
                if e.get("diff") is not None
                else "– (one class)"
            )
            text += (
                f"| {name} | {e['rows']} | {_fmt(e.get('candidate_auc'))} | "
                f"{_fmt(e.get('baseline_auc'))} | {lift} |\n"
            )
    return text


def embedding_markdown(report: dict) -> str:
    k = report["k"]
    cols = [("candidate", report["candidate"])]
    if report.get("production"):
        cols.append(("production", report["production"]))
    cols.append(("trivial baseline (popularity)", report["baseline"]))
    head = "| metric | " + " | ".join(n for n, _ in cols) + " |\n|---|" + "---:|" * len(cols) + "\n"
    rows = [
        f"| {m} | " + " | ".join(_fmt(r.get(m)) for _, r in cols) + " |"
        for m in ("version", f"hit_rate@{k}", f"recall@{k}", "pairs")
    ]
    return (
        f"Next-item prediction on {report['sessions']} sessions of the day\n\n"
        + head
        + "\n".join(rows)
    )


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:+.4f}" if abs(value) < 1 else f"{value:.4f}"
    return str(value).replace("|", "/")


def gate_markdown(outcomes: list[Outcome]) -> str:
    """The gate as a table: rule, threshold (config key), value, CI, verdict; rounded."""
    lines = [
        "| check | rule | threshold | config key | value | CI | verdict |",
        "|---|---|---|---|---:|---|---|",
    ]
    for o in outcomes:
        m = o.metadata
        ci = (
            f"[{_cell(m['ci_low'])}, {_cell(m['ci_high'])}]" if m.get("ci_low") is not None else "–"
        )
        verdict = "pass" if o.passed else "**FAIL**"
        if o.description.startswith("no-op"):
            verdict = "no-op"
        lines.append(
            f"| `{o.name}` | {m.get('rule', o.description[:60])} | {m.get('threshold', '–')} | "
            f"{m.get('config_key', '–')} | {_cell(m.get('value'))} | {ci} | {verdict} |"
        )
    return "\n".join(lines)


def rules_markdown(rules: dict[str, dict]) -> str:
    """Rules in force: every key that is not at its default, plus the mode and confidence."""
    shown = {
        k: v for k, v in rules.items() if v["source"] != "default" or k in ("mode", "confidence")
    }
    parts = [f"`gate.{k}` = {v['value']} ({v['source']})" for k, v in shown.items()]
    return "Rules in force (others at their defaults): " + "; ".join(parts)


def off_policy_markdown(found: dict) -> str:
    """The candidate's off-policy CTR on the day's logged traffic (``off_policy.ranker_estimates``)
    next to what the logging policy realised."""
    head = "### Off-policy CTR on the day's served traffic"
    if "candidate" not in found:
        return f"{head}\n\nNot estimated: {found.get('reason', 'no estimate')}."
    level = round(100 * found["confidence"])
    rows = [
        f"| {who} | {name.upper()} | {e['value']:.4f} | [{e['ci_low']:.4f}, {e['ci_high']:.4f}] "
        f"| {e['matched']} |"
        for who, by_name in (
            ("candidate", found["candidate"]),
            ("logging policy", found["logging_policy"]),
        )
        for name, e in by_name.items()
    ]
    return (
        f"{head}\n\n{found['slates']} logged slates ({found['explored_slates']} explored, share "
        f"{found['exploration_share']:.3f}); realised CTR {found['logged_ctr']:.4f}; the candidate "
        f"keeps {100 * found['agreement']:.1f}% of items where the logging policy put them; "
        f"{found.get('evidence_clicks', '?')} clicks on items it moves, shown there by "
        "exploration (the estimate's evidence; below 30 each interval is widened to that "
        "count's exact Poisson bound).\n\n"
        f"| policy | estimator | CTR | {level}% CI | impressions where it would show them |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows)
    )
