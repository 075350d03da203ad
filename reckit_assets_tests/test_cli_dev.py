"""`reckit dev`: the demo's days end yesterday, partitions start at the first landed day, and a
Ctrl-C or SIGTERM stops it with status 0 (no `make: *** Error`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from reckit_assets import cli
from reckit_assets.core.ingest.landing import ready_days
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.settings import PROJECT_ROOT


def _dev(tmp_path, monkeypatch, *args: str, start: str | None = None) -> tuple[int, list, dict]:
    monkeypatch.setenv("RECKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECKIT_CONFIG", raising=False)
    # `reckit dev` sets these for its child in os.environ: recorded here, so undone after the test.
    monkeypatch.setenv("RECKIT_PARTITIONS_START", "")
    monkeypatch.setenv("PYTHONWARNINGS", os.environ.get("PYTHONWARNINGS", ""))
    if start:
        monkeypatch.setenv("RECKIT_PARTITIONS_START", start)  # the user's choice
    else:
        monkeypatch.delenv("RECKIT_PARTITIONS_START", raising=False)
    started: dict = {}

    def fake_run(cmd):  # the UI itself is covered by the browser tests (make test-ui)
        started["cmd"] = cmd
        started["env"] = dict(os.environ)
        return 0

    monkeypatch.setattr(cli, "_run_until_interrupted", fake_run)
    code = cli.main(["dev", "--port", "3399", *args])
    return code, started["cmd"], started["env"]


def test_demo_days_end_yesterday_and_partitions_start_at_the_first(tmp_path, monkeypatch):
    argv = ["--days", "2", "--impressions", "500", "--users", "100", "--items", "40"]
    code, cmd, env = _dev(tmp_path, monkeypatch, *argv)
    assert code == 0
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    days = [(yesterday - timedelta(days=1)).isoformat(), yesterday.isoformat()]
    assert list(ready_days(LocalStorage(tmp_path / "data/landing"))) == days
    assert env["RECKIT_PARTITIONS_START"] == days[0]
    assert cmd[1:3] == ["dev", "-w"] and "3399" in cmd
    assert cmd[cmd.index("--log-level") + 1] == "warning"
    assert "dev_command" in env["PYTHONWARNINGS"]


def test_a_configured_start_is_kept_and_landed_days_are_not_simulated_again(tmp_path, monkeypatch):
    small = ["--days", "1", "--impressions", "300", "--users", "60", "--items", "30"]
    _dev(tmp_path, monkeypatch, *small, start="2026-10-01")
    landing = LocalStorage(tmp_path / "data/landing")
    assert list(ready_days(landing)) == ["2026-10-01"]  # simulated from the configured start
    before = ready_days(landing)
    code, _, env = _dev(tmp_path, monkeypatch, *small)
    assert code == 0 and ready_days(landing) == before  # nothing simulated over landed data
    assert env["RECKIT_PARTITIONS_START"] == "2026-10-01"  # the first landed day


def test_ctrl_c_stops_the_command_with_status_zero(tmp_path):
    child = (
        "import time\n"
        "try:\n    time.sleep(60)\n"
        "except KeyboardInterrupt:\n    print('child stopped', flush=True); raise SystemExit(1)"
    )
    runner = (
        "import sys; from reckit_assets.cli import _run_until_interrupted; "
        f"sys.exit(_run_until_interrupted([sys.executable, '-c', {child!r}]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", runner],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # A shell's background job starts with SIGINT ignored; the runner must undo that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    time.sleep(3)  # both processes are up
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does to the foreground group
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert b"child stopped" in out and b"stopped" in out.splitlines()[-1]


def test_sigterm_is_forwarded_and_counts_as_a_normal_stop(tmp_path):
    runner = (
        "import sys; from reckit_assets.cli import _run_until_interrupted; "
        "sys.exit(_run_until_interrupted([sys.executable, '-c', 'import time; time.sleep(60)']))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", runner],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # A non-interactive shell's background job may start with SIGTERM ignored, which the
        # command would inherit: the runner must undo that too.
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN),
    )
    time.sleep(3)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert time.monotonic() - started < 10  # the child got SIGTERM, not a 60 s sleep
