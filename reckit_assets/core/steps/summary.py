"""What happened to each day, read back from what the steps published: the operator's summary.

For every day: the data gate's outcome (passed, blocked and by which checks, waived, warnings),
the samples (published, quarantined), and per model the candidate (trained or skipped), its
release outcome (released / held / rejected / broken / noop) with its key figures, and whether a
version was registered from the day. Framework-free; ``reckit report`` adds each day's run status
from the Dagster instance.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import Storage
from reckit_assets.core.release.registry import PRODUCTION, Registry
from reckit_assets.core.steps import data as data_steps
from reckit_assets.core.steps import models as model_steps


def days_between(first: str, last: str) -> list[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [(a + timedelta(days=k)).isoformat() for k in range((b - a).days + 1)]


def _data(store: Storage, dt: str) -> dict:
    landed = warehouse.manifest(store, data_steps.LANDED, dt)
    if landed is None:
        return {"data": "not checked", "warnings": ""}
    info = landed.get("info", {})
    out = {
        "data": "passed" if info.get("passed") else f"BLOCKED ({info.get('failed_checks')})",
        "warnings": "" if info.get("warnings", "none") == "none" else info["warnings"],
    }
    if info.get("waived", "none") != "none":
        out["data"] += f", waived: {info['waived']}"
    samples = warehouse.manifest(store, data_steps.SAMPLES, dt)
    if samples is None and warehouse.manifest(store, data_steps.SAMPLES, dt, quarantined=True):
        out["data"] += "; samples QUARANTINED"
    return out


def _model(store: Storage, registry: Registry, kind: str, dt: str) -> dict:
    candidate = warehouse.manifest(store, model_steps.candidate_asset(kind), dt)
    if candidate is None:
        return {"outcome": "no candidate", "figures": ""}
    found = warehouse.manifest(store, model_steps.evaluation_asset(kind), dt)
    if found is None:
        return {"outcome": "not evaluated", "figures": ""}
    report = json.loads(
        warehouse.read_file(store, model_steps.evaluation_asset(kind), dt, "report.json")
    )
    outcome = report.get("outcome") or ("released" if report.get("passed") else "failed")
    cand, base = report.get("candidate", {}), report.get("baseline", {})
    figures = ""
    if kind == "item2vec":
        k = report.get("k", 10)
        if f"hit_rate@{k}" in cand:
            figures = (
                f"hit@{k} {cand[f'hit_rate@{k}']:.4f} vs popularity {base[f'hit_rate@{k}']:.4f}"
            )
    elif "auc" in cand:
        lift = report.get("diff", {}).get("trivial_baseline", {}).get("auc", {})
        figures = f"AUC {cand['auc']:.4f} vs prior {base['auc']:.4f}"
        if lift:
            figures += (
                f" (lift {lift['diff']:+.4f} [{lift['ci_low']:+.4f}, {lift['ci_high']:+.4f}])"
            )
        prod = report.get("production")
        if prod and "auc" in prod:
            figures += f", production {prod['auc']:.4f}"
    version = cand.get("version")
    registered = version is not None and registry.manifest(kind, version) is not None
    return {
        "outcome": outcome + (" (registered)" if registered and outcome == "released" else ""),
        "figures": figures,
        "reasons": report.get("outcome_reasons") or [],
    }


def day_summary(store: Storage, registry: Registry, dt: str) -> dict:
    return {
        "dt": dt,
        **_data(store, dt),
        "models": {kind: _model(store, registry, kind, dt) for kind in model_steps.KINDS},
    }


def production(registry: Registry) -> dict[str, str | None]:
    return {kind: registry.alias(kind, PRODUCTION) for kind in model_steps.KINDS}


def summaries(store: Storage, registry: Registry, first: str, last: str) -> dict:
    return {
        "days": [day_summary(store, registry, dt) for dt in days_between(first, last)],
        "production": production(registry),
    }


def markdown(summary: dict, run_status: dict[str, str] | None = None) -> str:
    """One row per day; the production versions below."""
    run_status = run_status or {}
    head = ["dt", "run", "data", "warnings", *model_steps.KINDS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for day in summary["days"]:
        cells = [
            day["dt"],
            run_status.get(day["dt"], "-"),
            day["data"],
            day["warnings"] or "-",
            *(
                f"{m['outcome']}" + (f": {m['figures']}" if m["figures"] else "")
                for m in day["models"].values()
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    prod = ", ".join(f"{k}: {v or 'none'}" for k, v in summary["production"].items())
    return "\n".join(lines) + f"\n\nIn production now: {prod}\n"
