"""Model computations in a process of their own, forked from a server that has the ML stack loaded.

Where the steps of a run share one process (the embedded default runs them in-process: a data
step computes in 0.1-0.4 s and a fresh process per step cost ~1 s each, see docs/benchmarks.md),
the model steps -- training and evaluation -- still get a process each:

* the memory a training takes is returned to the system when it ends;
* a crash or an out-of-memory kill fails that one step, with the exit code and signal, instead
  of the run;
* torch, xgboost and gensim are imported once per run, by a server started when the run starts
  (:func:`start`), while the data steps compute -- never by the run's own process.

This is Python's ``forkserver``: the server is a fresh interpreter (not a fork of the caller,
whose Polars and Arrow thread pools make ``fork`` unsafe) that imports :data:`PRELOAD` and forks
one child per :func:`call`. Arguments and the result travel pickled over a pipe between this
process and the child it started (nothing is loaded from storage that way); the child's log lines
stream back while it runs. A child sees the environment variables as they were when the server
started (the run's), and storages travel as places, not connections (``S3Storage`` reopens its
client in the child).
"""

from __future__ import annotations

import gc
import io
import multiprocessing
import os
import pickle
import signal
import traceback
from collections.abc import Callable
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerProcess, set_spawning_popen
from typing import Any, TypeVar

T = TypeVar("T")

# What the server imports before it forks: the model steps' modules and what they import lazily
# (inside functions, so that the data steps never pay for them), so a child starts in milliseconds
# and imports nothing. multiprocessing ignores a module that fails to import (the child would then
# import it, slowly): reckit_assets_tests/core/training/test_isolation.py imports every one.
PRELOAD = [
    "reckit_assets.core.steps.models",
    "reckit_assets.core.training.baselines",
    "reckit_assets.core.training.deepfm",
    "reckit_assets.core.training.item2vec",
    "reckit_assets.core.training.xgb_ranker",
    "reckit_assets.core.evaluation.gate",
    "reckit_assets.core.evaluation.plots",
    "reckit_assets.core.evaluation.next_item",
    "reckit_assets.core.evaluation.report",
    "gensim.models",
    "gensim.models.callbacks",
    "matplotlib.backends.backend_agg",
    "matplotlib.figure",
    "pyarrow.parquet",
    "safetensors.torch",
    "scipy.stats",
    "statsmodels.stats.multitest",
    "torch",
    "torch._dynamo",  # what an optimizer's first step imports (sympy & co., ~1 s)
    "xgboost",
]
JOIN_TIMEOUT_S = 30.0  # after the result: how long the child may take to exit before it is killed

_LOG, _RESULT, _ERROR = "log", "result", "error"


class ModelProcessError(RuntimeError):
    """The model process ended without a result (killed, crashed) or its error could not travel."""


class _Popen(popen_forkserver.Popen):
    """The forkserver's Popen (CPython 3.11), less the rebuilding of ``__main__`` in the child.

    multiprocessing re-runs the parent's main script in every child so that functions defined
    there unpickle. What runs here is importable by name, and re-running the main script costs:
    for the ``dagster`` command it imports dagster's CLI, ~0.8 s a call (measured). Python 3.11's
    forkserver cannot preload ``__main__`` instead (it never passes the main path to the server).
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
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        _parent_w = os.dup(w)  # the child's sentinel of this process, as in CPython
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _Process(ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _Popen:
        return _Popen(process_obj)


def _context() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # read when the server starts; a no-op afterwards
    return context


def start() -> None:
    """Start the server now, so that it imports :data:`PRELOAD` while the run does other work.

    Returns at once; the first :func:`call` waits for the server if it is still importing.
    Idempotent: one server per process, alive until the process exits.
    """
    _context()
    forkserver.ensure_running()


def call(
    fn: Callable[..., T],
    /,
    *args: Any,
    what: str,
    log: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)`` in a fresh child process; its result, or its exception, here.

    ``fn`` must be importable by name (a module-level function); arguments and result must pickle.
    With ``log``, ``fn`` is passed ``log=`` a function whose lines reach ``log`` here as they are
    written. ``what`` names the computation in errors. The exception ``fn`` raised is raised here
    with its type and message, and the child's traceback as a note. A child that dies without a
    result raises :class:`ModelProcessError` naming the exit code or signal.
    """
    context = _context()
    receive, send = context.Pipe(duplex=False)
    child = _Process(
        target=_child, args=(send, fn, args, kwargs, log is not None), name=f"reckit {what}"
    )
    child.start()
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
