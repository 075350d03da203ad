"""Served traffic becomes data: a day's feedback log -> one landing ``events`` partition.

Input: the service's feedback log (``events/dt=D/*.parquet`` under the feedback root, landing
``events`` columns; extra columns such as ``alias`` are kept for monitoring and dropped from the
landing file), and optionally events in reckit's own feedback shape.

**Attributable** (landed): the event has a ``request_id`` and the ``model_version`` that served it
(not null, not ``unknown``), its timestamp falls in day D, and a click or conversion has an
impression of the same ``(request_id, item_id)`` in the day's log. Everything else is kept apart
(written under ``unattributed/dt=D/`` in a separate store, never the landing zone) and counted by
reason. Exact repeats of an ``event_id`` (client retries) are dropped and counted.

**reckit's feedback shape** ``{user_id, item_id, scene, type, timestamp (unix seconds), position,
score, labels, extras}`` maps as follows:

=============================  ==========================================================
reckit                         landing ``events``
=============================  ==========================================================
``type`` impression/click/     same ``event_type``
conversion
``type`` like                  ``click`` (explicit positive engagement with the item)
``type`` skip, dislike         not landed (the contract has no negative type); counted
``timestamp`` (seconds)        ``ts`` = timestamp x 1000 ms, UTC
``extras.request_id`` /        used when present; otherwise the event is matched to the latest
``extras.model_version``       served impression of the same ``(user_id, item_id)`` at or
                               before it within ``attribution_window_s`` (its request id,
                               version, position and device); no match -> unattributed
``position``                   kept when given, else the served impression's
``scene``, ``score``,          not landed (not in the contract)
``labels``
``event_id``                   ``k`` + sha256 of (request_id, item_id, type, timestamp)[:24]
=============================  ==========================================================

**Abuse screen** (:mod:`.abuse`, the ``abuse`` config section): attributable events that are
implausible per user, per item or per served impression, or that name ids absent from the day's
``users``/``items`` snapshots, are quarantined (written under ``quarantined_feedback/dt=D/`` in
the same separate store, with the rule and figures that took them out) and not landed; the rest
of the day lands.

Landing is write-once: the partition is ``events/dt=D/feedback-00000.parquet`` then ``_SUCCESS``.
Landing the same day again with the same result is a no-op; with a different result it is
refused (landed data is never modified).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reckit_assets.core.ingest.landing import (
    SCHEMAS,
    SUCCESS_MARKER,
    marker_key,
    partition_prefix,
    read_landed,
)
from reckit_assets.core.io.frames import frame_to_parquet_bytes, parquet_bytes_to_frame
from reckit_assets.core.io.storage import Storage, sha256_bytes
from reckit_assets.core.monitoring.abuse import AbuseRules, Screening, screen

EVENT_COLUMNS = [c.name for c in SCHEMAS["events"]]
UNKNOWN_VERSIONS = ("unknown", "")
LANDED_FILE = "feedback-00000.parquet"
QUARANTINE = "quarantined_feedback"
RECKIT_TYPES = {"impression": "impression", "click": "click", "conversion": "conversion"}
RECKIT_TYPES["like"] = "click"
RECKIT_NEGATIVE = ("skip", "dislike")


class FeedbackLandingError(RuntimeError):
    pass


@dataclass
class Attribution:
    landed: pd.DataFrame  # landing contract columns (+ alias when the log has it)
    apart: pd.DataFrame  # unattributable rows with a `reason` column
    counts: dict = field(default_factory=dict)


def read_feedback_log(feedback: Storage, dt: str) -> pd.DataFrame:
    """Every parquet file the service wrote for day ``dt`` (possibly several servers)."""
    parts = []
    for info in feedback.list(partition_prefix("events", dt)):
        if info.key.endswith(".parquet"):
            parts.append(parquet_bytes_to_frame(feedback.read_bytes(info.key)))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in EVENT_COLUMNS})
    return pd.concat(parts, ignore_index=True)


def _reckit_event_id(request_id: str, item_id: str, kind: str, ts: int) -> str:
    key = f"{request_id}\x1f{item_id}\x1f{kind}\x1f{ts}"
    return "k" + hashlib.sha256(key.encode()).hexdigest()[:24]


def from_reckit_events(
    records: list[dict], served: pd.DataFrame, attribution_window_s: float = 1800.0
) -> tuple[pd.DataFrame, dict]:
    """reckit feedback events -> landing event rows (see the module's mapping table).

    ``served``: the service's own log for the day (the impressions to attribute to). Returns the
    rows (``request_id``/``model_version`` null when no served impression matches) and counts.
    """
    counts = {"reckit_events": len(records), "reckit_negative": 0, "reckit_unknown_type": 0}
    rows = []
    for rec in records:
        kind = str(rec.get("type", ""))
        if kind in RECKIT_NEGATIVE:
            counts["reckit_negative"] += 1
            continue
        if kind not in RECKIT_TYPES:
            counts["reckit_unknown_type"] += 1
            continue
        extras = rec.get("extras") or {}
        rows.append(
            {
                "ts": pd.Timestamp(int(rec["timestamp"]) * 1000, unit="ms", tz="UTC"),
                "user_id": str(rec["user_id"]),
                "item_id": str(rec["item_id"]),
                "event_type": RECKIT_TYPES[kind],
                "request_id": extras.get("request_id"),
                "model_version": extras.get("model_version"),
                "position": rec.get("position"),
                "device": extras.get("device"),
                "_seconds": int(rec["timestamp"]),
            }
        )
    frame = pd.DataFrame(rows, columns=[*EVENT_COLUMNS, "_seconds"])
    if frame.empty:
        return frame.drop(columns="_seconds"), counts
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    need = frame["request_id"].isna()
    imps = served[served["event_type"] == "impression"]
    if need.any() and not imps.empty:
        left = frame[need].reset_index().sort_values("ts")
        right = imps[["ts", "user_id", "item_id", "request_id", "model_version", "position"]]
        right = right.assign(
            ts=pd.to_datetime(right["ts"], utc=True), device_served=imps["device"]
        ).sort_values("ts")
        left["ts"] = left["ts"].astype(right["ts"].dtype)
        matched = pd.merge_asof(
            left.drop(columns=["request_id", "model_version"]),
            right.rename(columns={"position": "position_served"}),
            on="ts",
            by=["user_id", "item_id"],
            direction="backward",
            tolerance=pd.Timedelta(seconds=attribution_window_s),
        ).set_index("index")
        frame.loc[matched.index, "request_id"] = matched["request_id"]
        frame.loc[matched.index, "model_version"] = matched["model_version"]
        frame.loc[matched.index, "position"] = matched["position"].fillna(
            matched["position_served"]
        )
        frame.loc[matched.index, "device"] = matched["device"].fillna(matched["device_served"])
    frame["event_id"] = [
        _reckit_event_id(str(r), i, t, s)
        for r, i, t, s in zip(
            frame["request_id"],
            frame["item_id"],
            frame["event_type"],
            frame["_seconds"],
            strict=True,
        )
    ]
    counts["reckit_matched"] = int(frame["request_id"].notna().sum())
    return frame.drop(columns="_seconds"), counts


def attribute(log: pd.DataFrame, dt: str) -> Attribution:
    """Split a day's feedback into attributable rows (landed) and the rest (kept apart)."""
    frame = log.copy()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    n = len(frame)
    frame = frame.drop_duplicates(subset="event_id", keep="first")
    counts = {"rows": n, "duplicates": n - len(frame)}
    start = pd.Timestamp(dt, tz="UTC")
    reason = pd.Series("", index=frame.index, dtype=object)
    version = frame["model_version"].astype("string")
    reason[(frame["ts"] < start) | (frame["ts"] >= start + pd.Timedelta(days=1))] = "out_of_day"
    no_version = version.isna() | version.isin(UNKNOWN_VERSIONS)
    reason[(reason == "") & no_version.to_numpy()] = "no_model_version"
    reason[(reason == "") & frame["request_id"].isna().to_numpy()] = "no_request_id"
    imps = frame[(frame["event_type"] == "impression") & (reason == "")]
    shown = set(zip(imps["request_id"], imps["item_id"], strict=True))
    later = (frame["event_type"] != "impression") & (reason == "")
    orphan = [
        (r, i) not in shown
        for r, i in zip(frame.loc[later, "request_id"], frame.loc[later, "item_id"], strict=True)
    ]
    reason[later[later].index[np.asarray(orphan, dtype=bool)]] = "no_served_impression"
    keep = reason == ""
    extra = [c for c in ("alias",) if c in frame.columns]
    landed = frame.loc[keep, EVENT_COLUMNS + extra].sort_values(["ts", "event_id"])
    landed = landed.reset_index(drop=True)
    apart = frame.loc[~keep].assign(reason=reason[~keep]).reset_index(drop=True)
    counts |= {"attributable": len(landed), "unattributable": len(apart)}
    counts |= {f"unattributable_{k}": int(v) for k, v in apart["reason"].value_counts().items()}
    return Attribution(landed, apart, counts)


def _typed(landed: pd.DataFrame) -> pd.DataFrame:
    out = landed[EVENT_COLUMNS].copy()
    out["ts"] = pd.to_datetime(out["ts"], utc=True).astype("datetime64[ms, UTC]")
    out["position"] = pd.to_numeric(out["position"]).astype("Int64")
    for col in EVENT_COLUMNS:
        if col not in ("ts", "position"):
            out[col] = out[col].astype("string")
    return out


def _snapshot_ids(landing: Storage, table: str, dt: str, column: str) -> set[str] | None:
    if not landing.exists(marker_key(table, dt)):
        return None
    return set(read_landed(landing, table, dt).frame[column].astype(str))


def _trailing_events(landing: Storage, dt: str, days: int) -> pd.DataFrame | None:
    day = pd.Timestamp(dt)
    past = [
        read_landed(landing, "events", d).frame
        for d in ((day - pd.Timedelta(days=k)).strftime("%Y-%m-%d") for k in range(1, days + 1))
        if landing.exists(marker_key("events", d))
    ]
    return pd.concat(past, ignore_index=True) if past else None


def screen_day(
    landing: Storage, dt: str, landed: pd.DataFrame, log: pd.DataFrame, rules: AbuseRules
) -> Screening:
    """The abuse screen of day ``dt``'s attributable rows, with the day's snapshots and the
    trailing landed days read from ``landing`` when they are there."""
    return screen(
        landed,
        rules,
        log=log,
        users=_snapshot_ids(landing, "users", dt, "user_id"),
        items=_snapshot_ids(landing, "items", dt, "item_id"),
        trailing=_trailing_events(landing, dt, rules.trailing_days)
        if rules.trailing_days
        else None,
    )


def _as_strings(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].astype("string")
    return out


def land_feedback(
    feedback: Storage,
    landing: Storage,
    apart: Storage,
    dt: str,
    reckit_events: list[dict] | None = None,
    rules: AbuseRules | None = None,
) -> dict:
    """Land day ``dt``'s attributable, unquarantined feedback as ``events/dt=D/`` with
    ``_SUCCESS`` (write-once).

    Returns counts, the landed key, its sha256 and ``abuse`` (the screen's outcomes, one per
    rule). Raises FeedbackLandingError when the partition already holds different data or files
    this function did not write.
    """
    rules = AbuseRules() if rules is None else rules
    log = read_feedback_log(feedback, dt)
    counts: dict = {}
    if reckit_events:
        mapped, counts = from_reckit_events(reckit_events, log)
        log = pd.concat([log, mapped], ignore_index=True)
    result = attribute(log, dt)
    counts |= result.counts
    screened = screen_day(landing, dt, result.landed, log, rules)
    counts |= screened.counts
    data = frame_to_parquet_bytes(_typed(screened.kept))
    key = f"{partition_prefix('events', dt)}/{LANDED_FILE}"
    digest = sha256_bytes(data)
    present = [i.key for i in landing.list(partition_prefix("events", dt))]
    foreign = [k for k in present if k not in (key, marker_key("events", dt))]
    if foreign:
        raise FeedbackLandingError(
            f"landing events/dt={dt} already holds files this export did not write "
            f"({len(foreign)}: {foreign[:3]}); landed data is never modified"
        )
    if landing.exists(marker_key("events", dt)):
        existing = sha256_bytes(landing.read_bytes(key)) if landing.exists(key) else None
        if existing != digest:
            raise FeedbackLandingError(
                f"landing events/dt={dt} is already complete ({SUCCESS_MARKER}) with different "
                f"data ({key}: sha256 {str(existing)[:12]} != {digest[:12]}); landed data is "
                f"never modified"
            )
        return {
            "dt": dt, "key": key, "sha256": digest, "created": False, **counts,
            "abuse": screened.outcomes,
        }  # fmt: skip
    landing.write_bytes(key, data)  # no marker yet: a crash here leaves an incomplete partition
    if not result.apart.empty:
        apart.write_bytes(
            f"unattributed/dt={dt}/part-00000.parquet",
            frame_to_parquet_bytes(_as_strings(result.apart)),
        )
    if not screened.quarantined.empty:
        apart.write_bytes(
            f"{QUARANTINE}/dt={dt}/part-00000.parquet",
            frame_to_parquet_bytes(_as_strings(screened.quarantined)),
        )
    landing.write_bytes(marker_key("events", dt), b"")
    return {
        "dt": dt, "key": key, "sha256": digest, "created": True, **counts,
        "abuse": screened.outcomes,
    }  # fmt: skip
