"""Model computations in a process of their own, forked from a server that has the ML stack loaded.

Where the steps of a run share one process (the embedded default runs them in-process: a data
step computes in 0.1-0.4 s and a fresh process per step cost ~1 s each, see docs/benchmarks.md),
the model steps -- training and evaluation -- still get a process each:

* the memory a training takes is returned to the system when it ends;
* a crash or an out-of-memory kill fails that one step, with the exit code and signal, instead
  of the run;
* torch, xgboost and gensim are imported once per run, by servers started as the run's process
  loads the code location (``defs/run_worker.py``) or when its resources start (:func:`start`),
  while the run does other work -- never by the run's own process.

The servers are Python's ``forkserver`` (CPython 3.11's protocol and child bootstrap), two of
them. The LIGHT server is a fresh interpreter (not a fork of the run's process, whose Python
threads -- Dagster's -- could hold a lock at the fork) that imports :data:`LIGHT_PRELOAD`; the
FULL server is its fork and adds :data:`TORCH_PRELOAD`. Each forks one child per :func:`call`,
so the steps that do not use torch need not wait for it (~2.5 s of imports). The only threads a
server has when it forks are native ones started by its imports (jemalloc's background threads,
Polars' out-of-core cleaner), which hold no Python lock, and jemalloc re-arms its own locks
across a fork.

Arguments and the result travel pickled over a pipe between this process and the child it
started (nothing is loaded from storage that way); the child's log lines stream back while it
runs. A child sees the environment variables as they were when the servers started (the run's),
and storages travel as places, not connections (``S3Storage`` reopens its client in the child).
A server that dies is replaced, with its pair, at the next call (or the call that found it
dead). The servers end, without finalizing (~1 s for an interpreter with torch loaded), when
this process does.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import importlib
import io
import multiprocessing
import os
import pickle
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing import (
    connection,
    forkserver,
    popen_forkserver,
    reduction,
    resource_tracker,
    spawn,
    util,
)
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerProcess, set_spawning_popen
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

# What the servers import before they fork: the model steps' modules and what they import lazily
# (inside functions, so that the data steps never pay for them), so that a child starts in
# milliseconds and imports nothing. A module that fails to import is skipped, as multiprocessing
# does (the child would then import it, slowly): test_isolation.py imports every one.
#
# Two servers, because torch (~2.5 s with what an optimizer's first step imports) dominates the
# imports: the LIGHT server imports the rest (~1.4 s) and serves the steps that do not need torch
# (item2vec, XGBoost, the plots) while the FULL one, its fork, goes on to import torch.
LIGHT_PRELOAD = [
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
TORCH_PRELOAD = [
    "torch",
    "safetensors.torch",
    "torch._dynamo",  # what an optimizer's first step imports (sympy & co., ~1 s)
]
PRELOAD = LIGHT_PRELOAD + TORCH_PRELOAD
LIGHT, FULL = "light", "full"  # the servers: LIGHT_PRELOAD loaded; PRELOAD loaded
JOIN_TIMEOUT_S = 30.0  # after the result: how long the child may take to exit before it is killed
# How long a request may wait for its fork: a server's first child waits for its imports (~1.5 s
# for LIGHT, ~4 s for FULL on an idle 2-core machine; minutes on a crowded one).
FORK_TIMEOUT_S = 600.0

_LOG, _RESULT, _ERROR = "log", "result", "error"


class ModelProcessError(RuntimeError):
    """The model process ended without a result (killed, crashed) or its error could not travel."""


class _ServerGone(Exception):
    """A model server died before it forked the requested child."""


class _Servers:
    """This process's model servers: their addresses, and the write end of the pipe whose EOF
    (this process gone, or the pair replaced) ends them."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pid: int | None = None  # the LIGHT server; the FULL one is its child
        self.addresses: dict[str, Any] = {}
        self.alive_w: int | None = None
        self.started_at: float | None = None  # time.monotonic()

    def forget(self) -> None:
        """Let go of a pair that died: closing "alive" ends whichever of the two is left."""
        if self.alive_w is not None:
            os.close(self.alive_w)
        self.pid, self.addresses, self.alive_w, self.started_at = None, {}, None, None


_SERVERS = _Servers()


class _Popen(popen_forkserver.Popen):
    """The forkserver's Popen (CPython 3.11), asking one of this module's servers, and less the
    rebuilding of ``__main__`` in the child.

    multiprocessing re-runs the parent's main script in every child so that functions defined
    there unpickle. What runs here is importable by name, and re-running the main script costs:
    for the ``dagster`` command it imports dagster's CLI, ~0.8 s a call (measured).
    """

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = _connect(process_obj.server, self._fds)
        _parent_w = os.dup(w)  # the child's sentinel of this process, as in CPython
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        try:
            with open(w, "wb", closefd=True) as f:
                f.write(buf.getbuffer())
            # The pid comes once the server has forked: after its imports, for its first child.
            if not connection.wait([self.sentinel], FORK_TIMEOUT_S):
                raise ModelProcessError(
                    f"the {process_obj.server} model server did not fork {process_obj.name!r} "
                    f"within {FORK_TIMEOUT_S:.0f} s"
                )
            self.pid = forkserver.read_signed(self.sentinel)
        except (EOFError, OSError) as exc:  # the server died with the request in its hands
            self.finalizer()
            raise _ServerGone(process_obj.server) from exc
        except BaseException:
            self.finalizer()
            raise


class _Process(ForkServerProcess):
    server = FULL

    @staticmethod
    def _Popen(process_obj: Any) -> _Popen:
        return _Popen(process_obj)


def _context() -> multiprocessing.context.ForkServerContext:
    return multiprocessing.get_context("forkserver")


def start() -> None:
    """Start the servers now, so that they import the ML stack while the run does other work.

    Returns at once; a call waits for its server if that is still importing. Idempotent: one
    pair per process, alive until the process exits (or started anew if it died).
    """
    with _SERVERS.lock:
        resource_tracker.ensure_running()
        if _SERVERS.pid is not None:
            try:
                pid, _ = os.waitpid(_SERVERS.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: gone
                pid = _SERVERS.pid
            if not pid:
                return  # alive
            _SERVERS.forget()  # it died: start another pair
        with (
            socket.socket(socket.AF_UNIX) as light,
            socket.socket(socket.AF_UNIX) as full,
        ):
            addresses = {}
            for name, listener in ((LIGHT, light), (FULL, full)):
                addresses[name] = connection.arbitrary_address("AF_UNIX")
                listener.bind(addresses[name])
                if not util.is_abstract_socket_namespace(addresses[name]):
                    os.chmod(addresses[name], 0o600)
                listener.listen()
            # Every client holds the write end of "alive": EOF on the read end ends the servers.
            alive_r, alive_w = os.pipe()
            try:
                code = (
                    f"import sys; sys.path[:] = {sys.path!r}; "
                    "from reckit_assets.core.training.isolation import _serve; "
                    f"_serve({light.fileno()}, {full.fileno()}, {alive_r})"
                )
                exe = spawn.get_executable()
                args = [exe, *util._args_from_interpreter_flags(), "-c", code]
                pid = util.spawnv_passfds(exe, args, [light.fileno(), full.fileno(), alive_r])
            except BaseException:
                os.close(alive_w)
                raise
            finally:
                os.close(alive_r)
        _SERVERS.pid, _SERVERS.addresses, _SERVERS.alive_w = pid, addresses, alive_w
        _SERVERS.started_at = time.monotonic()


def server_pid() -> int | None:
    """The LIGHT server's pid (the FULL server is its child); None before :func:`start`."""
    return _SERVERS.pid


def loading_for() -> float | None:
    """Seconds since this process started its model servers; None if it has not."""
    started = _SERVERS.started_at
    return None if started is None else time.monotonic() - started


def _connect(server: str, fds: list[int]) -> tuple[int, int]:
    """Ask ``server`` for a child: ``(status_r, data_w)``, as CPython's ForkServer does. The
    child gets the pipes, the "alive" write end (the servers live while a child does) and the
    resource tracker's fd. :class:`_ServerGone` if the server is dead."""
    if len(fds) + 4 >= forkserver.MAXFDS_TO_SEND:
        raise ValueError("too many fds")
    with _SERVERS.lock:
        start()  # (again, if the LIGHT server died)
        client = socket.socket(socket.AF_UNIX)
        try:
            client.connect(_SERVERS.addresses[server])
        except (ConnectionRefusedError, FileNotFoundError) as exc:  # the FULL server died
            client.close()
            raise _ServerGone(server) from exc
        with client:
            parent_r, child_w = os.pipe()
            child_r, parent_w = os.pipe()
            try:
                sent = [child_r, child_w, _SERVERS.alive_w, resource_tracker.getfd(), *fds]
                reduction.sendfds(client, sent)
                return parent_r, parent_w
            except BaseException:
                os.close(parent_r)
                os.close(parent_w)
                raise
            finally:
                os.close(child_r)
                os.close(child_w)


def _replace() -> None:
    """Kill the pair (what is left of it) and start another."""
    with _SERVERS.lock:
        if _SERVERS.pid is not None:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(_SERVERS.pid, signal.SIGKILL)
                os.waitpid(_SERVERS.pid, 0)
            _SERVERS.forget()
        start()


def _serve(light_fd: int, full_fd: int, alive_r: int) -> NoReturn:
    """The LIGHT server: imports LIGHT_PRELOAD, forks the FULL server (which adds TORCH_PRELOAD
    and serves ``full_fd``), and serves ``light_fd``. Both end when their client is gone."""
    # A Ctrl-C in the terminal reaches the whole process group: the run handles it, the servers
    # end when it does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in LIGHT_PRELOAD:
        _preload(module)
    if os.fork() == 0:
        os.close(light_fd)
        for module in TORCH_PRELOAD:
            _preload(module)
        _serve_forever(full_fd, alive_r)
    os.close(full_fd)
    _serve_forever(light_fd, alive_r)


def _preload(module: str) -> None:
    # As multiprocessing does, a module that fails to import is left to the child (to fail there).
    with contextlib.suppress(ImportError):
        importlib.import_module(module)


def _serve_forever(listener_fd: int, alive_r: int) -> NoReturn:
    """CPython 3.11's ``multiprocessing.forkserver.main`` loop, ending with ``os._exit`` when
    its client is gone: finalizing an interpreter with torch loaded takes ~1 s (measured), and
    nothing here needs finalizing."""
    util._close_stdin()
    sig_r, sig_w = os.pipe()
    os.set_blocking(sig_r, False)
    os.set_blocking(sig_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A child gets an interpreter's usual handlers back (Ctrl-C raises KeyboardInterrupt there).
    child_handlers = {signal.SIGCHLD: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
    signal.set_wakeup_fd(sig_w)  # a SIGCHLD wakes the selector
    pid_to_fd: dict[int, int] = {}
    with (
        socket.socket(socket.AF_UNIX, fileno=listener_fd) as listener,
        selectors.DefaultSelector() as selector,
    ):
        for fileobj in (listener, alive_r, sig_r):
            selector.register(fileobj, selectors.EVENT_READ)
        while True:
            try:
                ready = [key.fileobj for key, _ in selector.select()]
                if alive_r in ready:
                    os._exit(0)  # the client is gone
                if sig_r in ready:
                    os.read(sig_r, 65536)
                    _reap(pid_to_fd)
                if listener in ready:
                    with listener.accept()[0] as s:
                        fds = reduction.recvfds(s, forkserver.MAXFDS_TO_SEND + 1)
                    if len(fds) > forkserver.MAXFDS_TO_SEND:
                        raise RuntimeError(f"too many ({len(fds)}) fds to send")
                    child_r, child_w, *fds = fds
                    pid = os.fork()
                    if pid == 0:
                        code = 1
                        try:
                            listener.close()
                            selector.close()
                            unused = [alive_r, child_w, sig_r, sig_w, *pid_to_fd.values()]
                            code = forkserver._serve_one(child_r, fds, unused, child_handlers)
                        except Exception:
                            sys.excepthook(*sys.exc_info())
                            sys.stderr.flush()
                        finally:
                            os._exit(code)
                    with contextlib.suppress(BrokenPipeError):  # the client vanished
                        forkserver.write_signed(child_w, pid)
                    pid_to_fd[pid] = child_w
                    os.close(child_r)
                    for fd in fds:
                        os.close(fd)
            except OSError as e:
                if e.errno != errno.ECONNABORTED:
                    raise


def _reap(pid_to_fd: dict[int, int]) -> None:
    """Send each ended child's exit code to the client that asked for it."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        child_w = pid_to_fd.pop(pid, None)
        if child_w is None:  # the FULL server, a child of the LIGHT one
            continue
        with contextlib.suppress(BrokenPipeError):
            forkserver.write_signed(child_w, os.waitstatus_to_exitcode(status))
        os.close(child_w)


def call(
    fn: Callable[..., T],
    /,
    *args: Any,
    what: str,
    log: Callable[[str], None] | None = None,
    server: str = FULL,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)`` in a fresh child process; its result, or its exception, here.

    ``fn`` must be importable by name (a module-level function); arguments and result must pickle.
    With ``log``, ``fn`` is passed ``log=`` a function whose lines reach ``log`` here as they are
    written. ``what`` names the computation in errors. The exception ``fn`` raised is raised here
    with its type and message, and the child's traceback as a note. A child that dies without a
    result raises :class:`ModelProcessError` naming the exit code or signal. ``server``: the
    child is forked from the FULL server (the whole ML stack loaded) or, for a computation that
    does not need torch, the LIGHT one, which is ready ~2 s sooner (a LIGHT child that does
    import torch imports it itself: slower, the same result).
    """
    if server not in (LIGHT, FULL):
        raise ValueError(f"server={server!r}: expected {LIGHT!r} or {FULL!r}")
    receive, send = _context().Pipe(duplex=False)
    for attempt in (1, 2):  # a server found dead is replaced with its pair, and asked once more
        child = _Process(
            target=_child, args=(send, fn, args, kwargs, log is not None), name=f"reckit {what}"
        )
        child.server = server
        try:
            child.start()
            break
        except _ServerGone:
            if attempt == 2:
                send.close()
                receive.close()
                raise ModelProcessError(
                    f"{what}: the {server} model server ended before it forked the process, twice"
                ) from None
            _replace()
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
            else:
                raise payload
    finally:
        receive.close()
        child.join(JOIN_TIMEOUT_S)
        if child.is_alive():
            child.kill()
            child.join()


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
