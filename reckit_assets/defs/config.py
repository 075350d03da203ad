"""The project config in Dagster: a resource every run loads it through, and run-config overrides.

A run reads ``reckit.yaml`` (or ``$RECKIT_CONFIG``) when it executes, whoever launched it: the
arrival sensor and the schedule carry no run config, so the file is what they use. A launch may
override single values through the generated ``*Overrides`` config classes; every field there is
optional (unset = keep the file's value) and is generated from the core class, so there is one
definition per concern and no hand-kept copy.
"""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Any, Optional

import dagster as dg
from pydantic import create_model

from reckit_assets.config import SECTIONS, STRUCTURAL, ConfigError, EffectiveConfig, load_config


class ProjectConfig(dg.ConfigurableResource):
    """Where the project config file is; ``None``: ``$RECKIT_CONFIG``, else ``reckit.yaml``."""

    file: str | None = None

    def load(self, overrides: dict[str, dict[str, Any]] | None = None) -> EffectiveConfig:
        try:
            return load_config(self.file, run_overrides=overrides)
        except ConfigError as exc:
            raise dg.Failure(description=str(exc)) from exc


def _config_type(annotation: Any) -> Any:
    """The Dagster-config-friendly form of a field type: tuples become lists, bounds dropped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _config_type(typing.get_args(annotation)[0])
    if origin is tuple:
        return list[typing.get_args(annotation)[0]]
    if origin is typing.Literal:
        return str
    return annotation


def overrides_class(section: str, name: str) -> type[dg.Config]:
    """A ``dg.Config`` whose optional fields mirror ``section``'s keys, generated from its class."""
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls, include_extras=True)
    spec = {
        f.name: (Optional[_config_type(hints[f.name])], None)  # noqa: UP045 (pydantic needs it)
        for f in fields(cls)
        if (section, f.name) not in STRUCTURAL
    }
    return create_model(
        name,
        __base__=dg.Config,
        __doc__=f"Overrides of `{section}` for one run (unset: reckit.yaml's value).",
        **spec,
    )


def overrides_of(config: dg.Config) -> dict[str, Any]:
    return {k: v for k, v in config.model_dump().items() if v is not None}


def config_metadata(effective: EffectiveConfig, sections: tuple[str, ...]) -> dict[str, Any]:
    """What a run used: the file, the effective values of ``sections`` and where each came from."""
    values = effective.values()
    return {
        "config_file": effective.file or "none (defaults)",
        "config_digest": effective.digest,
        "config": dg.MetadataValue.json(
            {
                s: {
                    k: {"value": v, "source": effective.source_of(f"{s}.{k}")}
                    for k, v in values[s].items()
                }
                for s in sections
            }
        ),
    }


DataQualityOverrides = overrides_class("data_quality", "DataQualityOverrides")
GateOverrides = overrides_class("gate", "GateOverrides")
XGBoostOverrides = overrides_class("xgboost", "XGBoostOverrides")
DeepFMOverrides = overrides_class("deepfm", "DeepFMOverrides")
Item2VecOverrides = overrides_class("item2vec", "Item2VecOverrides")
TRAINING_OVERRIDES: dict[str, type[dg.Config]] = {
    "xgboost": XGBoostOverrides,
    "deepfm": DeepFMOverrides,
    "item2vec": Item2VecOverrides,
}
