"""Where things live, chosen once from the environment (defaults: one machine, no setup).

``RECKIT_DATA_DIR``       root of the embedded default (default: ``<repo>/data``)
``RECKIT_LANDING_URI``    landing zone (default: ``$RECKIT_DATA_DIR/landing``; ``s3://`` accepted)
``RECKIT_WAREHOUSE_URI``  pipeline artifacts (default: ``$RECKIT_DATA_DIR/warehouse``)
``RECKIT_REGISTRY_URI``   model registry (default: ``$RECKIT_DATA_DIR/registry``)
``RECKIT_ORACLE_URI``     simulator ground truth, outside the landing zone
``RECKIT_CONFIG``         the project config file (default: ``reckit.yaml`` at the project root,
                          when present); limits, windows and hyperparameters live there, see
                          reckit_assets/config.py
``RECKIT_FEEDBACK_URI``   the service's feedback log (default: ``$RECKIT_DATA_DIR/feedback``)
``RECKIT_PROMETHEUS_URL`` the Prometheus server scraping the service (default: none)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    data_dir: str
    landing_uri: str
    warehouse_uri: str
    registry_uri: str
    oracle_uri: str
    config_file: str | None = None  # None: $RECKIT_CONFIG, else reckit.yaml if present
    feedback_uri: str = ""
    prometheus_url: str = ""


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    data_dir = env.get("RECKIT_DATA_DIR") or str(PROJECT_ROOT / "data")
    return Settings(
        data_dir=data_dir,
        landing_uri=env.get("RECKIT_LANDING_URI") or f"{data_dir}/landing",
        warehouse_uri=env.get("RECKIT_WAREHOUSE_URI") or f"{data_dir}/warehouse",
        registry_uri=env.get("RECKIT_REGISTRY_URI") or f"{data_dir}/registry",
        oracle_uri=env.get("RECKIT_ORACLE_URI") or f"{data_dir}/oracle",
        config_file=env.get("RECKIT_CONFIG") or None,
        feedback_uri=env.get("RECKIT_FEEDBACK_URI") or f"{data_dir}/feedback",
        prometheus_url=env.get("RECKIT_PROMETHEUS_URL") or "",
    )
