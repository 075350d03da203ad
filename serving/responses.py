"""How every endpoint answers: ASCII JSON without NaN, the served model's version in a header,
and the OpenAPI description of every status an endpoint can answer (with its body schema)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse

from serving.schemas import ErrorBody


class SafeJSONResponse(JSONResponse):
    """ASCII JSON (a lone surrogate becomes ``\\ud800``, valid JSON text), no NaN/Infinity."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


def version_headers(version: str | None) -> dict[str, str]:
    return {"X-Model-Version": version} if version else {}


def answer(payload: dict, status: int = 200, version: str | None = None) -> SafeJSONResponse:
    return SafeJSONResponse(payload, status_code=status, headers=version_headers(version))


# -- OpenAPI: every status each endpoint can answer, with its body schema ----------------------
WHY = {
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
BODY_ERRORS = (400, 408, 413, 422)


def responses(ok: type | None, *statuses: int, body: bool = False, limited: bool = False) -> dict:
    out: dict[int | str, dict] = {}
    if ok is not None:
        out[200] = {"model": ok, "description": "Success"}
    codes = set(statuses) | (set(BODY_ERRORS) if body else set()) | ({429} if limited else set())
    for code in sorted(codes):
        out[code] = {"model": ErrorBody, "description": WHY[code]}
    return out
