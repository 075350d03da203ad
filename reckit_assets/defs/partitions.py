"""The daily partitions every asset shares (``dt=YYYY-MM-DD``; the last one is yesterday)."""

from __future__ import annotations

import dagster as dg

from reckit_assets.settings import load_settings

FIRST_DAY = load_settings().partitions_start
DAILY = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=0)
# Assets write each partition themselves, so a range backfill can run as one run.
SINGLE_RUN = dg.BackfillPolicy.single_run()
