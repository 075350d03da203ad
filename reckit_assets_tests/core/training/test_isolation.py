"""Model computations in their own process: results, logs and errors come back; deaths are named."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
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


@pytest.mark.parametrize("uses_torch", [False, True])
def test_the_memory_a_computation_takes_goes_back_to_the_system_when_it_ends(uses_torch):
    before = probe.resident_bytes()
    pid, resident = isolation.call(probe.allocate, 400_000_000, what="big", uses_torch=uses_torch)
    assert resident >= 400_000_000  # it was held, by the model process ...
    assert _gone(pid)  # ... which has ended, so it is the system's again
    assert probe.resident_bytes() - before < 100_000_000  # never this process's


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
    # The server never imports torch: the steps that do not use it never wait for it ...
    assert isolation.call(probe.loaded, stack, what="probe") == list(stack[1:])
    # ... a torch computation forks from the torch server, the server's child, which has.
    assert isolation.call(probe.loaded, stack, what="probe", uses_torch=True) == list(stack)
    server = isolation.call(probe.parent, what="parent")
    assert server in _forkservers()  # Python's forkserver, a child of this process
    torch_server = isolation.call(probe.parent, what="parent", uses_torch=True)
    assert _parent_of(torch_server) == server
    assert isolation.call(probe.parent, what="again", uses_torch=True) == torch_server


def test_a_killed_torch_computation_fails_its_call_and_the_next_one_works():
    with pytest.raises(isolation.ModelProcessError, match=r"deepfm training.*SIGKILL"):
        isolation.call(probe.die, what="deepfm training", uses_torch=True)
    lines: list[str] = []
    assert isolation.call(probe.logged, 2, what="after", log=lines.append, uses_torch=True) == 2
    assert lines == ["line 0", "line 1"]
    with pytest.raises(ValueError, match="bad window"):
        isolation.call(_fail, "bad window", what="fail", uses_torch=True)


def test_a_killed_torch_server_is_replaced():
    torch_server = isolation.call(probe.parent, what="before", uses_torch=True)
    os.kill(torch_server, signal.SIGKILL)
    assert _gone(torch_server)
    after = isolation.call(probe.parent, what="after", uses_torch=True)
    assert after != torch_server
    assert isolation.call(probe.loaded, ("torch",), what="loaded", uses_torch=True) == ["torch"]


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _forkservers() -> list[int]:
    """This process's forkserver children (Python's own server)."""
    found = []
    for task in _tasks(os.getpid()):
        for child in Path(f"/proc/{os.getpid()}/task/{task}/children").read_text().split():
            with contextlib.suppress(FileNotFoundError):
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"multiprocessing.forkserver" in cmdline:
                    found.append(int(child))
    return found


def _gone(pid: int, timeout: float = 30) -> bool:
    """Whether ``pid`` ends within ``timeout`` (a zombie counts: it is not reaped here, which is
    the server's owner's business)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        # A zombie leader with threads still exiting (the server runs allocator and Polars
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


def test_a_killed_server_is_replaced():
    server = isolation.call(probe.parent, what="before")
    os.kill(server, signal.SIGKILL)
    assert _gone(server)
    # The next call gets a new server (Python starts it), and works.
    assert isolation.call(probe.parent, what="after") not in (server, os.getpid())


def test_a_server_that_dies_with_a_request_in_its_hands_is_replaced_and_asked_again():
    old = isolation.call(probe.parent, what="warm")
    os.kill(old, signal.SIGKILL)
    assert _gone(old)
    # A new server, importing for seconds: the request below waits in its queue. (Python starts
    # it once waitpid reports the old one, a moment after its last thread ends.)
    deadline = time.monotonic() + 30
    while not (importing := [pid for pid in _forkservers() if pid != old]):
        assert time.monotonic() < deadline, "no new server"
        isolation.start()
        time.sleep(0.05)
    (importing,) = importing
    threading.Timer(0.3, os.kill, (importing, signal.SIGKILL)).start()
    parent = isolation.call(probe.parent, what="asked twice")
    assert parent not in (old, importing) and parent in _forkservers()


def test_the_server_imports_what_the_main_script_does_so_that_children_do_not(tmp_path):
    # multiprocessing runs the parent's main script again in each child: for the `dagster`
    # command that imports its CLI, ~0.8 s a child, unless the server imported it already.
    imported = tmp_path / "imported"
    script = tmp_path / "main.py"
    script.write_text(
        "from reckit_assets_tests.core.training import imported_by_main\n"
        "if __name__ == '__main__':\n"
        "    from reckit_assets.core.training import isolation\n"
        "    from reckit_assets_tests.core.training import probe\n"
        "    for _ in range(3):\n"
        "        print(isolation.call(probe.parent, what='child'))\n"
    )
    root = Path(__file__).parents[3]
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(root), "RECKIT_TEST_IMPORTED": str(imported)},
    )
    assert done.returncode == 0, done.stderr
    (server,) = {int(pid) for pid in done.stdout.split()}
    # Imported by the client and by the server, by no child.
    assert [int(pid) for pid in imported.read_text().split()][1:] == [server]


def test_the_server_ends_with_the_process_that_started_it():
    script = (
        "from reckit_assets.core.training import isolation\n"
        "from reckit_assets_tests.core.training import probe\n"
        "print(isolation.call(probe.parent, what='child'))\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    took = time.monotonic() - started
    (server,) = (int(line) for line in done.stdout.split())
    assert _gone(server), "the model server outlived its client"
    # Ended, not finalized: a reader of the client's pipes (capture_output) is not held for the
    # server's ~1 s of interpreter teardown with torch loaded. (Generous: imports dominate.)
    assert took < 60


def test_the_resource_isolates_only_when_asked():
    assert ModelProcesses(isolate=False).call(_pid, what="here") == os.getpid()
    assert ModelProcesses(isolate=True).call(_pid, what="there") != os.getpid()
    lines: list[str] = []
    assert ModelProcesses(isolate=False).call(_work, 1, what="w", log=lines.append)[0] == 2
    assert len(lines) == 3


NEWER_PYTHONS = ("python3.12", "python3.13")
_ON_NEWER_PYTHON = """
import os
import isolation  # the module alone, by its path: stdlib only (its package imports numpy)
from reckit_assets_tests.core.training import probe

lines = []
assert isolation.call(probe.logged, 3, what="log", log=lines.append) == 3
assert lines == ["line 0", "line 1", "line 2"], lines
try:
    isolation.call(probe.die, what="crash")
    raise SystemExit("a killed child did not fail its call")
except isolation.ModelProcessError as exc:
    assert "SIGKILL" in str(exc), exc
assert isolation.call(probe.parent, what="parent") != os.getpid()
assert isolation.call(probe.logged, 1, what="torch", log=print, uses_torch=True) == 1
print("ok")
"""


def _interpreter(python: str) -> str | None:
    """``python`` on the PATH, or under pyenv's versions (whose shims answer only for the
    selected version)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"), "versions")
    found = [shutil.which(python), *sorted(map(str, pyenv.glob(f"*/bin/{python}")))]
    for exe in filter(None, found):
        if subprocess.run([exe, "-V"], capture_output=True).returncode == 0:
            return exe
    return None


@pytest.mark.parametrize("python", NEWER_PYTHONS)
def test_the_mechanism_works_on_newer_pythons(python):
    """isolation.py is the standard library's forkserver through its public API: it works on the
    Pythons the project cannot declare yet (no CPU torch wheel for them, README), here with what
    the standard library alone gives: the module by itself, the ML preload skipped as not
    installed)."""
    exe = _interpreter(python)
    if exe is None:
        pytest.skip(f"{python} is not installed here")
    root = Path(__file__).parents[3]
    done = subprocess.run(
        [exe, "-c", _ON_NEWER_PYTHON],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": f"{root / 'reckit_assets/core/training'}:{root}"},
        cwd=root,
    )
    assert done.returncode == 0 and done.stdout.split() == ["line", "0", "ok"], done.stderr
