"""Real servers for the deployment tests: PostgreSQL, separate Dagster processes, GraphQL calls.

Nothing here is assumed running: PostgreSQL is Debian's server binaries started in a temporary
directory (as ``nobody`` when the tests run as root, since postgres refuses root), and every
process is started in its own session so that stopping it also stops what it spawned (run
workers, step processes).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PG_BIN = Path("/usr/lib/postgresql/15/bin")
UNPRIVILEGED = "nobody"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:  # a server still starting refuses connections
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})"
    )


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    db_name: str

    def connect(self):
        import psycopg2

        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password,
            dbname=self.db_name,
        )  # fmt: skip

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()


def _as_unprivileged(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", UNPRIVILEGED, "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres_server(db_name: str = "dagster") -> Iterator[PostgresServer]:
    """initdb a fresh cluster in a new temporary directory (under the system temp dir, which the
    unprivileged user can reach), start it on a free loopback port; stop and delete it after."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"{PG_BIN}/initdb missing: apt-get install -y postgresql")
    root = Path(tempfile.mkdtemp(prefix="reckit-pg-"))
    data, sock = root / "pgdata", root / "pgsock"
    sock.mkdir(parents=True)
    password = "reckit-test"
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, UNPRIVILEGED)
        for path in (sock, pwfile):
            shutil.chown(path, UNPRIVILEGED)
    user = "dagster"
    subprocess.run(
        _as_unprivileged(
            [str(PG_BIN / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}",
             "-A", "scram-sha-256", "--no-sync"]
        ),
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    log = root / "postgres.log"
    subprocess.run(
        _as_unprivileged(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
             "-o", f"-k {sock} -p {port} -h 127.0.0.1 -c fsync=off", "start"]
        ),
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        server = PostgresServer("127.0.0.1", port, user, password, "postgres")
        with contextlib.closing(server.connect()) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{db_name}"')
        yield PostgresServer("127.0.0.1", port, user, password, db_name)
    finally:
        subprocess.run(
            _as_unprivileged([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


class Service:
    """One server process in its own session; ``stop`` ends the whole group."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        # Children (run workers, step processes) share the group: make sure none outlives us.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log_file.close()


class GraphQL:
    """The webserver's GraphQL endpoint; every error in a response fails loudly."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(timeout=60)

    def __call__(self, query: str, **variables: Any) -> dict:
        response = self.client.post(self.url, json={"query": query, "variables": variables})
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]
