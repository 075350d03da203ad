"""The inference service's configuration, read once from the environment.

``RECKIT_REGISTRY_URI``        model registry (and the online feature snapshot published beside it);
                               default: the pipeline's (``reckit_assets.settings``)
``RECKIT_FEATURES_URI``        online feature snapshot root, if not the registry's (default: same)
``RECKIT_SERVING_MODELS``      registry models to serve, comma-separated (default
                               ``xgboost,item2vec``); ``/v1/rank`` uses the first ranker listed
``RECKIT_POLL_SECONDS``        how often the registry's aliases are polled (default 30)
``RECKIT_CANARY_SHARE``        share of users served by a ``canary`` alias (default 0.1)
``RECKIT_ADMIN_TOKEN``         token for ``POST /reload`` (``Authorization: Bearer``, ``X-API-Key``
                               or ``X-Admin-Token``; unset: reload is disabled); also admits feedback
                               that carries no request token
``RECKIT_API_KEYS``           per-caller API keys, ``caller:key,caller:key`` (``X-API-Key`` or
                               ``Authorization: Bearer``): when set, ``/v1/rank`` and ``/v1/feedback``
                               need one, and each request token names its caller (unset: open, for
                               the local demo only; production must set it)
``RECKIT_TRUSTED_PROXIES``     addresses whose ``X-Forwarded-For`` names the client, comma-separated
                               (default none: the peer address is the client)
``RECKIT_HEADER_TIMEOUT_SECONDS`` a request line and its headers must arrive within this (default
                               10; else the connection is closed)
``RECKIT_MAX_PENDING_CONNECTIONS`` / ``RECKIT_MAX_PENDING_PER_CLIENT`` connections still sending
                               their headers, in all / per client address (default 512 / 64);
                               beyond them the oldest such connection is closed
``RECKIT_INGEST_TOKEN``        token (``X-Ingest-Token`` or Bearer) that admits feedback without a
                               request token, e.g. reckit's own events (unset: only the admin's)
``RECKIT_FEEDBACK_SECRET``     HMAC key of the request tokens ``/v1/rank`` returns (unset: a random
                               key per process; set it when several workers or replicas serve)
``RECKIT_FEEDBACK_WINDOW_SECONDS`` feedback must arrive, and be timestamped, within this long after
                               the request was served (default 86400)
``RECKIT_FEEDBACK_CLOCK_SKEW_SECONDS`` tolerated client clock error (default 300)
``RECKIT_RATE_LIMIT_RANK`` / ``RECKIT_RATE_LIMIT_FEEDBACK``  requests per second per client on the
                               ranking / feedback endpoints (default 1000 / 50; 0 disables)
``RECKIT_RATE_LIMIT_BURST_SECONDS`` burst allowance, in seconds of the rate (default 2)
``RECKIT_BODY_TIMEOUT_SECONDS`` a request body must arrive within this (default 10; else 408)
``RECKIT_MISSING_FEATURES``    ``zero`` (reckit's: absent columns score as 0.0, counted in /metrics)
                               or ``reject`` (422 naming them); default ``zero``
``RECKIT_SERVED_IMPRESSIONS``  ranked positions logged as impressions when served: ``all``
                               (default), a number N (the top N), or ``0``/``none``
``RECKIT_EXPLORATION_SHARE``   share of rankings served in a uniformly random order instead of the
                               model's (default 0: none); every served ranking's decision log
                               row records the propensity of each item at its position, so a
                               candidate's CTR can be estimated off-policy from the traffic
``RECKIT_DECISION_LOG_SHARE``  share of rankings whose decision is logged (default 1; drawn at
                               random, so estimates over the logged share stay unbiased)
``RECKIT_FEATURE_LOG_SHARE``   share of rankings whose scored feature vectors are logged beside
                               the decision (default 0.01), for the pipeline's ``serving_skew``
``RECKIT_SHADOW_SHARE``       share of the logged rankings the registry's ``shadow`` version also
                               scores, off the request's path (default 1; serving/shadow.py)
``RECKIT_SHADOW_QUEUE``       rankings waiting for the shadow at most (default 256; beyond it a
                               ranking is logged without shadow scores, counted)
``RECKIT_DECISION_LOG_DAY``    pins the decision log's day partition (YYYY-MM-DD) instead of the
                               serving day's UTC date: for replays of past days (``reckit loop``)
``RECKIT_MAX_CANDIDATES``      candidates per ranking / rows per prediction request (default 500)
``RECKIT_MAX_BODY_BYTES``      request body limit (default 1 MiB)
``RECKIT_MAX_FEEDBACK_EVENTS`` events per feedback request (default 5000)
``RECKIT_MAX_FEEDBACK_PER_CALLER_DAY`` feedback events one caller (API key; callers without one
                               share ``open``) may have written per UTC day, per process
                               (default 1000000; 0 disables): beyond it 429 until midnight UTC,
                               counted in ``reckit_serving_feedback_rejected_events{reason=
                               "caller_volume"}``
``RECKIT_FEEDBACK_URI``        root of the served-traffic event log, landing-zone layout
                               (default ``$RECKIT_DATA_DIR/feedback``; ``none`` disables writing)
``RECKIT_FEEDBACK_FLUSH_ROWS`` / ``RECKIT_FEEDBACK_FLUSH_SECONDS``  batch size / age of a flush
                               (default 5000 rows / 10 s)
``RECKIT_SERVED_REQUESTS``     served requests whose reported engagement (impression, click,
                               conversion per item) is remembered, so each is taken once (default
                               100000)
``RECKIT_SCORING_THREADS``     threads one request's scoring may use (default 1)
``RECKIT_SERVING_HOST`` / ``RECKIT_SERVING_PORT``  bind address (default 127.0.0.1:8000)
``RECKIT_ACCESS_LOG``          uvicorn access log, 1/0 (default 0: /metrics counts requests)
``RECKIT_GIL_SWITCH_MS``       the interpreter's thread switch interval under ``python -m serving``
                               (default 1; CPython's own is 5): how long the event loop can wait
                               for the GIL while the feedback log flushes
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

DEFAULT_MODELS = ("xgboost", "item2vec")
# Registry models that answer similarity queries rather than scoring feature rows.
EMBEDDING_MODELS = frozenset({"item2vec", "popularity"})
# Other names a registry model answers to on /predictions/{name}: reckit's Go client and its
# Python service call the XGBoost ranker "xgb".
MODEL_ALIASES = {"xgb": "xgboost"}
MISSING_FEATURE_POLICIES = ("zero", "reject")


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True)
class ServingConfig:
    registry_uri: str
    features_uri: str | None = None  # None: the registry's root
    models: tuple[str, ...] = DEFAULT_MODELS
    poll_seconds: float = 30.0
    canary_share: float = 0.1
    admin_token: str | None = None
    max_candidates: int = 500
    max_body_bytes: int = 1 << 20
    max_feedback_events: int = 5000
    max_feedback_per_caller_day: int = 1_000_000  # 0: unbounded
    feedback_uri: str | None = None  # None: feedback is counted, not written
    feedback_flush_rows: int = 5000
    feedback_flush_seconds: float = 10.0
    served_requests: int = 100_000
    scoring_threads: int = 1
    host: str = "127.0.0.1"
    port: int = 8000
    access_log: bool = False
    ingest_token: str | None = None
    feedback_secret: str | None = None  # None: a random key per process (one worker only)
    feedback_window_seconds: float = 86_400.0
    feedback_clock_skew_seconds: float = 300.0
    rate_limit_rank: float = 1000.0  # requests/s per client; 0 disables
    rate_limit_feedback: float = 50.0
    rate_limit_burst_seconds: float = 2.0
    body_timeout_seconds: float = 10.0
    missing_features: str = "zero"  # "zero" (reckit's fill) or "reject"
    served_impressions: int | None = None  # top positions logged at serve time; None: all
    exploration_share: float = 0.0  # rankings served in a uniformly random order
    decision_log_share: float = 1.0  # rankings whose decision is logged (serving/decisions.py)
    feature_log_share: float = 0.01  # of the logged ones: their scored feature vectors too
    decision_log_day: str | None = None  # None: the serving day's UTC date
    shadow_share: float = 1.0  # of the logged rankings: scored by the shadow too
    shadow_queue: int = 256
    gil_switch_ms: float = 1.0
    # (caller, key) pairs; empty: /v1/rank is open (the local demo), see serving/README.md
    api_keys: tuple[tuple[str, str], ...] = ()
    trusted_proxies: tuple[str, ...] = ()  # empty: X-Forwarded-For is never trusted
    header_timeout_seconds: float = 10.0
    max_pending_connections: int = 512
    max_pending_per_client: int = 64

    def __repr__(self) -> str:  # secrets stay out of logs and tracebacks
        hidden = {"admin_token", "ingest_token", "feedback_secret"}
        shown = ", ".join(
            f"{k}={'***' if k in hidden and v else v!r}"
            for k, v in self.__dict__.items()
            if k != "api_keys"
        )
        return f"ServingConfig({shown}, api_keys=<{len(self.api_keys)} keys>)"

    @property
    def callers_by_key(self) -> dict[str, str]:
        return {key: caller for caller, key in self.api_keys}

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("RECKIT_SERVING_MODELS: at least one model must be served")
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"RECKIT_SERVING_MODELS: {','.join(self.models)} lists a model twice")
        shares = {
            "RECKIT_CANARY_SHARE": self.canary_share,
            "RECKIT_EXPLORATION_SHARE": self.exploration_share,
            "RECKIT_FEATURE_LOG_SHARE": self.feature_log_share,
            "RECKIT_DECISION_LOG_SHARE": self.decision_log_share,
            "RECKIT_SHADOW_SHARE": self.shadow_share,
        }
        for name, value in shares.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        if self.decision_log_day is not None:
            try:
                date.fromisoformat(self.decision_log_day)
            except ValueError:
                raise ConfigError(
                    f"RECKIT_DECISION_LOG_DAY={self.decision_log_day!r} is not a date (YYYY-MM-DD)"
                ) from None
        checks = {
            "RECKIT_POLL_SECONDS": self.poll_seconds,
            "RECKIT_MAX_CANDIDATES": self.max_candidates,
            "RECKIT_MAX_BODY_BYTES": self.max_body_bytes,
            "RECKIT_MAX_FEEDBACK_EVENTS": self.max_feedback_events,
            "RECKIT_FEEDBACK_FLUSH_ROWS": self.feedback_flush_rows,
            "RECKIT_FEEDBACK_FLUSH_SECONDS": self.feedback_flush_seconds,
            "RECKIT_SERVED_REQUESTS": self.served_requests,
            "RECKIT_SCORING_THREADS": self.scoring_threads,
            "RECKIT_FEEDBACK_WINDOW_SECONDS": self.feedback_window_seconds,
            "RECKIT_RATE_LIMIT_BURST_SECONDS": self.rate_limit_burst_seconds,
            "RECKIT_BODY_TIMEOUT_SECONDS": self.body_timeout_seconds,
            "RECKIT_GIL_SWITCH_MS": self.gil_switch_ms,
            "RECKIT_HEADER_TIMEOUT_SECONDS": self.header_timeout_seconds,
            "RECKIT_MAX_PENDING_CONNECTIONS": self.max_pending_connections,
            "RECKIT_MAX_PENDING_PER_CLIENT": self.max_pending_per_client,
            "RECKIT_SHADOW_QUEUE": self.shadow_queue,
        }
        for name, value in checks.items():
            if value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        non_negative = {
            "RECKIT_FEEDBACK_CLOCK_SKEW_SECONDS": self.feedback_clock_skew_seconds,
            "RECKIT_RATE_LIMIT_RANK": self.rate_limit_rank,
            "RECKIT_RATE_LIMIT_FEEDBACK": self.rate_limit_feedback,
            "RECKIT_SERVED_IMPRESSIONS": self.served_impressions or 0,
            "RECKIT_MAX_FEEDBACK_PER_CALLER_DAY": self.max_feedback_per_caller_day,
        }
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if self.missing_features not in MISSING_FEATURE_POLICIES:
            raise ConfigError(
                f"RECKIT_MISSING_FEATURES={self.missing_features!r}: use one of "
                f"{', '.join(MISSING_FEATURE_POLICIES)}"
            )

        keys = [key for _, key in self.api_keys]
        if len(set(keys)) != len(keys):
            raise ConfigError("RECKIT_API_KEYS: two callers share a key; give each its own")
        for k, (caller, key) in enumerate(self.api_keys):
            if not caller or not key or len(key) < 16:
                raise ConfigError(
                    f"RECKIT_API_KEYS: entry {k + 1} of {len(self.api_keys)} is not "
                    f"caller:key with a key of at least 16 characters"
                )

    @property
    def rankers(self) -> tuple[str, ...]:
        return tuple(m for m in self.models if m not in EMBEDDING_MODELS)

    @property
    def ranker(self) -> str | None:
        """The model ``/v1/rank`` and ``/predict`` use: the first ranker listed."""
        return self.rankers[0] if self.rankers else None

    @property
    def embedding(self) -> str | None:
        """The model ``/v1/similar`` uses: the first embedding model listed."""
        return next((m for m in self.models if m in EMBEDDING_MODELS), None)

    def resolve_model(self, name: str) -> str | None:
        """The served registry model ``name`` (or its reckit alias, e.g. ``xgb``) stands for."""
        name = MODEL_ALIASES.get(name, name)
        return name if name in self.models else None

    @property
    def primary(self) -> str:
        """The model whose production version must be loaded for /health to say ready."""
        return self.ranker or self.models[0]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingConfig:
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, kind: type, default: float) -> float:
            raw = text(name)
            if raw is None:
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None

        registry_uri = text("RECKIT_REGISTRY_URI")
        feedback_uri = text("RECKIT_FEEDBACK_URI")
        if registry_uri is None or feedback_uri is None:
            from reckit_assets.settings import load_settings

            settings = load_settings(dict(env))
            registry_uri = registry_uri or settings.registry_uri
            feedback_uri = feedback_uri or f"{settings.data_dir}/feedback"
        models = tuple(
            m.strip() for m in (text("RECKIT_SERVING_MODELS") or "").split(",") if m.strip()
        )
        access_log = (text("RECKIT_ACCESS_LOG") or "0").lower()
        if access_log not in ("0", "1", "true", "false", "yes", "no"):
            raise ConfigError(f"RECKIT_ACCESS_LOG={access_log!r}: use 1 or 0")
        served = (text("RECKIT_SERVED_IMPRESSIONS") or "all").lower()
        if served == "all":
            served_impressions = None
        elif served == "none":
            served_impressions = 0
        else:
            served_impressions = int(number("RECKIT_SERVED_IMPRESSIONS", int, 0))
        api_keys = []
        entries = [e.strip() for e in (text("RECKIT_API_KEYS") or "").split(",") if e.strip()]
        for k, entry in enumerate(entries):
            caller, sep, key = entry.partition(":")
            if not sep:  # never echo the entry: it holds a key
                raise ConfigError(
                    f"RECKIT_API_KEYS: entry {k + 1} of {len(entries)} has no ':'; "
                    f"use caller:key,caller:key"
                )
            api_keys.append((caller.strip(), key.strip()))
        proxies = tuple(
            p.strip() for p in (text("RECKIT_TRUSTED_PROXIES") or "").split(",") if p.strip()
        )
        return cls(
            registry_uri=registry_uri,
            features_uri=text("RECKIT_FEATURES_URI"),
            models=models or DEFAULT_MODELS,
            poll_seconds=number("RECKIT_POLL_SECONDS", float, 30.0),
            canary_share=number("RECKIT_CANARY_SHARE", float, 0.1),
            admin_token=text("RECKIT_ADMIN_TOKEN"),
            max_candidates=int(number("RECKIT_MAX_CANDIDATES", int, 500)),
            max_body_bytes=int(number("RECKIT_MAX_BODY_BYTES", int, 1 << 20)),
            max_feedback_events=int(number("RECKIT_MAX_FEEDBACK_EVENTS", int, 5000)),
            max_feedback_per_caller_day=int(
                number("RECKIT_MAX_FEEDBACK_PER_CALLER_DAY", int, 1_000_000)
            ),
            feedback_uri=None if feedback_uri.lower() == "none" else feedback_uri,
            feedback_flush_rows=int(number("RECKIT_FEEDBACK_FLUSH_ROWS", int, 5000)),
            feedback_flush_seconds=number("RECKIT_FEEDBACK_FLUSH_SECONDS", float, 10.0),
            served_requests=int(number("RECKIT_SERVED_REQUESTS", int, 100_000)),
            scoring_threads=int(number("RECKIT_SCORING_THREADS", int, 1)),
            host=text("RECKIT_SERVING_HOST") or "127.0.0.1",
            port=int(number("RECKIT_SERVING_PORT", int, 8000)),
            access_log=access_log in ("1", "true", "yes"),
            ingest_token=text("RECKIT_INGEST_TOKEN"),
            feedback_secret=text("RECKIT_FEEDBACK_SECRET"),
            feedback_window_seconds=number("RECKIT_FEEDBACK_WINDOW_SECONDS", float, 86_400.0),
            feedback_clock_skew_seconds=number("RECKIT_FEEDBACK_CLOCK_SKEW_SECONDS", float, 300.0),
            rate_limit_rank=number("RECKIT_RATE_LIMIT_RANK", float, 1000.0),
            rate_limit_feedback=number("RECKIT_RATE_LIMIT_FEEDBACK", float, 50.0),
            rate_limit_burst_seconds=number("RECKIT_RATE_LIMIT_BURST_SECONDS", float, 2.0),
            body_timeout_seconds=number("RECKIT_BODY_TIMEOUT_SECONDS", float, 10.0),
            missing_features=(text("RECKIT_MISSING_FEATURES") or "zero").lower(),
            served_impressions=served_impressions,
            exploration_share=number("RECKIT_EXPLORATION_SHARE", float, 0.0),
            decision_log_share=number("RECKIT_DECISION_LOG_SHARE", float, 1.0),
            feature_log_share=number("RECKIT_FEATURE_LOG_SHARE", float, 0.01),
            decision_log_day=text("RECKIT_DECISION_LOG_DAY"),
            shadow_share=number("RECKIT_SHADOW_SHARE", float, 1.0),
            shadow_queue=int(number("RECKIT_SHADOW_QUEUE", int, 256)),
            gil_switch_ms=number("RECKIT_GIL_SWITCH_MS", float, 1.0),
            api_keys=tuple(api_keys),
            trusted_proxies=proxies,
            header_timeout_seconds=number("RECKIT_HEADER_TIMEOUT_SECONDS", float, 10.0),
            max_pending_connections=int(number("RECKIT_MAX_PENDING_CONNECTIONS", int, 512)),
            max_pending_per_client=int(number("RECKIT_MAX_PENDING_PER_CLIENT", int, 64)),
        )
