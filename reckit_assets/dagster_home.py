"""The embedded default's Dagster instance: a DAGSTER_HOME with SQLite storage."""

from __future__ import annotations

import os
from pathlib import Path

from reckit_assets.settings import PROJECT_ROOT

# SQLite locks under parallel runs, so the local instance runs one at a time; Postgres lifts this.
LOCAL_DAGSTER_YAML = """\
# Written by `reckit init-home` for the embedded default. Production uses deploy/.
concurrency:
  runs:
    max_concurrent_runs: 1
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
