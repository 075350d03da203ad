"""Hyperparameter search for the XGBoost ranker (optuna), out of time, once a week.

A study for week ``W`` (Monday ``W`` .. Sunday ``W+6``) reads that week's training samples: the
model is fitted on all but its last two usable days, early-stopped on the second-to-last, and
scored (logloss) on the last, which neither the fit nor early stopping sees. Trial 0 is the
current parameters (the defaults with the project's config), so the search is judged against
what the daily candidate would use anyway. The study is **accepted** when its best trial's
logloss is lower than trial 0's by at least ``min_relative_gain``; otherwise the defaults stay.

The daily candidate of day ``d`` uses the study of the last week that ended before ``d``
(:func:`week_for`), addressed by that week's partition, never "the newest file": backfilling a
day gives the same parameters as the day's first run once that week's study exists.

Framework-free: the asset (``defs/training/tuning.py``) publishes what :func:`tune` returns.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Annotated

import pandas as pd
from pydantic import ConfigDict, Field

from reckit_assets.core.training.base import Log, no_log

ASSET = "xgboost_tuning"
# What a study may change; every other XGBoost parameter keeps the configured value.
SEARCHED = (
    "max_depth",
    "learning_rate",
    "min_child_weight",
    "subsample",
    "colsample_bytree",
    "reg_lambda",
)


@dataclass
class TuningConfig:
    """The ``tuning`` section of reckit.yaml."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    # The daily XGBoost candidate uses the last accepted study (off: the configured parameters).
    enabled: bool = True
    trials: Annotated[int, Field(ge=1)] = 24
    seed: int = 7
    # Accept a study only when its best trial's out-of-time logloss is this much (relative)
    # below the configured parameters' (trial 0): the best of many trials on one day is biased
    # low, and a change of parameters must pay for that.
    min_relative_gain: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.002
    min_days: Annotated[int, Field(ge=3)] = 3


@dataclass
class Study:
    """What a tuning run found: every trial, the best, and whether it is accepted."""

    week: str
    days: list[str]
    trials: pd.DataFrame  # number, value, state, seconds, params_* (one row per trial)
    baseline_value: float
    best_value: float
    best_params: dict
    accepted: bool
    reason: str
    importance: dict[str, float] = field(default_factory=dict)

    def info(self) -> dict:
        return {
            "week": self.week,
            "days": self.days,
            "trials": len(self.trials),
            "baseline_logloss": self.baseline_value,
            "best_logloss": self.best_value,
            "relative_gain": _gain(self.baseline_value, self.best_value),
            "best_params": self.best_params,
            "accepted": self.accepted,
            "reason": self.reason,
            "importance": self.importance,
        }


def _gain(baseline: float, best: float) -> float:
    return (baseline - best) / baseline if baseline > 0 else 0.0


def week_start(day: str) -> str:
    """The Monday of ``day``'s week (the weekly partitions' key)."""
    d = date.fromisoformat(day)
    return (d - timedelta(days=d.weekday())).isoformat()


def week_for(dt: str) -> str:
    """The study a candidate of ``dt`` uses: the last week that ended before ``dt`` (its
    Sunday is at most dt - 1), i.e. the week of dt - 7 days. The graph declares the same
    mapping (``TimeWindowPartitionMapping(start_offset=-7, end_offset=-7)``)."""
    return week_start((date.fromisoformat(dt) - timedelta(days=7)).isoformat())


def week_days(week: str) -> list[str]:
    start = date.fromisoformat(week)
    return [(start + timedelta(days=k)).isoformat() for k in range(7)]


def _space(trial: object) -> dict:
    return {
        "max_depth": trial.suggest_int("max_depth", 2, 8),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 200.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 0.1, 30.0, log=True),
    }


def tune(
    frames: dict[str, pd.DataFrame],
    base: object,
    config: TuningConfig,
    week: str,
    log: Log = no_log,
) -> Study:
    """Search the XGBoost parameters on ``frames`` (day -> samples, the week's usable days in
    order), starting from ``base`` (an ``XGBParams``: trial 0). Deterministic for a seed:
    optuna's TPE sampler is seeded and XGBoost's own seed is fixed."""
    import optuna

    from reckit_assets.core.evaluation import metrics
    from reckit_assets.core.training.xgb_ranker import train_xgb

    days = sorted(frames)
    if len(days) < config.min_days:
        raise ValueError(
            f"{ASSET} week {week}: {len(days)} usable day(s) ({', '.join(days) or 'none'}) < "
            f"{config.min_days} (tuning.min_days): a study needs days to fit, to early-stop "
            "on and to score on"
        )
    train = pd.concat([frames[d] for d in days[:-2]], ignore_index=True)
    valid, test = frames[days[-2]], frames[days[-1]]
    labels = test["label"].to_numpy()

    def objective(trial: object) -> float:
        values = {**asdict(base), **_space(trial)}
        params = type(base)(**values)
        started = time.perf_counter()
        model, report = train_xgb(train, valid, params)
        value = metrics.logloss(labels, model.predict(test))
        # Timings stay in the log: the study's bytes (its data version) depend on inputs only.
        trial.set_user_attr("trees", report.best_iteration + 1)
        log(
            f"{ASSET} trial {trial.number}: logloss {value:.5f} {_short(trial.params)} "
            f"({time.perf_counter() - started:.1f}s)"
        )
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=config.seed)
    )
    study.enqueue_trial({k: getattr(base, k) for k in SEARCHED})  # trial 0: today's params
    study.optimize(objective, n_trials=config.trials)
    trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs"))
    trials["state"] = trials["state"].astype(str)
    baseline = float(study.trials[0].value)
    best = study.best_trial
    gain = _gain(baseline, float(best.value))
    accepted = best.number != 0 and gain >= config.min_relative_gain
    reason = (
        f"best trial {best.number}: out-of-time logloss {best.value:.5f} vs the configured "
        f"parameters' {baseline:.5f} ({gain:+.2%}; accepted at >= {config.min_relative_gain:.2%}, "
        "tuning.min_relative_gain)"
    )
    importance: dict[str, float] = {}
    if len(study.trials) >= 3:
        try:
            raw = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=config.seed)
            )
            importance = {k: round(float(v), 4) for k, v in raw.items()}
        except (RuntimeError, ValueError) as err:  # e.g. every trial equal
            log(f"{ASSET}: no parameter importance ({err})")
    return Study(
        week=week,
        days=days,
        trials=trials,
        baseline_value=baseline,
        best_value=float(best.value),
        best_params={k: _plain(v) for k, v in best.params.items()},
        accepted=accepted,
        reason=reason,
        importance=importance,
    )


def _plain(value: object) -> object:
    return int(value) if isinstance(value, bool | int) else float(value)


def _short(params: dict) -> str:
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def study_json(study: Study) -> bytes:
    return json.dumps(study.info(), sort_keys=True, default=float).encode()


def markdown(info: dict) -> str:
    """The study for the UI: verdict, best parameters, importance."""
    lines = [
        f"**{'Accepted' if info['accepted'] else 'Not accepted'}**: {info['reason']}",
        "",
        "| parameter | best | importance |",
        "|---|---:|---:|",
    ]
    for name in SEARCHED:
        value = info["best_params"].get(name)
        shown = "–" if value is None else (f"{value:.4g}" if isinstance(value, float) else value)
        imp = info.get("importance", {}).get(name)
        lines.append(f"| {name} | {shown} | {'–' if imp is None else f'{imp:.3f}'} |")
    return "\n".join(lines)
