"""The long-window target encodings: empirical-Bayes strengths, the hierarchy, the defaults."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from reckit_assets.core.features.compute import (
    MAX_STRENGTH,
    LongWindow,
    fitted_strength,
    long_window_features,
    window_features,
)
from reckit_assets.core.features.spec import DENSE_COLUMNS, LONG_WINDOW_DAYS


@pytest.mark.parametrize("strength", [10.0, 50.0, 200.0])
def test_fitted_strength_recovers_the_beta_prior_it_was_drawn_from(strength):
    """Units with true rates ~ Beta(m s, (1 - m) s) and binomial counts: the method of moments
    gives back s within 25% on 4,000 units."""
    rng = np.random.default_rng(int(strength))
    m = 0.3
    rates = rng.beta(m * strength, (1 - m) * strength, 4000)
    n = rng.integers(20, 300, 4000)
    k = rng.binomial(n, rates)
    fitted = fitted_strength(n, k, np.full(n.size, m))
    assert fitted == pytest.approx(strength, rel=0.25)


def test_rates_that_vary_no_more_than_noise_are_shrunk_to_the_parent():
    rng = np.random.default_rng(1)
    n = rng.integers(10, 100, 2000)
    k = rng.binomial(n, 0.2)  # every unit has the same true rate
    assert fitted_strength(n, k, np.full(n.size, 0.2)) >= 1000
    assert fitted_strength(np.array([5]), np.array([1]), np.array([0.2])) == MAX_STRENGTH


def _day(rows: list[tuple]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(item, user, category, impressions, clicks) rows -> daily_activity's three tables."""
    frame = pl.DataFrame(
        rows, schema=["item_id", "user_id", "item_category", "impressions", "clicks"], orient="row"
    ).with_columns(conversions=pl.lit(0, pl.Int64))

    def agg(by: list[str]) -> pl.DataFrame:
        return (
            frame.group_by(by)
            .agg(pl.col(c).sum() for c in ("impressions", "clicks", "conversions"))
            .sort(by)
        )

    return agg(["item_id"]), agg(["user_id"]), agg(["user_id", "item_category"])


def test_an_item_seen_little_is_pulled_to_its_category_not_to_the_window():
    """Category A converts at ~50%, B at ~5%: a new item of A with 2 impressions and no click
    keeps a rate near A's, far above B's and above the window's; users shrink to the window."""
    rows = [(f"a{i}", f"u{i % 20}", "A", 40, 20 + (i % 3) - 1) for i in range(30)]
    rows += [(f"b{i}", f"u{i % 20}", "B", 40, 2 + (i % 2)) for i in range(30)]
    rows += [("a-new", "u0", "A", 2, 0), ("b-new", "u1", "B", 2, 0)]
    items, users, pairs = _day(rows)
    catalog = pl.DataFrame(
        {"item_id": [r[0] for r in rows], "category": [r[2] for r in rows]}
    ).unique("item_id")
    item_t, user_t, pair_t, long = long_window_features([items], [users], [pairs], catalog)
    rate = dict(zip(item_t["item_id"], item_t["item_ctr_28d"], strict=True))
    assert rate["a-new"] > 0.4 > long["ctr"] > rate["b-new"]
    assert rate["b-new"] < 0.1
    for key in ("strength_item", "strength_user", "strength_user_category", "strength_category"):
        assert 1.0 <= long[key] <= MAX_STRENGTH
    assert user_t["user_ctr_28d"].is_between(0, 1).all()
    assert pair_t.columns == ["user_id", "item_category", "user_category_ctr_28d"]


def test_keys_seen_only_in_the_long_window_get_the_short_window_defaults():
    """A user seen three weeks ago and not this week: its 7-day statistics are missing (the
    samples fill the spec's defaults and flag is_new_user), its 28-day ones are there."""
    old = _day([("i1", "u-old", "A", 50, 10), ("i2", "u-both", "A", 50, 25)])
    recent = _day([("i2", "u-both", "A", 50, 25)])
    catalog = pl.DataFrame({"item_id": ["i1", "i2"], "category": ["A", "A"]})
    tables = window_features(
        [recent[0]],
        [recent[1]],
        [recent[2]],
        LongWindow([old[0], recent[0]], [old[1], recent[1]], [old[2], recent[2]], catalog),
    )
    users = tables.users.to_pandas().set_index("user_id")
    assert np.isnan(users.loc["u-old", "user_ctr"]) and users.loc["u-old", "user_ctr_28d"] < 0.5
    assert users.loc["u-both", "user_ctr_28d"] > users.loc["u-old", "user_ctr_28d"]
    assert tables.priors.long is not None and tables.priors.long["impressions"] == 150.0


def test_the_spec_declares_every_long_window_column():
    long_columns = {c for c in DENSE_COLUMNS if c.endswith(f"_{LONG_WINDOW_DAYS}d")}
    assert long_columns == {
        "item_ctr_28d",
        "item_cvr_28d",
        "item_impressions_28d",
        "user_ctr_28d",
        "user_impressions_28d",
        "user_category_ctr_28d",
    }
