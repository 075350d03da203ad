"""The one exception handlers turn into a 4xx/5xx answer, and text safe to put in one."""

from __future__ import annotations

import re


class ServiceError(Exception):
    """A request the service cannot answer: the HTTP status and a message saying why."""

    def __init__(
        self,
        status: int,
        detail: object,
        version: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(str(detail))
        self.status, self.detail, self.version = status, detail, version
        self.headers = headers or {}


def clean(value: object) -> object:
    """Text fit for an ASCII JSON body: anything but str/int is shown by its type only."""
    if isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return value[:200]
    return type(value).__name__


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
# pydantic's tags for the branch of a union or the kind of a container, e.g.
# "dict[constrained-str,nullable[union[float,int,str,bool]]]", "list[ReckitFeedbackEvent]"
_TAG = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\[[A-Za-z0-9_\-\[\], |]{0,160}\]\Z")
HIDDEN = "<key>"


def safe_loc(loc: object) -> list[str | int]:
    """A validation error's location with client-chosen keys hidden: a key that is itself
    rejected (pydantic marks it with a following ``[key]``) and any part that is not a short
    identifier or one of pydantic's type tags become ``<key>``; positions stay."""
    parts = list(loc) if isinstance(loc, list | tuple) else []
    out: list[str | int] = []
    for k, part in enumerate(parts):
        following = parts[k + 1] if k + 1 < len(parts) else None
        if isinstance(part, int) and not isinstance(part, bool):
            out.append(part)
        elif not isinstance(part, str) or following == "[key]":
            out.append(HIDDEN)
        elif part == "[key]" or _NAME.match(part) or _TAG.match(part):
            out.append(part)
        else:
            out.append(HIDDEN)
    return out
