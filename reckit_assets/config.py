"""The project configuration: one typed definition per concern, read by every kind of run.

Sources, lowest to highest precedence:

1. **default**: the field defaults of the core classes (``Thresholds``, ``GateRules``, ...);
2. **file**: ``reckit.yaml`` at the project root, or the file named by ``RECKIT_CONFIG``;
3. **environment**: ``RECKIT__<SECTION>__<KEY>=value`` (value parsed as YAML), and the
   historical ``RECKIT_PARTITIONS_START`` for ``partitions.start``;
4. **run config**: a Dagster launch's overrides of one value for one run.

The sensor, the schedule, ``reckit materialize``, UI launches and ``dagster asset materialize``
all call :func:`load_config` when a run executes, so a value set in the file reaches every run.
Unknown keys and out-of-range values fail at load with the key path named.

Framework-free: the Dagster layer (``defs/config.py``) only passes run-config overrides in.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, is_dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reckit_assets.core.evaluation.gate import GateRules
from reckit_assets.core.ingest.arrival import ArrivalPolicy
from reckit_assets.core.ingest.quality import Thresholds
from reckit_assets.core.monitoring.abuse import AbuseRules
from reckit_assets.core.monitoring.decisions import SkewRules
from reckit_assets.core.monitoring.judge import JudgeConfig
from reckit_assets.core.monitoring.rollout import GuardConfig
from reckit_assets.core.monitoring.shadow import ShadowRules
from reckit_assets.core.release.policy import ReleasePolicy
from reckit_assets.core.training.base import TrainingWindow
from reckit_assets.core.training.deepfm import DeepFMParams
from reckit_assets.core.training.item2vec import Item2VecParams
from reckit_assets.core.training.tuning import TuningConfig
from reckit_assets.core.training.xgb_ranker import XGBParams

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = PROJECT_ROOT / "reckit.yaml"
ENV_FILE = "RECKIT_CONFIG"
ENV_PREFIX = "RECKIT__"
LEGACY_ENV = {"RECKIT_PARTITIONS_START": ("partitions", "start")}


@dataclass(frozen=True)
class Partitions:
    __pydantic_config__ = ConfigDict(extra="forbid")

    # First daily partition (dt=YYYY-MM-DD). Changing it changes the graph's partitions.
    start: str = "2026-10-01"


class ReckitConfig(BaseModel):
    """Every section of reckit.yaml. Each section's class is the single definition of its keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partitions: Partitions = Partitions()
    data_quality: Thresholds = Thresholds()
    training: TrainingWindow = TrainingWindow()
    xgboost: XGBParams = Field(default_factory=XGBParams)
    deepfm: DeepFMParams = Field(default_factory=DeepFMParams)
    item2vec: Item2VecParams = Field(default_factory=Item2VecParams)
    gate: GateRules = GateRules()
    release: ReleasePolicy = ReleasePolicy()
    arrival: ArrivalPolicy = ArrivalPolicy()
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    abuse: AbuseRules = Field(default_factory=AbuseRules)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    skew: SkewRules = Field(default_factory=SkewRules)
    shadow: ShadowRules = Field(default_factory=ShadowRules)

    @field_validator("partitions")
    @classmethod
    def _start_is_a_date(cls, value: Partitions) -> Partitions:
        try:
            date.fromisoformat(value.start)
        except ValueError as exc:
            raise ValueError(f"start must be YYYY-MM-DD, got {value.start!r}") from exc
        return value

    def section(self, name: str) -> Any:
        return getattr(self, name)


SECTIONS: dict[str, type] = {
    name: info.annotation  # type: ignore[misc]
    for name, info in ReckitConfig.model_fields.items()
}
# Sections whose values shape the graph (partitions, lineage): read when definitions load, so a
# run-config override cannot apply to them.
STRUCTURAL = {("partitions", "start"), ("training", "window_days")}


def section_keys(cls: type) -> set[str]:
    """The keys of a section's class (a dataclass or a pydantic model)."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return set(cls.model_fields)
    return {f.name for f in fields(cls)}


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the source and the key path."""


@dataclass(frozen=True)
class EffectiveConfig:
    config: ReckitConfig
    sources: dict[str, str]  # "section.key" -> "default" | "file <path>" | "environment X" | ...
    file: str | None

    @property
    def digest(self) -> str:
        """sha256 of the effective values: the config version recorded with each run's outputs."""
        text = json.dumps(as_plain(self.config), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def values(self) -> dict[str, dict[str, Any]]:
        return as_plain(self.config)

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "default")


def as_plain(config: ReckitConfig) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        value = config.section(name)
        plain = asdict(value) if is_dataclass(value) else dict(value)
        out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in plain.items()}
    return out


def config_file(env: Mapping[str, str] | None = None) -> Path | None:
    """The file every run reads: ``$RECKIT_CONFIG`` if set, else ``reckit.yaml`` if present."""
    env = os.environ if env is None else env
    if env.get(ENV_FILE):
        path = Path(env[ENV_FILE]).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ENV_FILE}={env[ENV_FILE]}: no such file")
        return path.resolve()
    return DEFAULT_FILE if DEFAULT_FILE.is_file() else None


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    run_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    use_default_file: bool = True,
) -> EffectiveConfig:
    """Defaults <- file <- environment <- run overrides, validated as one :class:`ReckitConfig`."""
    env = os.environ if env is None else env
    file = Path(path) if path else (config_file(env) if use_default_file else None)
    layers: list[tuple[str, dict[str, dict[str, Any]]]] = []
    if file is not None:
        layers.append((f"file {file}", _read_file(file)))
    layers.append(("environment", _from_env(env)))
    if run_overrides:
        layers.append(("run config", {k: dict(v) for k, v in run_overrides.items() if v}))
    merged: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for section, values in layer.items():
            if section not in SECTIONS:
                raise ConfigError(
                    f"{source}: unknown section {section!r} (known: {', '.join(SECTIONS)})"
                )
            if not isinstance(values, Mapping):
                raise ConfigError(f"{source}: {section} must be a mapping of keys to values")
            known = section_keys(SECTIONS[section])
            for key_name, value in values.items():
                if key_name not in known:
                    raise ConfigError(
                        f"{source}: unknown key {section}.{key_name} "
                        f"(known in {section}: {', '.join(sorted(known))})"
                    )
                merged.setdefault(section, {})[key_name] = copy.deepcopy(value)
                label = source
                if source == "environment":
                    label = f"environment {_env_name(section, key_name, env)}"
                sources[f"{section}.{key_name}"] = label
    try:
        config = ReckitConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, sources)) from None
    return EffectiveConfig(config=config, sources=sources, file=str(file) if file else None)


def _read_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return _dates_as_text(data)


def _dates_as_text(value: Any) -> Any:
    """YAML reads 2026-10-01 as a date; the config keeps days as ``YYYY-MM-DD`` text."""
    if isinstance(value, dict):
        return {k: _dates_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(v) for v in value]
    return value.isoformat() if isinstance(value, date) else value


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, (section, key_name) in LEGACY_ENV.items():
        if env.get(name):
            out.setdefault(section, {})[key_name] = env[name]
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2:
            raise ConfigError(f"environment {name}: expected {ENV_PREFIX}<SECTION>__<KEY>")
        try:
            value = yaml.safe_load(raw)
        except (yaml.YAMLError, ValueError):
            value = raw
        out.setdefault(parts[0], {})[parts[1]] = _dates_as_text(value)
    return out


def _env_name(section: str, key_name: str, env: Mapping[str, str]) -> str:
    for name, target in LEGACY_ENV.items():
        if target == (section, key_name) and env.get(name):
            return name
    return f"{ENV_PREFIX}{section.upper()}__{key_name.upper()}"


def _explain(exc: ValidationError, sources: dict[str, str]) -> str:
    lines = []
    for error in exc.errors():
        path = ".".join(str(p) for p in error["loc"])
        section_key = ".".join(str(p) for p in error["loc"][:2])
        source = sources.get(section_key, "default")
        got = error.get("input")
        lines.append(f"{path}: {error['msg']} (got {got!r}; from {source})")
    return f"invalid configuration, {len(lines)} problem(s): " + "; ".join(lines)


def describe(effective: EffectiveConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """Every effective value with its source: what ``reckit config show`` prints."""
    return {
        section: {
            key_name: {"value": value, "source": effective.source_of(f"{section}.{key_name}")}
            for key_name, value in values.items()
        }
        for section, values in effective.values().items()
    }
