"""A registering process for the crash and race tests (run as ``python -m ...release_worker``).

It runs the real release code on real storage. ``--kill-after N`` makes the process send itself
SIGKILL right after its N-th write to the registry (0: before the first), so a test can stop a
registration at every write point; ``--trace`` prints each write point to stderr.

Exit codes: 0 done, 3 lost a compare-and-swap (``Conflict``; the winner is on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from reckit_assets.core.io.uri import storage_from_uri
from reckit_assets.core.release.registry import Conflict, Registry


class KillingStorage:
    """Delegates to a real storage; counts writes and SIGKILLs this process after the N-th."""

    def __init__(
        self, inner, kill_after: int | None, trace: bool, barrier: tuple[Path, int] | None = None
    ) -> None:
        self.inner, self.kill_after, self.trace, self.writes = inner, kill_after, trace, 0
        self.uri = inner.uri
        self.barrier = barrier

    def _meet(self, key: str) -> None:
        """Before the ledger write, wait until ``n`` processes have got there: each has made
        its decision on the same state, so their compare-and-swaps really race."""
        if self.barrier is None or not key.endswith("ledger.json"):
            return
        folder, n = self.barrier
        (folder / str(os.getpid())).touch()
        while len(list(folder.iterdir())) < n:
            time.sleep(0.002)
        self.barrier = None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _point(self, what: str, key: str) -> None:
        self.writes += 1
        if self.trace:
            print(f"write {self.writes}: {what} {key}", file=sys.stderr, flush=True)
        if self.writes == self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def _before(self) -> None:
        if self.kill_after == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._before()
        self.inner.write_bytes(key, data)
        self._point("write", key)

    def write_if_absent(self, key: str, data: bytes) -> str:
        self._meet(key)
        self._before()
        tag = self.inner.write_if_absent(key, data)
        self._point("create-if-absent", key)
        return tag

    def write_if_match(self, key: str, data: bytes, tag: str) -> str:
        self._meet(key)
        self._before()
        new = self.inner.write_if_match(key, data, tag)
        self._point("compare-and-swap", key)
        return new


def _wait(start_file: str | None) -> None:
    while start_file and not Path(start_file).exists():
        time.sleep(0.005)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["register", "move", "race"])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--warehouse")
    parser.add_argument("--dt")
    parser.add_argument("--kind", default="item2vec")
    parser.add_argument("--alias", default="canary")
    parser.add_argument("--version", action="append", default=[])
    parser.add_argument("--expected", default=None)
    parser.add_argument("--moves", type=int, default=1)
    parser.add_argument("--by", default=f"pid-{os.getpid()}")
    parser.add_argument("--kill-after", type=int, default=None)
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--start-file", default=None)
    parser.add_argument("--barrier", default=None, help="FOLDER:N (see KillingStorage._meet)")
    args = parser.parse_args()

    barrier = None
    if args.barrier:
        folder, _, n = args.barrier.rpartition(":")
        barrier = (Path(folder), int(n))
    registry = Registry(
        KillingStorage(storage_from_uri(args.registry), args.kill_after, args.trace, barrier)
    )
    _wait(args.start_file)
    try:
        if args.action == "register":
            from reckit_assets.core.steps.models import register

            out = register(storage_from_uri(args.warehouse), registry, args.kind, args.dt, args.by)
            print(json.dumps({"alias_move": out["alias_move"], "created": out["created"]}))
        elif args.action == "move":
            expected = None if args.expected in (None, "none") else args.expected
            move = registry.set_alias(
                args.kind, args.alias, args.version[0], args.by, "move", expected=expected
            )
            print(json.dumps(move.as_dict()))
        else:
            # Each process moves the alias ``--moves`` times, each time from the value it just
            # read; a lost swap is counted and retried from the new value.
            wins, conflicts = [], []
            for i in range(args.moves):
                target = args.version[i % len(args.version)]
                while True:
                    current = registry.alias(args.kind, args.alias)
                    try:
                        move = registry.set_alias(
                            args.kind,
                            args.alias,
                            target,
                            args.by,
                            f"{args.by} #{i}",
                            expected=current,
                        )
                        wins.append(move.seq)
                        break
                    except Conflict as exc:
                        conflicts.append(exc.actual)
            print(json.dumps({"wins": wins, "conflicts": conflicts}))
    except Conflict as exc:
        print(json.dumps({"conflict": str(exc), "lost_to": exc.actual}))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
