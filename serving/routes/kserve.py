"""KServe's V1 and V2 (Open Inference Protocol) data planes over the served models.

So that reckit's Go ``KServeClient`` (``service/kserve.go``, V1 and V2) and other KServe / Triton
HTTP clients work unmodified. Both routers score through :meth:`serving.service.Service.score_rows`,
the path ``/predict`` and ``/predictions/{model}`` take, so a row scores identically on every
protocol; item2vec answers with the vectors ``/predictions/item2vec`` gives.

Tensor layouts a ranker accepts on ``/v2/models/{name}/infer`` (one of):

* one numeric tensor ``[n, k]`` (any name; reckit's default is ``input0``), columns in the
  model's ``feature_columns`` order, or in the order the tensor's ``parameters.columns`` names;
* one ``BYTES`` tensor ``[n]`` whose elements are JSON objects of feature columns (reckit's
  ``WithKServeV2FeaturesAsJSON``: it names it ``features``);
* one tensor per feature column, each ``[n]`` or ``[n, 1]`` (Triton's usual layout; id columns
  of DeepFM as ``BYTES``).

Error bodies are this service's ``{"detail": ...}`` plus KServe's ``"error"`` (one string), which
Triton's and KServe's clients read; like every error here they never echo a rejected value.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from starlette.responses import Response

from serving.errors import ServiceError
from serving.responses import answer, responses
from serving.schemas import FeatureRow, Id, Short

if TYPE_CHECKING:
    from serving.models import LoadedModel
    from serving.service import Service
    from serving.state import ServingState

ModelName = Annotated[str, Path(max_length=256)]

V2_DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)
_INT_RANGES = {
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
}
_FLOATS = ("FP16", "FP32", "FP64")
SCORE_OUTPUT = "output-0"  # KServe's own predictors' name for their one output
EMBEDDING_OUTPUT, FOUND_OUTPUT = "embedding", "found"
LAYOUTS = (
    "one numeric tensor [n, k] in feature_columns order (or parameters.columns' order), "
    "one BYTES tensor [n] of JSON objects of feature columns, "
    "or one tensor per feature column, each [n] or [n, 1]"
)


# -- bodies ------------------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class V1PredictRequest(_Body):
    """KServe V1 (TensorFlow Serving's row format): ``instances`` or ``inputs``, one per row."""

    model_config = ConfigDict(
        extra="ignore",
        strict=True,
        json_schema_extra={"anyOf": [{"required": ["instances"]}, {"required": ["inputs"]}]},
    )

    instances: list[FeatureRow | list[float | int] | Id] | None = Field(
        None,
        description="Rankers: objects of feature columns, or lists of numbers in "
        "feature_columns order. item2vec: item ids.",
    )
    inputs: list[FeatureRow | list[float | int] | Id] | None = Field(
        None, description="The same as instances (used when instances is absent)"
    )

    @model_validator(mode="after")
    def _one_of_them(self) -> V1PredictRequest:
        if self.instances is None and self.inputs is None:
            raise ValueError("instances or inputs is required")
        return self


Dimension = Annotated[int, Field(ge=0, le=2**31)]


class InferInput(_Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    shape: list[Dimension] = Field(max_length=8)
    datatype: Literal[V2_DATATYPES]  # type: ignore[valid-type]
    parameters: dict[Short, Any] | None = Field(
        None,
        description="columns: the feature column of each position of a numeric [n, k] tensor "
        "(default: the model's feature_columns order)",
    )
    data: list[Any] = Field(
        description="row-major values, flat or nested as shape says: numbers for numeric "
        "datatypes, true/false for BOOL, strings for BYTES"
    )


class InferRequestedOutput(_Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    parameters: dict[Short, Any] | None = None


class InferRequest(_Body):
    """Open Inference Protocol (KServe V2) inference request."""

    id: Short | None = None
    parameters: dict[Short, Any] | None = None
    inputs: list[InferInput] = Field(min_length=1, max_length=64)
    outputs: list[InferRequestedOutput] | None = Field(None, max_length=8)


class V1Models(BaseModel):
    models: list[str]


class V1ModelReady(BaseModel):
    name: str
    ready: bool


class V1PredictBody(BaseModel):
    predictions: list[float] | list[list[float] | None]


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class V2Live(BaseModel):
    live: bool


class V2Ready(BaseModel):
    ready: bool


class V2ModelReady(BaseModel):
    name: str
    ready: bool


class TensorMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float] | list[bool]


class V2InferBody(BaseModel):
    model_name: str
    model_version: str
    id: str
    outputs: list[InferOutput]


# -- KServe's "error" key beside "detail" ------------------------------------------------------
def _message(detail: object) -> str:
    if isinstance(detail, list):
        parts = []
        for d in detail:
            if isinstance(d, dict):
                loc = ".".join(str(p) for p in d.get("loc", ()))
                parts.append(f"{loc}: {d.get('msg', 'invalid')}")
            else:
                parts.append(str(d))
        return "; ".join(parts)
    return str(detail)


class KServeRoute(APIRoute):
    """A route whose error bodies also carry ``"error"`` (KServe / Triton clients read it). The
    app's own handlers build the response (same status, detail, headers); only the key is added.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except (ServiceError, RequestValidationError) as exc:
                handlers = request.app.exception_handlers
                own = next(handlers[c] for c in type(exc).__mro__ if c in handlers)
                response = await own(request, exc)
            body = json.loads(bytes(response.body))
            body.setdefault("error", _message(body.get("detail")))
            headers = {
                k: v
                for k, v in response.headers.items()
                if k.lower() not in ("content-length", "content-type")
            }
            return type(response)(body, status_code=response.status_code, headers=headers)

        return route


# -- shared ------------------------------------------------------------------------------------
def _served(service: Service, model_name: str) -> str:
    name = service.config.resolve_model(model_name)
    if name is None:
        raise ServiceError(
            404,
            f"model_name is not served; served: {list(service.config.models)} (xgb = xgboost)",
        )
    return name


def _loaded(
    service: Service, state: ServingState, model_name: str, version: str | None = None
) -> LoadedModel:
    """The production version of the model ``model_name`` names, or the loaded alias whose
    version is ``version`` (404 when none is); 503 while nothing is loaded."""
    name = _served(service, model_name)
    by_alias = state.models.get(name, {})
    if version is not None:
        for model in by_alias.values():
            if model.version == version:
                return model
        if by_alias:
            served = sorted(m.version for m in by_alias.values())
            raise ServiceError(404, f"{name}: that version is not served; served: {served}")
    model = state.get(name)
    if model is None:
        raise ServiceError(503, f"no {name} version is loaded yet")
    return model


def _vectors(service: Service, model: LoadedModel, items: Sequence[object]) -> list:
    if len(items) > service.config.max_candidates:
        raise ServiceError(
            413,
            f"{len(items)} item ids; at most {service.config.max_candidates} per request "
            f"(RECKIT_MAX_CANDIDATES)",
            model.version,
        )
    bad = [
        i for i, item in enumerate(items) if not isinstance(item, str) or not 0 < len(item) <= 256
    ]
    if bad:
        raise ServiceError(
            422,
            f"{model.name}: item ids must be strings of 1..256 characters; not at positions "
            f"{bad[:10]}",
            model.version,
        )
    return [model.vector(i) for i in items]  # type: ignore[arg-type]


def _dimension(model: LoadedModel) -> int:
    vectors = getattr(model.model, "vectors", None)
    return int(vectors.shape[1]) if vectors is not None and vectors.ndim == 2 else -1


def _platform(model: LoadedModel) -> str:
    return {"xgboost": "xgboost_json", "deepfm": "pytorch_torchscript"}.get(model.kind, model.kind)


# -- V1 ----------------------------------------------------------------------------------------
def v1_router(service: Service) -> APIRouter:
    """KServe V1: ``GET /v1/models[/{name}]``, ``POST /v1/models/{name}:predict``."""
    router = APIRouter(route_class=KServeRoute, tags=["KServe V1"])

    @router.get("/v1/models", responses=responses(V1Models))
    async def v1_models() -> Response:
        """The served models (``xgb`` also answers for ``xgboost``)."""
        return answer({"models": list(service.config.models)})

    @router.get("/v1/models/{model_name}", responses=responses(V1ModelReady, 404, 422, 503))
    async def v1_model_ready(model_name: ModelName) -> Response:
        """Model readiness (reckit's ``KServeClient.Health`` with V1): 200 ``ready: true`` once
        the production version is loaded, 503 before."""
        name = _served(service, model_name)
        model = service.manager.state.get(name)
        if model is None:
            raise ServiceError(503, f"no {name} version is loaded yet")
        return answer({"name": model_name, "ready": True}, version=model.version)

    @router.post(
        "/v1/models/{model_name}:predict",
        responses=responses(V1PredictBody, 404, 503, body=True, limited=True),
    )
    async def v1_predict(model_name: ModelName, body: V1PredictRequest) -> Response:
        """``{"instances": [...]}`` -> ``{"predictions": [...]}``: a ranker's rows (objects of
        feature columns, or numbers in feature_columns order) score exactly as on ``/predict``;
        item2vec's item ids give their vectors (``null`` for an unknown item)."""
        model = _loaded(service, service.manager.state, model_name)
        rows = body.instances if body.instances is not None else body.inputs or []
        if model.is_ranker:
            scores, _ = service.score_rows(model, rows)
            return answer({"predictions": scores}, version=model.version)
        return answer({"predictions": _vectors(service, model, rows)}, version=model.version)

    return router


# -- V2: decoding tensors ------------------------------------------------------------------------
def _flatten(tensor: InferInput, where: str) -> list:
    """``data`` as a flat row-major list, checked against ``shape`` and ``datatype``."""
    values: list = []
    depth_limit = max(len(tensor.shape), 1)
    # Depth-first, keeping order (no recursion): nested lists up to the tensor's rank.
    pending: list[tuple[Any, int]] = [(v, 1) for v in reversed(tensor.data)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, list):
            if depth >= depth_limit:
                raise ServiceError(422, f"{where}: data is nested deeper than its shape")
            pending.extend((v, depth + 1) for v in reversed(value))
        else:
            values.append(value)
    expected = math.prod(tensor.shape)
    if len(values) != expected:
        raise ServiceError(
            422,
            f"{where}: data holds {len(values)} values; shape {tensor.shape} needs {expected}",
        )
    kind = tensor.datatype
    for k, value in enumerate(values):
        ok = (
            isinstance(value, str)
            if kind == "BYTES"
            else isinstance(value, bool)
            if kind == "BOOL"
            else not isinstance(value, bool) and isinstance(value, int | float)
            if kind in _FLOATS
            else not isinstance(value, bool)
            and isinstance(value, int)
            and _INT_RANGES[kind][0] <= value <= _INT_RANGES[kind][1]
        )
        if not ok:
            raise ServiceError(422, f"{where}: data[{k}] is {_kind_of(value)}, not a {kind} value")
    return values


def _kind_of(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, int):
        return f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, float):
        return "a fractional number"
    return type(value).__name__


def _column_length(tensor: InferInput, where: str) -> int:
    shape = tensor.shape
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return shape[0]
    raise ServiceError(422, f"{where}: a per-column tensor has shape [n] or [n, 1]")


def _ranker_rows(model: LoadedModel, inputs: list[InferInput]) -> list:
    """The request's rows as ``check_feature_rows`` takes them (lists in input_columns order,
    or objects of feature columns)."""
    columns = model.input_columns
    names = [t.name for t in inputs]
    if len(inputs) > 1 or (inputs[0].name in columns and len(inputs[0].shape) != 2):
        # one tensor per column
        if len(set(names)) != len(names) or not set(names) <= set(columns):
            raise ServiceError(
                422,
                f"{len(inputs)} input tensors: with more than one, each must be named by a "
                f"distinct feature column of {model.name} {model.version} ({list(columns)}); "
                f"accepted layouts: {LAYOUTS}",
                model.version,
            )
        lengths = [_column_length(t, f"inputs[{k}]") for k, t in enumerate(inputs)]
        if len(set(lengths)) > 1:
            raise ServiceError(
                422, f"input tensors have different row counts: {lengths}", model.version
            )
        flat = [_flatten(t, f"inputs[{k}]") for k, t in enumerate(inputs)]
        return [
            {name: values[r] for name, values in zip(names, flat, strict=True)}
            for r in range(lengths[0])
        ]
    tensor = inputs[0]
    if tensor.datatype == "BYTES":
        return _json_rows(tensor, model)
    if tensor.datatype == "BOOL":
        raise ServiceError(422, "inputs[0]: BOOL is not a feature datatype", model.version)
    if len(tensor.shape) != 2:
        raise ServiceError(
            422,
            f"inputs[0]: a numeric tensor has shape [n, k] (rows, feature columns); "
            f"accepted layouts: {LAYOUTS}",
            model.version,
        )
    n, k = tensor.shape
    order = _column_order(tensor, model)
    if order is None and len(model.dense_columns) != len(columns):
        sparse = [c for c in columns if c not in model.dense_columns]
        raise ServiceError(
            422,
            f"inputs[0]: a numeric tensor cannot carry {model.name}'s id fields {sparse}: send "
            f"one tensor per column (ids as BYTES) or a BYTES tensor of JSON objects",
            model.version,
        )
    width = len(order) if order is not None else len(columns)
    if k != width:
        raise ServiceError(
            422,
            f"inputs[0]: shape [n, {k}]; {model.name} {model.version} reads {width} columns in "
            f"this order: {list(order or columns)}",
            model.version,
        )
    if n > 0 and k == 0:
        raise ServiceError(422, "inputs[0]: rows of 0 columns", model.version)
    values = _flatten(tensor, "inputs[0]")
    rows = [values[r * k : (r + 1) * k] for r in range(n)]
    if order is not None:
        return [dict(zip(order, row, strict=True)) for row in rows]
    return rows


def _column_order(tensor: InferInput, model: LoadedModel) -> list[str] | None:
    given = (tensor.parameters or {}).get("columns")
    if given is None:
        return None
    columns = set(model.input_columns)
    if (
        not isinstance(given, list)
        or not all(isinstance(c, str) for c in given)
        or len(set(given)) != len(given)
    ):
        raise ServiceError(
            422, "inputs[0].parameters.columns must be a list of distinct column names"
        )
    unknown = [k for k, c in enumerate(given) if c not in columns]
    if unknown:
        raise ServiceError(
            422,
            f"inputs[0].parameters.columns: positions {unknown[:10]} name no column "
            f"{model.name} reads ({list(model.input_columns)})",
            model.version,
        )
    return given


def _json_rows(tensor: InferInput, model: LoadedModel) -> list[dict]:
    where = "inputs[0]"
    _column_length(tensor, where)
    rows = []
    for k, text in enumerate(_flatten(tensor, where)):
        try:
            row = json.loads(text)
        except (ValueError, RecursionError):
            row = None
        if not isinstance(row, dict):
            raise ServiceError(
                422,
                f"{where}: data[{k}] is not a JSON object of feature columns (a BYTES tensor "
                f"holds one per row)",
                model.version,
            )
        rows.append(row)
    return rows


def _item_ids(model: LoadedModel, inputs: list[InferInput]) -> list:
    if len(inputs) != 1 or inputs[0].datatype != "BYTES":
        raise ServiceError(
            422,
            f"{model.name} takes one BYTES tensor of item ids, shape [n] or [n, 1]",
            model.version,
        )
    _column_length(inputs[0], "inputs[0]")
    return _flatten(inputs[0], "inputs[0]")


def _select(outputs: list[dict], requested: list[InferRequestedOutput] | None) -> list[dict]:
    if not requested:
        return outputs
    by_name = {o["name"]: o for o in outputs}
    unknown = [k for k, r in enumerate(requested) if r.name not in by_name]
    if unknown:
        raise ServiceError(
            422, f"outputs {unknown}: no such output; this model gives {list(by_name)}"
        )
    return [by_name[r.name] for r in requested]


# -- V2 ------------------------------------------------------------------------------------------
def v2_router(service: Service) -> APIRouter:
    """KServe V2 / Open Inference Protocol: health, server and model metadata, readiness, infer
    (with or without ``/versions/{version}``)."""
    router = APIRouter(route_class=KServeRoute, tags=["KServe V2 (Open Inference Protocol)"])
    config = service.config

    def primary_loaded() -> bool:
        return service.manager.state.get(config.primary) is not None

    @router.get("/v2", responses=responses(V2ServerMetadata))
    async def v2_server_metadata() -> Response:
        return answer({"name": "reckit inference service", "version": "2", "extensions": []})

    @router.get("/v2/health/live", responses=responses(V2Live))
    async def v2_live() -> Response:
        """The process answers."""
        return answer({"live": True})

    @router.get("/v2/health/ready", responses=responses(V2Ready, 503))
    async def v2_ready() -> Response:
        """200 ``ready: true`` once the primary model serves (as ``/ping``), 503 before
        (reckit's ``KServeClient.Health`` with V2)."""
        if not primary_loaded():
            raise ServiceError(503, f"no {config.primary} version is loaded yet")
        return answer({"ready": True})

    def metadata(model_name: str, version: str | None) -> Response:
        model = _loaded(service, service.manager.state, model_name, version)
        if model.is_ranker:
            columns = list(model.input_columns)
            if len(model.dense_columns) == len(columns):
                inputs = [
                    {
                        "name": "input0",
                        "datatype": "FP64",
                        "shape": [-1, len(columns)],
                        "parameters": {"columns": columns},
                    }
                ]
            else:
                inputs = [
                    {
                        "name": c,
                        "datatype": "FP64" if c in model.dense_columns else "BYTES",
                        "shape": [-1],
                    }
                    for c in columns
                ]
            outputs = [{"name": SCORE_OUTPUT, "datatype": "FP64", "shape": [-1]}]
        else:
            inputs = [{"name": "item_id", "datatype": "BYTES", "shape": [-1]}]
            outputs = [
                {"name": EMBEDDING_OUTPUT, "datatype": "FP32", "shape": [-1, _dimension(model)]},
                {"name": FOUND_OUTPUT, "datatype": "BOOL", "shape": [-1]},
            ]
        body = {
            "name": model_name,
            "versions": [model.version],
            "platform": _platform(model),
            "inputs": inputs,
            "outputs": outputs,
        }
        return answer(body, version=model.version)

    def model_ready(model_name: str, version: str | None) -> Response:
        model = _loaded(service, service.manager.state, model_name, version)
        return answer({"name": model_name, "ready": True}, version=model.version)

    def infer(model_name: str, version: str | None, body: InferRequest) -> Response:
        model = _loaded(service, service.manager.state, model_name, version)
        if model.is_ranker:
            scores, _ = service.score_rows(model, _ranker_rows(model, body.inputs))
            outputs = [
                {"name": SCORE_OUTPUT, "shape": [len(scores)], "datatype": "FP64", "data": scores}
            ]
        else:
            vectors = _vectors(service, model, _item_ids(model, body.inputs))
            dim = _dimension(model)
            flat: list[float] = []
            for v in vectors:
                flat.extend(v if v is not None else [0.0] * dim)
            outputs = [
                {
                    "name": EMBEDDING_OUTPUT,
                    "shape": [len(vectors), dim],
                    "datatype": "FP32",
                    "data": flat,
                },
                {
                    "name": FOUND_OUTPUT,
                    "shape": [len(vectors)],
                    "datatype": "BOOL",
                    "data": [v is not None for v in vectors],
                },
            ]
        payload = {
            "model_name": model_name,
            "model_version": model.version,
            "id": body.id if body.id is not None else uuid.uuid4().hex,
            "outputs": _select(outputs, body.outputs),
        }
        return answer(payload, version=model.version)

    ready_codes = responses(V2ModelReady, 404, 422, 503)
    meta_codes = responses(V2ModelMetadata, 404, 422, 503)
    infer_codes = responses(V2InferBody, 404, 503, body=True, limited=True)

    @router.get("/v2/models/{model_name}", responses=meta_codes)
    async def v2_model_metadata(model_name: ModelName) -> Response:
        """The model's production version, its input and output tensors."""
        return metadata(model_name, None)

    @router.get("/v2/models/{model_name}/versions/{model_version}", responses=meta_codes)
    async def v2_model_version_metadata(
        model_name: ModelName, model_version: ModelName
    ) -> Response:
        """A loaded version (production or canary); 404 for another."""
        return metadata(model_name, model_version)

    @router.get("/v2/models/{model_name}/ready", responses=ready_codes)
    async def v2_model_ready(model_name: ModelName) -> Response:
        """200 ``ready: true`` once the production version is loaded, 503 before."""
        return model_ready(model_name, None)

    @router.get("/v2/models/{model_name}/versions/{model_version}/ready", responses=ready_codes)
    async def v2_model_version_ready(model_name: ModelName, model_version: ModelName) -> Response:
        return model_ready(model_name, model_version)

    @router.post("/v2/models/{model_name}/infer", responses=infer_codes)
    async def v2_infer(model_name: ModelName, body: InferRequest) -> Response:
        """Score rows (rankers: output ``output-0``, FP64 [n], as ``/predict``) or look up item
        vectors (item2vec: ``embedding`` FP32 [n, dim], zeros for an unknown item, and ``found``
        BOOL [n]). Ranker layouts: see ``serving/README.md``."""
        return infer(model_name, None, body)

    @router.post("/v2/models/{model_name}/versions/{model_version}/infer", responses=infer_codes)
    async def v2_version_infer(
        model_name: ModelName, model_version: ModelName, body: InferRequest
    ) -> Response:
        """The same on a loaded version (production or canary); 404 for another."""
        return infer(model_name, model_version, body)

    return router
