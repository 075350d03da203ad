"""The inference service: reckit's endpoints plus ranking, similarity, feedback and metrics.

Run it with ``python -m serving`` (or ``reckit serve``), or
``uvicorn serving.app:create_app --factory``. Configuration comes from the environment (see
:mod:`serving.config`); endpoints are documented in ``serving/README.md``.

Invariant: no client input produces a 5xx. Every error body is ``{"detail": ...}``
(:class:`serving.schemas.ErrorBody`), encoded as ASCII JSON without NaN, and never echoes a
rejected value, so the response itself can always be encoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Body, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.routing import Match

from reckit_assets.core.io.uri import storage_from_uri
from reckit_assets.core.release.registry import Registry
from serving.auth import Callers, given_token, matches
from serving.config import ServingConfig
from serving.errors import ServiceError, safe_loc
from serving.feedback import (
    UNATTRIBUTED_PREFIX,
    Engagements,
    FeedbackLog,
    RequestTokens,
    ServedList,
    ServedRequest,
)
from serving.intake import FeedbackIntake
from serving.kserve import v1_router, v2_router
from serving.metrics import ServingMetrics
from serving.middleware import RateLimiter, ServingMiddleware
from serving.models import LoadedModel, check_feature_rows
from serving.schemas import (
    ErrorBody,
    FeedbackBody,
    FeedbackBodyOut,
    HealthBody,
    PingBody,
    PredictBody,
    PredictionsBody,
    PredictionsRequest,
    PredictRequest,
    RankBody,
    RankRequest,
    ReloadBody,
    RootBody,
    SimilarBody,
)
from serving.state import ModelManager, ReloadReport, ServingState

log = logging.getLogger("serving")


class SafeJSONResponse(JSONResponse):
    """ASCII JSON (a lone surrogate becomes ``\\ud800``, valid JSON text), no NaN/Infinity."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


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
        for feedback_log in (self.feedback, self.unattributed):
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
        scores = model.score_request(features, req.user_id, req.item_ids, device)
        order = np.argsort(-scores, kind="stable")  # ties keep the caller's order
        ranked = [req.item_ids[i] for i in order]
        request_id = uuid.uuid4().hex
        now = time.time()
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
                "reckit_serving_served_requests_remembered",
                "Served requests whose reported engagement is remembered (one click each)",
                [],
                [(len(self.engagements),)],
            ),
        ]


HEALTH_STATES = ("ok", "degraded", "unavailable")


def _version_headers(version: str | None) -> dict[str, str]:
    return {"X-Model-Version": version} if version else {}


def _json(payload: dict, status: int = 200, version: str | None = None) -> SafeJSONResponse:
    return SafeJSONResponse(payload, status_code=status, headers=_version_headers(version))


# -- OpenAPI: every status each endpoint can answer, with its body schema ----------------------
_WHY = {
    400: "Body is not valid JSON text (NaN/Infinity literals, invalid Unicode) or a bad header",
    401: "Missing or wrong token",
    403: "Forbidden: feature disabled, or feedback not attributable to a served request",
    404: "Unknown model, item or no such model served",
    408: "Request body not received within RECKIT_BODY_TIMEOUT_SECONDS",
    409: "The registry names a version this server refuses; the old one keeps serving",
    413: "Body, candidates, rows or events beyond the configured limits",
    422: "Request does not match the schema (field errors, never echoing values)",
    429: "Per-client rate limit exceeded (Retry-After says when to retry)",
    503: "No model or feature snapshot is loaded yet",
}
_BODY_ERRORS = (400, 408, 413, 422)


def _responses(ok: type | None, *statuses: int, body: bool = False, limited: bool = False) -> dict:
    out: dict[int | str, dict] = {}
    if ok is not None:
        out[200] = {"model": ok, "description": "Success"}
    codes = set(statuses) | (set(_BODY_ERRORS) if body else set()) | ({429} if limited else set())
    for code in sorted(codes):
        out[code] = {"model": ErrorBody, "description": _WHY[code]}
    return out


def create_app(config: ServingConfig | None = None, registry: Registry | None = None) -> FastAPI:
    """The ASGI app. ``config`` defaults to the environment's (``ServingConfig.from_env``)."""
    config = config or ServingConfig.from_env()
    service = Service(config, registry)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The first load runs in the background: the server answers at once (/health 503 while
        # loading) instead of refusing connections for as long as a slow registry takes.
        tasks = [
            asyncio.create_task(service.poll_forever()),
            asyncio.create_task(service.flush_forever()),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await service.flush()  # served traffic is not lost on a clean shutdown

    app = FastAPI(
        title="reckit inference service",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.service = service

    def resolve(scope: dict) -> str | None:
        for route in app.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return getattr(route, "path", None)
        return None

    app.add_middleware(
        ServingMiddleware,
        metrics=service.metrics,
        max_body_bytes=config.max_body_bytes,
        resolve=resolve,
        body_timeout=config.body_timeout_seconds,
        limiter=service.limiter,
    )

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> SafeJSONResponse:
        response = _json({"detail": exc.detail}, exc.status, exc.version)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> SafeJSONResponse:
        # FastAPI's own handler echoes each rejected value ("input"): a NaN, an infinity or a
        # lone surrogate there makes the error response itself unencodable (a 500).
        errors = []
        for err in exc.errors()[:50]:
            msg = str(err.get("msg", "invalid"))
            ctx = err.get("ctx") or {}
            if err.get("type") == "json_invalid" and isinstance(ctx.get("error"), str):
                msg = f"{msg}: {ctx['error']}"
            errors.append(
                {
                    "loc": safe_loc(err.get("loc", ())),
                    "msg": msg,
                    "type": str(err.get("type", "invalid")),
                }
            )
        return _json({"detail": errors}, 422)

    @app.exception_handler(UnicodeEncodeError)
    async def _unencodable(_: Request, exc: UnicodeEncodeError) -> SafeJSONResponse:
        # Only a request can bring such text (e.g. a lone surrogate "\\ud800" in JSON): the
        # client's error, not the server's.
        return _json({"detail": f"request text is not valid Unicode: {exc.reason}"}, 400)

    # -- reckit-compatible ------------------------------------------------------------------------
    @app.get("/health", responses=_responses(HealthBody, 503))
    async def health() -> SafeJSONResponse:
        """200 while something serves (``ok``, or ``degraded`` when a model, the features or a
        promoted version is missing or refused); 503 until the primary model is loaded."""
        ready, body = service.manager.health()
        if not ready:
            return _json({"detail": f"no {config.primary} version is loaded yet", **body}, 503)
        return _json(body, 200)

    @app.get("/ping", responses=_responses(PingBody, 503))
    async def ping() -> SafeJSONResponse:
        """reckit's / TorchServe's liveness call: ``{"status": "Healthy"}`` once a model serves."""
        if service.manager.state.get(config.primary) is None:
            raise ServiceError(503, "Model not loaded")
        return _json({"status": "Healthy"})

    @app.get("/", responses=_responses(RootBody))
    async def root() -> SafeJSONResponse:
        state = service.manager.state
        model = state.get(config.ranker) or state.get(config.primary)
        return _json(
            {
                "service": "reckit inference service",
                "status": "ok" if model is not None else "loading",
                "model_version": model.version if model else None,
                "feature_count": len(model.input_columns) if model else 0,
                "feature_columns": list(model.input_columns) if model else [],
                "models": state.versions(),
            },
            version=model.version if model else None,
        )

    @app.post("/predict", responses=_responses(PredictBody, 404, 503, body=True, limited=True))
    async def predict(body: PredictRequest) -> SafeJSONResponse:
        """reckit's batch scoring: ``features_list`` or ``data`` rows -> ``scores`` and the same
        values as ``predictions``."""
        model = service.ranker_model(service.manager.state)
        rows = body.data or body.features_list
        scores, filled = service.score_rows(model, rows)
        return _json(
            {
                "scores": scores,
                "predictions": scores,
                "model_version": model.version,
                "filled_missing": filled,
            },
            version=model.version,
        )

    @app.post(
        "/predictions/{model_name}",
        responses=_responses(PredictionsBody, 404, 503, body=True, limited=True),
    )
    async def predictions(
        model_name: Annotated[str, Path(max_length=256)], body: PredictionsRequest
    ) -> SafeJSONResponse:
        """reckit's unified protocol. ``xgb`` names the XGBoost ranker, as in reckit."""
        name = config.resolve_model(model_name)
        if name is None:
            raise ServiceError(
                404,
                f"model_name is not served; served: {list(config.models)} (xgb = xgboost)",
            )
        state = service.manager.state
        model = state.get(name)
        if model is None:
            raise ServiceError(503, f"no {name} version is loaded yet")
        if model.is_ranker:
            scores, filled = service.score_rows(model, body.data)
            return _json(
                {"predictions": scores, "model_version": model.version, "filled_missing": filled},
                version=model.version,
            )
        if len(body.data) > config.max_candidates:
            raise ServiceError(
                413, f"{len(body.data)} item ids; at most {config.max_candidates}", model.version
            )
        if not all(isinstance(i, str) for i in body.data):
            raise ServiceError(
                422, f"{name}: data must be a list of item ids (strings)", model.version
            )
        vectors = [model.vector(i) for i in body.data]
        unknown = [i for i, v in zip(body.data, vectors, strict=True) if v is None]
        return _json(
            {"predictions": vectors, "unknown_item_ids": unknown, "model_version": model.version},
            version=model.version,
        )

    @app.post("/reload", responses=_responses(ReloadBody, 401, 403, 409, body=True))
    async def reload(request: Request) -> SafeJSONResponse:
        """Force a reload. Token: ``Authorization: Bearer``, ``X-API-Key`` (reckit's header) or
        ``X-Admin-Token``."""
        if not config.admin_token:
            raise ServiceError(403, "reload is disabled: RECKIT_ADMIN_TOKEN is not set")
        given = given_token(request, "x-api-key", "x-admin-token")
        if not matches(given, config.admin_token):
            raise ServiceError(
                401,
                "missing or wrong admin token (Authorization: Bearer <token> or X-API-Key)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        report = await service.reload("api", force=True)
        state = service.manager.state
        primary = state.get(config.primary)
        body = {
            "status": ("reloaded" if report.changed else "unchanged") if report.ok else "failed",
            "model_version": primary.version if primary else None,
            "models": state.versions(),
            **report.as_dict(),
        }
        # 409: the registry names a version this server refuses; it goes on serving the old one.
        return _json(body, 200 if report.ok else 409, primary.version if primary else None)

    # -- ours -----------------------------------------------------------------------------------
    @app.post("/v1/rank", responses=_responses(RankBody, 401, 404, 503, body=True, limited=True))
    async def rank(request: Request, body: RankRequest) -> SafeJSONResponse:
        """Rank candidates for a user. Needs an API key when ``RECKIT_API_KEYS`` is set."""
        caller = service.callers.require(request, "/v1/rank")
        result = service.rank(body, caller)
        return _json(result, version=result["model_version"])

    @app.get("/v1/similar/{item_id}", responses=_responses(SimilarBody, 404, 422, 503))
    async def similar(
        item_id: Annotated[str, Path(max_length=256)],
        k: int = Query(10, ge=1, le=100),
        user_id: str | None = Query(None, max_length=256),
        mode: Literal["ranked", "cosine"] = Query(
            "ranked",
            description="ranked: cosine plus the model's popularity prior (the default); "
            "cosine: reckit's plain cosine over item2vec.json, in its order",
        ),
    ) -> SafeJSONResponse:
        model = service.embedding(service.manager.state, config.embedding, user_id)
        if not model.knows_item(item_id):
            raise ServiceError(
                404,
                f"item_id is not in {model.name} {model.version} "
                f"({len(model.item_ids)} items): it had too few clicks in the training window",
                model.version,
            )
        found = model.cosine(item_id, k) if mode == "cosine" else model.similar(item_id, k)
        neighbours = [{"item_id": i, "score": s} for i, s in found]
        return _json(
            {
                "item_id": item_id,
                "model": model.name,
                "model_version": model.version,
                "mode": mode,
                "similar": neighbours,
            },
            version=model.version,
        )

    @app.post(
        "/v1/feedback",
        responses=_responses(FeedbackBodyOut, 401, 403, body=True, limited=True),
    )
    async def feedback(request: Request, body: Annotated[FeedbackBody, Body()]) -> SafeJSONResponse:
        """Feedback on served rankings (ours: ``{"events": [...]}``), or reckit's own events
        (one object, a list, or inside ``events``). See serving/README.md for provenance."""
        given = given_token(request, "x-ingest-token")
        authorized = matches(given, config.ingest_token) or matches(given, config.admin_token)
        caller = service.callers.require(request, "/v1/feedback", also=authorized)
        return _json(service.record_feedback(body, authorized, caller))

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # -- KServe V1 and V2 (Open Inference Protocol), same scoring path -------------------------
    app.include_router(v1_router(service, _json, _responses))
    app.include_router(v2_router(service, _json, _responses))
    return app
