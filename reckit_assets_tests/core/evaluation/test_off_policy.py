"""Off-policy CTR estimates: unbiased against a known truth, intervals that cover it, errors named."""

from __future__ import annotations

import numpy as np
import pytest

from reckit_assets.core.evaluation import off_policy

SLATE, SLOPE = 5, 0.5


def _log(rng: np.random.Generator, slates: int, epsilon: float):
    """A position-based world: item logits, a logging order, a candidate order, exploration."""
    slate = np.repeat(np.arange(slates), SLATE)
    logit = rng.normal(-2.0, 1.0, slates * SLATE)
    logging_pos = np.concatenate([rng.permutation(SLATE) for _ in range(slates)])
    target_pos = np.concatenate([np.argsort(np.argsort(-logit[s * SLATE : (s + 1) * SLATE]))
                                 for s in range(slates)])  # fmt: skip
    explored = (rng.random(slates) < epsilon)[slate]
    random_pos = np.concatenate([rng.permutation(SLATE) for _ in range(slates)])
    shown = np.where(explored, random_pos, logging_pos)
    click_p = 1 / (1 + np.exp(-(logit - SLOPE * shown)))
    clicked = rng.random(len(logit)) < click_p
    truth = float(np.mean(1 / (1 + np.exp(-(logit - SLOPE * target_pos)))))
    p = off_policy.propensities(logging_pos, target_pos, np.full(len(logit), SLATE), epsilon)
    reward = 1 / (1 + np.exp(-(logit + 0.3 - SLOPE * target_pos)))  # a biased reward model
    return slate, shown, clicked, target_pos, p, reward, truth


def test_the_estimates_are_unbiased_and_their_intervals_cover_the_truth():
    rng = np.random.default_rng(3)
    runs = [_log(rng, 2000, 0.3) for _ in range(60)]
    for name in off_policy.ESTIMATORS:
        found = [
            off_policy.estimate(s, sh, c, t, p, reward_model=r)[name]
            for s, sh, c, t, p, r, _ in runs
        ]
        truths = [run[-1] for run in runs]
        errors = np.array([f.value - t for f, t in zip(found, truths, strict=True)])
        covered = sum(f.covers(t) for f, t in zip(found, truths, strict=True))
        # Bias well inside the spread of one estimate; 95% intervals cover ~95% of the time.
        assert abs(errors.mean()) < 0.5 * errors.std(), name
        assert 50 <= covered <= 60, f"{name}: {covered}/60 covered"


def test_the_doubly_robust_estimate_is_exact_with_a_perfect_reward_model_and_no_clicks_noise():
    slate = np.array([0, 0, 1, 1])
    shown = np.array([0, 1, 1, 0])
    target = np.array([0, 1, 0, 1])
    p = off_policy.propensities(np.array([0, 1, 1, 0]), target, np.full(4, 2), 0.5)
    reward = np.array([0.2, 0.1, 0.3, 0.05])
    clicked = np.array([0.2, 0.1, 0.0, 0.0])  # matched rows click at exactly the model's rate
    found = off_policy.estimate(slate, shown, clicked, target, p, reward_model=reward)
    assert found["dr"].value == pytest.approx(reward.mean())
    assert found["ips"].matched == 2


def test_propensities_are_exact_for_the_exploring_policy():
    p = off_policy.propensities(np.array([0, 2]), np.array([0, 1]), np.array([4, 4]), 0.2)
    assert p.tolist() == pytest.approx([0.8 + 0.05, 0.05])
    with pytest.raises(ValueError, match=r"epsilon=1\.5"):
        off_policy.propensities(np.array([0]), np.array([0]), np.array([1]), 1.5)


def test_without_exploration_a_ranking_never_shown_is_an_error_not_a_ctr():
    slate, shown, target = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])
    p = off_policy.propensities(shown, target, np.full(4, 2), 0.0)  # never shown there: 0
    with pytest.raises(ValueError, match=r"4 of 4 impressions.*propensity 0.*epsilon > 0"):
        off_policy.estimate(slate, shown, np.ones(4), target, p)
    with pytest.raises(ValueError, match="at least 2"):
        off_policy.estimate(np.zeros(2), shown[:2], np.ones(2), shown[:2], np.ones(2))


def _world(seed: int, slates: int, epsilon: float):
    """Decisions and holdout whose candidate ranks by a feature ``x`` (the true logit)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    slate = np.repeat(np.arange(slates), SLATE)
    logit = rng.normal(-2.0, 1.0, slates * SLATE)
    policy = np.concatenate([rng.permutation(SLATE) for _ in range(slates)])
    explored = (rng.random(slates) < epsilon)[slate]
    shown = np.where(explored, np.concatenate([rng.permutation(SLATE) for _ in range(slates)]),
                     policy)  # fmt: skip
    clicked = rng.random(len(logit)) < 1 / (1 + np.exp(-(logit - SLOPE * shown)))
    target = np.concatenate([np.argsort(np.argsort(-logit[s * SLATE : (s + 1) * SLATE]))
                             for s in range(slates)])  # fmt: skip
    truth = float(np.mean(1 / (1 + np.exp(-(logit - SLOPE * target)))))
    ids = dict(request_id=[f"r{s}" for s in slate], item_id=[f"i{k}" for k in range(len(slate))])
    decisions = pd.DataFrame(
        {**ids, "position": shown, "policy_position": policy, "slate_size": SLATE,
         "exploration_share": epsilon, "explored": explored, "clicked": clicked.astype(int)}
    )  # fmt: skip
    holdout = pd.DataFrame({**ids, "x": logit, "position": shown, "label": clicked.astype(int)})

    def predict(frame):  # the click probability at the frame's position
        return 1 / (1 + np.exp(-(frame["x"].to_numpy() - SLOPE * frame["position"].to_numpy())))

    return decisions, holdout, predict, truth


def test_a_candidate_is_estimated_from_served_decisions_and_its_holdout_rows():
    decisions, holdout, predict, truth = _world(5, 4000, 0.3)
    found = off_policy.ranker_estimates(decisions, holdout, predict)
    assert found["slates"] == 4000 and found["explored_slates"] > 1000
    for name in off_policy.ESTIMATORS:
        e = found["candidate"][name]
        assert e["ci_low"] <= truth <= e["ci_high"], (name, e, truth)
    # the logging policy's own estimate is its realised CTR's neighbourhood
    own = found["logging_policy"]["snips"]
    assert (
        own["ci_low"] <= found["logged_ctr"] + 0.01 and found["logged_ctr"] - 0.01 <= own["ci_high"]
    )


def test_incomplete_slates_are_left_out_and_no_exploration_is_refused_with_a_reason():
    decisions, holdout, predict, _ = _world(6, 300, 0.2)
    partial = holdout[holdout["request_id"] != "r0"].iloc[:-1]  # r0 gone, the last slate cut
    found = off_policy.ranker_estimates(decisions, partial, predict)
    assert found["slates"] == 298
    decisions, holdout, predict, _ = _world(7, 300, 0.0)
    refused = off_policy.ranker_estimates(decisions, holdout, predict)
    assert "candidate" not in refused and "RECKIT_EXPLORATION_SHARE" in refused["reason"]
    empty = off_policy.ranker_estimates(decisions.iloc[:0], holdout, predict)
    assert empty["reason"] == "no served decisions for this day"


def test_with_no_click_where_the_candidate_moves_items_the_interval_still_allows_them():
    # The estimate rests on clicks on moved items, heavily weighted; none observed is no
    # evidence that there are none: the interval is widened to the Poisson bound of that count.
    decisions, holdout, predict, _ = _world(9, 300, 0.05)
    moved = decisions["position"] != decisions["policy_position"]
    decisions.loc[moved, "clicked"] = 0  # whatever the candidate moved got no click
    found = off_policy.ranker_estimates(decisions, holdout, predict)
    assert found["evidence_clicks"] == 0 and not found["reliable"]
    e = found["candidate"]["ips"]
    half_normal = 1.96 * e["std_error"]
    assert e["ci_high"] - e["value"] > 3 * half_normal  # the count's bound, not the spread's
