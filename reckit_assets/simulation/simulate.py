"""A deterministic simulated data warehouse: the landing zone's events, users and items, plus the
ground truth (the click and conversion probabilities each impression was drawn with).

The *world* (users, items, latent tastes, item quality, category structure) comes from
``default_rng(seed)``; each day's traffic from ``default_rng([seed, day_index])``, so any single day
can be re-simulated alone and gives the same bytes as in a full run.

Click model per impression (logit)::

    bias + affinity(user, category) + appeal(category) + quality(item) + f(age, category)
         + g(gender, price) - 0.25 * position + device effect

so item CTR history, category, price, age, gender, ids, device and position all carry signal.
From ``drift_from`` on, a ``drift_strength`` share of users move their affinities to other
categories (and category appeal shifts with them); they browse only half by their new tastes, as
the serving policy keeps showing what they used to like: CTR falls, as after a real taste shift.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from reckit_assets.core.ingest.landing import EVENT_TYPES, write_partition
from reckit_assets.core.io import frames
from reckit_assets.core.io.storage import Storage

CATEGORIES = (
    "books", "music", "movies", "games", "electronics", "phones", "computers", "home",
    "garden", "kitchen", "toys", "baby", "beauty", "health", "fashion", "shoes", "sports",
    "outdoor", "auto", "pets",
)  # fmt: skip
REGIONS = ("north", "south", "east", "west", "central", "coast", "mountain", "islands")
REGION_WEIGHTS = (0.2, 0.18, 0.15, 0.14, 0.12, 0.1, 0.07, 0.04)
GENDERS = ("F", "M", "U")
DEVICES = ("ios", "android", "web")

_BIAS = -2.8  # tuned: overall CTR ~5% with the default world
_POSITION_SLOPE = 0.25
_DEVICE_EFFECT = np.array([0.15, 0.0, -0.25])
_GENDER_PRICE = np.array([0.3, -0.3, 0.0])  # F clicks pricier items more, M cheaper ones
_CONV_BIAS = -2.1  # ~11% of clicks convert
_HOUR_WEIGHTS = np.array(
    [1.0, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.2, 1.5, 1.5, 1.4, 1.5,
     1.7, 1.6, 1.5, 1.5, 1.6, 1.8, 2.2, 2.6, 2.8, 2.6, 2.0, 1.4]
)  # fmt: skip
_DAY_MS = 86_400_000

# Dirty-data rates (messy=True); each kind is injected at least once so small runs exercise it.
DUPLICATE_RATE = 0.003  # of events
ORPHAN_CLICK_RATE = 0.002  # of clicks
OUT_OF_DAY_RATE = 0.001  # of events
NULL_MODEL_VERSION_RATE = 0.02  # of requests

# Id streams: keep the hashed id spaces of different kinds of ids disjoint.
_EVENT, _REQUEST, _ORPHAN_REQUEST, _MODEL = 1, 2, 3, 4


@dataclass(frozen=True)
class SimulationConfig:
    start: str = "2026-10-01"  # first day, YYYY-MM-DD
    days: int = 10
    n_users: int = 3000
    n_items: int = 600
    impressions_per_day: int = 30000
    seed: int = 7
    drift_from: str | None = None  # from this day on, user preferences shift
    drift_strength: float = 1.0  # share of users whose tastes move to other categories
    messy: bool = True  # inject small realistic rates of dirty data

    def __post_init__(self) -> None:
        for name in ("days", "n_users", "n_items", "impressions_per_day"):
            if getattr(self, name) < 1:
                raise ValueError(f"SimulationConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_items < len(CATEGORIES):
            raise ValueError(f"SimulationConfig.n_items must be >= {len(CATEGORIES)}")
        if not 0.0 <= self.drift_strength <= 1.0:
            raise ValueError(
                f"SimulationConfig.drift_strength must be in [0, 1], got {self.drift_strength}"
            )
        _parse_day(self.start, "start")
        if self.drift_from is not None:
            _parse_day(self.drift_from, "drift_from")

    def day(self, day_index: int) -> str:
        """The date (YYYY-MM-DD) of day ``day_index``."""
        return str(np.datetime64(self.start, "D") + day_index)

    @property
    def dates(self) -> list[str]:
        return [self.day(i) for i in range(self.days)]


@dataclass
class SimulatedDay:
    dt: str
    events: pd.DataFrame  # landing contract columns (see landing.SCHEMAS["events"])
    users: pd.DataFrame  # user_id, age, gender, region, signup_dt: users signed up by dt
    items: pd.DataFrame  # item_id, category, price, launch_dt: items launched by dt
    oracle: pd.DataFrame  # one row per impression: the probabilities its outcome was drawn with
    counts: dict = field(default_factory=dict)


def _parse_day(text: str, what: str) -> np.datetime64:
    try:
        day = np.datetime64(text, "D")
    except ValueError:
        raise ValueError(f"SimulationConfig.{what}: {text!r} is not a YYYY-MM-DD date") from None
    if str(day) != text:
        raise ValueError(f"SimulationConfig.{what}: {text!r} is not a YYYY-MM-DD date")
    return day


# ---------------------------------------------------------------------------------------------
# Vectorised id helpers: hashing is bijective, so distinct keys give distinct ids.

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection on uint64 that scatters neighbouring keys."""
    z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _mix32(x: np.ndarray) -> np.ndarray:
    """A bijection on 32-bit values (lowbias32), kept in uint64: short ids that never collide."""
    mask = np.uint64(0xFFFFFFFF)
    z = np.asarray(x, dtype=np.uint64) & mask
    z = ((z ^ (z >> np.uint64(16))) * np.uint64(0x7FEB352D)) & mask
    z = ((z ^ (z >> np.uint64(15))) * np.uint64(0x846CA68B)) & mask
    return z ^ (z >> np.uint64(16))


def _keys(seed: int, stream: int, day_index: int, rows: np.ndarray) -> np.ndarray:
    """Unique uint64 keys per (seed, stream, day, row), hashed."""
    salt = mix64(np.array([seed], dtype=np.uint64))[0]
    raw = (
        (np.uint64(stream) << np.uint64(56))
        | (np.uint64(day_index) << np.uint64(32))
        | np.asarray(rows, dtype=np.uint64)
    )
    return mix64(raw ^ salt)


def _hex_ids(prefix: str, keys: np.ndarray, width: int = 16) -> np.ndarray:
    """``f"{prefix}{key:016x}"[-width:]`` for every key, without a Python loop."""
    keys = np.ascontiguousarray(keys, dtype=">u8")
    n = len(keys)
    octets = keys.view(np.uint8).reshape(n, 8)
    nibbles = np.empty((n, 16), dtype=np.uint8)
    nibbles[:, 0::2] = octets >> 4
    nibbles[:, 1::2] = octets & 15
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    size = len(head) + width
    out = np.empty((n, size), dtype=np.uint8)
    out[:, : len(head)] = head
    out[:, len(head) :] = _HEX[nibbles[:, 16 - width :]]
    return out.view(f"S{size}").reshape(n).astype(f"U{size}")


def _dec_ids(prefix: str, values: np.ndarray, width: int) -> np.ndarray:
    """``f"{prefix}{value:0{width}d}"`` for every value, without a Python loop."""
    values = np.asarray(values, dtype=np.int64)
    n = len(values)
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    size = len(head) + width
    out = np.empty((n, size), dtype=np.uint8)
    out[:, : len(head)] = head
    out[:, len(head) :] = (values[:, None] // powers % 10 + ord("0")).astype(np.uint8)
    return out.view(f"S{size}").reshape(n).astype(f"U{size}")


def _take_str(vocab: np.ndarray, index: np.ndarray) -> pd.Series:
    """``vocab[index]`` as a string column; Arrow's take avoids building millions of strings."""
    return pa.array(vocab, type=pa.string()).take(pa.array(index)).to_pandas()


def _dates(start: np.datetime64, offsets: np.ndarray) -> np.ndarray:
    return (start + offsets.astype("timedelta64[D]")).astype("U10")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------------------------------
# The world: fixed for a config, shared by all days.


@dataclass(frozen=True)
class _World:
    user_ids: np.ndarray
    age: np.ndarray
    gender: np.ndarray  # index into GENDERS
    region: np.ndarray  # index into REGIONS
    signup_day: np.ndarray  # relative to start; negative = before the simulation
    activity: np.ndarray  # heavy-tailed request rate weights
    session_len: np.ndarray  # requests per session (mean)
    primary_device: np.ndarray  # index into DEVICES
    taste: np.ndarray  # (users, categories) browse probabilities
    affinity: np.ndarray  # (users, categories) click logit term
    item_ids: np.ndarray
    item_cat: np.ndarray
    price: np.ndarray
    log_price_z: np.ndarray
    launch_day: np.ndarray
    popularity: np.ndarray  # Zipf-like weights
    quality: np.ndarray  # click logit term
    conv_quality: np.ndarray  # conversion logit term
    cat_appeal: np.ndarray
    cat_age_center: np.ndarray
    drift_perm: np.ndarray  # category c's affinity moves to drift_perm[c] (no fixed points)
    drift_rank: np.ndarray  # users with drift_rank < drift_strength drift


@functools.lru_cache(maxsize=4)
def _world(config: SimulationConfig) -> _World:
    rng = np.random.default_rng(config.seed)
    n_u, n_i, n_c = config.n_users, config.n_items, len(CATEGORIES)

    # Users: ~60% exist before the first day, the rest sign up during the simulation.
    age = np.clip(np.round(rng.normal(37, 13, n_u)), 16, 75).astype(np.int64)
    gender = rng.choice(3, size=n_u, p=[0.48, 0.47, 0.05])
    region = rng.choice(len(REGIONS), size=n_u, p=REGION_WEIGHTS)
    existing = rng.random(n_u) < 0.6
    signup_day = np.where(
        existing, -rng.integers(1, 730, n_u), rng.integers(0, config.days, n_u)
    ).astype(np.int64)
    activity = rng.lognormal(0.0, 1.3, n_u)
    session_len = rng.integers(1, 6, n_u)
    primary_device = rng.choice(3, size=n_u, p=[0.35, 0.45, 0.2])
    # Sparse tastes (Dirichlet 0.3): most users browse two or three categories.
    taste = rng.dirichlet(np.full(n_c, 0.3), size=n_u)
    affinity = np.clip(0.6 * np.log(taste * n_c + 0.1), -1.5, 1.5) + rng.normal(0, 0.3, (n_u, n_c))
    # A seed-dependent offset keeps the id sets of different seeds apart.
    salt = mix64(np.array([config.seed], dtype=np.uint64)) & np.uint64(0xFFFFFFFF)
    user_ids = _hex_ids("u_", _mix32(np.arange(n_u, dtype=np.uint64) + salt), 8)

    # Items: uneven category sizes, every category non-empty and served from day one.
    cat_weights = rng.dirichlet(np.full(n_c, 2.0))
    item_cat = np.concatenate([np.arange(n_c), rng.choice(n_c, size=n_i - n_c, p=cat_weights)])
    cat_log_price = rng.uniform(np.log(5), np.log(200), n_c)
    price = np.round(np.exp(cat_log_price[item_cat] + rng.normal(0, 0.5, n_i)), 2)
    log_price = np.log(price)
    log_price_z = (log_price - log_price.mean()) / (log_price.std() + 1e-9)
    old = (rng.random(n_i) < 0.75) | (np.arange(n_i) < n_c)
    launch_day = np.where(
        old, -rng.integers(1, 1000, n_i), rng.integers(0, config.days, n_i)
    ).astype(np.int64)
    rank = rng.permutation(n_i)
    popularity = 1.0 / (rank + 1.0) ** 1.1
    # Popular items are a bit better: item CTR history predicts clicks, but not perfectly.
    quality = rng.normal(0, 0.45, n_i) + 0.08 * (np.log(popularity) - np.log(popularity).mean())
    conv_quality = rng.normal(0, 0.4, n_i)
    sku = (mix64(np.arange(n_i, dtype=np.uint64) + np.uint64(config.seed)) & np.uint64(3)) == 0
    item_ids = np.where(
        sku,
        _hex_ids("sku-", mix64(np.arange(n_i, dtype=np.uint64) + np.uint64(1 << 33)), 10),
        _dec_ids("i-", np.arange(n_i), max(6, len(str(n_i)))),
    )

    cat_appeal = rng.normal(0, 0.3, n_c)
    cat_age_center = rng.uniform(20, 65, n_c)
    order = rng.permutation(n_c)
    drift_perm = np.empty(n_c, dtype=np.int64)
    drift_perm[order] = np.roll(order, 1)

    world = _World(
        user_ids=user_ids,
        age=age,
        gender=gender,
        region=region,
        signup_day=signup_day,
        activity=activity,
        session_len=session_len,
        primary_device=primary_device,
        taste=taste,
        affinity=affinity.astype(np.float32),
        item_ids=item_ids,
        item_cat=item_cat,
        price=price,
        log_price_z=log_price_z,
        launch_day=launch_day,
        popularity=popularity,
        quality=quality,
        conv_quality=conv_quality,
        cat_appeal=cat_appeal,
        cat_age_center=cat_age_center,
        drift_perm=drift_perm,
        drift_rank=rng.random(n_u),
    )
    for value in vars(world).values():
        value.flags.writeable = False  # cached and shared between days
    return world


def _browse_cum(world: _World, users: np.ndarray, drifts: np.ndarray) -> np.ndarray:
    """Cumulative category-choice probabilities of ``users``; drifted users half follow their
    new tastes (the other half is the serving policy pushing what they used to like)."""
    taste = world.taste[users]
    moved = drifts[users]
    if moved.any():
        taste[moved] = 0.5 * taste[moved] + 0.5 * taste[moved][:, world.drift_perm]
    return np.cumsum(taste, axis=1)


def _draw_rows(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw per row: ``cum`` (rows, k) cumulative probabilities, ``u`` uniforms."""
    return np.minimum((cum < u[:, None]).sum(axis=1), cum.shape[1] - 1)


class _ItemSampler:
    """Popularity-weighted draws among the items launched by one day, by category or overall."""

    def __init__(self, world: _World, day_index: int) -> None:
        launched = np.flatnonzero(world.launch_day <= day_index)
        self.launched = launched
        w = world.popularity[launched]
        gcum = np.cumsum(w) / w.sum()
        gcum[-1] = 1.0
        self.global_cum = gcum
        # Items sorted by category; key = category + within-category CDF, so one searchsorted
        # serves every category at once.
        by_cat = launched[np.argsort(world.item_cat[launched], kind="stable")]
        cats = world.item_cat[by_cat]
        w = world.popularity[by_cat]
        n_c = len(CATEGORIES)
        self.cat_total = np.bincount(cats, weights=w, minlength=n_c)
        before = np.cumsum(self.cat_total) - self.cat_total
        local = (np.cumsum(w) - before[cats]) / self.cat_total[cats]
        last = np.r_[cats[1:] != cats[:-1], True]
        local[last] = 1.0
        self.cat_key = cats + local
        self.by_cat = by_cat
        self.cat_first = np.searchsorted(cats, np.arange(n_c), side="left")
        self.cat_last = np.searchsorted(cats, np.arange(n_c), side="right") - 1

    def overall(self, u: np.ndarray) -> np.ndarray:
        j = np.searchsorted(self.global_cum, u, side="right")
        return self.launched[np.minimum(j, len(self.launched) - 1)]

    def in_category(self, cats: np.ndarray, u: np.ndarray) -> np.ndarray:
        j = np.searchsorted(self.cat_key, cats + u, side="right")
        # Guard against rounding at a category's upper edge.
        return self.by_cat[np.clip(j, self.cat_first[cats], self.cat_last[cats])]


# ---------------------------------------------------------------------------------------------
# One day.


def simulate_day(config: SimulationConfig, day_index: int) -> SimulatedDay:
    """Simulate day ``day_index`` (0-based) alone; the same inputs always give the same frames."""
    if not 0 <= day_index < config.days:
        raise ValueError(f"day_index {day_index} is outside 0..{config.days - 1}")
    world = _world(config)
    rng = np.random.default_rng([config.seed, day_index])
    dt = config.day(day_index)
    day_start_ms = int(np.datetime64(dt, "ms").astype(np.int64))
    drifted = config.drift_from is not None and dt >= config.drift_from
    strength = config.drift_strength if drifted else 0.0
    # Drift moves whole users (each user's taste is old or new), so its effect grows with strength.
    user_drifts = world.drift_rank < strength
    # --- Requests: slate sizes summing to impressions_per_day (a few 1-3 item widgets).
    n_target = config.impressions_per_day
    m = n_target // 8 + 16
    widget = rng.random(m) < 0.08
    sizes = np.where(widget, rng.integers(1, 4, m), rng.integers(6, 15, m))
    cum = np.cumsum(sizes)
    n_req = int(np.searchsorted(cum, n_target, side="left")) + 1
    sizes = sizes[:n_req].copy()
    sizes[-1] -= cum[n_req - 1] - n_target

    # Users who have signed up, weighted by a heavy-tailed activity rate.
    eligible = np.flatnonzero(world.signup_day <= day_index)
    act_cum = np.cumsum(world.activity[eligible])
    picks = np.searchsorted(act_cum, rng.random(n_req) * act_cum[-1], side="right")
    req_user = np.sort(eligible[np.minimum(picks, len(eligible) - 1)])

    # Sessions: consecutive requests of a user, a few at a time, seconds apart.
    idx = np.arange(n_req)
    first_of_user = np.r_[True, req_user[1:] != req_user[:-1]]
    rank = idx - np.maximum.accumulate(np.where(first_of_user, idx, 0))
    session_start = rank % world.session_len[req_user] == 0
    session = np.cumsum(session_start) - 1
    n_sess = int(session[-1]) + 1
    hours = rng.choice(24, size=n_sess, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    sess_sec = hours * 3600.0 + rng.random(n_sess) * 3600.0
    gaps = rng.exponential(40.0, n_req)
    gaps[session_start] = 0.0
    elapsed = np.cumsum(gaps)
    elapsed -= elapsed[np.flatnonzero(session_start)][session]
    req_ms = np.round(np.minimum(sess_sec[session] + elapsed, 86_400 - 120) * 1000).astype(np.int64)
    sess_user = req_user[session_start]
    sess_device = np.where(
        rng.random(n_sess) < 0.85, world.primary_device[sess_user], rng.integers(0, 3, n_sess)
    )
    req_device = sess_device[session]
    # Each request shows one category; sessions tend to stay on one category.
    sess_cat = _draw_rows(_browse_cum(world, sess_user, user_drifts), rng.random(n_sess))
    fresh_cat = _draw_rows(_browse_cum(world, req_user, user_drifts), rng.random(n_req))
    req_cat = np.where(rng.random(n_req) < 0.7, sess_cat[session], fresh_cat)
    # Serving model: a new xgb version every 3 days, with a two-tower challenger on 20%.
    epoch = np.array([day_index // 3], dtype=np.uint64)
    versions = np.array(
        [
            "xgb-" + _hex_ids("", _keys(config.seed, _MODEL, 0, epoch), 6)[0],
            "tt-" + _hex_ids("", _keys(config.seed, _MODEL, 1, epoch), 6)[0],
            None,  # a fallback served without a model
        ],
        dtype=object,
    )
    req_version = (rng.random(n_req) < 0.2).astype(np.int64)  # index into versions
    null_version = np.zeros(n_req, dtype=bool)
    if config.messy:
        null_version = rng.random(n_req) < NULL_MODEL_VERSION_RATE
        req_version[null_version] = 2

    # Number requests in time order.
    order = np.argsort(req_ms, kind="stable")
    req_user, req_ms, req_device, req_cat, req_version = (
        a[order] for a in (req_user, req_ms, req_device, req_cat, req_version)
    )
    req_ids = _hex_ids("r", _keys(config.seed, _REQUEST, day_index, np.arange(n_req)))

    # --- Impressions: ~80% from the request's category, the rest popular items overall.
    sampler = _ItemSampler(world, day_index)
    imp_req = np.repeat(np.arange(n_req), sizes)
    imp_cat = req_cat[imp_req]
    from_cat = (rng.random(n_target) < 0.8) & (sampler.cat_total[imp_cat] > 0)
    u = rng.random(n_target)
    items = np.where(from_cat, sampler.in_category(imp_cat, u), sampler.overall(u))
    # An item shows at most once per slate: redraw repeats (same source first, then overall).
    dup = np.zeros(n_target, dtype=bool)
    for attempt in range(12):
        key = imp_req * np.int64(config.n_items) + items
        srt = np.argsort(key, kind="stable")
        dup = np.zeros(n_target, dtype=bool)
        dup[srt[1:][key[srt][1:] == key[srt][:-1]]] = True
        n_dup = int(dup.sum())
        if not n_dup:
            break
        u = rng.random(n_dup)
        if attempt < 3:
            redraw = np.where(
                from_cat[dup], sampler.in_category(imp_cat[dup], u), sampler.overall(u)
            )
        else:
            redraw = sampler.launched[(u * len(sampler.launched)).astype(np.int64)]
        items[dup] = redraw
    keep = ~dup  # rare leftovers (a slate larger than what is launched) are dropped
    imp_req, items = imp_req[keep], items[keep]
    n_imp = len(items)
    counts_per_req = np.bincount(imp_req, minlength=n_req)
    position = np.arange(n_imp) - np.repeat(
        np.cumsum(counts_per_req) - counts_per_req, counts_per_req
    )

    # --- Ground truth and outcomes.
    imp_user = req_user[imp_req]
    cat = world.item_cat[items]
    device = req_device[imp_req]
    affinity = world.affinity[imp_user, cat].astype(np.float64)
    appeal = world.cat_appeal[cat]
    if strength > 0:
        moved = world.drift_perm[cat]
        drifts = user_drifts[imp_user]
        affinity = np.where(drifts, world.affinity[imp_user, moved], affinity)
        appeal = (1 - strength) * appeal + strength * world.cat_appeal[moved]
    age_fit = (
        0.9 * np.exp(-(((world.age[imp_user] - world.cat_age_center[cat]) / 15.0) ** 2)) - 0.45
    )
    price_z = world.log_price_z[items]
    logit = (
        _BIAS
        + affinity
        + appeal
        + world.quality[items]
        + age_fit
        + (_GENDER_PRICE[world.gender[imp_user]] - 0.15) * price_z
        - _POSITION_SLOPE * position
        + _DEVICE_EFFECT[device]
    )
    p_click = _sigmoid(logit)
    p_conv = _sigmoid(_CONV_BIAS + world.conv_quality[items] - 0.5 * price_z + 0.1 * (device == 0))
    clicked = rng.random(n_imp) < p_click
    converted = clicked & (rng.random(n_imp) < p_conv)
    imp_ms = req_ms[imp_req]
    click_ms = imp_ms + 800 + np.round(rng.lognormal(np.log(6000), 0.8, n_imp)).astype(np.int64)
    conv_ms = click_ms + np.round(rng.exponential(8 * 60_000, n_imp)).astype(np.int64)
    # Clean data stays inside the day (late clicks would belong to tomorrow's partition).
    click_ms = np.minimum(click_ms, _DAY_MS - 1)
    conv_ms = np.minimum(conv_ms, _DAY_MS - 1)

    # --- Events: every event points at its impression (src); orphans get a request that
    # never had an impression.
    click_src = np.flatnonzero(clicked)
    conv_src = np.flatnonzero(converted)
    src = np.concatenate([np.arange(n_imp), click_src, conv_src])
    etype = np.repeat(np.array([0, 1, 2], dtype=np.int8), [n_imp, len(click_src), len(conv_src)])
    ts_ms = np.concatenate([imp_ms, click_ms[click_src], conv_ms[conv_src]])
    ev_req = imp_req[src]  # index into request_vocab
    request_vocab = req_ids
    n_orphans = 0
    if config.messy:
        n_orphans = max(1, round(ORPHAN_CLICK_RATE * len(click_src)))
        orphan_src = rng.choice(n_imp, size=n_orphans, replace=False)
        src = np.concatenate([src, orphan_src])
        etype = np.concatenate([etype, np.ones(n_orphans, dtype=np.int8)])
        ts_ms = np.concatenate([ts_ms, click_ms[orphan_src]])
        orphan_req = _hex_ids(
            "r", _keys(config.seed, _ORPHAN_REQUEST, day_index, np.arange(n_orphans))
        )
        ev_req = np.concatenate([ev_req, n_req + np.arange(n_orphans)])
        request_vocab = np.concatenate([req_ids, orphan_req])
    n_events = len(src)
    ts_ms = ts_ms + day_start_ms
    event_id = _hex_ids("e", _keys(config.seed, _EVENT, day_index, np.arange(n_events)))

    rows = np.arange(n_events)
    n_out = 0
    if config.messy:
        # Clock skew / late arrivals: a few events hours outside their partition's day.
        n_out = max(1, round(OUT_OF_DAY_RATE * n_events))
        shifted = rng.choice(n_events, size=n_out, replace=False)
        hours_off = np.round(rng.uniform(0.25, 4.0, n_out) * 3_600_000).astype(np.int64)
        after = rng.random(n_out) < 0.5
        ts_ms[shifted] = np.where(
            after, day_start_ms + _DAY_MS + hours_off, day_start_ms - hours_off
        )
        # Exact duplicate rows, as an at-least-once export produces.
        n_dups = max(1, round(DUPLICATE_RATE * n_events))
        rows = np.concatenate([rows, rng.choice(n_events, size=n_dups, replace=False)])
    rows = rows[np.argsort(ts_ms[rows], kind="stable")]
    s = src[rows]
    events = pd.DataFrame(
        {
            "event_id": _take_str(event_id, rows),
            "ts": pd.DatetimeIndex(ts_ms[rows].astype("datetime64[ms]")).tz_localize("UTC"),
            "user_id": _take_str(world.user_ids, imp_user[s]),
            "item_id": _take_str(world.item_ids, items[s]),
            "event_type": _take_str(np.array(EVENT_TYPES), etype[rows]),
            "request_id": _take_str(request_vocab, ev_req[rows]),
            "position": position[s].astype(np.int64),
            "device": _take_str(np.array(DEVICES), device[s]),
            "model_version": _take_str(versions, req_version[imp_req[s]]),
        }
    )

    oracle = pd.DataFrame(
        {
            "request_id": _take_str(req_ids, imp_req),
            "item_id": _take_str(world.item_ids, items),
            "user_id": _take_str(world.user_ids, imp_user),
            "position": position.astype(np.int64),
            "p_click": p_click,
            "p_conversion_given_click": p_conv,
        }
    )

    start = np.datetime64(config.start, "D")
    signed_up = np.flatnonzero(world.signup_day <= day_index)
    users = pd.DataFrame(
        {
            "user_id": world.user_ids[signed_up],
            "age": world.age[signed_up],
            "gender": np.array(GENDERS)[world.gender[signed_up]],
            "region": np.array(REGIONS)[world.region[signed_up]],
            "signup_dt": _dates(start, world.signup_day[signed_up]),
        }
    )
    launched = sampler.launched
    items_frame = pd.DataFrame(
        {
            "item_id": world.item_ids[launched],
            "category": np.array(CATEGORIES)[world.item_cat[launched]],
            "price": world.price[launched],
            "launch_dt": _dates(start, world.launch_day[launched]),
        }
    )

    in_day = (ts_ms[rows] >= day_start_ms) & (ts_ms[rows] < day_start_ms + _DAY_MS)
    counts = {
        "dt": dt,
        "events": len(events),
        "impressions": n_imp,
        "clicks": len(click_src),
        "conversions": len(conv_src),
        "requests": n_req,
        "active_users": len(np.unique(req_user)),
        "users": len(users),
        "items": len(items_frame),
        "new_users": int((world.signup_day == day_index).sum()),
        "new_items": int((world.launch_day == day_index).sum()),
        "duplicates": len(rows) - n_events,
        "orphan_clicks": n_orphans,
        "out_of_day": int((~in_day).sum()),
        "null_model_version": int(events["model_version"].isna().sum()),
        "null_model_version_requests": int(null_version.sum()),
        "mean_p_click": float(p_click.mean()),
        "drift_strength": float(strength),
        "drifted_users": int(user_drifts.sum()),
    }
    return SimulatedDay(
        dt=dt, events=events, users=users, items=items_frame, oracle=oracle, counts=counts
    )


def write_simulation(config: SimulationConfig, landing: Storage, oracle: Storage) -> list[dict]:
    """Land every simulated day (users, items, then events; each with ``_SUCCESS``) and write the
    oracle to ``oracle/dt=<dt>/part-00000.parquet``. Returns the per-day counts."""
    out = []
    for day_index in range(config.days):
        day = simulate_day(config, day_index)
        frames.write_frame(oracle, f"oracle/dt={day.dt}/part-00000.parquet", day.oracle)
        write_partition(landing, "users", day.dt, day.users)
        write_partition(landing, "items", day.dt, day.items)
        # Events last: with all three markers present the day counts as ready.
        write_partition(landing, "events", day.dt, day.events)
        out.append(day.counts)
    return out
