"""Release policy: which alias a registered version takes (the ``release`` section of reckit.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

Alias = Literal["production", "canary"]
# ``shadow``: a released version first scores live traffic unseen (core.monitoring.shadow); a
# passing shadow day moves it to canary.
NewVersionAlias = Literal["production", "canary", "shadow"]
CanaryInJudgement = Literal["hold", "replace", "replace_if_better"]


@dataclass(frozen=True)
class ReleasePolicy:
    __pydantic_config__ = ConfigDict(extra="forbid")

    # A model's first ever version (no production yet) goes straight to this alias.
    first_version_alias: Alias = "production"
    # Every later version that passed the gate goes to this alias (``shadow``: a passing shadow
    # day on live traffic before canary).
    new_version_alias: NewVersionAlias = "canary"
    # A newly gated version while another canary is still being judged (the canary alias is set):
    # ``hold`` registers it but leaves the canary where it is, so the judge can finish (a daily
    # retrain replacing the canary every day would restart its judgement every day and never
    # conclude); ``replace`` moves the canary to it, restarting the judgement;
    # ``replace_if_better`` (the default) replaces only with a candidate whose gain over
    # production (AUC, or hit rate) is shown, by its lower CI bound, above 0 and above the gain
    # the canary showed at its registration: after a shift in the data a fresh model does not
    # wait for a stale canary, and in steady state the canary finishes its judgement. A forced
    # registration (with its audited reason) always replaces.
    canary_in_judgement: CanaryInJudgement = "replace_if_better"
    # The models the service shadows (its ranker): under ``new_version_alias: shadow`` only these
    # take the shadow alias; another model's version goes to canary (it would never be judged).
    # A shadow waiting for its live day is replaced like a canary under judgement (above).
    shadow_models: tuple[str, ...] = ("xgboost",)
    # ``replace_if_better`` also hands over a *stalled* canary: one that has served at the same
    # share for this many days (its judge steps the share up every day it cannot decide, so
    # only the top share stays put) without a decision is replaced by the day's gated candidate,
    # trained on fresher days; the judgement restarts with it. 0: never (the canary then runs
    # until the judge's ``max_days``). A forced canary is never handed over.
    stalled_canary_days: Annotated[int, Field(ge=0)] = 3
    # Production's age (dt minus the day its version was trained for): the daily
    # ``production_staleness`` check warns past the first limit and fails past the second.
    stale_warn_days: Annotated[int, Field(ge=0)] = 10
    stale_fail_days: Annotated[int, Field(ge=0)] = 21

    def __post_init__(self) -> None:
        if self.stale_fail_days < self.stale_warn_days:
            raise ValueError(
                f"stale_fail_days ({self.stale_fail_days}) must be >= stale_warn_days "
                f"({self.stale_warn_days})"
            )
