"""Request and response bodies, as the OpenAPI document describes them.

Pydantic rejects wrong shapes and types with a 422 that names the field (never echoing the value:
see ``app._validation_error``); limits that depend on configuration (candidates, events) are
checked by the handlers (413).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# A request token holds 3 bytes per served item: ~2.4 KB at the default 500 candidates.
Token = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Device = Annotated[str, StringConstraints(max_length=64)]
Short = Annotated[str, StringConstraints(max_length=256)]
# A feature value as reckit's clients send it: a number (dense columns) or a string id (sparse).
FeatureValue = float | int | str | bool | None
FeatureRow = dict[Annotated[str, StringConstraints(max_length=256)], FeatureValue]


class _Body(BaseModel):
    # Unknown fields are ignored (clients may send more than we read), values are never coerced
    # across types: "user_id": 7 is an error, not the string "7".
    model_config = ConfigDict(extra="ignore", strict=True)


class RankContext(_Body):
    device: Device | None = None


class RankRequest(_Body):
    user_id: Id
    # uniqueItems: stated for clients; enforced by the handler (422 naming the positions)
    item_ids: list[Id] = Field(min_length=1, json_schema_extra={"uniqueItems": True})
    context: RankContext = Field(default_factory=RankContext)
    request_id: RequestId | None = None


class PredictRequest(_Body):
    """reckit's ``POST /predict``: ``features_list`` (its original key) or ``data`` (its unified
    protocol's), one dict of feature columns per row. ``data`` wins when both are non-empty, as
    in reckit's server."""

    # {} is refused (422): one of the two keys must be present (the validator below).
    model_config = ConfigDict(
        extra="ignore",
        strict=True,
        json_schema_extra={"anyOf": [{"required": ["features_list"]}, {"required": ["data"]}]},
    )

    features_list: list[FeatureRow] = Field(default_factory=list)
    data: list[FeatureRow] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_of_them(self) -> PredictRequest:
        if not self.model_fields_set & {"features_list", "data"}:
            raise ValueError("features_list or data is required")
        return self


class PredictionsRequest(_Body):
    """reckit's ``POST /predictions/{model_name}``: feature dicts, or rows of numbers in the
    model's ``feature_columns`` order (rankers), or item ids (item2vec)."""

    data: list[FeatureRow | list[float | int] | Id] = Field(
        description="Rankers (xgb = xgboost, deepfm): each row an object of feature columns or "
        "a list of numbers in feature_columns order; a string row is refused (422). "
        "Embedding models (item2vec): item ids (strings) only."
    )


class FeedbackEvent(_Body):
    """This service's feedback event: names the request it is about."""

    model_config = ConfigDict(extra="ignore", strict=False)  # ts: ISO string or epoch ms

    request_id: RequestId
    request_token: Token | None = None  # the token /v1/rank returned: attributes in any worker
    # a conversion: the click_receipt the click's answer returned (any worker accepts it)
    click_receipt: Token | None = None
    item_id: Id
    event_type: Literal["impression", "click", "conversion"]
    user_id: Id | None = None  # default: the user the request was served to
    ts: datetime | None = None  # default: when the server received it; naive means UTC
    position: Annotated[int, Field(ge=0, le=100_000, strict=True)] | None = None
    device: Device | None = None  # default: the device the request was served to


class ReckitFeedbackEvent(_Body):
    """reckit's own event (Go ``examples/feedback.FeedbackEvent``), as its collectors send it.

    It names no request: admitted with the ingest token and written apart, unless its
    ``labels.request_id`` / ``extras.request_token`` point at a request this service served.
    """

    model_config = ConfigDict(extra="ignore", strict=True)

    user_id: Id
    item_id: Id
    scene: Short = ""
    type: Literal["impression", "click", "conversion", "skip", "like", "dislike"]
    timestamp: Annotated[int, Field(ge=0, le=10**11)]  # unix seconds
    position: Annotated[int, Field(ge=0, le=100_000)] = 0
    score: float = 0.0
    labels: dict[Short, Short] | None = None
    extras: dict[Short, Any] | None = None


AnyFeedbackEvent = FeedbackEvent | ReckitFeedbackEvent


class FeedbackRequest(_Body):
    events: list[AnyFeedbackEvent] = Field(min_length=1)


# A feedback body: ours, one reckit event (a collector's message), or a list of reckit events.
FeedbackBody = (
    FeedbackRequest
    | ReckitFeedbackEvent
    | Annotated[list[ReckitFeedbackEvent], Field(min_length=1)]
)


# -- responses ----------------------------------------------------------------------------------
class FieldError(BaseModel):
    """One validation problem: where (``loc``), what (``msg``), its kind (``type``). The
    offending value is never echoed."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: ``detail`` is a message, a list of messages, or field errors."""

    detail: str | list[str] | list[FieldError]


class AliasState(BaseModel):
    registry: str | None = Field(description="the version the registry's alias names")
    served: str | None = Field(description="the version this replica serves for it")
    agree: bool
    fallback: bool = Field(description="served is an earlier verified production version")
    why: str | None = Field(description="why served differs from registry (None: they agree)")


class HealthBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "degraded", "unavailable"]
    model_loaded: bool
    model_version: str | None
    models: dict[str, dict[str, str]]
    online_features: dict[str, Any] | None
    reloads: int
    last_reload_at: float | None
    last_reload_error: dict[str, Any] | None
    failing: dict[str, str]
    refused: dict[str, str]
    aliases: dict[str, dict[str, AliasState]]


class PingBody(BaseModel):
    status: Literal["Healthy"]


class RootBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    service: str
    status: Literal["ok", "loading"]
    model_version: str | None
    feature_count: int
    feature_columns: list[str]
    models: dict[str, dict[str, str]]


class PredictBody(BaseModel):
    scores: list[float]
    predictions: list[float]
    model_version: str
    filled_missing: int = Field(description="feature values absent and scored as 0.0")


class PredictionsBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    predictions: list[float] | list[list[float] | None]
    model_version: str
    unknown_item_ids: list[str] | None = None
    filled_missing: int | None = None


class ReloadBody(BaseModel):
    status: Literal["reloaded", "unchanged", "failed"]
    model_version: str | None
    models: dict[str, dict[str, str]]
    trigger: str
    seconds: float
    changed: list[str]
    errors: dict[str, str]


class RankFeatures(BaseModel):
    dt: str
    data_version: str
    new_user: bool
    new_items: int


class RankBody(BaseModel):
    request_id: str = Field(description="the server's id of this ranking (never the caller's)")
    client_request_id: str | None = Field(description="the request_id the caller sent, if any")
    request_token: str
    model: str
    model_version: str
    alias: str
    scores: list[float]
    ranked_item_ids: list[str]
    features: RankFeatures


class Neighbour(BaseModel):
    item_id: str
    score: float


class SimilarBody(BaseModel):
    item_id: str
    model: str
    model_version: str
    mode: Literal["cosine", "ranked"]
    similar: list[Neighbour]


class FeedbackBodyOut(BaseModel):
    accepted: int
    attributed: int
    unattributed: int
    duplicates: int = Field(
        description="events already taken for that (request, item, type): accepted, not written"
    )
    click_receipts: dict[str, str] = Field(
        description="per accepted click (by its index in the batch): the receipt a later "
        "conversion on that item carries as click_receipt"
    )
    by_model_version: dict[str, dict[str, int]]
    logged: bool
