"""Who is calling: per-caller API keys (``RECKIT_API_KEYS``) and the operators' tokens.

Trust model (serving/README.md, *Provenance*): applications that ask for rankings hold an API
key each; the request token ``/v1/rank`` returns names that caller, and feedback on it is
accepted only from the same caller. With no keys configured the service is open (the local
demo); production must set them.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from serving.config import ServingConfig
from serving.errors import ServiceError


def given_token(request: Request, *headers: str) -> str:
    """``Authorization: Bearer <t>``, else the first of ``headers`` present ("" if none)."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    for name in headers:
        value = request.headers.get(name)
        if value:
            return value
    return ""


def matches(given: str, expected: str | None) -> bool:
    return bool(expected) and hmac.compare_digest(
        given.encode("utf-8", "replace"), expected.encode("utf-8")
    )


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "replace")).digest()


class Callers:
    """API key -> caller. Keys are kept as sha256 digests and looked up by digest: no key is
    compared byte by byte with what a client sent."""

    def __init__(self, config: ServingConfig) -> None:
        self._by_digest = {_digest(key): caller for caller, key in config.api_keys}

    @property
    def required(self) -> bool:
        return bool(self._by_digest)

    def caller(self, request: Request) -> str | None:
        """The caller named by the request's ``X-API-Key`` (reckit's header) or Bearer token."""
        for given in (request.headers.get("x-api-key", ""), given_token(request)):
            if given:
                caller = self._by_digest.get(_digest(given))
                if caller is not None:
                    return caller
        return None

    def require(self, request: Request, endpoint: str, also: bool = False) -> str | None:
        """The caller, or 401 when keys are configured and none matches (``also``: the request
        holds another credential the endpoint accepts, e.g. the ingest token)."""
        caller = self.caller(request)
        if caller is None and self.required and not also:
            raise ServiceError(
                401,
                f"{endpoint} needs an API key (X-API-Key or Authorization: Bearer; "
                f"RECKIT_API_KEYS): missing or not a configured key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return caller
