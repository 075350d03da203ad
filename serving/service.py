"""The service one server process holds: its models, callers, feedback and metrics; the HTTP
routes (``serving/routes/``) are thin shells around it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from datetime import UTC, datetime

import numpy as np

from reckit_assets.core.io.uri import storage_from_uri
from reckit_assets.core.release.registry import SHADOW, Registry
from serving.auth import Callers
from serving.config import ServingConfig
from serving.decisions import Decision, DecisionLog
from serving.errors import ServiceError
from serving.features import OnlineFeatures
from serving.feedback import (
    UNATTRIBUTED_PREFIX,
    Engagements,
    FeedbackLog,
    RequestTokens,
    ServedList,
    ServedRequest,
)
from serving.intake import FeedbackIntake
from serving.metrics import ServingMetrics
from serving.middleware import RateLimiter
from serving.models import LoadedModel, check_feature_rows
from serving.schemas import (
    RankRequest,
)
from serving.shadow import ShadowScorer
from serving.state import ModelManager, ReloadReport, ServingState

log = logging.getLogger("serving")


class Service:
    """Everything one server process holds; the HTTP layer is a thin shell around it."""

    def __init__(self, config: ServingConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.metrics = ServingMetrics()
        self.manager = ModelManager(config, registry, on_reload=self.metrics.on_reload)
        self.engagements = Engagements(config.served_requests)
        self.callers = Callers(config)
        self.tokens = RequestTokens(config.feedback_secret)
        storage = storage_from_uri(config.feedback_uri) if config.feedback_uri else None
        self.feedback = FeedbackLog(storage, config.feedback_flush_rows)
        self.unattributed = FeedbackLog(
            storage, config.feedback_flush_rows, prefix=UNATTRIBUTED_PREFIX
        )
        self.decisions = DecisionLog(storage, config.feedback_flush_rows)
        self.shadow = ShadowScorer(self.decisions, self.metrics, config.shadow_queue)
        self._rng = np.random.default_rng()
        self._rng_lock = threading.Lock()
        self.limiter = RateLimiter(
            {"rank": config.rate_limit_rank, "feedback": config.rate_limit_feedback},
            config.rate_limit_burst_seconds,
        )
        self.intake = FeedbackIntake(
            config,
            self.engagements,
            self.tokens,
            self.metrics,
            self.feedback,
            self.unattributed,
            self._flush_soon,
        )
        self.metrics.add_live_state(self._live_state)
        self._flushing: asyncio.Task | None = None
        if not self.tokens.shared:
            log.warning(
                "RECKIT_FEEDBACK_SECRET is not set: request tokens verify only in this process "
                "(set it when several workers or replicas serve)"
            )

    # -- lifecycle ------------------------------------------------------------------------------
    async def reload(self, trigger: str, force: bool = False) -> ReloadReport:
        # Off the event loop: verifying and loading a version takes seconds; requests go on.
        return await asyncio.to_thread(self.manager.refresh, trigger, force)

    async def poll_forever(self) -> None:
        while True:
            try:
                await self.reload("poll")
            except Exception:  # the poll must outlive any one failure
                log.exception("registry poll failed")
            await asyncio.sleep(self.config.poll_seconds)

    async def flush(self) -> int:
        written = 0
        for feedback_log in (self.feedback, self.unattributed, self.decisions):
            before = feedback_log.last_error
            n = await asyncio.to_thread(feedback_log.flush)
            self.metrics.feedback_rows_written.inc(n)
            written += n
            if feedback_log.last_error is not None and feedback_log.last_error != before:
                self.metrics.feedback_flush_failures.inc()
        return written

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.feedback_flush_seconds)
            try:
                await self.flush()
            except Exception:
                log.exception("feedback flush failed")

    def _flush_soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the server (a benchmark, a test): the timer flushes
            return
        if self._flushing is None or self._flushing.done():
            self._flushing = loop.create_task(self.flush())

    # -- the work -------------------------------------------------------------------------------
    def rank(self, req: RankRequest, caller: str | None = None) -> dict:
        """Score ``req.item_ids`` for ``req.user_id`` with the production (or canary) ranker.

        The request id is always the server's own (a caller's ``request_id`` is kept beside it
        as ``client_request_id``): ids a client chooses are neither unique nor credentials."""
        n = len(req.item_ids)
        if n > self.config.max_candidates:
            raise ServiceError(
                413,
                f"item_ids has {n} candidates; at most {self.config.max_candidates} per request "
                f"(RECKIT_MAX_CANDIDATES)",
            )
        if len(set(req.item_ids)) != n:
            seen: set[str] = set()
            repeats = []
            for k, item in enumerate(req.item_ids):
                if item in seen:
                    repeats.append(k)
                seen.add(item)
            raise ServiceError(
                422,
                f"item_ids has duplicates: {len(repeats)} repeated (at positions "
                f"{repeats[:10]}); send each candidate once",
            )
        if self.config.ranker is None:
            raise ServiceError(404, "no ranker is served (see RECKIT_SERVING_MODELS)")
        state = self.manager.state  # once: the whole request uses this one consistent state
        model, alias = state.route(self.config.ranker, req.user_id, self.config.canary_share)
        if model is None:
            raise ServiceError(503, f"no {self.config.ranker or 'ranker'} version is loaded yet")
        features = state.features
        if features is None:
            raise ServiceError(503, "no online feature snapshot is loaded yet", model.version)
        device = req.context.device
        logged, explored, with_features, shadowed = self._draw()
        shadow = state.get(self.config.ranker, SHADOW) if shadowed else None
        # The scored matrix: logged as the ranking's features, and reused by a shadow with the
        # same inputs (it then only runs its trees)
        capture: list[np.ndarray] | None = [] if with_features or shadow is not None else None
        scores = model.score_request(features, req.user_id, req.item_ids, device, capture)
        policy = np.argsort(-scores, kind="stable")  # ties keep the caller's order
        order = self._rng_permutation(n) if explored else policy
        ranked = [req.item_ids[i] for i in order]
        request_id = uuid.uuid4().hex
        now = time.time()
        if logged:
            self._log_decision(
                request_id, now, req, model, alias, features, scores, policy, order, explored,
                capture[0][order] if capture else None, with_features, shadow,
            )  # fmt: skip
        served = ServedRequest(
            model.name,
            model.version,
            req.user_id,
            device,
            alias=alias,
            served_at=now,
            caller=caller,
            client_request_id=req.request_id,
            expires_at=now + self.config.feedback_window_seconds,
        )
        token = self.tokens.issue(request_id, served, req.item_ids)
        top = self.config.served_impressions
        logged = ranked if top is None else ranked[:top]
        if logged and self.feedback.append_served(
            ServedList(
                request_id,
                req.user_id,
                logged,
                model.version,
                alias,
                device,
                datetime.fromtimestamp(now, UTC),
                caller,
            )
        ):
            self._flush_soon()
        if logged and self.feedback.enabled:
            self.metrics.served_impressions.labels(model.version, alias).inc(len(logged))
        self.metrics.scores.observe(model.version, scores)
        self.metrics.candidates.labels(model.version).observe(n)
        new_user, new_items = features.novelty(req.user_id, req.item_ids)
        return {
            "request_id": request_id,
            "client_request_id": req.request_id,
            "request_token": token,
            "model": model.name,
            "model_version": model.version,
            "alias": alias,
            "scores": scores.tolist(),
            "ranked_item_ids": ranked,
            "features": {
                "dt": features.dt,
                "data_version": features.data_version,
                "new_user": new_user,
                "new_items": new_items,
            },
        }

    def _draw(self) -> tuple[bool, bool, bool, bool]:
        """(log this ranking's decision, serve it in a random order, log its features, have
        the shadow score it); the last two only for logged rankings."""
        c = self.config
        with self._rng_lock:
            u = self._rng.random(4)
        logged = self.decisions.enabled and u[0] < c.decision_log_share
        return (
            logged,
            bool(u[1] < c.exploration_share),
            logged and bool(u[2] < c.feature_log_share),
            logged and bool(u[3] < c.shadow_share),
        )

    def _rng_permutation(self, n: int) -> np.ndarray:
        with self._rng_lock:
            return self._rng.permutation(n)

    def _log_decision(
        self,
        request_id: str,
        now: float,
        req: RankRequest,
        model: LoadedModel,
        alias: str,
        features: OnlineFeatures,
        scores: np.ndarray,
        policy: np.ndarray,
        order: np.ndarray,
        explored: bool,
        matrix: np.ndarray | None,
        with_features: bool,
        shadow: LoadedModel | None,
    ) -> None:
        policy_position = np.empty(len(policy), dtype=np.int64)
        policy_position[policy] = np.arange(len(policy))
        decision = Decision(
            request_id=request_id,
            served_at=now,
            user_id=req.user_id,
            device=req.context.device,
            model=model.name,
            model_version=model.version,
            alias=alias,
            item_ids=[req.item_ids[i] for i in order],
            policy_positions=policy_position[order],
            scores=scores[order],
            exploration_share=self.config.exploration_share,
            explored=explored,
            features_dt=features.dt,
            features_version=features.data_version,
            feature_columns=tuple(model.input_columns) if with_features else (),
            features=matrix if with_features else None,
            day=self.config.decision_log_day,
        )
        same_inputs = (  # the captured matrix is what both would score (numeric inputs only)
            shadow is not None
            and model.dense
            and shadow.dense
            and tuple(shadow.input_columns) == tuple(model.input_columns)
        )
        queued = shadow is not None and self.shadow.submit(
            decision, shadow, features, matrix if same_inputs else None
        )  # the shadow logs it when done
        if not queued and self.decisions.append(decision):
            self._flush_soon()
        self.metrics.decisions_logged.labels(model.version, alias, str(explored).lower()).inc()

    def ranker_model(self, state: ServingState, name: str | None = None) -> LoadedModel:
        """The production version of ``name`` (default: the configured ranker), or a 4xx/503."""
        name = name or self.config.ranker
        if name is None:
            raise ServiceError(404, "no ranker is served (see RECKIT_SERVING_MODELS)")
        model = state.get(name)
        if model is None:
            raise ServiceError(503, f"no {name or 'ranker'} version is loaded yet")
        return model

    def score_rows(self, model: LoadedModel, rows: list) -> tuple[list[float], int]:
        """``/predict`` and ``/predictions/{ranker}``: (scores, feature values filled with 0.0)
        for client-supplied rows (feature dicts, or numbers in ``input_columns`` order)."""
        if len(rows) > self.config.max_candidates:
            raise ServiceError(
                413,
                f"{len(rows)} rows; at most {self.config.max_candidates} per request "
                f"(RECKIT_MAX_CANDIDATES)",
                model.version,
            )
        bad = [i for i, row in enumerate(rows) if not isinstance(row, dict | list)]
        if bad:
            raise ServiceError(
                422,
                f"rows {bad[:10]} are neither objects of feature columns nor lists of numbers",
                model.version,
            )
        if not rows:
            return [], 0
        frame, problems, filled = check_feature_rows(
            rows, model, fill_missing=self.config.missing_features == "zero"
        )
        if problems:
            raise ServiceError(422, problems, model.version)
        for column, k in filled.items():
            self.metrics.missing_features.labels(column).inc(k)
        scores = model.score(frame)
        self.metrics.scores.observe(model.version, scores)
        return scores.tolist(), sum(filled.values())

    def embedding(self, state: ServingState, name: str | None, user_id: str | None) -> LoadedModel:
        if name is None:
            raise ServiceError(404, "no embedding model is served (see RECKIT_SERVING_MODELS)")
        model, _ = state.route(name, user_id, self.config.canary_share)
        if model is None:
            raise ServiceError(503, f"no {name} version is loaded yet")
        return model

    # -- feedback ---------------------------------------------------------------------------
    def record_feedback(self, body: object, authorized: bool, caller: str | None = None) -> dict:
        """See :meth:`serving.intake.FeedbackIntake.record`."""
        return self.intake.record(body, authorized, caller)

    # -- metrics read at scrape time ------------------------------------------------------------
    def _live_state(self) -> list[tuple[str, str, list[str], list[tuple]]]:
        state = self.manager.state
        loaded = [
            (name, alias, m.version, 1)
            for name, by_alias in sorted(state.models.items())
            for alias, m in sorted(by_alias.items())
        ]
        features = [(state.features.dt, state.features.data_version, 1)] if state.features else []
        fast = [(int(state.features.fast),)] if state.features else []
        failing = [(slot, 1) for slot in sorted(self.manager.failing)]
        refused = [(slot, v, 1) for slot, v in sorted(self.manager.refusing.items())]
        _, body = self.manager.health()
        health = [(status, int(body["status"] == status)) for status in HEALTH_STATES]
        mismatch = [
            (name, alias, int(not info["agree"]))
            for name, by_alias in body["aliases"].items()
            for alias, info in by_alias.items()
        ]
        return [
            (
                "reckit_serving_model_loaded_info",
                "1 for the version each model/alias is serving now",
                ["model", "alias", "version"],
                loaded,
            ),
            (
                "reckit_serving_online_features_info",
                "1 for the online feature snapshot being served",
                ["dt", "data_version"],
                features,
            ),
            (
                "reckit_serving_online_features_fast_path",
                "1 while features are gathered from precomputed rows, 0 when every request calls "
                "assemble_features (a feature serving.features does not know yet)",
                [],
                fast,
            ),
            (
                "reckit_serving_reload_failing",
                "1 for each model/alias (or online_features) not serving what the registry says",
                ["slot"],
                failing,
            ),
            (
                "reckit_serving_version_refused",
                "1 for each model/alias whose registry version this server refuses (its bytes "
                "failed verification or the smoke test); the previous version keeps serving",
                ["slot", "version"],
                refused,
            ),
            (
                "reckit_serving_alias_mismatch",
                "1 while a model/alias serves another version than the registry's alias names "
                "(refused, failing to load, or a fallback); /health's aliases say why",
                ["model", "alias"],
                mismatch,
            ),
            (
                "reckit_serving_health_status",
                "1 for the status /health reports now (ok, degraded, unavailable)",
                ["status"],
                health,
            ),
            (
                "reckit_serving_feedback_buffered_rows",
                "Events waiting for a flush",
                [],
                [(self.feedback.buffered + self.unattributed.buffered,)],
            ),
            (
                "reckit_serving_decision_log_buffered_rows",
                "Decision-log rows (one per ranked item of a logged ranking) waiting for a flush",
                [],
                [(self.decisions.buffered,)],
            ),
            (
                "reckit_serving_served_requests_remembered",
                "Served requests whose reported engagement is remembered (one click each)",
                [],
                [(len(self.engagements),)],
            ),
        ]


HEALTH_STATES = ("ok", "degraded", "unavailable")
