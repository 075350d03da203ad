"""How hard the arrival sensor tries: the ``arrival`` section of reckit.yaml.

Read when the code location loads (a sensor's policy is part of its definition): a changed value
takes effect when the code location is reloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import ConfigDict, Field


@dataclass(frozen=True)
class ArrivalPolicy:
    __pydantic_config__ = ConfigDict(extra="forbid")

    max_attempts: Annotated[int, Field(ge=1)] = (
        4  # failed runs of one landing of a day before the sensor gives up
    )
    backoff_seconds: Annotated[float, Field(ge=0)] = (
        300.0  # wait after the first failure; doubles after each one
    )
    max_backoff_seconds: Annotated[float, Field(ge=0)] = 6 * 3600.0
    lost_after_seconds: Annotated[float, Field(ge=0)] = (
        3600.0  # a request with no run (queued, running or finished)
    )
    # after this long is made again (the daemon never launched it)
    recheck_days: Annotated[int, Field(ge=0)] | None = (
        None  # newest days re-stat'ed every tick (None: the window)
    )

    def backoff(self, attempts: int) -> float:
        return min(self.backoff_seconds * 2 ** max(attempts - 1, 0), self.max_backoff_seconds)
