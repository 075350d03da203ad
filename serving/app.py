"""The inference service's ASGI app: reckit's endpoints plus ranking, similarity, feedback,
metrics and the KServe protocols, one router each (``serving/routes/``), around one
:class:`serving.service.Service`.

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
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.routing import Match

from reckit_assets.core.release.registry import Registry
from serving.config import ServingConfig
from serving.errors import ServiceError, safe_loc
from serving.middleware import ServingMiddleware
from serving.responses import SafeJSONResponse, answer
from serving.routes import admin_router, native_router, reckit_router, v1_router, v2_router
from serving.service import Service


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
            await asyncio.to_thread(service.shadow.close)  # its rankings reach the last flush
            await service.flush()  # served traffic is not lost on a clean shutdown

    app = FastAPI(
        title="reckit inference service",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.service = service

    # One router per protocol; KServe V1 and V2 (Open Inference Protocol) share the scoring path.
    routers = [
        reckit_router(service),
        native_router(service),
        admin_router(service),
        v1_router(service),
        v2_router(service),
    ]

    def resolve(scope: dict) -> str | None:
        # (the routers' own routes: FastAPI includes a router as one route of its own)
        for router in routers:
            for route in router.routes:
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
        response = answer({"detail": exc.detail}, exc.status, exc.version)
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
        return answer({"detail": errors}, 422)

    @app.exception_handler(UnicodeEncodeError)
    async def _unencodable(_: Request, exc: UnicodeEncodeError) -> SafeJSONResponse:
        # Only a request can bring such text (e.g. a lone surrogate "\\ud800" in JSON): the
        # client's error, not the server's.
        return answer({"detail": f"request text is not valid Unicode: {exc.reason}"}, 400)

    for router in routers:
        app.include_router(router)
    return app
