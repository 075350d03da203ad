"""A real `reckit dev` (Dagster webserver + daemon) on a small simulation, and a real Chromium.

The server runs in its own session with private DAGSTER_HOME, data directory and reckit.yaml
(small models, so a day's run takes about a minute); it is stopped with SIGTERM, as Ctrl-C would,
and whatever is left of its process group is killed. Screenshots go to ``.artifacts/ui/``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from reckit_assets.dagster_home import LOCAL_DAGSTER_YAML
from reckit_assets.settings import PROJECT_ROOT

ARTIFACTS = PROJECT_ROOT / ".artifacts" / "ui"
README_IMAGES = PROJECT_ROOT / "docs" / "images"
CHROMIUM = os.environ.get("RECKIT_CHROMIUM", "/usr/bin/chromium")
# NOTES.md: the flags Debian's chromium needs to run headless as root in a container.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DAYS = 3  # the third day is the first with two training days: it trains, evaluates, registers
SLOW_QUEUE = """\
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 25
"""
SMALL_MODELS = """\
xgboost: {n_estimators: 40, early_stopping_rounds: 10}
deepfm: {max_epochs: 2, hidden: [32, 32]}
item2vec: {epochs: 5}
gate: {bootstrap_samples: 50}
"""
RUNS_QUERY = """{ runsOrError { ... on Runs { results {
    runId status creationTime startTime endTime tags { key value } } } } }"""
LOGS_QUERY = """query Logs($runId: ID!) { logsForRun(runId: $runId) {
    ... on EventConnection { events { ... on MessageEvent { message } } } } }"""


@dataclass
class Run:
    id: str
    status: str
    tags: dict[str, str]
    created: float
    started: float | None
    ended: float | None

    @property
    def partition(self) -> str | None:
        return self.tags.get("dagster/partition")

    @property
    def from_sensor(self) -> bool:
        return self.tags.get("reckit/trigger") == "arrival"


@dataclass
class DagsterUI:
    url: str
    log: Path
    process: subprocess.Popen
    console_errors: list[str] = field(default_factory=list)

    def runs(self) -> list[Run]:
        data = httpx.post(f"{self.url}/graphql", json={"query": RUNS_QUERY}, timeout=60).json()
        return [
            Run(
                r["runId"],
                r["status"],
                {t["key"]: t["value"] for t in r["tags"]},
                r["creationTime"],
                r["startTime"],
                r["endTime"],
            )
            for r in data["data"]["runsOrError"]["results"]
        ]

    def messages(self, run_id: str) -> list[str]:
        """The run's log messages, as its page in the UI shows them."""
        data = httpx.post(
            f"{self.url}/graphql",
            json={"query": LOGS_QUERY, "variables": {"runId": run_id}},
            timeout=60,
        ).json()
        return [e["message"] for e in data["data"]["logsForRun"]["events"] if e.get("message")]

    def wait_for(self, what: str, predicate, timeout: float = 900, poll: float = 3) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"reckit dev exited; see {self.log}"
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; log: {self.log}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def simulated_days() -> list[str]:
    from datetime import UTC, datetime, timedelta

    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    return [(yesterday - timedelta(days=DAYS - 1 - k)).isoformat() for k in range(DAYS)]


@pytest.fixture(scope="session")
def dagster_ui(tmp_path_factory) -> Iterator[DagsterUI]:
    root = tmp_path_factory.mktemp("reckit_ui")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (root / "reckit.yaml").write_text(SMALL_MODELS)
    # The project's instance, with a slower queue: runs of days without training take seconds,
    # so with the default 5 s dequeue the sensor's backlog could drain before the UI launch that
    # must jump it (at 15 s it still did, on a loaded 2-core machine, once in three runs).
    # Priority (what is tested) is the project's; only the tick is slower.
    (root / "dagster_home").mkdir()
    (root / "dagster_home" / "dagster.yaml").write_text(LOCAL_DAGSTER_YAML + SLOW_QUEUE)
    port = _free_port()
    env = {
        **os.environ,
        "RECKIT_DATA_DIR": str(root / "data"),
        "DAGSTER_HOME": str(root / "dagster_home"),
        "RECKIT_CONFIG": str(root / "reckit.yaml"),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    for name in ("RECKIT_PARTITIONS_START", "RECKIT_LANDING_URI", "RECKIT_WAREHOUSE_URI"):
        env.pop(name, None)
    log = ARTIFACTS / "reckit_dev.log"
    cmd = [sys.executable, "-m", "reckit_assets.cli", "dev", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--days", str(DAYS), "--impressions", "3000"]
    cmd += ["--users", "400", "--items", "150"]
    with log.open("w") as out:
        process = subprocess.Popen(
            cmd,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ui = DagsterUI(url=f"http://127.0.0.1:{port}", log=log, process=process)
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{ui.url}/server_info", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        ui.wait_for("the Dagster webserver", up, timeout=300)
        yield ui
    finally:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
        # Anything of its session left over (it was started with start_new_session).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def browser(dagster_ui: DagsterUI):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install -y chromium"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, dagster_ui: DagsterUI):
    """A fresh page whose console errors and uncaught exceptions are collected for the run."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)

    def on_console(message) -> None:
        if message.type == "error":
            dagster_ui.console_errors.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: dagster_ui.console_errors.append(f"{page.url}: {exc}"))
    yield page
    context.close()


def screenshot(page, name: str, readme: bool = False, **kwargs) -> None:
    """Save under .artifacts/ui/; README images only when RECKIT_README_SCREENSHOTS=1."""
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), **kwargs)
    if readme and os.environ.get("RECKIT_README_SCREENSHOTS") == "1":
        from PIL import Image

        README_IMAGES.mkdir(parents=True, exist_ok=True)
        target = README_IMAGES / f"{name}.png"
        page.screenshot(path=str(target), **kwargs)
        # A 64-colour palette keeps a committed screenshot small (UI colours are flat).
        small = Image.open(target).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        small.save(target, optimize=True)
