"""Production staleness: age in partition days, warn then fail at the configured limits, and why."""

from __future__ import annotations

import pytest

from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.release import staleness
from reckit_assets.core.release.policy import ReleasePolicy
from reckit_assets.core.release.registry import PRODUCTION, Registry

POLICY = ReleasePolicy(stale_warn_days=5, stale_fail_days=10)
FIRST, WINDOW = "2026-10-01", 7


def _check(registry: Registry, dt: str, policy: ReleasePolicy = POLICY):
    return staleness.staleness(registry, "toy", dt, FIRST, WINDOW, policy, "candidate skipped")


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(LocalStorage(tmp_path / "registry"))


def test_age_counts_from_the_day_production_was_trained_for(registry):
    registry.register("toy", "v1", {"m.json": b"1"}, {"kind": "toy", "partition": "2026-10-10"})
    registry.set_alias("toy", PRODUCTION, "v1", "ops", "first model")
    levels = {dt: _check(registry, dt) for dt in ("2026-10-15", "2026-10-16", "2026-10-21")}
    ok, warn, fail = (levels[d] for d in ("2026-10-15", "2026-10-16", "2026-10-21"))
    assert ok[1] == "ok" and ok[0].passed and ok[0].metadata["age_days"] == 5
    assert warn[1] == "warn" and not warn[0].passed and warn[0].metadata["age_days"] == 6
    assert fail[1] == "fail" and not fail[0].passed and fail[0].metadata["age_days"] == 11
    description = fail[0].description
    assert "production v1 was trained for dt=2026-10-10: 11 day(s) old" in description
    assert "release.stale_fail_days" in description and "by ops (first model)" in description
    assert "today: candidate skipped" in description


def test_no_production_ever_counts_from_the_first_possible_candidate(registry):
    outcome, level = _check(registry, "2026-10-20")  # first possible candidate: 2026-10-08
    assert level == "fail" and outcome.metadata["age_days"] == 12
    assert "no production version ever" in outcome.description
    assert _check(registry, "2026-10-08")[1] == "ok"


def test_production_cleared_by_a_person_is_said_so(registry):
    registry.register("toy", "v1", {"m.json": b"1"}, {"kind": "toy", "partition": "2026-10-10"})
    registry.set_alias("toy", PRODUCTION, "v1", "ops", "first model")
    registry.set_alias("toy", PRODUCTION, None, "alice", "INC-7 bad recommendations")
    outcome, level = _check(registry, "2026-10-12")
    assert level == "ok" and outcome.metadata["production"] is None
    assert "cleared" in outcome.description and "by alice (INC-7" in outcome.description


def test_limits_are_validated():
    from pydantic import TypeAdapter, ValidationError

    with pytest.raises(ValidationError, match="stale_fail_days"):
        TypeAdapter(ReleasePolicy).validate_python({"stale_warn_days": 9, "stale_fail_days": 3})
