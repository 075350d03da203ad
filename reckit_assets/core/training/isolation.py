"""Model computations in a process of their own, forked from a server that has the ML stack loaded.

Where the steps of a run share one process (the embedded default runs them in-process: a data
step computes in 0.1-0.4 s and a fresh process per step cost ~1 s each, see docs/benchmarks.md),
the model steps -- training and evaluation -- still get a process each:

* the memory a training takes is returned to the system when it ends;
* a crash or an out-of-memory kill fails that one step, with the exit code and signal, instead
  of the run;
* torch, xgboost and gensim are imported once per run, by the servers, started as the run's
  process loads the code location (``defs/run_worker.py``) or when its resources start
  (:func:`start`), while the run does other work -- never by the run's own process.

The mechanism is the standard library's, through its public API only (no ``multiprocessing``
internals, so a new Python does not break it unseen; tested on 3.12 and 3.13 too):

* **the server** is Python's ``forkserver`` with :data:`PRELOAD` set by
  ``set_forkserver_preload``: a fresh interpreter (not a fork of the run's process, whose Python
  threads -- Dagster's -- could hold a lock at the fork) that imports :data:`PRELOAD` and what the
  main script imports (:func:`main_imports`), then forks a child per :func:`call`. Python
  restarts it if it died; a call asks again when it died with the request in its hands.
* **the torch server** is one ``Process`` forked from it, which adds :data:`TORCH_PRELOAD`
  (~2.5 s) and then runs each torch computation (``uses_torch``) in a child of its own, with the
  ``fork`` start method: it has one Python thread, and the native threads its imports start
  hold no Python lock. So the steps that do not use torch never wait for it. It is replaced if
  it died; torch computations take turns.

Arguments and the result travel pickled over a pipe between this process and the child (nothing
is loaded from storage that way); the child's log lines stream back while it runs. A child sees
the environment variables as they were when the server started (the run's), and storages travel
as places, not connections (``S3Storage`` reopens its client in the child). The servers end when
this process does: at exit it ends the torch server and sends the server SIGTERM, since
finalizing an interpreter with torch loaded takes ~1 s, during which it holds the run's stdout
and stderr (a caller reading them waits).

The preload is per process and set before the server starts: a process where something else
started the forkserver first (Dagster's multiprocess executor with its own preload) still gets
correct model processes, which then import what they need themselves.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import gc
import importlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# What the server imports before it forks: the model steps' modules and what they import lazily
# (inside functions, so that the data steps never pay for them), so that a child starts in
# milliseconds and imports nothing. A module that fails to import is skipped, as multiprocessing
# does (the child would then import it, slowly): test_isolation.py imports every one.
PRELOAD = [
    "reckit_assets.core.steps.models",
    "reckit_assets.core.training.baselines",
    "reckit_assets.core.training.item2vec",
    "reckit_assets.core.training.deepfm",
    "reckit_assets.core.training.xgb_ranker",
    "reckit_assets.core.evaluation.gate",
    "reckit_assets.core.evaluation.plots",
    "reckit_assets.core.evaluation.next_item",
    "reckit_assets.core.evaluation.report",
    "gensim.models",
    "gensim.models.callbacks",
    "matplotlib.backends.backend_agg",
    "matplotlib.figure",
    "xgboost",
    "pyarrow.parquet",
    "scipy.stats",
    "statsmodels.stats.multitest",
]
# What the torch computations (DeepFM's training and evaluation) need on top, ~2.5 s: imported by
# the torch server, a child of the server, so that the other steps never wait for it.
TORCH_PRELOAD = [
    "torch",
    "safetensors.torch",
    "torch._dynamo",  # what an optimizer's first step imports (sympy & co., ~1 s)
]
JOIN_TIMEOUT_S = 30.0  # after the result: how long the child may take to exit before it is killed
FORK_WAIT_AT_EXIT_S = 60.0  # at exit: how long to wait for a torch server still on its way
START_ATTEMPTS = 5  # a server found dead is replaced by Python and asked again, this many times

_LOG, _RESULT, _ERROR, _SERVER, _ENDED = "log", "result", "error", "server", "ended"
_CONTEXT = multiprocessing.get_context("forkserver")
_LOCK = threading.RLock()
_started_at: float | None = None  # time.monotonic() of this process's first start()
_server: int | None = None  # the server's pid, as its children report it (os.getppid())
# The torch server: (process, connection), on its way from the moment start() asks for it
_torch: Future[tuple[BaseProcess, Connection]] | None = None
_TORCH_LOCK = threading.Lock()  # one torch computation at a time


class ModelProcessError(RuntimeError):
    """The model process ended without a result (killed, crashed) or its error could not travel."""


def start() -> None:
    """Start the server now, so that it imports the ML stack while the run does other work, and
    the torch server as soon as the server can fork it.

    Returns at once; a call waits for its server if that is still importing. Idempotent: one pair
    per process, alive until the process exits (started anew if one died).
    """
    global _started_at
    with _LOCK:
        if _started_at is None:  # the preload once (it reads the main script); Python keeps it
            _CONTEXT.set_forkserver_preload([*main_imports(), *PRELOAD])
            _started_at = time.monotonic()
            atexit.register(_at_exit)
        forkserver.ensure_running()
        _start_torch_server()


def main_imports() -> list[str]:
    """The modules this process's main script imports at its top level.

    multiprocessing runs the parent's main script again in each child (as ``__mp_main__``), so
    that what it defines unpickles there; for the ``dagster`` command that imports its CLI, ~0.8 s
    a child. The server imports them instead, and a child's run of the script imports nothing.
    (``set_forkserver_preload(["__main__"])`` was meant to do that, but CPython 3.11-3.13 never
    send the server the script's path.) Nothing for a main run by module name (``python -m``):
    multiprocessing does not run that again.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if getattr(main, "__spec__", None) is not None or not path:
        return []
    try:
        tree = ast.parse(Path(path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from package import name`: name may be a module (what is not fails to import in
            # the server, which skips it)
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


def loading_for() -> float | None:
    """Seconds since this process started its model server; None if it has not."""
    started = _started_at
    return None if started is None else time.monotonic() - started


def call(
    fn: Callable[..., T],
    /,
    *args: Any,
    what: str,
    log: Callable[[str], None] | None = None,
    uses_torch: bool = False,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)`` in a fresh child process; its result, or its exception, here.

    ``fn`` must be importable by name (a module-level function); arguments and result must pickle.
    With ``log``, ``fn`` is passed ``log=`` a function whose lines reach ``log`` here as they are
    written. ``what`` names the computation in errors. The exception ``fn`` raised is raised here
    with its type and message, and the child's traceback as a note. A child that dies without a
    result raises :class:`ModelProcessError` naming the exit code or signal. ``uses_torch``: the
    child is forked from the torch server, which has torch loaded (a child of the server that
    imports torch imports it itself: slower, the same result).
    """
    global _server
    start()
    task = (fn, args, kwargs, log is not None)
    if uses_torch:
        return _call_torch(task, what, log)
    receive, send = _CONTEXT.Pipe(duplex=False)
    try:
        child = _started(_child, (send, *task), what)
    except BaseException:
        receive.close()
        raise
    finally:
        send.close()  # the child holds the only writing end: EOF here means it is gone
    try:
        while True:
            try:
                kind, payload = receive.recv()
            except EOFError:
                child.join()
                raise ModelProcessError(
                    f"{what}: the model process (pid {child.pid}) ended without a result: "
                    f"{_how_it_ended(child.exitcode)}"
                ) from None
            if kind == _LOG:
                if log is not None:
                    log(payload)
            elif kind == _RESULT:
                return payload
            elif kind == _ERROR:
                raise payload
            else:  # the first message: the server that forked the child
                _server = payload
    finally:
        receive.close()
        child.join(JOIN_TIMEOUT_S)
        if child.is_alive():
            child.kill()
            child.join()


def _started(target: Callable[..., None], args: tuple, what: str) -> BaseProcess:
    """A child running ``target(*args)``, started. A server that dies with the request in its
    hands (its pipe ends, or its socket refuses) is replaced by Python at the next request:
    asked again, a few times."""
    for attempt in range(1, START_ATTEMPTS + 1):
        child = _CONTEXT.Process(target=target, args=args, name=f"reckit {what}")
        try:
            child.start()
            return child
        except (EOFError, ConnectionError, FileNotFoundError) as exc:
            if attempt == START_ATTEMPTS:
                raise ModelProcessError(
                    f"{what}: the model server ended before it forked the process, "
                    f"{START_ATTEMPTS} times ({type(exc).__name__}: {exc})"
                ) from exc
            time.sleep(0.1 * 2**attempt)  # a killed server is reapable once its last thread ends
    raise AssertionError("unreachable")


def _start_torch_server() -> None:
    """Fork the torch server from the server, in a thread (the fork waits for the server's
    imports), unless it is on its way or alive."""
    global _torch
    with _LOCK:
        if _torch is not None:
            return
        _torch = future = Future()

    def fork() -> None:
        try:
            ours, theirs = _CONTEXT.Pipe()
            with theirs:
                child = _started(_torch_server, (theirs, TORCH_PRELOAD), "torch model server")
            future.set_result((child, ours))
        except BaseException as exc:
            future.set_exception(exc)

    # A daemon thread: a process that exits while the server still imports is not held by it.
    threading.Thread(target=fork, name="reckit-torch-server", daemon=True).start()


def _torch_server(connection: Connection, modules: list[str]) -> None:
    """The torch server: imports ``modules``, then runs each task it is sent in a child of its
    own (``fork``: it has one Python thread, and torch's native ones hold no Python lock),
    relaying the child's messages and then how it ended. Ends when its client closes."""
    for module in modules:
        with contextlib.suppress(ImportError):  # as the server's preload: left to the child
            importlib.import_module(module)
    fork = multiprocessing.get_context("fork")
    while True:
        try:
            task = connection.recv()
        except EOFError:
            return
        receive, send = fork.Pipe(duplex=False)
        with send:
            child = fork.Process(target=_child, args=(send, *task), name="reckit torch model")
            child.start()
        with receive:
            while True:
                try:
                    connection.send(receive.recv())
                except EOFError:
                    break
        child.join(JOIN_TIMEOUT_S)
        if child.is_alive():
            child.kill()
            child.join()
        connection.send((_ENDED, (child.pid, child.exitcode)))


def _torch_connection() -> Connection:
    """The torch server's connection (started anew if it died); waits for its imports."""
    global _torch
    for _ in range(2):
        _start_torch_server()
        assert _torch is not None
        try:
            server, connection = _torch.result()
        except Exception:  # the fork failed: once more
            _torch = None
            continue
        if server.is_alive():
            return connection
        connection.close()
        _torch = None
    raise ModelProcessError("the torch model server could not be started, twice")


def _call_torch(task: tuple, what: str, log: Callable[[str], None] | None) -> Any:
    """``call`` for a computation forked from the torch server."""
    global _torch
    with _TORCH_LOCK:
        for attempt in (1, 2):  # a server found dead before it started the task: once more
            connection = _torch_connection()
            outcome: tuple[str, Any] | None = None
            started = False
            try:
                connection.send(task)
                while True:
                    kind, payload = connection.recv()
                    started = True
                    if kind == _LOG:
                        if log is not None:
                            log(payload)
                    elif kind in (_RESULT, _ERROR):
                        outcome = (kind, payload)
                    elif kind == _ENDED:
                        break
            except (EOFError, OSError):
                connection.close()
                _torch = None
                if started or attempt == 2:
                    raise ModelProcessError(
                        f"{what}: the torch model server ended during the computation"
                    ) from None
                continue
            pid, exitcode = payload
            if outcome is None:
                raise ModelProcessError(
                    f"{what}: the model process (pid {pid}) ended without a result: "
                    f"{_how_it_ended(exitcode)}"
                )
            kind, value = outcome
            if kind == _ERROR:
                raise value
            return value
    raise AssertionError("unreachable")


def _at_exit() -> None:
    """End the torch server (which waits for tasks), and the server now rather than after its
    ~1 s of finalizing (it holds this process's stdout and stderr meanwhile): only a server
    that is still this process's child."""
    torch_server = _torch
    if torch_server is not None:
        with contextlib.suppress(Exception):
            # (A torch server still on its way arrives once the server has imported: then.)
            server, connection = torch_server.result(timeout=FORK_WAIT_AT_EXIT_S)
            connection.close()
            server.terminate()
    pid = _server
    if pid is None:
        return
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
            os.kill(pid, signal.SIGTERM)


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = (
            " (out of memory? the kernel's OOM killer sends SIGKILL)" if name == "SIGKILL" else ""
        )
        return f"killed by {name}{hint}"
    return f"exit code {exitcode}"


def _child(
    send: Connection,
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict[str, Any],
    with_log: bool,
) -> None:
    # What the server imported stays out of the collector's reach: collections then never touch
    # (and so never copy) the pages this child shares with the server (~10% faster steps).
    gc.freeze()
    send.send((_SERVER, os.getppid()))
    if with_log:
        kwargs = {**kwargs, "log": lambda line: send.send((_LOG, str(line)))}
    try:
        # A result that does not pickle fails here, before anything is sent: it goes back as
        # the error.
        send.send((_RESULT, fn(*args, **kwargs)))
    except BaseException as exc:  # every error goes back to the caller
        send.send((_ERROR, _portable(exc)))
    finally:
        send.close()


def _portable(exc: BaseException) -> BaseException:
    """``exc`` with the child's traceback as a note, or a ModelProcessError saying the same if
    ``exc`` itself does not survive pickling (an exception with a custom constructor)."""
    where = "".join(traceback.format_exception(exc))
    try:
        exc.add_note(f"raised in the model process:\n{where}")
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # it does not pickle: say the same in a type that does
        return ModelProcessError(
            f"{type(exc).__name__}: {exc}\nraised in the model process:\n{where}"
        )
