"""The thin Dagster layer, one package per stage of the flow.

Known framework warnings are filtered here, the first import of every process that loads the
code location (code server, run worker, step subprocess), so a terminal shows only what needs a
reader. Each filter is narrow and says why:
"""

import logging
import warnings

import dagster as dg

# BetaWarning / PreviewWarning: API-stability notices for parameters we use on purpose
# (backfill_policy, allow_nonexistent_upstream_partitions, check partitions). dagster is pinned
# (constraints.txt), so such an API changes only with a deliberate upgrade, which the definition
# snapshot tests catch. Printed by every process at every load, they buried real messages.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
# daily_pipeline mixes single-run data assets with one-partition-per-run model assets on purpose;
# Dagster then backfills it one partition per run, which is what the models need.
warnings.filterwarnings(
    "ignore", message=r"Asset job daily_pipeline materializes assets with varying BackfillPolicies"
)


class _SkippedCandidateGate(logging.Filter):
    """Drops "Blocking asset check ... emitted no result": it fires only when a candidate was
    skipped (too few training days), so its evaluation and registration are skipped too, which
    the run log already says. Other messages of that logger pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Blocking asset check") and "emitted no result" in message)


logging.getLogger("dagster._core.execution.plan.active").addFilter(_SkippedCandidateGate())
