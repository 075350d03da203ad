"""Abuse detection in the feedback gate: quarantine the offending *events*, never the whole day.

Runs on the attributable rows of a day (after :func:`feedback.attribute`). Each rule names the
events it takes out; an event is quarantined by the first rule that names it, in this order:

1. ``unknown_id``: the user or item is absent from the day's landed ``users``/``items`` snapshot
   (only when that snapshot is in the landing zone; otherwise the rule reports "not checked").
2. ``impossible_ratio``: per served ``(request_id, item_id)``, clicks beyond its impressions and
   conversions beyond its clicks (clicks counted in the whole day's log, so a click kept apart
   for clock skew still vouches for its conversion).
3. ``user_click_rate``: a user's clicks given their impressions are implausible at
   ``user_ctr_multiple`` x the day's CTR (binomial tail, Bonferroni over users, ``user_alpha``).
4. ``user_volume``: a user's clicks or impressions are robust outliers of the day's population
   (log scale: median + ``volume_mad_k`` x MAD), above ``min_user_clicks`` / ``min_user_impressions``.
   Rules 3-4 quarantine every event of the user that day.
5. ``item_click_rate``: an item's clicks given its impressions are implausible at
   ``item_ctr_multiple`` x its trailing CTR (landed days before, smoothed toward the day's CTR;
   the day's CTR when no trailing day is readable), Bonferroni over items, ``item_alpha``.
   Quarantined: the item's events from users with more than ``max_user_item_clicks`` clicks on it
   that day; a flagged item without such users is named but nothing is taken out.

Bound (tested in ``test_abuse.py``): a clean simulated day loses 0 events; each replayed attack
of issue 21 leaves the attacked item's landed clicks equal to its clean count (the attacker's
events are quarantined, no honest event is).

Framework-free: plain frames in, a :class:`Screening` with every figure out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats
from statsmodels.stats.multitest import multipletests

from reckit_assets.core.checks import Outcome

NAMED = 20  # users/items listed by name in the report (the counts are always complete)


class AbuseRules(BaseModel):
    """Limits of the feedback abuse screen: the ``abuse`` section of reckit.yaml.

    Defaults keep clean simulated days (400-3,000 users, 4k-30k impressions, heavy-tailed user
    activity, messy rates) at 0 quarantined events with a wide margin, while each of issue 21's
    attacks is caught at a small fraction of its size (see ``test_abuse.py``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    check_unknown_ids: bool = True  # needs the day's users/items snapshot in the landing zone
    # Per-user click rate: H0 "the user's CTR is at most multiple x the day's CTR"; honest users
    # differ by taste (simulated per-user CTRs reach ~4x the day's), hence a wide multiple.
    user_ctr_multiple: float = Field(5.0, ge=1.0)
    user_alpha: float = Field(1e-6, gt=0, lt=1)  # family-wise, Bonferroni over users
    min_user_clicks: int = Field(10, ge=1)  # fewer clicks are never spam by volume or rate
    # Per-user volume, on log1p counts: median + k x MAD (normal-scaled), MAD at least 0.5.
    volume_mad_k: float = Field(8.0, gt=0)
    min_user_impressions: int = Field(500, ge=1)  # fewer impressions are never a flood
    # Per item: H0 "the item's CTR is at most multiple x its trailing CTR".
    item_ctr_multiple: float = Field(3.0, ge=1.0)
    item_alpha: float = Field(1e-6, gt=0, lt=1)  # family-wise, Bonferroni over items
    min_item_clicks: int = Field(20, ge=1)
    trailing_days: int = Field(7, ge=0)  # landed days before D giving each item's CTR
    prior_impressions: float = Field(200.0, ge=0)  # smoothing of a trailing CTR toward the day's
    max_user_item_clicks: int = Field(3, ge=1)  # per user and item and day, on a flagged item


@dataclass
class Screening:
    kept: pd.DataFrame
    quarantined: pd.DataFrame  # the quarantined rows with ``rule`` and ``why``
    outcomes: list[Outcome] = field(default_factory=list)
    counts: dict = field(default_factory=dict)


def _ids(values) -> list[str]:
    return sorted(map(str, values))[:NAMED]


def _robust_z(x: np.ndarray, floor: float = 0.5) -> np.ndarray:
    mad = max(float(stats.median_abs_deviation(x, scale="normal")), floor)
    return (x - np.median(x)) / mad


def _bonferroni(p: np.ndarray) -> np.ndarray:
    return multipletests(p, method="bonferroni")[1] if len(p) else p


def _per(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    kinds = frame["event_type"]
    return pd.DataFrame(
        {
            "impressions": (kinds == "impression").groupby(frame[key]).sum(),
            "clicks": (kinds == "click").groupby(frame[key]).sum(),
        }
    )


def _impossible(frame: pd.DataFrame, log: pd.DataFrame) -> pd.Series:
    """Rows that exceed what the (request, item) can hold: clicks > impressions, conversions >
    clicks (clicks anywhere in the day's log)."""
    out = pd.Series(False, index=frame.index)
    pair = ["request_id", "item_id"]
    order = frame.sort_values(["ts", "event_id"]).index
    rank = frame.loc[order].groupby([*pair, "event_type"], dropna=False).cumcount()
    imps = frame[frame["event_type"] == "impression"].groupby(pair).size()
    logged = log[log["event_type"] == "click"].drop_duplicates("event_id").groupby(pair).size()
    for kind, limit in (("click", imps), ("conversion", logged)):
        rows = frame.loc[order][frame.loc[order, "event_type"] == kind]
        if rows.empty:
            continue
        allowed = pd.MultiIndex.from_frame(rows[pair]).map(limit.to_dict()).to_numpy()
        allowed = np.nan_to_num(pd.to_numeric(allowed, errors="coerce"), nan=0.0)
        out.loc[rows.index] = rank.loc[rows.index].to_numpy() >= allowed
    return out


def screen(
    landed: pd.DataFrame,
    rules: AbuseRules,
    log: pd.DataFrame | None = None,
    users: set[str] | None = None,
    items: set[str] | None = None,
    trailing: pd.DataFrame | None = None,
) -> Screening:
    """Split a day's attributable rows into kept and quarantined, with one outcome per rule.

    ``log``: the day's whole feedback log (clicks that vouch for conversions); ``users``/
    ``items``: the day's snapshots (None: not checked); ``trailing``: landed events of the days
    before (None or empty: the day's own CTR is every item's reference).
    """
    frame = landed.reset_index(drop=True)
    rule = pd.Series("", index=frame.index, dtype=object)
    why = pd.Series("", index=frame.index, dtype=object)
    outcomes: list[Outcome] = []
    if not rules.enabled or frame.empty:
        return Screening(frame, frame.iloc[:0].assign(rule="", why=""), [], {"quarantined": 0})

    def take(mask: pd.Series, name: str, reason: pd.Series | str) -> int:
        new = mask & (rule == "")
        rule[new] = name
        why[new] = reason[new] if isinstance(reason, pd.Series) else reason
        return int(new.sum())

    # 1. unknown ids
    if rules.check_unknown_ids and users is not None and items is not None:
        bad_user = ~frame["user_id"].isin(users)
        bad_item = ~frame["item_id"].isin(items)
        reason = pd.Series("", index=frame.index, dtype=object)
        reason[bad_item] = "item_id not in the day's items snapshot"
        reason[bad_user] = "user_id not in the day's users snapshot"
        n = take(bad_user | bad_item, "unknown_id", reason)
        names = _ids(set(frame.loc[bad_user, "user_id"]) | set(frame.loc[bad_item, "item_id"]))
        outcomes.append(
            Outcome(
                "unknown_id",
                n == 0,
                f"{n} events name {bad_user.groupby(frame['user_id']).any().sum()} unknown users "
                f"and {bad_item.groupby(frame['item_id']).any().sum()} unknown items "
                "(abuse.check_unknown_ids)",
                {"events": n, "ids": names, "abuse.check_unknown_ids": True},
                blocking=False,
            )
        )
    else:
        outcomes.append(
            Outcome(
                "unknown_id",
                True,
                "not checked: no users/items snapshot for the day in the landing zone"
                if rules.check_unknown_ids
                else "not checked (abuse.check_unknown_ids = false)",
                {"events": 0},
                blocking=False,
            )
        )

    # 2. impossible ratios
    impossible = _impossible(frame, frame if log is None else log)
    n = take(impossible, "impossible_ratio", "more clicks than impressions or conversions than "
             "clicks for one served (request_id, item_id)")  # fmt: skip
    outcomes.append(
        Outcome(
            "impossible_ratio",
            n == 0,
            f"{n} events beyond their served impression (clicks) or click (conversions)",
            {"events": n, "requests": int(frame.loc[impossible, "request_id"].nunique())},
            blocking=False,
        )
    )

    # 3-4. per user, on what the earlier rules left
    rest = frame[rule == ""]
    per_user = _per(rest, "user_id")
    day_ctr = per_user["clicks"].sum() / max(per_user["impressions"].sum(), 1)
    ceiling = min(1.0, rules.user_ctr_multiple * day_ctr)
    c, n_imp = per_user["clicks"].to_numpy(), per_user["impressions"].to_numpy()
    p = stats.binom.sf(c - 1, np.maximum(n_imp, c), ceiling)
    p_adj = _bonferroni(p)
    rate_flag = (p_adj < rules.user_alpha) & (c >= rules.min_user_clicks)
    z_clicks = _robust_z(np.log1p(c))
    z_imps = _robust_z(np.log1p(n_imp))
    click_flood = (z_clicks > rules.volume_mad_k) & (c >= rules.min_user_clicks)
    imp_flood = (z_imps > rules.volume_mad_k) & (n_imp >= rules.min_user_impressions)
    for name, flags, describe, keys in (
        (
            "user_click_rate",
            rate_flag,
            lambda i: f"{c[i]} clicks in {n_imp[i]} impressions: p={p_adj[i]:.2g} "
            f"at {rules.user_ctr_multiple:g} x day CTR {day_ctr:.4f}",
            {"abuse.user_alpha": rules.user_alpha,
             "abuse.user_ctr_multiple": rules.user_ctr_multiple,
             "abuse.min_user_clicks": rules.min_user_clicks},
        ),
        (
            "user_volume",
            (click_flood | imp_flood) & ~rate_flag,
            lambda i: f"{c[i]} clicks (robust z {z_clicks[i]:.1f}), {n_imp[i]} impressions "
            f"(robust z {z_imps[i]:.1f})",
            {"abuse.volume_mad_k": rules.volume_mad_k,
             "abuse.min_user_clicks": rules.min_user_clicks,
             "abuse.min_user_impressions": rules.min_user_impressions},
        ),
    ):  # fmt: skip
        flagged = {per_user.index[i]: describe(i) for i in np.flatnonzero(flags)}
        mask = frame["user_id"].isin(flagged)
        # object dtype: on Arrow-backed ids (what read_landed gives) an all-missing map is a
        # double column that cannot take "" (a real ratings day crashed here)
        n = take(mask, name, frame["user_id"].astype(object).map(flagged).fillna(""))
        outcomes.append(
            Outcome(
                name,
                not flagged,
                f"{len(flagged)} users, {n} events quarantined"
                + "".join(f"; {u}: {flagged[u]}" for u in _ids(flagged)[:5]),
                {"events": n, "users": len(flagged), "named": _ids(flagged),
                 "day_ctr": float(day_ctr), **keys},
                blocking=False,
            )
        )  # fmt: skip

    # 5. per item, vs its trailing CTR
    rest = frame[rule == ""]
    per_item = _per(rest, "item_id")
    base = pd.Series(day_ctr, index=per_item.index)
    if trailing is not None and not trailing.empty:
        past = _per(trailing, "item_id").reindex(per_item.index, fill_value=0)
        m = rules.prior_impressions
        base = (past["clicks"] + m * day_ctr) / (past["impressions"] + m)
    ci, ni = per_item["clicks"].to_numpy(), per_item["impressions"].to_numpy()
    ceiling_i = np.minimum(1.0, rules.item_ctr_multiple * base.to_numpy())
    p_item = _bonferroni(stats.binom.sf(ci - 1, np.maximum(ni, ci), ceiling_i))
    hot = per_item.index[(p_item < rules.item_alpha) & (ci >= rules.min_item_clicks)]
    clicks = rest[(rest["event_type"] == "click") & rest["item_id"].isin(hot)]
    per_pair = clicks.groupby(["item_id", "user_id"]).size()
    repeat = per_pair[per_pair > rules.max_user_item_clicks].index
    pairs = pd.MultiIndex.from_frame(frame[["item_id", "user_id"]])
    mask = pd.Series(pairs.isin(repeat), index=frame.index)
    n = take(mask, "item_click_rate", "repeated clicks on an item far above its trailing CTR")
    figures = {
        str(item): f"{ci[k]} clicks in {ni[k]} impressions vs reference CTR {base.iloc[k]:.4f}"
        for k, item in enumerate(per_item.index)
        if item in set(hot)
    }
    outcomes.append(
        Outcome(
            "item_click_rate",
            len(hot) == 0,
            f"{len(hot)} items far above their reference CTR; {n} events quarantined from "
            f"{len(repeat)} (item, user) pairs"
            + "".join(f"; {i}: {figures[i]}" for i in _ids(figures)[:5]),
            {"events": n, "items": len(hot), "named": _ids(hot), "figures": figures,
             "reference": "trailing" if trailing is not None and len(trailing) else "day",
             "abuse.item_alpha": rules.item_alpha,
             "abuse.item_ctr_multiple": rules.item_ctr_multiple,
             "abuse.min_item_clicks": rules.min_item_clicks,
             "abuse.max_user_item_clicks": rules.max_user_item_clicks},
            blocking=False,
        )
    )  # fmt: skip

    out = rule != ""
    quarantined = frame[out].assign(rule=rule[out], why=why[out]).reset_index(drop=True)
    counts = {
        "quarantined": int(out.sum()),
        "quarantined_users": int(quarantined["user_id"].nunique()),
        "quarantined_items": int(quarantined["item_id"].nunique()),
        **{f"quarantined_{k}": int(v) for k, v in quarantined["rule"].value_counts().items()},
    }
    return Screening(frame[~out].reset_index(drop=True), quarantined, outcomes, counts)
