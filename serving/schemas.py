"""Request bodies. Pydantic rejects wrong shapes and types with a 422 that names the field;
limits that depend on configuration (candidates, events) are checked by the handlers (413)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Device = Annotated[str, StringConstraints(max_length=64)]


class _Body(BaseModel):
    # Unknown fields are ignored (clients may send more than we read), values are never coerced
    # across types: "user_id": 7 is an error, not the string "7".
    model_config = ConfigDict(extra="ignore", strict=True)


class RankContext(_Body):
    device: Device | None = None


class RankRequest(_Body):
    user_id: Id
    item_ids: list[Id] = Field(min_length=1)
    context: RankContext = Field(default_factory=RankContext)
    request_id: RequestId | None = None


class PredictRequest(_Body):
    """reckit's ``POST /predict``: one dict of feature columns per row."""

    features_list: list[dict[str, Any]]


class PredictionsRequest(_Body):
    """reckit's ``POST /predictions/{model_name}``: feature dicts (rankers) or item ids (item2vec)."""

    data: list[Any]


class FeedbackEvent(_Body):
    model_config = ConfigDict(extra="ignore", strict=False)  # ts: ISO string or epoch ms

    request_id: RequestId
    item_id: Id
    event_type: Literal["impression", "click", "conversion"]
    user_id: Id | None = None  # default: the user the request was served to
    ts: datetime | None = None  # default: when the server received it; naive means UTC
    position: Annotated[int, Field(ge=0, le=100_000, strict=True)] | None = None
    device: Device | None = None  # default: the device the request was served to


class FeedbackRequest(_Body):
    events: list[FeedbackEvent] = Field(min_length=1)
