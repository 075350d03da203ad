"""A shadow version's live day: judged from the rankings it scored, applied through the registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.monitoring import shadow
from reckit_assets.core.release.registry import CANARY, PRODUCTION, SHADOW, Registry

RULES = shadow.ShadowRules(min_rankings=50)


def _rows(rankings: int = 100, slate: int = 5, seed: int = 0, epsilon: float = 0.2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = rankings * slate
    served = rng.random(n)
    policy = np.concatenate(
        [np.argsort(np.argsort(-served[k : k + slate])) for k in range(0, n, slate)]
    )
    return pd.DataFrame(
        {
            "request_id": np.repeat([f"r{k}" for k in range(rankings)], slate),
            "position": policy,
            "policy_position": policy,
            "slate_size": slate,
            "exploration_share": epsilon,
            "score": served,
            "shadow_score": np.clip(served + rng.normal(0, 0.05, n), 0, 1),
            "shadow_latency_ms": np.repeat(rng.uniform(0.5, 2.0, rankings), slate),
            "clicked": (rng.random(n) < 0.1).astype(int),
        }
    )


def test_a_healthy_shadow_passes_with_its_figures():
    rows = _rows()
    found = shadow.judge_shadow(rows, rows["shadow_score"].to_numpy(), RULES, 0.95)
    assert found["verdict"] == shadow.PASSED and found["rankings"] == 100
    assert found["error_share"] == 0 and found["latency_p99_ms"] <= 2.0
    assert found["score_psi"] < 0.01 and found["kendall_tau_mean"] > 0.5
    assert set(found["off_policy"]) == {"ips", "snips"}


@pytest.mark.parametrize(
    ("defect", "check"),
    [
        ("errors", "errors"),
        ("slow", "latency"),
        ("out_of_range", "scores_valid"),
        ("shifted", "score_shift"),
    ],
)
def test_each_defect_fails_the_day_by_name(defect, check):
    rows = _rows()
    offline = rows["shadow_score"].to_numpy().copy()
    if defect == "errors":
        rows.loc[rows["request_id"] == "r3", "shadow_score"] = np.nan
    elif defect == "slow":
        rows["shadow_latency_ms"] = 80.0
    elif defect == "out_of_range":
        rows.loc[0, "shadow_score"] = 1.5
    else:
        rows["shadow_score"] = np.clip(rows["shadow_score"] + 0.5, 0, 1)
    found = shadow.judge_shadow(rows, offline, RULES, 0.95)
    assert found["verdict"] == shadow.FAILED and found["checks"][check] is False
    assert found["why"]


def test_too_few_rankings_is_not_judged_never_a_pass():
    rows = _rows(rankings=10)
    found = shadow.judge_shadow(rows, None, RULES, 0.95)
    assert found["verdict"] == shadow.NOT_JUDGED and "shadow.min_rankings" in found["why"]
    assert shadow.judge_shadow(rows.iloc[:0], None, RULES, 0.95)["verdict"] == shadow.NOT_JUDGED


def _registry(tmp_path) -> Registry:
    registry = Registry(LocalStorage(tmp_path / "registry"))
    for v in ("v1", "v2", "v3"):
        registry.register("xgboost", v, {"model.json": v.encode()}, {"kind": "xgboost"})
    registry.set_alias("xgboost", PRODUCTION, "v1", "test", "first")
    registry.set_alias("xgboost", SHADOW, "v2", "test", "released")
    return registry


def test_a_passed_shadow_becomes_the_canary_and_a_failed_one_is_cleared(tmp_path):
    registry = _registry(tmp_path)
    passed = {"version": "v2", "verdict": shadow.PASSED, "why": "ok"}
    step = shadow.release_shadow(registry, "xgboost", passed, "shadow judge")
    assert step["action"] == "to canary"
    assert registry.aliases("xgboost") == {PRODUCTION: "v1", CANARY: "v2"}
    registry.set_alias("xgboost", SHADOW, "v3", "test", "released")
    # a canary is being judged: the passed shadow waits
    waiting = shadow.release_shadow(
        registry, "xgboost", {"version": "v3", "verdict": shadow.PASSED, "why": "ok"}, "j"
    )
    assert waiting["action"] == "waiting" and registry.alias("xgboost", SHADOW) == "v3"
    # a verdict about another version is not this shadow's
    other = shadow.release_shadow(registry, "xgboost", passed, "j")
    assert other["action"] == "waiting"
    failed = {"version": "v3", "verdict": shadow.FAILED, "why": "errors on 5% of rankings"}
    assert shadow.release_shadow(registry, "xgboost", failed, "j")["action"] == "rejected"
    assert SHADOW not in registry.aliases("xgboost")
    moves = registry.history("xgboost", SHADOW)
    assert moves[-1].reason == "shadow day failed: errors on 5% of rankings"


def test_a_move_interrupted_between_canary_and_shadow_is_finished_on_rerun(tmp_path):
    registry = _registry(tmp_path)
    registry.set_alias(
        "xgboost", CANARY, "v2", "shadow judge", "shadow day passed: ok"
    )  # then killed
    step = shadow.release_shadow(registry, "xgboost", None, "shadow judge")
    assert step["action"] == "to canary"
    assert registry.aliases("xgboost") == {PRODUCTION: "v1", CANARY: "v2"}
