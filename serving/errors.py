"""The one exception handlers turn into a 4xx/5xx answer, and text safe to put in one."""

from __future__ import annotations


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
