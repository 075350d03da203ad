"""The canary judge: a pure function from both arms' online metrics to a verdict with its evidence.

Verdicts: ``promote``, ``continue`` (keep collecting, possibly at the next share of the
schedule), ``rollback`` and ``inconclusive`` (the data cannot support a decision: never promote).
Checks run in this order, and the first that decides wins:

1. **No data / NaN**: a missing arm, a missing or non-finite figure -> ``inconclusive``
   (never read as 0, never a pass).
2. **Same window**: both arms must cover the same days -> else ``inconclusive``.
3. **Guardrails** (fail the canary whatever its CTR -> ``rollback``): server error rate above
   production's by more than ``max_error_rate_increase`` with a one-sided Fisher exact test at
   ``guardrail_alpha``; latency p99 above ``max_latency_p99_ratio`` x production's (and above the
   noise floor); score drift PSI against the offline holdout above ``max_score_psi``.
4. **Sample-ratio mismatch**: chi-square test of the day's users per arm against the configured
   share at ``srm_alpha / max_days`` (Bonferroni over the judge's daily looks) -> ``inconclusive``
   (the split is broken, so no CTR comparison is trustworthy; the canary is not promoted).
5. **Minimum data**: impressions, clicks and users per arm -> else ``inconclusive``; the share
   still steps up after ``bake_days`` (more traffic is how a small site gets the data), unless
   the window has expired.
6. **Sequential CTR test** (peeking-safe): a mixture sequential probability ratio test (mSPRT,
   Johari et al. 2017; Robbins' normal mixture) on theta = log(CTR_canary / CTR_production),
   with the variance of each arm's CTR taken at the **user** level (delta method for a ratio of
   per-user sums). **Production reweighted to the canary's daily mix** (given ``daily`` arms):
   the canary's CTR over production's daily CTRs weighted by the canary's share of impressions
   on each day (see :func:`stratified_log_ratio`). Summing clicks and impressions over days while the canary's share
   ramps up would read a change common to both arms (a holiday, a drift) as a canary effect
   (Simpson's paradox); comparing with the same daily mix cancels it. The likelihood ratio is the ratio of two normal densities from
   ``scipy.stats.norm``: N(theta_hat; 0, V + tau^2) / N(theta_hat; 0, V). By Ville's inequality,
   rejecting when it reaches 1/alpha keeps the chance of *ever* rejecting a true A/A at or below
   alpha however often the judge looks (under the normal approximation of theta_hat).
   Rejected with theta_hat < 0 -> ``rollback``. Its confidence sequence (the thetas the test does
   not reject) gives ``promote`` when the canary is at the schedule's last share, has baked
   ``bake_days`` there, and the sequence excludes a relative drop larger than
   ``noninferiority_margin``.
7. **Maximum duration**: ``max_days`` reached without either -> ``inconclusive`` (expired; never
   promote). Otherwise ``continue``, stepping to the next share once ``bake_days`` have passed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy import stats

PROMOTE, CONTINUE, ROLLBACK, INCONCLUSIVE = "promote", "continue", "rollback", "inconclusive"
VERDICTS = (PROMOTE, CONTINUE, ROLLBACK, INCONCLUSIVE)


class JudgeConfig(BaseModel):
    """Limits of the canary judge. Every field has a default that runs the demo."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(0.05, gt=0, lt=1)  # bound on ever rejecting a true A/A (all looks)
    mixture_sd: float = Field(0.15, gt=0)  # mSPRT mixture sd on log CTR ratio (effects tuned to)
    noninferiority_margin: float = Field(0.10, gt=0, lt=1)  # promote: drop > this ruled out
    min_impressions: int = Field(2000, ge=1)  # per arm over the window, else inconclusive
    min_clicks: int = Field(50, ge=1)  # per arm over the window, else inconclusive
    min_users: int = Field(50, ge=2)  # per arm (delta-method variance needs many users)
    srm_alpha: float = Field(0.001, gt=0, lt=1)  # sample-ratio mismatch, over the whole canary
    share_schedule: tuple[float, ...] = (0.05, 0.10, 0.25, 0.50)  # canary share of users
    bake_days: int = Field(1, ge=1)  # minimum days at a share before stepping up or promoting
    max_days: int = Field(14, ge=1)  # canary expires (inconclusive) after this many days
    max_error_rate_increase: float = Field(0.01, ge=0)  # absolute, canary minus production
    guardrail_alpha: float = Field(0.01, gt=0, lt=1)  # one-sided Fisher test on error rates
    min_requests: int = Field(200, ge=1)  # per arm, before guardrails can judge at all
    max_latency_p99_ratio: float = Field(1.5, gt=1)  # canary p99 / production p99
    latency_p99_floor_ms: float = Field(5.0, ge=0)  # p99 below this is never a failure
    max_score_psi: float = Field(0.25, gt=0)  # canary scores vs offline holdout

    @field_validator("share_schedule")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0 < s < 1 for s in value) or list(value) != sorted(set(value)):
            raise ValueError(
                f"JudgeConfig.share_schedule must be strictly increasing shares in (0, 1), "
                f"got {value}"
            )
        return value


@dataclass(frozen=True)
class ArmMetrics:
    """One arm's online metrics over a window of days (first and last day, inclusive).

    CTR sufficient statistics are per user: ``sum_imp_sq`` = sum over users of impressions^2,
    ``sum_clk_sq`` of clicks^2, ``sum_imp_clk`` of impressions x clicks (see user_stats).
    ``errors`` are server errors (5xx) among ``requests``. ``latency_p99_ms`` and ``score_psi``
    are None when unknown (which is never a pass).
    """

    version: str
    window: tuple[str, str]
    users: int
    impressions: int
    clicks: int
    sum_imp_sq: float
    sum_clk_sq: float
    sum_imp_clk: float
    requests: int
    errors: int
    latency_p99_ms: float | None
    score_psi: float | None = None

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else math.nan


@dataclass(frozen=True)
class CanaryState:
    """Where the canary stands: its share of users now, days at that share and in total, and
    the latest day's active users per arm (for the sample-ratio test at that day's share)."""

    share: float
    days_at_share: int
    days_running: int
    day_users_canary: int
    day_users_production: int


@dataclass
class Verdict:
    decision: str
    reasons: list[str]
    figures: dict = field(default_factory=dict)
    next_share: float | None = None  # the share to serve the canary at tomorrow (continue only)

    def summary(self) -> str:
        """One line for an audit log: decision, reasons and the key figures."""
        keys = (
            "theta_hat",
            "ci_low",
            "ci_high",
            "likelihood_ratio",
            "ctr_canary",
            "ctr_production",
        )
        shown = {k: self.figures[k] for k in keys if k in self.figures}
        return f"judge: {self.decision}: {'; '.join(self.reasons)} {shown}"

    def as_dict(self) -> dict:
        return asdict(self)


def user_stats(impressions: np.ndarray, clicks: np.ndarray) -> dict[str, float]:
    """Sufficient statistics of CTR over users from per-user impression and click counts."""
    i = np.asarray(impressions, dtype=np.float64)
    c = np.asarray(clicks, dtype=np.float64)
    keep = i > 0
    i, c = i[keep], c[keep]
    return {
        "users": len(i),
        "impressions": int(i.sum()),
        "clicks": int(c.sum()),
        "sum_imp_sq": float(i @ i),
        "sum_clk_sq": float(c @ c),
        "sum_imp_clk": float(i @ c),
    }


def log_ctr_variance(arm: ArmMetrics) -> float:
    """Var(log CTR) with users as the unit: delta method for R = sum(c_u) / sum(i_u).

    Var(R) ~= (s_cc - 2 R s_ic + R^2 s_ii) / (n mean_i^2), with s_xy the sample (co)variances
    over users; Var(log R) ~= Var(R) / R^2. Impressions of one user are correlated, so this is
    larger than the per-impression binomial variance whenever users differ.
    """
    n = arm.users
    mi, mc = arm.impressions / n, arm.clicks / n
    s_ii = (arm.sum_imp_sq - n * mi * mi) / (n - 1)
    s_cc = (arm.sum_clk_sq - n * mc * mc) / (n - 1)
    s_ic = (arm.sum_imp_clk - n * mi * mc) / (n - 1)
    r = arm.clicks / arm.impressions
    var_r = max(s_cc - 2 * r * s_ic + r * r * s_ii, 0.0) / (n * mi * mi)
    return var_r / (r * r)


def msprt(theta_hat: float, variance: float, tau: float) -> float:
    """Mixture likelihood ratio of H1 theta ~ N(0, tau^2) against H0 theta = 0, for an estimate
    theta_hat ~ N(theta, variance): N(theta_hat; 0, V + tau^2) / N(theta_hat; 0, V)."""
    log_lr = stats.norm.logpdf(
        theta_hat, scale=math.sqrt(variance + tau * tau)
    ) - stats.norm.logpdf(theta_hat, scale=math.sqrt(variance))
    return math.exp(min(log_lr, 700.0))


def confidence_sequence(theta_hat: float, variance: float, tau: float, alpha: float) -> float:
    """Half-width of the anytime-valid confidence sequence: the thetas where msprt of
    (theta_hat - theta) stays below 1/alpha (solved for theta in closed form)."""
    v, t2 = variance, tau * tau
    return math.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + math.log((v + t2) / v)))


def _figures(arm: ArmMetrics, prefix: str) -> dict:
    return {
        f"version_{prefix}": arm.version,
        f"users_{prefix}": arm.users,
        f"impressions_{prefix}": arm.impressions,
        f"clicks_{prefix}": arm.clicks,
        f"ctr_{prefix}": arm.ctr,
        f"requests_{prefix}": arm.requests,
        f"errors_{prefix}": arm.errors,
        f"latency_p99_ms_{prefix}": arm.latency_p99_ms,
        f"score_psi_{prefix}": arm.score_psi,
    }


def _nonfinite(arm: ArmMetrics) -> list[str]:
    names = ("users", "impressions", "clicks", "sum_imp_sq", "sum_clk_sq", "sum_imp_clk")
    names += ("requests", "errors", "latency_p99_ms", "score_psi")
    out = []
    for name in names:
        value = getattr(arm, name)
        if value is None or not math.isfinite(float(value)) or float(value) < 0:
            out.append(name)
    return out


def stratified_log_ratio(
    daily: list[tuple[ArmMetrics, ArmMetrics]], canary: ArmMetrics | None = None
) -> tuple[float, float, int]:
    """(theta, variance, days used): log of the canary's CTR over production's CTR **reweighted
    to the canary's daily mix** (production's daily CTRs weighted by the canary's share of
    impressions on each day), so a change common to both arms cancels whatever the ramp.

    Variance: the canary's user-level delta-method variance over the whole window (``canary``:
    its users' impressions and clicks summed over the days, so a user seen on several days counts
    once: the clustering), plus the reweighted production CTR's, from each day's user-level
    variance. (Combining per-day ratios as if days were independent ignored that the same users
    come back every day, and rolled back 7-9% of A/A canaries at alpha 5% in bench/judge.py.)
    Days where an arm has fewer than 2 users or no click are left out."""
    used = [(c, p) for c, p in daily if min(c.users, p.users) >= 2 and min(c.clicks, p.clicks) >= 1]
    if not used:
        return math.nan, math.nan, 0
    imps = np.array([c.impressions for c, _ in used], dtype=np.float64)
    a = imps / imps.sum()
    p_ctr = np.array([p.ctr for _, p in used])
    p_var = np.array([log_ctr_variance(p) * p.ctr**2 for _, p in used])
    reweighted = float(a @ p_ctr)
    var_p = float((a * a) @ p_var) / reweighted**2
    c_clicks = sum(c.clicks for c, _ in used)
    c_ctr = c_clicks / imps.sum()
    var_c = (
        log_ctr_variance(canary)
        if canary is not None
        else float(
            sum(log_ctr_variance(c) * c.ctr**2 * w * w for (c, _), w in zip(used, a, strict=True))
        )
        / c_ctr**2
    )
    return math.log(c_ctr / reweighted), var_c + var_p, len(used)


def judge(
    canary: ArmMetrics | None,
    production: ArmMetrics | None,
    state: CanaryState,
    config: JudgeConfig | None = None,
    daily: list[tuple[ArmMetrics, ArmMetrics]] | None = None,
) -> Verdict:
    """The verdict for one look at a canary. Pure: same inputs, same verdict and figures.

    ``canary`` / ``production``: each arm over the whole window (guardrails, minimum data);
    ``daily``: the two arms day by day, for the CTR comparison at the same daily mix (without it, the
    window's sums are compared, which only the unit tests of the test itself use)."""
    cfg = config or JudgeConfig()
    figures: dict = {
        "share": state.share,
        "days_at_share": state.days_at_share,
        "days_running": state.days_running,
        "alpha": cfg.alpha,
    }

    def verdict(decision: str, *reasons: str, next_share: float | None = None) -> Verdict:
        return Verdict(decision, list(reasons), figures, next_share)

    # 1. No data, NaN.
    if canary is None or production is None:
        missing = [n for n, a in (("canary", canary), ("production", production)) if a is None]
        return verdict(INCONCLUSIVE, f"no data for {' and '.join(missing)}")
    figures |= _figures(canary, "canary") | _figures(production, "production")
    bad = [f"canary.{n}" for n in _nonfinite(canary)]
    bad += [f"production.{n}" for n in _nonfinite(production)]
    if bad:
        return verdict(INCONCLUSIVE, f"missing or non-finite figures: {', '.join(bad)}")
    # 2. Same window.
    if tuple(canary.window) != tuple(production.window):
        return verdict(
            INCONCLUSIVE,
            f"arms cover different windows: canary {canary.window}, production {production.window}",
        )
    figures["window"] = list(canary.window)

    # 3. Guardrails.
    failures = []
    if min(canary.requests, production.requests) >= cfg.min_requests:
        er_c = canary.errors / canary.requests
        er_p = production.errors / production.requests
        p_err = stats.fisher_exact(
            [
                [canary.errors, canary.requests - canary.errors],
                [production.errors, production.requests - production.errors],
            ],
            alternative="greater",
        ).pvalue
        figures |= {"error_rate_canary": er_c, "error_rate_production": er_p, "error_p": p_err}
        if er_c - er_p > cfg.max_error_rate_increase and p_err < cfg.guardrail_alpha:
            failures.append(
                f"error rate {er_c:.4f} vs production {er_p:.4f} (+{er_c - er_p:.4f} > "
                f"max_error_rate_increase {cfg.max_error_rate_increase}, Fisher p={p_err:.2g})"
            )
        ratio = canary.latency_p99_ms / max(production.latency_p99_ms, 1e-9)
        figures["latency_p99_ratio"] = ratio
        if ratio > cfg.max_latency_p99_ratio and canary.latency_p99_ms > cfg.latency_p99_floor_ms:
            failures.append(
                f"latency p99 {canary.latency_p99_ms:.1f} ms = {ratio:.2f}x production "
                f"{production.latency_p99_ms:.1f} ms (> max_latency_p99_ratio "
                f"{cfg.max_latency_p99_ratio})"
            )
    if canary.score_psi > cfg.max_score_psi:
        failures.append(
            f"score PSI vs offline holdout {canary.score_psi:.3f} > max_score_psi "
            f"{cfg.max_score_psi}"
        )
    if failures:
        return verdict(ROLLBACK, *(f"guardrail: {f}" for f in failures))

    # 4. Sample-ratio mismatch on the latest day.
    n_day = state.day_users_canary + state.day_users_production
    if n_day > 0:
        srm = stats.chisquare(
            [state.day_users_canary, state.day_users_production],
            [state.share * n_day, (1 - state.share) * n_day],
        )
        srm_level = cfg.srm_alpha / cfg.max_days
        figures |= {"srm_p": float(srm.pvalue), "srm_level": srm_level}
        if srm.pvalue < srm_level:
            return verdict(
                INCONCLUSIVE,
                f"sample-ratio mismatch: {state.day_users_canary} of {n_day} users on the canary "
                f"for a configured share of {state.share} (chi-square p={srm.pvalue:.2g} < "
                f"{srm_level:.2g})",
            )

    # 5. Minimum data.
    short = []
    for name, arm in (("canary", canary), ("production", production)):
        for what, have, need in (
            ("impressions", arm.impressions, cfg.min_impressions),
            ("clicks", arm.clicks, cfg.min_clicks),
            ("users", arm.users, cfg.min_users),
        ):
            if have < need:
                short.append(f"{name} has {have} {what} < min_{what} {need}")
    expired = state.days_running >= cfg.max_days
    last = cfg.share_schedule[-1]
    at_last = state.share >= last
    baked = state.days_at_share >= cfg.bake_days
    if short:
        reasons = ["too little data: " + "; ".join(short)]
        if expired:
            reasons.append(f"max_days {cfg.max_days} reached: canary expired")
            return verdict(INCONCLUSIVE, *reasons)
        step = next((s for s in cfg.share_schedule if s > state.share), None)
        if baked and step is not None:
            # More traffic is how a small site gets the data: guardrails and the split passed.
            reasons.append(f"share {state.share} -> {step} after {state.days_at_share} day(s)")
            return verdict(INCONCLUSIVE, *reasons, next_share=step)
        return verdict(INCONCLUSIVE, *reasons)

    # 6. Sequential CTR test, production reweighted to the canary's daily mix.
    if daily:
        theta_hat, variance, used = stratified_log_ratio(daily, canary)
        figures["days_compared"] = used
        figures["ctr_ratio_pooled"] = canary.ctr / production.ctr
        if used == 0:
            return verdict(INCONCLUSIVE, "no day with clicks on both arms to compare within")
    else:
        variance = log_ctr_variance(canary) + log_ctr_variance(production)
        theta_hat = math.log(canary.ctr / production.ctr)
    lr = msprt(theta_hat, variance, cfg.mixture_sd)
    half = confidence_sequence(theta_hat, variance, cfg.mixture_sd, cfg.alpha)
    floor = math.log(1 - cfg.noninferiority_margin)
    figures |= {
        "theta_hat": theta_hat,
        "relative_ctr_change": math.expm1(theta_hat),
        "variance_log_ratio": variance,
        "likelihood_ratio": lr,
        "threshold": 1 / cfg.alpha,
        "ci_low": math.expm1(theta_hat - half),
        "ci_high": math.expm1(theta_hat + half),
        "noninferiority_floor": -cfg.noninferiority_margin,
    }
    if lr >= 1 / cfg.alpha and theta_hat < 0:
        return verdict(
            ROLLBACK,
            f"CTR {canary.ctr:.4f} vs production {production.ctr:.4f} "
            f"({math.expm1(theta_hat):+.1%} at the same daily mix): mSPRT likelihood ratio {lr:.1f} >= 1/alpha "
            f"{1 / cfg.alpha:.0f}",
        )
    if theta_hat - half > floor and at_last and baked:
        return verdict(
            PROMOTE,
            f"CTR {math.expm1(theta_hat):+.1%} vs production, anytime-valid interval "
            f"[{math.expm1(theta_hat - half):+.1%}, {math.expm1(theta_hat + half):+.1%}] rules "
            f"out a drop beyond {cfg.noninferiority_margin:.0%}; at the final share {last} for "
            f"{state.days_at_share} day(s); guardrails pass",
        )
    # 7. Expiry, or keep going.
    if expired:
        return verdict(
            INCONCLUSIVE,
            f"max_days {cfg.max_days} reached without a decision (interval "
            f"[{math.expm1(theta_hat - half):+.1%}, {math.expm1(theta_hat + half):+.1%}]): "
            f"canary expired",
        )
    next_share = state.share
    if baked and not at_last:
        next_share = next(s for s in cfg.share_schedule if s > state.share)
    why = (
        f"no decision yet: CTR {math.expm1(theta_hat):+.1%}, interval "
        f"[{math.expm1(theta_hat - half):+.1%}, {math.expm1(theta_hat + half):+.1%}]"
    )
    if next_share != state.share:
        why += f"; share {state.share} -> {next_share} after {state.days_at_share} day(s)"
    return verdict(CONTINUE, why, next_share=next_share)
