"""The shared check result every stage's rules return (data checks, the release gate, the judge)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    """One rule's result: its name, pass/fail, a readable description and every figure it used.

    ``blocking``: whether a failure stops what depends on it (Dagster severity ERROR: the run is
    red, the partition quarantined) or only informs (severity WARN: the run stays green and the
    figures are recorded). Drift, volume spikes and a release gate's "held"/"rejected" inform;
    corruption and broken models block.
    """

    name: str
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)
    blocking: bool = True

    @property
    def blocks(self) -> bool:
        """Failed and blocking: the only outcome that makes a run red."""
        return not self.passed and self.blocking
