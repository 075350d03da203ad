"""Feedback intake: which events are written where, and which are refused (see
:mod:`serving.feedback` for provenance and the log's layout).

An event is **attributed** when it carries a valid request token (a request id alone is never
enough: callers choose them): written under ``events/``. Otherwise it is written **apart**
(``unattributed/``) if the sender holds the ingest or admin token, and refused (403) if not.
Attributed events must match the served request (an item served to that user, the caller the
token names, before its expiry, in the feedback window of its serving time), and each (request,
item) takes one impression, one click and one conversion, the conversion after the click: a
repeat is accepted but not written again (``duplicates``), a conversion without a click is
refused. A batch is all-or-nothing.

Volume is bounded per caller: at most ``RECKIT_MAX_FEEDBACK_PER_CALLER_DAY`` events written per
caller (its API key; callers without one share ``open``) per UTC day in this process; a batch
that would go beyond it is refused whole with 429 until midnight UTC, counted as
``caller_volume`` (the ``ReckitFeedbackCallerOverBudget`` alert of the Helm chart fires on it).
Per process: N replicas admit up to N times the limit.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from serving.config import ServingConfig
from serving.errors import ServiceError
from serving.feedback import (
    CLIENT,
    RECKIT,
    UNKNOWN_VERSION,
    Engagements,
    FeedbackLog,
    RequestTokens,
    ServedRequest,
    TokenError,
    event_id,
    utc_now,
)
from serving.metrics import ServingMetrics
from serving.schemas import FeedbackEvent, FeedbackRequest, ReckitFeedbackEvent

# reckit's event types -> the landing contract's (impression, click, conversion). A skip is an
# item shown and passed over: an impression without a click. like/dislike have no landing type:
# they keep their own name (the pipeline's event validation drops unknown types) and are
# written apart with the rest of reckit's events.
RECKIT_EVENT_TYPES = {
    "impression": "impression",
    "click": "click",
    "conversion": "conversion",
    "skip": "impression",
    "like": "like",
    "dislike": "dislike",
}
PROVENANCE_REASONS = frozenset({"unknown_request", "bad_token", "expired_token", "caller_mismatch"})
OPEN_CALLER = "open"  # the budget of callers without an API key (keys not configured)


class CallerBudget:
    """Feedback events written per caller per UTC day, against ``limit`` (0: unbounded).

    Memory is one counter per caller seen today: callers are the configured API keys (or
    ``open``), so it is bounded by the configuration, not by clients."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._day: date | None = None
        self._used: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, caller: str, n: int, now: datetime) -> int | None:
        """Count ``n`` events for ``caller`` and return None, or, when they would exceed the
        limit, count nothing and return how many the caller already has today."""
        with self._lock:
            if now.date() != self._day:
                self._day, self._used = now.date(), Counter()
            used = self._used[caller]
            if self.limit and used + n > self.limit:
                return used
            self._used[caller] = used + n
            return None


class FeedbackIntake:
    """Checks feedback batches and buffers what passes in the attributed or the apart log."""

    def __init__(
        self,
        config: ServingConfig,
        engagements: Engagements,
        tokens: RequestTokens,
        metrics: ServingMetrics,
        feedback: FeedbackLog,
        unattributed: FeedbackLog,
        flush_soon: Callable[[], None],
    ) -> None:
        self.config = config
        self.engagements = engagements
        self.tokens = tokens
        self.metrics = metrics
        self.feedback = feedback
        self.unattributed = unattributed
        self.flush_soon = flush_soon
        self.budget = CallerBudget(config.max_feedback_per_caller_day)

    def _attribute(
        self, ev: FeedbackEvent, now: datetime, caller: str | None, authorized: bool
    ) -> tuple[str | None, ServedRequest | None, str | None, str | None]:
        """(server request id, who served it, rejection reason, message); (None, None, None,
        None) for an event without a token (not attributable)."""
        if ev.request_token is None:
            return None, None, None, None
        try:
            request_id, served = self.tokens.verify(ev.request_token)
        except TokenError as exc:
            return None, None, exc.reason, str(exc)
        if ev.request_id not in (request_id, served.client_request_id):
            return None, None, "bad_token", "request_token was issued for another request_id"
        skew = self.config.feedback_clock_skew_seconds
        expires = served.expires_at
        if expires is None:
            expires = served.served_at + self.config.feedback_window_seconds
        if now.timestamp() > expires + skew:
            age = now.timestamp() - served.served_at
            return (
                None,
                None,
                "expired_token",
                f"request_token is {age:.0f}s old and expired; feedback is accepted for "
                f"{self.config.feedback_window_seconds:g}s (RECKIT_FEEDBACK_WINDOW_SECONDS)",
            )
        if caller != served.caller and not authorized:
            return (
                None,
                None,
                "caller_mismatch",
                "request_token was issued to another caller (RECKIT_API_KEYS): report feedback "
                "with the API key that asked for the ranking",
            )
        return request_id, served, None, None

    def _window(self, served_at: datetime | None, now: datetime) -> tuple[datetime, datetime]:
        skew = timedelta(seconds=self.config.feedback_clock_skew_seconds)
        window = timedelta(seconds=self.config.feedback_window_seconds)
        if served_at is None:  # unattributed: relative to when it arrives
            return now - window, now + skew
        return served_at - skew, min(served_at + window, now) + skew

    def record(self, body: object, authorized: bool, caller: str | None = None) -> dict:
        """Check and buffer a feedback batch: all events are written, or none (4xx).

        ``authorized``: the sender holds the ingest or admin token; ``caller``: the caller its
        API key names (None without keys)."""
        if isinstance(body, FeedbackRequest):
            events = list(body.events)
        elif isinstance(body, list):
            events = list(body)
        else:
            events = [body]
        n = len(events)
        if n == 0:
            raise ServiceError(422, "no events")
        if n > self.config.max_feedback_events:
            raise ServiceError(
                413,
                f"{n} events; at most {self.config.max_feedback_events} per request "
                f"(RECKIT_MAX_FEEDBACK_EVENTS)",
            )
        now = utc_now()
        attributed: list[dict] = []
        apart: list[dict] = []
        rejected: list[tuple[int, str, str]] = []  # (index, reason, message)
        batch: dict[tuple[str, str], frozenset[str]] = {}  # (request, item) -> types taken here
        duplicates: Counter[str] = Counter()
        receipts: dict[str, str] = {}  # event index -> click receipt
        for i, raw in enumerate(events):
            try:
                ev, source, scene, reckit_type = _normalise(raw)
            except ValueError:  # pydantic's ValidationError: labels/extras unfit as our fields
                rejected.append(
                    (i, "invalid", "labels.request_id or extras.request_token is not valid")
                )
                continue
            if ev is None:  # a reckit event naming no request
                if not authorized:
                    rejected.append(
                        (
                            i,
                            "unknown_request",
                            "reckit's event names no request; send it with the ingest token "
                            "(X-Ingest-Token, RECKIT_INGEST_TOKEN)",
                        )
                    )
                    continue
                served, ts = None, datetime.fromtimestamp(raw.timestamp, UTC)
                low, high = self._window(None, now)
                if not low <= ts <= high:
                    rejected.append((i, "outside_window", _window_message(ts, low, high)))
                    continue
                apart.append(
                    _row(
                        raw.user_id,
                        raw.item_id,
                        RECKIT_EVENT_TYPES[raw.type],
                        None,
                        ts,
                        raw.position,
                        None,
                        None,
                        None,
                        RECKIT,
                        scene,
                        reckit_type,
                        ts_given=True,
                        caller=caller,
                    )
                )
                continue
            request_id, served, reason, message = self._attribute(ev, now, caller, authorized)
            if reason is not None:
                rejected.append((i, reason, message))
                continue
            if served is None and not authorized:
                rejected.append(
                    (
                        i,
                        "unknown_request",
                        "no request_token: a request_id alone is not a credential; send the "
                        "request_token /v1/rank returned with it, or the ingest token "
                        "(X-Ingest-Token) for events kept apart",
                    )
                )
                continue
            if served is not None and not self.tokens.served_item(request_id, served, ev.item_id):
                rejected.append(
                    (
                        i,
                        "item_not_served",
                        "item_id was not in the ranking that token was issued for",
                    )
                )
                continue
            if served is not None and ev.user_id is not None and ev.user_id != served.user_id:
                rejected.append(
                    (i, "user_mismatch", "user_id differs from the user the request served")
                )
                continue
            user_id = ev.user_id or (served.user_id if served else None)
            if user_id is None:
                rejected.append(
                    (i, "invalid", "user_id is required for an event of an unknown request")
                )
                continue
            ts = ev.ts if ev.ts is not None else now
            try:
                ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
            except (OverflowError, ValueError):
                rejected.append((i, "outside_window", "ts is out of range"))
                continue
            served_at = datetime.fromtimestamp(served.served_at, UTC) if served else None
            low, high = self._window(served_at, now)
            if not low <= ts <= high:
                rejected.append((i, "outside_window", _window_message(ts, low, high)))
                continue
            if served is not None:
                key = (request_id, ev.item_id)
                taken = self.engagements.seen(*key) | batch.get(key, frozenset())
                if ev.event_type == "click":  # proof of the click for a later conversion
                    receipts[str(i)] = self.tokens.click_receipt(request_id, ev.item_id)
                if ev.event_type in taken:
                    duplicates[ev.event_type] += 1
                    continue
                if (
                    ev.event_type == "conversion"
                    and "click" not in taken
                    and not self.tokens.is_click_receipt(request_id, ev.item_id, ev.click_receipt)
                ):
                    rejected.append(
                        (
                            i,
                            "conversion_without_click",
                            "a conversion is taken only after a click on that served item: "
                            "earlier in the same batch, reported to this process, or proven by "
                            "the click_receipt the click's answer returned",
                        )
                    )
                    continue
                batch[key] = batch.get(key, frozenset()) | {ev.event_type}
            row = _row(
                user_id,
                ev.item_id,
                ev.event_type,
                request_id if served is not None else ev.request_id,
                ts,
                ev.position,
                ev.device or (served.device if served else None),
                served.model_version if served else None,
                served.alias if served else None,
                source,
                scene,
                reckit_type,
                # attributed: one event per (request, item, type), whatever its ts
                ts_given=ev.ts is not None and served is None,
                caller=served.caller if served else caller,
            )
            (attributed if served is not None else apart).append(row)
        if rejected:  # all or nothing: a client retrying a fixed batch must not double count
            reasons = Counter(reason for _, reason, _ in rejected)
            for reason, k in reasons.items():
                self.metrics.feedback_rejected.labels(reason).inc(k)
            innocent = n - len(rejected)
            if innocent:
                self.metrics.feedback_rejected.labels("in_rejected_batch").inc(innocent)
            status = 403 if PROVENANCE_REASONS & reasons.keys() else 422
            details = [f"events[{i}]: {reason}: {message}" for i, reason, message in rejected]
            raise ServiceError(status, details[:20])
        written = len(attributed) + len(apart)
        who = caller or OPEN_CALLER
        if written:
            used = self.budget.take(who, written, now)
            if used is not None:
                self.metrics.feedback_rejected.labels("caller_volume").inc(n)
                midnight = datetime.combine(
                    now.date() + timedelta(days=1), datetime.min.time(), UTC
                )
                raise ServiceError(
                    429,
                    f"caller {who!r} has {used} feedback events written today "
                    f"({now.date().isoformat()} UTC); these {written} would exceed "
                    f"{self.budget.limit} per caller per day "
                    "(RECKIT_MAX_FEEDBACK_PER_CALLER_DAY); the budget resets at 00:00 UTC",
                    headers={"Retry-After": str(max(1, int((midnight - now).total_seconds())))},
                )
            self.metrics.feedback_caller_events.labels(who).inc(written)
        self.engagements.record([(r, i, t) for (r, i), types in batch.items() for t in types])
        for event_type, k in duplicates.items():
            self.metrics.feedback_duplicates.labels(event_type).inc(k)
        counts = Counter((r["model_version"], r["event_type"]) for r in attributed)
        for (version, event_type), k in counts.items():
            self.metrics.feedback.labels(version, event_type).inc(k)
        for event_type, k in Counter(r["event_type"] for r in apart).items():
            self.metrics.feedback.labels(UNKNOWN_VERSION, event_type).inc(k)
            self.metrics.feedback_unattributed.labels(event_type).inc(k)
        due = self.feedback.append(attributed) if attributed else False
        due = (self.unattributed.append(apart) if apart else False) or due
        if due:
            self.flush_soon()
        by_version: dict[str, dict[str, int]] = {}
        for (version, event_type), k in sorted(counts.items()):
            by_version.setdefault(version, {})[event_type] = k
        if apart:
            by_version[UNKNOWN_VERSION] = dict(
                sorted(Counter(r["event_type"] for r in apart).items())
            )
        return {
            "accepted": len(attributed) + len(apart),
            "attributed": len(attributed),
            "unattributed": len(apart),
            "duplicates": sum(duplicates.values()),
            "click_receipts": receipts,
            "by_model_version": by_version,
            "logged": self.feedback.enabled,
        }


def _normalise(
    raw: FeedbackEvent | ReckitFeedbackEvent,
) -> tuple[FeedbackEvent | None, str, str | None, str | None]:
    """(our event or None, source, scene, reckit type). A reckit event is ours when its labels
    carry a ``request_id`` (and its extras possibly a ``request_token``): then it is attributed
    like any other."""
    if isinstance(raw, FeedbackEvent):
        return raw, CLIENT, None, None
    labels = raw.labels or {}
    extras = raw.extras or {}
    request_id = labels.get("request_id")
    token = extras.get("request_token")
    receipt = extras.get("click_receipt")
    mapped = RECKIT_EVENT_TYPES[raw.type]
    if not request_id or mapped not in ("impression", "click", "conversion"):
        return None, RECKIT, raw.scene or None, raw.type
    ev = FeedbackEvent(
        request_id=request_id,
        request_token=token if isinstance(token, str) and token else None,
        click_receipt=receipt if isinstance(receipt, str) and receipt else None,
        item_id=raw.item_id,
        event_type=mapped,
        user_id=raw.user_id,
        ts=datetime.fromtimestamp(raw.timestamp, UTC),
        position=raw.position,
    )
    return ev, RECKIT, raw.scene or None, raw.type


def _row(
    user_id: str,
    item_id: str,
    event_type: str,
    request_id: str | None,
    ts: datetime,
    position: int | None,
    device: str | None,
    model_version: str | None,
    alias: str | None,
    source: str,
    scene: str | None,
    reckit_type: str | None,
    ts_given: bool,
    caller: str | None = None,
) -> dict:
    ts_ms = int(ts.timestamp() * 1000)
    key = request_id if request_id is not None else f"reckit\x1f{user_id}"
    return {
        "event_id": event_id(key, item_id, event_type, ts_ms if ts_given else None),
        "ts": ts,
        "user_id": user_id,
        "item_id": item_id,
        "event_type": event_type,
        "request_id": request_id,
        "position": position,
        "device": device,
        "model_version": model_version,
        "alias": alias,
        "source": source,
        "scene": scene,
        "reckit_type": reckit_type,
        "caller": caller,
    }


def _window_message(ts: datetime, low: datetime, high: datetime) -> str:
    return (
        f"ts {ts.isoformat()} is outside [{low.isoformat()}, {high.isoformat()}]: feedback must "
        f"fall within RECKIT_FEEDBACK_WINDOW_SECONDS of serving (clock skew "
        f"RECKIT_FEEDBACK_CLOCK_SKEW_SECONDS)"
    )
