"""Run in a model process: what a computation imported (stdlib only, so it imports nothing)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any


def new_modules(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[str]:
    """The top-level modules ``fn(*args, **kwargs)`` imported."""
    before = {name.partition(".")[0] for name in sys.modules}
    fn(*args, **kwargs)
    return sorted({name.partition(".")[0] for name in sys.modules} - before)


def loaded(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if m in sys.modules]


def parent() -> int:
    return os.getppid()
