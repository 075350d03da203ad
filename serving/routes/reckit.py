"""reckit's own endpoints, as its Python service and Go client call them: health, ping, the
root description, batch scoring and the unified ``/predictions/{model_name}`` protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Path

from serving.errors import ServiceError
from serving.responses import SafeJSONResponse, answer, responses
from serving.schemas import (
    HealthBody,
    PingBody,
    PredictBody,
    PredictionsBody,
    PredictionsRequest,
    PredictRequest,
    RootBody,
)

if TYPE_CHECKING:
    from serving.service import Service


def reckit_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["reckit-compatible"])
    config = service.config

    # -- reckit-compatible ------------------------------------------------------------------------
    @router.get("/health", responses=responses(HealthBody, 503))
    async def health() -> SafeJSONResponse:
        """200 while something serves (``ok``, or ``degraded`` when a model, the features or a
        promoted version is missing or refused); 503 until the primary model is loaded."""
        ready, body = service.manager.health()
        if not ready:
            return answer({"detail": f"no {config.primary} version is loaded yet", **body}, 503)
        return answer(body, 200)

    @router.get("/ping", responses=responses(PingBody, 503))
    async def ping() -> SafeJSONResponse:
        """reckit's / TorchServe's liveness call: ``{"status": "Healthy"}`` once a model serves."""
        if service.manager.state.get(config.primary) is None:
            raise ServiceError(503, "Model not loaded")
        return answer({"status": "Healthy"})

    @router.get("/", responses=responses(RootBody))
    async def root() -> SafeJSONResponse:
        state = service.manager.state
        model = state.get(config.ranker) or state.get(config.primary)
        return answer(
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

    @router.post("/predict", responses=responses(PredictBody, 404, 503, body=True, limited=True))
    async def predict(body: PredictRequest) -> SafeJSONResponse:
        """reckit's batch scoring: ``features_list`` or ``data`` rows -> ``scores`` and the same
        values as ``predictions``."""
        model = service.ranker_model(service.manager.state)
        rows = body.data or body.features_list
        scores, filled = service.score_rows(model, rows)
        return answer(
            {
                "scores": scores,
                "predictions": scores,
                "model_version": model.version,
                "filled_missing": filled,
            },
            version=model.version,
        )

    @router.post(
        "/predictions/{model_name}",
        responses=responses(PredictionsBody, 404, 503, body=True, limited=True),
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
            return answer(
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
        return answer(
            {"predictions": vectors, "unknown_item_ids": unknown, "model_version": model.version},
            version=model.version,
        )

    return router
