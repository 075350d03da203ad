"""Manual launches go before the arrival sensor's backlog: the sensor's runs have a lower
``dagster/priority`` than an untagged launch (0). The browser test (make test-ui) checks the
order on a running instance."""

from __future__ import annotations

import dagster as dg
import yaml

from reckit_assets.dagster_home import init_home
from reckit_assets.definitions import defs


def test_sensor_runs_queue_behind_manual_launches(simulated):
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources=simulated.resources(), definitions=defs
    )
    result = defs.get_sensor_def("landing_arrival_sensor")(context)
    assert result.run_requests
    for request in result.run_requests:
        assert int(request.tags["dagster/priority"]) < 0


def test_local_instance_queues_runs_one_at_a_time(tmp_path):
    config = yaml.safe_load((init_home(tmp_path) / "dagster.yaml").read_text())
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 1
    assert config["python_logs"]["python_log_level"] == "INFO"
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
