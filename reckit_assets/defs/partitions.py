"""The graph's shape, from the project config: daily partitions and the windows' lineage.

Built once per code location by ``build_defs`` (nothing here reads the environment at import):
the partitions start at ``partitions.start``; a day's point-in-time features read the
``LONG_WINDOW_DAYS`` days before it (the ``WINDOW_DAYS`` statistics are its last days); a candidate trains on the ``training.window_days`` days before dt,
and that is exactly the partition mapping the graph declares.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from reckit_assets.config import ReckitConfig
from reckit_assets.core.features.spec import LONG_WINDOW_DAYS

# Assets write each partition themselves, so a range backfill can run as one run.
SINGLE_RUN = dg.BackfillPolicy.single_run()


@dataclass(frozen=True)
class Structure:
    first_day: str
    training_window_days: int
    # the long window of the target encodings (the short one is inside it)
    feature_window_days: int = LONG_WINDOW_DAYS
    daily: dg.DailyPartitionsDefinition = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # The last partition is yesterday (end_offset=0): today's logs are not complete.
        object.__setattr__(
            self, "daily", dg.DailyPartitionsDefinition(start_date=self.first_day, end_offset=0)
        )

    def days_before(self, days: int) -> dg.TimeWindowPartitionMapping:
        """Day d reads d-days .. d-1: a day never sees its own labels."""
        return dg.TimeWindowPartitionMapping(
            start_offset=-days, end_offset=-1, allow_nonexistent_upstream_partitions=True
        )

    @property
    def feature_window(self) -> dg.TimeWindowPartitionMapping:
        return self.days_before(self.feature_window_days)

    @property
    def training_window(self) -> dg.TimeWindowPartitionMapping:
        return self.days_before(self.training_window_days)


def structure_for(config: ReckitConfig) -> Structure:
    return Structure(
        first_day=config.partitions.start, training_window_days=config.training.window_days
    )
