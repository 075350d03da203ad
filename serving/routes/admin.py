"""Operating the service: a forced reload (admin token) and the Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from serving.auth import given_token, matches
from serving.errors import ServiceError
from serving.responses import SafeJSONResponse, answer, responses
from serving.schemas import ReloadBody

if TYPE_CHECKING:
    from serving.service import Service


def admin_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["admin"])
    config = service.config

    @router.post("/reload", responses=responses(ReloadBody, 401, 403, 409, body=True))
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
        return answer(body, 200 if report.ok else 409, primary.version if primary else None)

    @router.get(
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

    return router
