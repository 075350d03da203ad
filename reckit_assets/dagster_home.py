"""The embedded default's Dagster instance: a DAGSTER_HOME with SQLite storage."""

from __future__ import annotations

import os
from pathlib import Path

from reckit_assets.settings import PROJECT_ROOT

# SQLite locks under parallel runs, so the local instance runs one at a time; Postgres lifts this.
# The queue starts the run with the highest `dagster/priority` tag first (then the oldest): the
# arrival sensor's runs carry -1, a launch from the UI or CLI 0, so a manual launch waits only
# for the run in progress, never for the sensor's backlog.
LOCAL_DAGSTER_YAML = """\
# Written by `reckit init-home` for the embedded default. Production uses deploy/.
# Runs queue and start one at a time, highest dagster/priority tag first (sensor runs: -1,
# manual launches: 0), oldest first among equals.
concurrency:
  runs:
    max_concurrent_runs: 1
python_logs:
  python_log_level: INFO
run_monitoring:
  enabled: true
telemetry:
  enabled: false
nux:
  enabled: false
"""


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").resolve()


def init_home(home: Path | None = None, overwrite: bool = False) -> Path:
    """Create DAGSTER_HOME and its dagster.yaml (kept if present unless ``overwrite``)."""
    home = (home or dagster_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if overwrite or not config.exists():
        config.write_text(LOCAL_DAGSTER_YAML)
    return home
