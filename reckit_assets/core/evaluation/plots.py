"""Plots for the UI: training curves and reliability (calibration) curves as PNG bytes.

Framework-free (matplotlib with the non-interactive Agg backend, no display needed). The Dagster
layer embeds the PNGs in Markdown metadata with :func:`markdown_image`; the Dagster UI renders a
``data:image/png;base64`` image inline. Figures are small (about 20-40 kB) because every
materialization stores its metadata in the event log.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np

# A figure of 5.5 x 3 inches at 80 dpi is 440 x 240 px: readable in the metadata panel.
FIG_SIZE = (5.5, 3.0)
DPI = 80


def _figure():
    """A figure drawn by the Agg canvas: no pyplot (no global state, half the import time)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIG_SIZE)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    out = io.BytesIO()
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown that shows ``png`` inline (a base64 data URI)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def training_curve_png(history: Sequence[Mapping], best_iteration: int | None, title: str) -> bytes:
    """Metric by round/epoch from a training history, validation metrics solid, train dashed.

    ``history`` rows are ``{"round"|"step"|"epoch": i, "<split>_<metric>": value, ...}`` as the trainers
    write them; one panel per metric (logloss, AUC, loss), the best iteration marked. Raises
    ``ValueError`` on an empty history or one without an iteration key.
    """
    if not history:
        raise ValueError(f"{title}: empty training history, nothing to plot")
    step_key = next((k for k in ("round", "step", "epoch") if k in history[0]), None)
    if step_key is None:
        raise ValueError(
            f"{title}: history rows have no 'round', 'step' or 'epoch' key: {list(history[0])}"
        )
    steps = [int(r[step_key]) for r in history]
    # Counters and settings are not metrics (a DeepFM row has its epoch, step and lr).
    series = [k for k in history[0] if k not in {"round", "step", "epoch", "seconds", "lr"}]
    metrics: dict[str, list[str]] = {}
    for key in series:
        metric = key.split("_", 1)[1] if "_" in key else key
        metrics.setdefault(metric, []).append(key)
    fig = _figure()
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, (metric, keys) in zip(axes[0], metrics.items(), strict=True):
        for key in keys:
            values = [float(r[key]) for r in history]
            style = "--" if key.startswith("train") else "-"
            ax.plot(steps, values, style, label=key.split("_", 1)[0] if "_" in key else key)
        if best_iteration is not None and 0 <= best_iteration < len(steps):
            # best_iteration indexes the history's rows
            ax.axvline(steps[best_iteration], color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel(step_key, fontsize=8)
        ax.set_title(metric if len(keys) > 1 else keys[0], fontsize=9)
        ax.tick_params(labelsize=7)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    best = f" (best {step_key} {best_iteration})" if best_iteration is not None else ""
    fig.suptitle(title + best, fontsize=9)
    return _png(fig)


def training_curve_markdown(
    history: Sequence[Mapping], best_iteration: int | None, title: str
) -> str:
    """:func:`training_curve_png` as inline Markdown; ``(no history)`` for an empty history."""
    if not history:
        return "(no history)"
    return markdown_image(training_curve_png(history, best_iteration, title), "training curve")


def reliability_bins(labels, scores, n_bins: int = 10) -> list[dict]:
    """Quantile bins of the predicted probability: mean predicted, observed rate, rows per bin.

    Quantile (equal-count) bins, because click probabilities crowd near zero and equal-width bins
    would leave most bins empty. Ties can merge bins, so fewer than ``n_bins`` may come back.
    """
    y = np.asarray(labels, dtype="float64")
    s = np.asarray(scores, dtype="float64")
    if len(y) != len(s) or len(y) == 0:
        raise ValueError(f"reliability_bins: {len(y)} labels vs {len(s)} scores (need >= 1 each)")
    edges = np.unique(np.quantile(s, np.linspace(0, 1, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, max(len(edges) - 2, 0))
    out = []
    for b in np.unique(which):
        mask = which == b
        out.append(
            {
                "mean_predicted": float(s[mask].mean()),
                "observed": float(y[mask].mean()),
                "rows": int(mask.sum()),
            }
        )
    return out


def reliability_png(curves: Mapping[str, Sequence[Mapping]], title: str) -> bytes:
    """Reliability diagram: observed rate against mean predicted probability, one line per model.

    ``curves`` maps a model's label to :func:`reliability_bins` output. The diagonal is perfect
    calibration; points below it over-predict.
    """
    if not curves:
        raise ValueError(f"{title}: no curves to plot")
    fig = _figure()
    ax = fig.subplots()
    top = max(max(b["mean_predicted"], b["observed"]) for bins in curves.values() for b in bins)
    top = min(1.0, top * 1.1) or 1.0
    ax.plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle=":", label="calibrated")
    for label, bins in curves.items():
        ax.plot(
            [b["mean_predicted"] for b in bins],
            [b["observed"] for b in bins],
            marker="o",
            markersize=3,
            label=label,
        )
    ax.set_xlabel("mean predicted probability", fontsize=8)
    ax.set_ylabel("observed rate", fontsize=8)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return _png(fig)


def reliability_markdown(report: Mapping) -> str | None:
    """The reliability diagram of an evaluation report (``report.json``) as inline Markdown.

    ``None`` when the report has no ``reliability`` bins (item2vec reports have none).
    """
    curves = {k: v for k, v in (report.get("reliability") or {}).items() if v}
    if not curves:
        return None
    title = f"{report.get('kind', 'model')} calibration on dt={report.get('dt', '?')}"
    return markdown_image(reliability_png(curves, title), "reliability diagram")
