"""What the landing zone holds: which days have landed, which are in flight, which are missing.

Reads only object listings (keys and sizes), never the files, so it is cheap enough to run on
every sensor tick. A day has *landed* when all of events, users and items carry ``_SUCCESS``
(the contract in docs/landing_zone.md); a day with files but not every marker is *in flight*.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, timedelta

from reckit_assets.core.ingest.landing import SUCCESS_MARKER, TABLES
from reckit_assets.core.io.storage import Storage

_DT_RE = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Inventory:
    landed: dict[str, int] = field(default_factory=dict)  # day -> data files (all 3 tables)
    in_flight: dict[str, list[str]] = field(default_factory=dict)  # day -> tables with no marker

    @property
    def gaps(self) -> list[str]:
        """Days between the first and the last landed day that have not landed."""
        if not self.landed:
            return []
        first, last = date.fromisoformat(min(self.landed)), date.fromisoformat(max(self.landed))
        every = (first + timedelta(days=k) for k in range((last - first).days + 1))
        return [d.isoformat() for d in every if d.isoformat() not in self.landed]

    @property
    def digest(self) -> str:
        """Changes when a day lands, starts landing, or changes its number of files."""
        text = repr((sorted(self.landed.items()), sorted(self.in_flight.items())))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def markdown(self) -> str:
        rows = [f"| {d} | landed | {n} |" for d, n in sorted(self.landed.items())]
        rows += [
            f"| {d} | in flight: no `_SUCCESS` on {', '.join(t)} | – |"
            for d, t in sorted(self.in_flight.items())
        ]
        rows += [f"| {d} | missing | 0 |" for d in self.gaps if d not in self.in_flight]
        if not rows:
            return "Nothing has landed yet."
        return "| day | status | data files |\n|---|---|---:|\n" + "\n".join(sorted(rows))

    def summary(self) -> str:
        if not self.landed:
            return "no day has landed"
        days = sorted(self.landed)
        text = f"{len(days)} day(s) landed, {days[0]} to {days[-1]}"
        if self.gaps:
            text += f"; not landed in between: {', '.join(self.gaps)}"
        if self.in_flight:
            text += f"; in flight: {', '.join(sorted(self.in_flight))}"
        return text


def landing_inventory(storage: Storage) -> Inventory:
    files: dict[str, dict[str, int]] = {}
    markers: dict[str, set[str]] = {}
    for table in TABLES:
        for info in storage.list(table):
            parts = info.key.split("/")
            match = _DT_RE.match(parts[1]) if len(parts) >= 3 else None
            if not match:
                continue
            dt = match.group(1)
            if len(parts) == 3 and parts[2] == SUCCESS_MARKER:
                markers.setdefault(dt, set()).add(table)
            elif not any(p.startswith(("_", ".")) for p in parts[2:]):
                files.setdefault(dt, {}).setdefault(table, 0)
                files[dt][table] += 1
    landed, in_flight = {}, {}
    for dt in sorted(set(files) | set(markers)):
        done = markers.get(dt, set())
        if done == set(TABLES):
            landed[dt] = sum(files.get(dt, {}).values())
        else:
            in_flight[dt] = [t for t in TABLES if t not in done]
    return Inventory(landed=landed, in_flight=in_flight)
