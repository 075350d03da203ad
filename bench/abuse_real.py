"""Benchmark: the feedback abuse screen on clean real days loses no event.

Runs `core.monitoring.abuse.screen` with the default `abuse` rules over every landed day of a
real-data rehearsal (its `--keep DIR`), as `feedback_landing` runs it on served traffic: the
day's events (all attributed to one served version, as the replayed logs were served by one
policy), the day's user and item snapshots for the unknown-id rule, and the earlier days as the
items' trailing CTR. Prints, per day, the events and how many were quarantined, with any rule
that flagged.

    python bench/rehearsal_movielens.py --keep /tmp/ml-small && python bench/abuse_real.py /tmp/ml-small
    python bench/rehearsal_ml100k.py --keep /tmp/ml-100k && python bench/abuse_real.py /tmp/ml-100k
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reckit_assets.core.ingest.landing import read_landed
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.monitoring.abuse import AbuseRules, screen
from reckit_assets.core.monitoring.feedback import attribute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keep", type=Path, help="a rehearsal's --keep folder")
    args = parser.parse_args()
    landing = args.keep / "data" / "landing"
    store = LocalStorage(landing)
    days = sorted(p.name.removeprefix("dt=") for p in (landing / "events").iterdir())
    history: list[pd.DataFrame] = []
    total = lost = 0
    for dt in days:
        events = read_landed(store, "events", dt).frame.assign(model_version="replayed")
        attributed = attribute(events, dt).landed
        out = screen(
            attributed,
            AbuseRules(),
            log=events,
            users=set(read_landed(store, "users", dt).frame["user_id"]),
            items=set(read_landed(store, "items", dt).frame["item_id"]),
            trailing=pd.concat(history) if history else None,
        )
        quarantined = out.counts["quarantined"]
        total, lost = total + len(attributed), lost + quarantined
        flagged = [o.description[:200] for o in out.outcomes if not o.passed]
        print(f"{dt}: {len(attributed)} events, {quarantined} quarantined {flagged or ''}")
        history.append(attributed)
    print(f"{len(days)} days, {total} events, {lost} quarantined")


if __name__ == "__main__":
    main()
