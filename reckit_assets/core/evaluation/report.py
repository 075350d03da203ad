"""Evaluation reports: candidate, production and a trivial baseline side by side on one holdout,
with bootstrap confidence intervals on the differences, rendered as Markdown for the UI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reckit_assets.core.evaluation import metrics, plots


def _scored(name: str, version: str, model, holdout: pd.DataFrame) -> tuple[dict, np.ndarray]:
    scores = np.asarray(model.predict(holdout), dtype="float64")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name} {version} produced non-finite scores on the holdout")
    return {"version": version, **metrics.ranking_report(holdout, scores)}, scores


def ranker_report(
    holdout: pd.DataFrame,
    candidate: tuple[str, object],
    production: tuple[str, object] | None,
    baseline: tuple[str, object],
    bootstrap_n: int = 200,
    seed: int = 7,
) -> dict:
    """Score every model on ``holdout`` (day dt's samples) and compare candidate vs baseline."""
    cand, c_scores = _scored("candidate", *candidate, holdout)
    base, b_scores = _scored("baseline", *baseline, holdout)
    base["kind"] = baseline[0]
    report: dict = {
        "holdout_rows": len(holdout),
        "candidate": cand,
        "baseline": base,
        "production": None,
    }
    ref_scores = b_scores
    if production is not None:
        report["production"], ref_scores = _scored("production", *production, holdout)
    labels, users = holdout["label"].to_numpy(), holdout["user_id"].to_numpy()
    # Reliability (calibration) curve points per model, for plots.reliability_markdown.
    report["reliability"] = {
        "candidate": plots.reliability_bins(labels, c_scores),
        **({"production": plots.reliability_bins(labels, ref_scores)} if production else {}),
        f"baseline ({baseline[0]})": plots.reliability_bins(labels, b_scores),
    }
    if 0 < labels.sum() < len(labels):
        report["diff"] = {
            m: metrics.bootstrap_diff(
                labels, c_scores, ref_scores, users, metric=m, n=bootstrap_n, seed=seed
            )
            for m in ("auc", "logloss")
        }
        report["diff"]["against"] = "production" if production else "baseline"
    return report


def embedding_report(
    sequences: list[list[str]],
    candidate: tuple[str, object],
    production: tuple[str, object] | None,
    popularity: object,
    k: int = 10,
) -> dict:
    from reckit_assets.core.evaluation.next_item import evaluate_next_item

    report: dict = {"k": k, "sessions": len(sequences)}
    report["candidate"] = {
        "version": candidate[0],
        **evaluate_next_item(candidate[1], sequences, k=k),
    }
    report["baseline"] = {"kind": "popularity", **evaluate_next_item(popularity, sequences, k=k)}
    report["production"] = (
        {"version": production[0], **evaluate_next_item(production[1], sequences, k=k)}
        if production
        else None
    )
    return report


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def ranker_markdown(report: dict) -> str:
    cols = [("candidate", report["candidate"])]
    if report.get("production"):
        cols.append(("production", report["production"]))
    cols.append((f"baseline ({report['baseline']['kind']})", report["baseline"]))
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
    if report.get("diff"):
        d = report["diff"]
        text += (
            f"\n\nCandidate − {d['against']} (95% bootstrap CI over users): "
            f"AUC {d['auc']['diff']:+.4f} [{d['auc']['ci_low']:+.4f}, {d['auc']['ci_high']:+.4f}], "
            f"logloss {d['logloss']['diff']:+.5f} [{d['logloss']['ci_low']:+.5f}, {d['logloss']['ci_high']:+.5f}]"
        )
    return text


def embedding_markdown(report: dict) -> str:
    k = report["k"]
    cols = [("candidate", report["candidate"])]
    if report.get("production"):
        cols.append(("production", report["production"]))
    cols.append(("popularity", report["baseline"]))
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
