"""Model computations in their own process: results, logs and errors come back; deaths are named."""

from __future__ import annotations

import importlib
import os
import signal
import sys

import pytest

from reckit_assets.core.training import isolation
from reckit_assets.defs.resources import ModelProcesses


def _work(x: int, log=None) -> tuple[int, int]:
    for k in range(3):
        log(f"line {k}")
    return x * 2, os.getpid()


def _fail(message: str) -> None:
    raise ValueError(message)


class _Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # pickles as cls(message): cannot come back
        super().__init__(f"{a}/{b}")


def _fail_unpicklably() -> None:
    raise _Unpicklable(1, 2)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _unpicklable_result():
    return lambda: None


def _loaded() -> list[str]:
    return [
        m for m in ("torch", "xgboost", "gensim.models", "matplotlib.figure") if m in sys.modules
    ]


def _pid() -> int:
    return os.getpid()


def test_result_and_log_lines_come_back_from_another_process():
    lines: list[str] = []
    doubled, pid = isolation.call(_work, 21, what="work", log=lines.append)
    assert doubled == 42 and pid != os.getpid()
    assert lines == ["line 0", "line 1", "line 2"]


def test_an_error_keeps_its_type_and_message_with_the_childs_traceback():
    with pytest.raises(ValueError, match="bad window") as err:
        isolation.call(_fail, "bad window", what="fail")
    notes = "\n".join(getattr(err.value, "__notes__", []))
    assert "raised in the model process" in notes and "_fail" in notes


def test_an_error_that_cannot_travel_comes_back_as_model_process_error():
    with pytest.raises(isolation.ModelProcessError, match="_Unpicklable: 1/2"):
        isolation.call(_fail_unpicklably, what="odd error")


def test_a_result_that_cannot_travel_is_an_error_not_a_hang():
    with pytest.raises(Exception, match="pickle"):
        isolation.call(_unpicklable_result, what="odd result")


def test_a_killed_process_fails_the_call_naming_the_signal():
    with pytest.raises(isolation.ModelProcessError) as err:
        isolation.call(_die, what="xgboost training dt=2026-10-04")
    message = str(err.value)
    assert "xgboost training dt=2026-10-04" in message and "SIGKILL" in message
    assert "out of memory" in message
    # The next call works: one death does not take the server down.
    assert isolation.call(_pid, what="after") != os.getpid()


def test_every_preloaded_module_imports():
    # multiprocessing skips a preload module that fails to import, silently: a typo here would
    # make every model step import it again.
    failed = {}
    for name in isolation.PRELOAD:
        try:
            assert importlib.import_module(name).__name__ == name
        except ImportError as exc:
            failed[name] = str(exc)
    assert failed == {}, f"preload modules that do not import: {failed}"


def test_children_of_the_started_server_find_the_ml_stack_loaded():
    isolation.start()
    assert isolation.call(_loaded, what="probe") == [
        "torch",
        "xgboost",
        "gensim.models",
        "matplotlib.figure",
    ]


def test_the_resource_isolates_only_when_asked():
    assert ModelProcesses(isolate=False).call(_pid, what="here") == os.getpid()
    assert ModelProcesses(isolate=True).call(_pid, what="there") != os.getpid()
    lines: list[str] = []
    assert ModelProcesses(isolate=False).call(_work, 1, what="w", log=lines.append)[0] == 2
    assert len(lines) == 3
