"""The shared check result every stage's rules return (data checks, the release gate, the judge)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    """One rule's result: its name, pass/fail, a readable description and every figure it used."""

    name: str
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)
