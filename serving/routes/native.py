"""This service's own API (``/v1``): ranking with attribution tokens, item similarity and
feedback on served rankings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Body, Path, Query, Request

from serving.auth import given_token, matches
from serving.errors import ServiceError
from serving.responses import SafeJSONResponse, answer, responses
from serving.schemas import FeedbackBody, FeedbackBodyOut, RankBody, RankRequest, SimilarBody

if TYPE_CHECKING:
    from serving.service import Service


def native_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["native /v1"])
    config = service.config

    # -- ours -----------------------------------------------------------------------------------
    @router.post("/v1/rank", responses=responses(RankBody, 401, 404, 503, body=True, limited=True))
    async def rank(request: Request, body: RankRequest) -> SafeJSONResponse:
        """Rank candidates for a user. Needs an API key when ``RECKIT_API_KEYS`` is set."""
        caller = service.callers.require(request, "/v1/rank")
        result = service.rank(body, caller)
        return answer(result, version=result["model_version"])

    @router.get("/v1/similar/{item_id}", responses=responses(SimilarBody, 404, 422, 503))
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
        return answer(
            {
                "item_id": item_id,
                "model": model.name,
                "model_version": model.version,
                "mode": mode,
                "similar": neighbours,
            },
            version=model.version,
        )

    @router.post(
        "/v1/feedback",
        responses=responses(FeedbackBodyOut, 401, 403, body=True, limited=True),
    )
    async def feedback(request: Request, body: Annotated[FeedbackBody, Body()]) -> SafeJSONResponse:
        """Feedback on served rankings (ours: ``{"events": [...]}``), or reckit's own events
        (one object, a list, or inside ``events``). See serving/README.md for provenance."""
        given = given_token(request, "x-ingest-token")
        authorized = matches(given, config.ingest_token) or matches(given, config.admin_token)
        caller = service.callers.require(request, "/v1/feedback", also=authorized)
        return answer(service.record_feedback(body, authorized, caller))

    return router
