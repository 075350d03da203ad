"""The inference service: reckit's endpoints plus ranking, similarity, feedback and metrics.

Run it with ``python -m serving`` (or ``reckit serve``), or
``uvicorn serving.app:create_app --factory``. Configuration comes from the environment (see
:mod:`serving.config`); endpoints are documented in ``serving/README.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, timedelta

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.routing import Match

from reckit_assets.core.io.uri import storage_from_uri
from reckit_assets.core.release.registry import Registry
from serving.config import ServingConfig
from serving.feedback import (
    UNKNOWN_VERSION,
    FeedbackLog,
    ServedRequest,
    ServedRequests,
    event_id,
    utc_now,
)
from serving.metrics import ServingMetrics
from serving.middleware import ServingMiddleware
from serving.models import LoadedModel, check_feature_rows
from serving.schemas import FeedbackRequest, PredictionsRequest, PredictRequest, RankRequest
from serving.state import ModelManager, ReloadReport, ServingState

log = logging.getLogger("serving")

FUTURE_SLACK = timedelta(hours=1)  # client clocks drift; further ahead is a bug
PAST_LIMIT = timedelta(days=30)  # feedback older than this cannot be training data any more


class ServiceError(Exception):
    """A request the service cannot answer: the HTTP status and a message saying why."""

    def __init__(self, status: int, detail: object, version: str | None = None) -> None:
        super().__init__(str(detail))
        self.status, self.detail, self.version = status, detail, version


class Service:
    """Everything one server process holds; the HTTP layer is a thin shell around it."""

    def __init__(self, config: ServingConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.metrics = ServingMetrics()
        self.manager = ModelManager(config, registry, on_reload=self.metrics.on_reload)
        self.served = ServedRequests(config.served_requests)
        storage = storage_from_uri(config.feedback_uri) if config.feedback_uri else None
        self.feedback = FeedbackLog(storage, config.feedback_flush_rows)
        self.metrics.add_live_state(self._live_state)
        self._flushing: asyncio.Task | None = None

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
        before = self.feedback.last_error
        written = await asyncio.to_thread(self.feedback.flush)
        self.metrics.feedback_rows_written.inc(written)
        if self.feedback.last_error is not None and self.feedback.last_error != before:
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
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self.flush())

    # -- the work -------------------------------------------------------------------------------
    def rank(self, req: RankRequest) -> dict:
        """Score ``req.item_ids`` for ``req.user_id`` with the production (or canary) ranker."""
        n = len(req.item_ids)
        if n > self.config.max_candidates:
            raise ServiceError(
                413,
                f"item_ids has {n} candidates; at most {self.config.max_candidates} per request "
                f"(RECKIT_MAX_CANDIDATES)",
            )
        if len(set(req.item_ids)) != n:
            dups = sorted(i for i, count in Counter(req.item_ids).items() if count > 1)
            raise ServiceError(422, f"item_ids has duplicates: {dups[:10]}")
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
        request_id = req.request_id or uuid.uuid4().hex
        self.served.remember(
            request_id, ServedRequest(model.name, model.version, req.user_id, device)
        )
        self.metrics.scores.observe(model.version, scores)
        self.metrics.candidates.labels(model.version).observe(n)
        new_user, new_items = features.novelty(req.user_id, req.item_ids)
        return {
            "request_id": request_id,
            "model": model.name,
            "model_version": model.version,
            "alias": alias,
            "scores": scores.tolist(),
            "ranked_item_ids": [req.item_ids[i] for i in order],
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

    def score_rows(self, model: LoadedModel, rows: list) -> list[float]:
        """``/predict`` and ``/predictions/{ranker}``: score client-supplied feature rows."""
        if len(rows) > self.config.max_candidates:
            raise ServiceError(
                413,
                f"{len(rows)} rows; at most {self.config.max_candidates} per request "
                f"(RECKIT_MAX_CANDIDATES)",
                model.version,
            )
        bad = [i for i, row in enumerate(rows) if not isinstance(row, dict)]
        if bad:
            raise ServiceError(
                422, f"rows {bad[:10]} are not objects of feature columns", model.version
            )
        if not rows:
            return []
        frame, problems = check_feature_rows(rows, model)
        if problems:
            raise ServiceError(422, problems, model.version)
        scores = model.score(frame)
        self.metrics.scores.observe(model.version, scores)
        return scores.tolist()

    def embedding(self, state: ServingState, name: str | None, user_id: str | None) -> LoadedModel:
        if name is None:
            raise ServiceError(404, "no embedding model is served (see RECKIT_SERVING_MODELS)")
        model, _ = state.route(name, user_id, self.config.canary_share)
        if model is None:
            raise ServiceError(503, f"no {name} version is loaded yet")
        return model

    def record_feedback(self, req: FeedbackRequest) -> dict:
        n = len(req.events)
        if n > self.config.max_feedback_events:
            raise ServiceError(
                413,
                f"{n} events; at most {self.config.max_feedback_events} per request "
                f"(RECKIT_MAX_FEEDBACK_EVENTS)",
            )
        now = utc_now()
        rows, problems, versions = [], [], []
        for i, ev in enumerate(req.events):
            served = self.served.get(ev.request_id)
            user_id = ev.user_id or (served.user_id if served else None)
            if user_id is None:
                problems.append(
                    f"events[{i}]: user_id is required for request {ev.request_id!r}, which this "
                    f"server does not remember serving"
                )
                continue
            ts = ev.ts if ev.ts is not None else now
            try:
                ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
            except (OverflowError, ValueError):
                problems.append(f"events[{i}]: ts {ev.ts!s} is out of range")
                continue
            if ts > now + FUTURE_SLACK or ts < now - PAST_LIMIT:
                problems.append(
                    f"events[{i}]: ts {ts.isoformat()} is more than 1 hour ahead of or 30 days "
                    f"behind the server's clock"
                )
                continue
            ts_ms = int(ts.timestamp() * 1000)
            version = served.model_version if served else None
            versions.append(version or UNKNOWN_VERSION)
            rows.append(
                {
                    "event_id": event_id(
                        ev.request_id, ev.item_id, ev.event_type, ts_ms if ev.ts else None
                    ),
                    "ts": ts,
                    "user_id": user_id,
                    "item_id": ev.item_id,
                    "event_type": ev.event_type,
                    "request_id": ev.request_id,
                    "position": ev.position,
                    "device": ev.device or (served.device if served else None),
                    "model_version": version,
                }
            )
        if problems:  # all or nothing: a client retrying a fixed batch must not double count
            raise ServiceError(422, problems[:20])
        counts = Counter(zip(versions, (r["event_type"] for r in rows), strict=True))
        for (version, event_type), k in counts.items():
            self.metrics.feedback.labels(version, event_type).inc(k)
        if self.feedback.append(rows):
            self._flush_soon()
        by_version: dict[str, dict[str, int]] = {}
        for (version, event_type), k in sorted(counts.items()):
            by_version.setdefault(version, {})[event_type] = k
        return {
            "accepted": len(rows),
            "unattributed": sum(1 for v in versions if v == UNKNOWN_VERSION),
            "by_model_version": by_version,
            "logged": self.feedback.enabled,
        }

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
                "reckit_serving_feedback_buffered_rows",
                "Events waiting for a flush",
                [],
                [(self.feedback.buffered,)],
            ),
            (
                "reckit_serving_served_requests_remembered",
                "Request ids kept for attribution",
                [],
                [(len(self.served),)],
            ),
        ]


def _version_headers(version: str | None) -> dict[str, str]:
    return {"X-Model-Version": version} if version else {}


def _json(payload: dict, status: int = 200, version: str | None = None) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=_version_headers(version))


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

    app = FastAPI(title="reckit inference service", lifespan=lifespan)
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
    )

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return _json({"detail": exc.detail}, exc.status, exc.version)

    @app.exception_handler(UnicodeEncodeError)
    async def _unencodable(_: Request, exc: UnicodeEncodeError) -> JSONResponse:
        # Only a request can bring such text (e.g. a lone surrogate "\\ud800" in JSON): the
        # client's error, not the server's.
        return _json({"detail": f"request text is not valid Unicode: {exc.reason}"}, 400)

    # -- reckit-compatible ------------------------------------------------------------------------
    @app.get("/health")
    async def health() -> JSONResponse:
        ready, body = service.manager.health()
        return _json(body, 200 if ready else 503)

    @app.get("/")
    async def root() -> JSONResponse:
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

    @app.post("/predict")
    async def predict(body: PredictRequest) -> JSONResponse:
        model = service.ranker_model(service.manager.state)
        scores = service.score_rows(model, body.features_list)
        return _json({"scores": scores, "model_version": model.version}, version=model.version)

    @app.post("/predictions/{model_name}")
    async def predictions(model_name: str, body: PredictionsRequest) -> JSONResponse:
        if model_name not in config.models:
            raise ServiceError(
                404, f"model {model_name!r} is not served; served: {list(config.models)}"
            )
        state = service.manager.state
        model = state.get(model_name)
        if model is None:
            raise ServiceError(503, f"no {model_name} version is loaded yet")
        if model.is_ranker:
            scores = service.score_rows(model, body.data)
            return _json(
                {"predictions": scores, "model_version": model.version}, version=model.version
            )
        if len(body.data) > config.max_candidates:
            raise ServiceError(
                413, f"{len(body.data)} item ids; at most {config.max_candidates}", model.version
            )
        if not all(isinstance(i, str) for i in body.data):
            raise ServiceError(
                422, f"{model_name}: data must be a list of item ids (strings)", model.version
            )
        vectors = [model.vector(i) for i in body.data]
        unknown = [i for i, v in zip(body.data, vectors, strict=True) if v is None]
        return _json(
            {"predictions": vectors, "unknown_item_ids": unknown, "model_version": model.version},
            version=model.version,
        )

    @app.post("/reload")
    async def reload(request: Request) -> JSONResponse:
        if not config.admin_token:
            raise ServiceError(403, "reload is disabled: RECKIT_ADMIN_TOKEN is not set")
        given = request.headers.get("x-admin-token") or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not hmac.compare_digest(given.encode(), config.admin_token.encode()):
            return JSONResponse(
                {"detail": "missing or wrong admin token (Authorization: Bearer <token>)"},
                status_code=401,
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
    @app.post("/v1/rank")
    async def rank(body: RankRequest) -> JSONResponse:
        result = service.rank(body)
        return _json(result, version=result["model_version"])

    @app.get("/v1/similar/{item_id}")
    async def similar(
        item_id: str,
        k: int = Query(10, ge=1, le=100),
        user_id: str | None = Query(None, max_length=256),
    ) -> JSONResponse:
        model = service.embedding(service.manager.state, config.embedding, user_id)
        if not model.knows_item(item_id):
            raise ServiceError(
                404,
                f"item {item_id!r} is not in {model.name} {model.version} "
                f"({len(model.item_ids)} items): it had too few clicks in the training window",
                model.version,
            )
        neighbours = [{"item_id": i, "score": s} for i, s in model.similar(item_id, k)]
        return _json(
            {
                "item_id": item_id,
                "model": model.name,
                "model_version": model.version,
                "similar": neighbours,
            },
            version=model.version,
        )

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackRequest) -> JSONResponse:
        return _json(service.record_feedback(body))

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
