"""The service's decision log, joined with what users did: live-traffic evidence for a day.

``served_decisions`` (one row per ranked item of a logged ranking whose request reached the day's
landed events): the service's decision (``serving/decisions.py``: shown and policy positions,
exploration share, propensity, score, sampled feature vectors, shadow scores) plus ``clicked``.
Requests that left no attributable event that day are not evidence of that day and are counted,
not kept.

``skew``: the feature vectors the service scored against the same rows' point-in-time features
(the training samples of the day, joined on ``(request_id, item_id)``). Per feature: the share of
rows that differ beyond a tolerance (``numpy.isclose``, relative and absolute), the largest
difference and a two-sample Kolmogorov-Smirnov distance (``scipy.stats.ks_2samp``, at float32)
between the served and the recomputed values. ``position`` is left out by design: the service scores every
candidate as if shown first (``serving.features.SERVING_POSITION``); the samples hold the shown
position.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import ks_2samp

from reckit_assets.core.evaluation.off_policy import propensities
from reckit_assets.core.io.storage import Storage

PREFIX = "decisions"  # where the service writes its decision log (serving/decisions.py)
FEATURE_PREFIX = "f."  # a logged feature vector's columns
SET_AT_SERVING = ("position",)  # features the service sets by design (not compared)
KEYS = ["request_id", "item_id"]
ASSET = "served_decisions"  # the warehouse asset holding a day's served decisions


class SkewRules(BaseModel):
    """Training/serving skew limits: the ``skew`` section of reckit.yaml.

    A served value and its point-in-time recomputation match when ``|a - b| <= atol + rtol |b|``
    (both missing also match). Defaults: float32 serving vs float64 training differ by ~1e-7
    relatively, so 1e-4 leaves room; the block limit is measured in docs/benchmarks.md
    ("Training/serving skew"): 0 false blocks on clean served days, bugs caught the next day.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rtol: float = Field(1e-4, ge=0)
    atol: float = Field(1e-6, ge=0)
    max_mismatch_share: float = Field(0.01, ge=0, le=1)  # per feature, of the compared rows
    min_rows: int = Field(50, ge=1)  # fewer compared rows: reported, never blocking


def read_decision_log(feedback: Storage, dt: str) -> pd.DataFrame:
    """Every file of the day's decision log, in key order, one row per ranked item (``position``
    its index in the shown list, ``propensity`` of it there); empty frame when there is none."""
    keys = sorted(i.key for i in feedback.list(f"{PREFIX}/dt={dt}/") if i.key.endswith(".parquet"))
    frames = [explode(pq.read_table(io.BytesIO(feedback.read_bytes(k)))) for k in keys]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def explode(table: pa.Table) -> pd.DataFrame:
    """The service's one-row-per-ranking table (serving/decisions.py) -> one row per item.
    A list column that is null for a ranking (no shadow, no features logged) gives NaN."""
    if table.num_rows == 0:
        return pd.DataFrame()
    items = table["item_id"].combine_chunks()
    offsets = items.offsets.to_numpy()
    sizes = np.diff(offsets)
    parent = np.repeat(np.arange(table.num_rows), sizes)
    lists = [n for n in table.column_names if pa.types.is_list(table.schema.field(n).type)]
    scalars = table.drop_columns(lists).take(pa.array(parent))
    frame = scalars.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)
    for name in lists:
        column = table[name].combine_chunks()
        if name == "item_id":
            frame[name] = pd.array(column.flatten().to_numpy(zero_copy_only=False), "string")
            continue
        values = np.full(len(parent), np.nan)
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        if valid.any():
            rows = np.flatnonzero(valid)
            at = np.concatenate([np.arange(offsets[r], offsets[r + 1]) for r in rows])
            values[at] = column.flatten().to_numpy(zero_copy_only=False)
        frame[name] = values
    logged = [n for n in lists if n.startswith(FEATURE_PREFIX)]
    if logged:
        # Which features each ranking's model logged (a version without a column logs none of
        # it: its NaN is "not logged", not a served NaN).
        valid = [
            table[n].combine_chunks().is_valid().to_numpy(zero_copy_only=False) for n in logged
        ]
        names = [
            ",".join(n[len(FEATURE_PREFIX) :] for n, v in zip(logged, valid, strict=True) if v[r])
            for r in range(table.num_rows)
        ]
        frame["feature_columns"] = pd.array(np.asarray(names, dtype=object)[parent], "string")
    frame["position"] = np.arange(len(parent)) - offsets[parent]
    frame["policy_position"] = frame["policy_position"].astype(np.int64)
    frame["propensity"] = propensities(
        frame["policy_position"].to_numpy(),
        frame["position"].to_numpy(),
        frame["slate_size"].to_numpy(),
        frame["exploration_share"].to_numpy(float),
    )
    return frame


def served_decisions(log: pd.DataFrame, events: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The day's logged decisions whose request is in the landed ``events``, with ``clicked``;
    rows in a canonical order (request, shown position). Returns (frame, counts)."""
    counts = {"logged_rows": len(log), "logged_rankings": 0, "rankings": 0, "rows": 0}
    if log.empty:
        return log, counts
    counts["logged_rankings"] = int(log["request_id"].nunique())
    landed = set(events["request_id"].dropna().astype(str))
    kept = log[log["request_id"].astype(str).isin(landed)]
    kept = kept.drop_duplicates(KEYS)  # a ranking is logged once; a repeat is a replay
    clicks = events.loc[events["event_type"] == "click", KEYS].astype(str).drop_duplicates()
    clicked = pd.MultiIndex.from_frame(clicks)
    out = kept.sort_values(["request_id", "position"], kind="stable").reset_index(drop=True)
    out["clicked"] = pd.MultiIndex.from_frame(out[KEYS].astype(str)).isin(clicked).astype("int8")
    counts |= {
        "rankings": int(out["request_id"].nunique()),
        "rows": len(out),
        "not_landed_rankings": counts["logged_rankings"] - int(out["request_id"].nunique()),
        "explored_rankings": int(out.groupby("request_id")["explored"].first().sum()),
        "feature_logged_rankings": int(out.groupby("request_id")["feature_logged"].first().sum()),
        "clicks": int(out["clicked"].sum()),
    }
    return out, counts


@dataclass(frozen=True)
class FeatureSkew:
    feature: str
    rows: int  # compared (both sides present)
    mismatched: int
    mismatch_share: float
    max_abs_diff: float
    ks_statistic: float
    ks_pvalue: float
    served_mean: float
    offline_mean: float

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def skew(decisions: pd.DataFrame, samples: pd.DataFrame, rules: SkewRules) -> dict:
    """Served feature vectors vs the same rows' point-in-time features. Returns ``rows``
    (logged rows with features), ``compared`` (of those, found in the samples), ``features``
    (one :class:`FeatureSkew` dict per compared feature, worst first) and ``failing`` (features
    whose mismatch share exceeds ``rules.max_mismatch_share``, when enough rows compared)."""
    served = decisions
    if "feature_logged" in served:
        served = served[served["feature_logged"].astype(bool)]
    columns = [
        c[len(FEATURE_PREFIX) :]
        for c in served.columns
        if c.startswith(FEATURE_PREFIX) and c[len(FEATURE_PREFIX) :] not in SET_AT_SERVING
    ]
    report: dict = {"rows": len(served), "compared": 0, "features": [], "failing": []}
    if served.empty or not columns:
        return report
    shared = [c for c in columns if c in samples.columns]
    report["not_in_samples"] = sorted(set(columns) - set(shared))
    offline = samples[KEYS + shared].astype({k: str for k in KEYS}).drop_duplicates(KEYS)
    extra = ["feature_columns"] if "feature_columns" in served else []
    online = served[KEYS + extra + [FEATURE_PREFIX + c for c in shared]].astype(
        {k: str for k in KEYS}
    )
    joined = online.merge(offline, on=KEYS, how="inner")
    report["compared"] = len(joined)
    results = []
    for c in shared:
        rows = joined
        if "feature_columns" in joined:  # only the rankings whose model logged c
            logged_c = (
                joined["feature_columns"].fillna("").str.split(",").map(lambda f, c=c: c in f)
            )
            rows = joined[logged_c.to_numpy(bool)]
        a = pd.to_numeric(rows[FEATURE_PREFIX + c], errors="coerce").to_numpy(np.float64)
        b = pd.to_numeric(rows[c], errors="coerce").to_numpy(np.float64)
        same = np.isclose(a, b, rtol=rules.rtol, atol=rules.atol, equal_nan=True)
        both = ~np.isnan(a) & ~np.isnan(b)
        diff = np.abs(a[both] - b[both])
        # At the service's precision (float32): finer differences would break ties between
        # equal values and inflate the distance.
        ks = (
            ks_2samp(a[both].astype(np.float32), b[both].astype(np.float32), method="asymp")
            if both.sum() >= 2
            else None
        )
        results.append(
            FeatureSkew(
                feature=c,
                rows=len(a),
                mismatched=int((~same).sum()),
                mismatch_share=float((~same).mean()) if len(a) else 0.0,
                max_abs_diff=float(diff.max()) if len(diff) else 0.0,
                ks_statistic=float(ks.statistic) if ks is not None else 0.0,
                ks_pvalue=float(ks.pvalue) if ks is not None else 1.0,
                served_mean=float(np.nanmean(a)) if both.any() else float("nan"),
                offline_mean=float(np.nanmean(b)) if both.any() else float("nan"),
            )
        )
    results.sort(key=lambda r: (-r.mismatch_share, r.feature))
    report["features"] = [r.as_dict() for r in results]
    report["failing"] = [  # judged per feature, on the rows that logged it
        r.feature
        for r in results
        if r.rows >= rules.min_rows and r.mismatch_share > rules.max_mismatch_share
    ]
    return report
