"""Model computations in their own process: results, logs and errors come back; deaths are named."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reckit_assets.core.training import isolation
from reckit_assets.defs.resources import ModelProcesses
from reckit_assets_tests.core.training import probe


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


def test_children_of_the_started_servers_find_their_ml_stack_loaded():
    isolation.start()
    stack = ("torch", "xgboost", "gensim.models", "matplotlib.figure")
    assert isolation.call(probe.loaded, stack, what="probe") == list(stack)
    # The LIGHT server never imports torch: it serves while the FULL one imports it.
    assert isolation.call(probe.loaded, stack, what="probe", server=isolation.LIGHT) == [
        "xgboost",
        "gensim.models",
        "matplotlib.figure",
    ]
    # Two servers: the FULL one is the LIGHT one's child.
    full = isolation.call(probe.parent, what="full")
    light = isolation.call(probe.parent, what="light", server=isolation.LIGHT)
    assert full != light and light == isolation.server_pid()
    # A LIGHT child that needs torch imports it itself (what the probe of the model steps that
    # must not, in test_release_gate.py, would see).
    imported = isolation.call(
        probe.new_modules, importlib.import_module, "torch", what="probe", server="light"
    )
    assert "torch" in imported


def test_an_unknown_server_is_refused():
    with pytest.raises(ValueError, match="server='gpu'"):
        isolation.call(_pid, what="probe", server="gpu")


def _gone(pid: int, timeout: float = 30) -> bool:
    """Whether ``pid`` ends within ``timeout`` (a zombie counts: it is not reaped here, which is
    the servers' owner's business)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        # A zombie leader with threads still exiting (the servers run allocator and Polars
        # threads) is not reported by waitpid yet: gone once its last thread is.
        if state == "Z" and len(_tasks(pid)) <= 1:
            return True
        time.sleep(0.05)
    return False


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("server", [isolation.FULL, isolation.LIGHT])
def test_a_killed_server_is_replaced_with_its_pair(server):
    light = isolation.call(probe.parent, what="light", server=isolation.LIGHT)
    full = isolation.call(probe.parent, what="full")
    killed = full if server == isolation.FULL else light
    os.kill(killed, signal.SIGKILL)
    assert _gone(killed)
    # The next call to the dead server replaces the pair.
    assert isolation.call(probe.parent, what=server, server=server) != killed
    new_light = isolation.call(probe.parent, what="light", server=isolation.LIGHT)
    new_full = isolation.call(probe.parent, what="full")
    assert new_light != light and new_full != full
    # The survivor of the old pair ends with it: nothing is left behind.
    assert _gone(light) and _gone(full)


def test_a_server_that_dies_with_a_request_in_its_hands_is_replaced_and_asked_again():
    isolation.call(_pid, what="warm", server=isolation.LIGHT)
    old = isolation.server_pid()
    os.kill(old, signal.SIGKILL)
    assert _gone(old)
    isolation.start()  # a new pair, importing for ~1.5 s: the request below waits in its queue
    importing = isolation.server_pid()
    assert importing != old
    threading.Timer(0.3, os.kill, (importing, signal.SIGKILL)).start()
    parent = isolation.call(probe.parent, what="asked twice", server=isolation.LIGHT)
    assert parent not in (old, importing) and parent == isolation.server_pid()


def test_the_servers_end_with_the_process_that_started_them():
    script = (
        "from reckit_assets.core.training import isolation\n"
        "from reckit_assets_tests.core.training import probe\n"
        "print(isolation.call(probe.parent, what='light', server='light'))\n"
        "print(isolation.call(probe.parent, what='full'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    light, full = (int(line) for line in done.stdout.split())
    assert light != full
    assert _gone(light) and _gone(full), "a model server outlived its client"


def test_the_resource_isolates_only_when_asked():
    assert ModelProcesses(isolate=False).call(_pid, what="here") == os.getpid()
    assert ModelProcesses(isolate=True).call(_pid, what="there") != os.getpid()
    lines: list[str] = []
    assert ModelProcesses(isolate=False).call(_work, 1, what="w", log=lines.append)[0] == 2
    assert len(lines) == 3
