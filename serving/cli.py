"""``python -m serving`` / ``reckit serve``: one uvicorn worker serving :func:`serving.app.create_app`.

Configuration is the environment's (:mod:`serving.config`); ``--host``/``--port``/``--workers``
override it. Several workers are several processes, each loading its own copy of the models.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Start the service; returns when it is stopped (SIGINT/SIGTERM)."""
    import uvicorn

    from serving.config import ConfigError, ServingConfig

    parser = argparse.ArgumentParser(prog="reckit serve", description=__doc__)
    parser.add_argument("--host", help="bind address (default $RECKIT_SERVING_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default $RECKIT_SERVING_PORT or 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        config = ServingConfig.from_env()
    except ConfigError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    # The feedback log's flush thread builds files beside the event loop; with CPython's default
    # 5 ms GIL switch interval a request arriving during a flush waits in 5 ms slices. 1 ms
    # hands the GIL back to the loop sooner (tail latency), at no measurable throughput cost.
    sys.setswitchinterval(config.gil_switch_ms / 1000.0)
    _raise_open_file_limit()
    from serving.connections import uvicorn_options

    options = {
        "host": args.host or config.host,
        "port": args.port if args.port is not None else config.port,
        "access_log": config.access_log,
        "log_level": args.log_level,
    }
    if args.workers > 1:
        # Workers are separate processes: each builds its app from the environment.
        # The protocol class is named, not passed: each worker builds its guard from the
        # environment.
        connection = {**uvicorn_options(config), "http": "serving.connections:GuardedProtocol"}
        uvicorn.run(
            "serving.app:create_app",
            factory=True,
            workers=args.workers,
            **options,
            **connection,
        )
    else:
        from serving.app import create_app

        uvicorn.run(create_app(config), **options, **uvicorn_options(config))
    return 0


def _raise_open_file_limit() -> None:
    """Soft open-file limit up to the hard one: connections are file descriptors, and the
    default soft limit (often 1,024) is what a flood of idle sockets exhausts first."""
    import contextlib
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        # A container may refuse; the connection guard still bounds what slow clients hold.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
