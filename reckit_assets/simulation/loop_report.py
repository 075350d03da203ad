"""report.md and online_ctr.png of a closed-loop run (see loop.py), with the must-show checks
computed from the run's own timeline and daily figures."""

from __future__ import annotations

from pathlib import Path


def _checks(cfg, days: list[dict], timeline: list[dict]) -> list[tuple[str, bool | None, str]]:
    out: list[tuple[str, bool | None, str]] = []
    if cfg.bad_canary_on:
        bad = next((d.get("bad_canary") for d in days if d.get("bad_canary")), None)
        moves = [t for t in timeline if t["kind"] == "alias_move"]
        cleared = next(
            (
                t
                for t in moves
                if t["alias"] == "canary" and t["from_version"] == bad and t["to_version"] is None
            ),
            None,
        )
        to_prod = any(t["alias"] == "production" and t["to_version"] == bad for t in moves)
        within = cleared is not None and cleared["day"] - cfg.bad_canary_on <= 2
        by_judge = cleared is not None and cleared["by"].startswith("canary judge")
        out.append(
            (
                "bad canary rolled back by the judge within 2 days, never production",
                bool(within and by_judge and not to_prod),
                f"registered after day {cfg.bad_canary_on}; cleared on day "
                f"{cleared['day'] if cleared else '-'} by {cleared['by'] if cleared else '-'}; "
                f"production moved to it: {to_prod}",
            )
        )
    if cfg.drift_from:
        req = next(
            (t for t in timeline if t["kind"] == "retrain_request" and t["day"] >= cfg.drift_from),
            None,
        )
        out.append(
            (
                "drift detected, retraining requested within 2 days of onset",
                req is not None and req["day"] - cfg.drift_from <= 2,
                f"onset day {cfg.drift_from}; first request on day {req['day'] if req else '-'}"
                + (f": {req['reason']}" if req else ""),
            )
        )
        served = [d for d in days if d.get("policy") == "served"]
        pre = [d for d in served if d["day"] < cfg.drift_from]
        post = [d for d in served if cfg.drift_from <= d["day"] <= cfg.drift_from + 5]
        if pre and post:
            base = sum(d["expected_ctr"] / d["oracle_ctr"] for d in pre[-3:]) / len(pre[-3:])
            best = max(post, key=lambda d: d["expected_ctr"] / d["oracle_ctr"])
            ratio = best["expected_ctr"] / best["oracle_ctr"] / base
            last = post[-1]
            at_end = last["expected_ctr"] / last["oracle_ctr"] / base
            out.append(
                (
                    "online CTR recovers to >= 90% of its pre-drift ratio to the oracle within 5 days",
                    ratio >= 0.9,
                    f"pre-drift CTR/oracle {base:.3f} (last 3 served days); best within 5 days "
                    f"of onset: {ratio:.1%} of it (day {best['day']}); on day {last['day']}: "
                    f"{at_end:.1%}",
                )
            )
    if getattr(cfg, "skew_bug_on", None):
        caught = next(
            (
                t
                for t in timeline
                if t["kind"] == "check_failed" and t["what"] == "serving_skew.features_match"
            ),
            None,
        )
        named = caught is not None and cfg.skew_bug_feature in caught["reason"]
        out.append(
            (
                "serving skew caught the day after the bug, naming the feature",
                named and caught["day"] == cfg.skew_bug_on + 1,
                f"bug served from day {cfg.skew_bug_on + 1} ({cfg.skew_bug_feature}); first "
                f"failed check on day {caught['day'] if caught else '-'}: "
                f"{caught['reason'][:200] if caught else 'none'}",
            )
        )
        early = [
            t["day"]
            for t in timeline
            if t["kind"] == "check_failed"
            and t["what"] == "serving_skew.features_match"
            and t["day"] <= cfg.skew_bug_on
        ]
        out.append(("no skew block before the bug", not early, f"days: {early or 'none'}"))
    if getattr(cfg, "shadow_on", None):
        judged = [t for t in timeline if t["kind"] == "shadow_day" and t["verdict"] != "not judged"]
        first = judged[0] if judged else None
        day = next((d for d in days if first and d["day"] == first["day"]), {})
        unseen = first is not None and first["version"] not in day.get("by_version", {})
        scored = (day.get("shadow") or {}).get("rankings", 0)
        out.append(
            (
                "a shadow version's day judged on live traffic without any user seeing it",
                bool(first and unseen and scored),
                f"first judged shadow day: {first['day'] if first else '-'} "
                f"({first['version'] + ': ' + first['verdict'] if first else 'none'}); rankings it "
                f"scored: {scored}; served versions that day: "
                f"{sorted(day.get('by_version', {})) or '-'}",
            )
        )
    out += _release_checks(cfg, days, timeline)
    return out


def _off_policy_table(days: list[dict]) -> list[str]:
    """Each day's candidate: its off-policy CTR estimates from that day's logged traffic, and
    its realised CTR (rankings in its own order) on the days it served afterwards."""
    lines = [
        "| day | candidate | logged CTR | evidence clicks | IPS [95% CI] | SNIPS [95% CI] | "
        "DR [95% CI] | realised CTR once served (day: CTR, impressions) |",
        "|---:|---|---:|---:|---|---|---|---|",
    ]

    def cell(e: dict | None) -> str:
        return "" if not e else f"{e['value']:.4f} [{e['ci_low']:.4f}, {e['ci_high']:.4f}]"

    for d in days:
        found = d.get("off_policy")
        if not found:
            continue
        version = found["version"]
        later = [
            f"{x['day']}: {x['realised'][version]['ctr']:.4f} ({x['realised'][version]['impressions']})"
            for x in days
            if x["day"] > d["day"] and version in x.get("realised", {})
        ]
        logged = found.get("logged_ctr")
        lines.append(
            f"| {d['day']} | {version} | {'' if logged is None else f'{logged:.4f}'} | "
            f"{found.get('evidence_clicks', '')} | {cell(found.get('ips'))} | {cell(found.get('snips'))} | {cell(found.get('dr'))}"
            f"{' ' + found['reason'] if 'reason' in found else ''} | "
            f"{'; '.join(later[:4]) or 'not served'} |"
        )
    return lines


def _partition_day(cfg, version: str) -> int | None:
    """The day number a version was trained for (``xgboost-YYYY-MM-DD-...``), None if unknown."""
    from datetime import date

    parts = version.split("-")
    try:
        dt = date.fromisoformat("-".join(parts[1:4]))
    except ValueError:
        return None
    return (dt - date.fromisoformat(cfg.start)).days + 1


def _release_checks(cfg, days: list[dict], timeline: list[dict]) -> list:
    out: list[tuple[str, bool | None, str]] = []
    moves = [t for t in timeline if t["kind"] == "alias_move"]
    promotions = [
        t for t in moves if t["alias"] == "production" and str(t["by"]).startswith("canary judge")
    ]
    out.append(
        (
            "at least one promotion by the canary judge",
            bool(promotions),
            ", ".join(f"day {t['day']}: {t['to_version']}" for t in promotions) or "none",
        )
    )
    red = [d["day"] for d in days if d.get("red")]
    clean = [d for d in red if not (cfg.bad_canary_on and d == cfg.bad_canary_on)]
    out.append(("0 red runs on clean days", not clean, f"red days: {red or 'none'}"))
    if cfg.drift_from:
        post = [
            t for t in promotions if (_partition_day(cfg, t["to_version"]) or 0) > cfg.drift_from
        ]
        first = post[0] if post else None
        out.append(
            (
                "a model trained on post-drift days promoted within 7 days of onset",
                first is not None and first["day"] - cfg.drift_from <= 7,
                f"onset day {cfg.drift_from}; "
                + (f"{first['to_version']} promoted on day {first['day']}" if first else "none"),
            )
        )
        served = [d for d in days if d.get("policy") == "served"]
        pre = [d for d in served if d["day"] < cfg.drift_from][-3:]
        if pre and first:
            base = sum(d["expected_ctr"] / d["oracle_ctr"] for d in pre) / len(pre)
            carried = [
                (d["day"], d["by_version"][first["to_version"]]["expected_ctr"] / d["oracle_ctr"])
                for d in served
                if d["day"] > first["day"] and first["to_version"] in d["by_version"]
            ]
            best = max(carried, key=lambda x: x[1], default=None)
            out.append(
                (
                    "served CTR/oracle back to >= 95% of its pre-drift level through the "
                    "retrained model",
                    best is not None and best[1] / base >= 0.95,
                    f"pre-drift CTR/oracle {base:.3f}; through {first['to_version']}: "
                    + (
                        ", ".join(f"day {d} {r / base:.1%}" for d, r in carried)
                        if carried
                        else "no day served after its promotion"
                    ),
                )
            )
    return out


def _versions_table(days: list[dict]) -> list[str]:
    """Served CTR (expected, under the world's true probabilities) over the oracle, per day and
    model version: which version carried what."""
    served = [d for d in days if d.get("policy") == "served"]
    versions = sorted({v for d in served for v in d["by_version"]})
    lines = [
        "| day | " + " | ".join(versions) + " |",
        "|---:|" + "---:|" * len(versions),
    ]
    for d in served:
        cells = []
        for v in versions:
            fig = d["by_version"].get(v)
            cells.append(
                ""
                if fig is None
                else f"{fig['expected_ctr'] / d['oracle_ctr']:.3f} ({fig['impressions']})"
            )
        lines.append(f"| {d['day']} | " + " | ".join(cells) + " |")
    return lines


def write_report(out: Path, cfg, days: list[dict], timeline: list[dict], summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    served = [d for d in days if d.get("policy") == "served"]
    fig, ax = plt.subplots(figsize=(10, 5))
    if served:
        x = [d["day"] for d in served]
        ax.plot(x, [d["oracle_ctr"] for d in served], "k--", label="oracle-optimal order")
        ax.plot(x, [d["expected_ctr"] for d in served], "k-", lw=2, label="served (all traffic)")
        versions = sorted({v for d in served for v in d["by_version"]})
        for v in versions:
            pts = [(d["day"], d["by_version"][v]["ctr"]) for d in served if v in d["by_version"]]
            ax.plot(*zip(*pts, strict=True), "o-", ms=4, label=v)
    for t in timeline:
        if t["kind"] == "alias_move":
            ax.axvline(t["day"], color="grey", alpha=0.3, lw=1)
    if cfg.drift_from:
        ax.axvline(cfg.drift_from, color="red", ls=":", label="drift onset")
    if cfg.bad_canary_on:
        ax.axvline(cfg.bad_canary_on, color="orange", ls=":", label="bad canary registered")
    ax.set_xlabel("simulated day")
    ax.set_ylabel("CTR")
    ax.set_title("Online CTR by day and model version vs the oracle-optimal CTR")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "online_ctr.png", dpi=110)
    plt.close(fig)

    lines = [
        "# Closed-loop run (`reckit loop`)",
        "",
        f"{cfg.days} days from {cfg.start}; {cfg.users} users, {cfg.items} items, "
        f"~{cfg.impressions} impressions a day; drift from day {cfg.drift_from}; bad canary on "
        f"day {cfg.bad_canary_on}; skew bug after day {getattr(cfg, 'skew_bug_on', None)}; "
        f"exploration share {getattr(cfg, 'exploration', 0)}; shadow from day "
        f"{getattr(cfg, 'shadow_on', None)}; Prometheus: {summary['prometheus']}; "
        f"{summary['seconds']} s wall time.",
        "",
        "## Must-show checks",
        "",
    ]
    for name, ok, detail in _checks(cfg, days, timeline):
        lines.append(f"- **{'PASS' if ok else 'FAIL'}** {name}: {detail}")
    lines += [
        "",
        "## Days",
        "",
        "| day | dt | policy | canary share | served CTR (expected) | oracle CTR | ratio | release outcome | production | canary |",
        "|---:|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for d in days:
        exp, ora = d.get("expected_ctr"), d.get("oracle_ctr")
        lines.append(
            f"| {d['day']} | {d['dt']} | {d.get('policy')} | {d.get('canary_share', '')} | "
            f"{'' if exp is None else f'{exp:.4f}'} | {'' if ora is None else f'{ora:.4f}'} | "
            f"{'' if exp is None else f'{exp / ora:.3f}'} | "
            f"{d.get('release_outcome', '')}{' (RED)' if d.get('red') else ''} | "
            f"{d['aliases'].get('production', '')} | {d['aliases'].get('canary', '')} |"
        )
    lines += [
        "",
        "## Served CTR / oracle by model version (impressions in brackets)",
        "",
        *_versions_table(days),
    ]
    lines += [
        "",
        "## Off-policy CTR of each day's candidate vs its realised CTR once served",
        "",
        f"Exploration share {getattr(cfg, 'exploration', 0)}: estimates from the day's logged "
        "traffic (core/evaluation/off_policy.py); realised = clicks per impression on the "
        "rankings it served in its own order.",
        "",
        *_off_policy_table(days),
    ]
    shadow_days = [d for d in days if d.get("shadow")]
    if shadow_days:
        lines += [
            "",
            "## Shadow days (scored live traffic, never served)",
            "",
            "| day | shadow | verdict | rankings | errors | latency p99 ms | score PSI | "
            "Kendall tau vs served | same first item | off-policy SNIPS [95% CI] | why |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for d in shadow_days:
            j = d["shadow"]
            snips = (j.get("off_policy") or {}).get("snips")

            def num(x, fmt=".3f"):
                return "" if x is None else format(x, fmt)

            lines.append(
                f"| {d['day']} | {j['version']} | {j['verdict']} | {j['rankings']} | "
                f"{num(j.get('error_share'), '.4f')} | {num(j.get('latency_p99_ms'), '.2f')} | "
                f"{num(j.get('score_psi'))} | {num(j.get('kendall_tau_mean'))} | "
                f"{num(j.get('same_first_item_share'))} | "
                + (
                    f"{snips['value']:.4f} [{snips['ci_low']:.4f}, {snips['ci_high']:.4f}]"
                    if snips
                    else ""
                )
                + f" | {j['why'][:120]} |"
            )
    lines += ["", "## Timeline", ""]
    for t in timeline:
        if t["kind"] == "alias_move":
            what = f"{t['alias']}: {t['from_version']} -> {t['to_version']} by {t['by']}"
            reason = t["reason"][:300]
        elif t["kind"] == "shadow_day":
            what = f"shadow {t['version']}: {t['verdict']}"
            reason = t["reason"][:300]
        elif t["kind"] == "verdict":
            what = f"verdict {t['verdict']} -> {t['action']}"
            reason = t["reason"][:300]
        else:
            what, reason = t["kind"], str(t.get("reason", ""))[:300]
        lines.append(f"- day {t['day']} ({t['dt']}): {what}: {reason}")
    lines += ["", "![online CTR](online_ctr.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
