"""The Dagster UI in a real Chromium against `reckit dev` on a small simulation (make test-ui).

In order: a partition launched from the UI while the arrival sensor's backlog is queued runs
next and succeeds; the sensor's runs found their model servers started as the code location
loaded; the lineage shows the groups in the order of the flow; the landing asset lists
the landed days; an evaluation partition shows its report; a candidate shows its training curve;
the browser logged no errors; the terminal stayed quiet.
"""

from __future__ import annotations

import re

import pytest

from reckit_assets_tests.ui.conftest import DagsterUI, screenshot, simulated_days

pytestmark = pytest.mark.ui

DAYS = simulated_days()
# The flow, left to right; groups from other stages (release, monitoring) are checked when the
# loaded definitions have them.
FLOW = ["landing", "ingest", "features", "samples", "models", "evaluation", "registry"]
LATER = ["release", "monitoring"]


def _groups_in_definitions() -> set[str]:
    from reckit_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    return {graph.get(key).group_name for key in graph.get_all_asset_keys()}


def test_a_partition_launched_from_the_ui_runs_before_the_sensor_backlog(page, dagster_ui):
    # The arrival sensor requests one run per landed day; the first runs, the others queue. The
    # launch follows at once: days without training take seconds, the last day's run trains.
    dagster_ui.wait_for(
        "the sensor's runs for every landed day",
        lambda: len([r for r in dagster_ui.runs() if r.from_sensor]) == len(DAYS),
        timeout=300,
        poll=0.5,
    )
    page.goto(f"{dagster_ui.url}/assets/landed_logs")
    page.locator("button", has_text="Materialize").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Launch runs to materialize landed_logs").wait_for()
    dialog.get_by_role("button", name="Latest", exact=True).click()
    dialog.get_by_text("1 partition", exact=True).wait_for()
    screenshot(page, "launch_dialog")
    dialog.get_by_role("button", name=re.compile(r"^Launch")).click()
    # The backlog is what is still queued once the launched run is in the queue too: a sensor run
    # the queue took while the launch was on its way from the browser was not behind it.
    dagster_ui.wait_for(
        "the launched run to be created",
        lambda: [r for r in dagster_ui.runs() if not r.from_sensor],
        timeout=120,
    )
    backlog = {r.id for r in dagster_ui.runs() if r.from_sensor and r.status == "QUEUED"}
    assert backlog, "no sensor run was queued when the launched run joined the queue"

    def manual_run():
        done = [r for r in dagster_ui.runs() if not r.from_sensor and r.ended]
        return done[0] if done else None

    run = dagster_ui.wait_for("the launched run to finish", manual_run, timeout=900)
    assert run.status == "SUCCESS", f"run {run.id} {run.status}; log: {dagster_ui.log}"
    assert run.partition == DAYS[-1]
    # It jumped the queue: no sensor run still queued at launch started before it.
    started_before = [
        r.id for r in dagster_ui.runs() if r.id in backlog and r.started and r.started < run.started
    ]
    assert started_before == [], f"sensor runs {started_before} started before the manual launch"
    page.goto(f"{dagster_ui.url}/runs/{run.id}")
    page.get_by_text("Success", exact=False).first.wait_for()
    screenshot(page, "manual_run")


def test_sensor_runs_find_their_model_servers_started_as_the_code_location_loaded(dagster_ui):
    # A run the daemon launches executes in a process the code server spawns; loading the code
    # location there starts the model servers (defs/run_worker.py), before the run's resources
    # would. Every sensor run of the daily job has the model_processes resource.
    from reckit_assets.defs.resources import EARLY_START

    runs = [r for r in dagster_ui.runs() if r.from_sensor and r.status == "SUCCESS"]
    assert runs, "no sensor run succeeded"
    early = [
        r.id for r in runs if any(m.startswith(EARLY_START) for m in dagster_ui.messages(r.id))
    ]
    assert early == [r.id for r in runs], f"runs without early model servers: {dagster_ui.log}"


def test_lineage_shows_the_groups_in_the_order_of_the_flow(page, dagster_ui):
    present = _groups_in_definitions()
    expected = [g for g in FLOW if g in present] + [g for g in LATER if g in present]
    assert expected[:2] == ["landing", "ingest"] and set(FLOW) <= present
    page.set_viewport_size({"width": 1400, "height": 420})
    page.goto(f"{dagster_ui.url}/asset-groups")
    graph = page.locator("svg")
    xs = {}
    for group in expected:
        node = graph.get_by_text(group, exact=True).first
        node.wait_for()
        xs[group] = node.bounding_box()["x"]
    ordered = [g for g in FLOW if g in xs]
    assert sorted(ordered, key=xs.get) == ordered, f"group positions: {xs}"
    screenshot(page, "lineage", readme=True)


def test_landing_asset_lists_the_landed_days(page, dagster_ui):
    page.goto(f"{dagster_ui.url}/assets/landing_zone")
    page.get_by_text(f"{len(DAYS)} day(s) landed, {DAYS[0]} to {DAYS[-1]}").wait_for()
    for day in DAYS:  # the table renders after the summary line: wait for each row's cell
        cell = page.get_by_role("cell", name=day, exact=True)
        cell.first.wait_for(timeout=30_000)
        assert cell.count() >= 1, day
    screenshot(page, "landing_zone", full_page=True)


def _metadata_value(page, key: str):
    """The value cell of a metadata row; long Markdown opens in a dialog behind a link."""
    row = page.locator("tr").filter(has=page.get_by_text(key, exact=True)).first
    row.wait_for()
    link = row.get_by_text("[Show Markdown]")
    if link.count():
        link.click()
        return page.get_by_role("dialog")
    return row


def _wait_for_last_day(dagster_ui: DagsterUI) -> None:
    dagster_ui.wait_for(
        f"the sensor's run for {DAYS[-1]} to finish",
        lambda: any(
            r.from_sensor and r.partition == DAYS[-1] and r.ended for r in dagster_ui.runs()
        ),
        timeout=1200,
    )


def test_evaluation_partition_shows_its_report(page, dagster_ui):
    _wait_for_last_day(dagster_ui)
    page.goto(f"{dagster_ui.url}/assets/xgboost_evaluation?view=partitions&partition={DAYS[-1]}")
    report = (
        _metadata_value(page, "report")
        .locator("table", has_text="AUC")
        .filter(has_text="candidate")
    ).first
    report.wait_for()
    for metric in ("AUC", "GAUC", "logloss", "observed CTR"):
        assert report.get_by_text(metric, exact=True).count() >= 1, metric
    # The gate's verdict is in the same metadata (a gate table, when the report has one).
    assert page.get_by_text(re.compile(r"^(passed|FAILED: .*)$")).count() >= 1
    report.scroll_into_view_if_needed()
    screenshot(page, "evaluation_report", readme=True)


def test_candidate_partition_shows_its_training_curve(page, dagster_ui):
    _wait_for_last_day(dagster_ui)
    page.goto(f"{dagster_ui.url}/assets/xgboost_candidate?view=partitions&partition={DAYS[-1]}")
    curve = _metadata_value(page, "training_curve").locator('img[src^="data:image/png;base64,"]')
    curve.wait_for()
    assert curve.evaluate("img => img.naturalWidth") > 100  # decoded: a real image
    curve.scroll_into_view_if_needed()
    screenshot(page, "training_curve")


def test_the_browser_logged_no_errors(dagster_ui):
    assert dagster_ui.console_errors == []


def test_the_terminal_stayed_quiet(dagster_ui):
    text = dagster_ui.log.read_text(errors="replace")
    lines = text.splitlines()
    assert not [line for line in lines if "Warning" in line or " - WARNING - " in line]
    assert not [line for line in lines if " - DEBUG - " in line]
    assert len(lines) < 200, f"{len(lines)} lines in {dagster_ui.log}"
