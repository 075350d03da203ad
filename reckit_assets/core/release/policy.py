"""Release policy: which alias a registered version takes (the ``release`` section of reckit.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ConfigDict

Alias = Literal["production", "canary"]


@dataclass(frozen=True)
class ReleasePolicy:
    __pydantic_config__ = ConfigDict(extra="forbid")

    # A model's first ever version (no production yet) goes straight to this alias.
    first_version_alias: Alias = "production"
    # Every later version that passed the gate goes to this alias.
    new_version_alias: Alias = "canary"
