"""Run in a model process: what a computation imported (stdlib only, so it imports nothing)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def loaded(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if m in sys.modules]


def parent() -> int:
    return os.getppid()


def loaded_after(modules: tuple[str, ...], fn: Callable[..., Any], *args: Any) -> list[str]:
    """Which of ``modules`` are imported once ``fn(*args)`` has run (and unpickled, here)."""
    fn(*args)
    return loaded(modules)


def logged(n: int, log: Callable[[str], None]) -> int:
    for k in range(n):
        log(f"line {k}")
    return n


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def allocate(nbytes: int) -> tuple[int, int]:
    """Hold ``nbytes`` of touched memory; this process's pid and its resident size (bytes)."""
    held = b"x" * nbytes
    return os.getpid(), resident_bytes() + 0 * len(held)


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
