"""`reckit simulate` then materializing a day from the command line yields samples."""

from __future__ import annotations

import pytest

from reckit_assets import cli
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import LocalStorage


def test_simulate_then_materialize_a_range(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert (
        cli.main(
            ["simulate", "--days", "2", "--users", "300", "--items", "80", "--impressions", "3000"]
        )
        == 0
    )
    assert (tmp_path / "data/landing/events/dt=2026-10-02/_SUCCESS").exists()
    assert (tmp_path / "data/oracle").exists()
    assert not (tmp_path / "data/landing/oracle").exists()  # ground truth stays outside

    assert cli.main(["materialize", "--from", "2026-10-01", "--to", "2026-10-02"]) == 0
    samples = warehouse.read(
        LocalStorage(tmp_path / "data/warehouse"), "training_samples", "2026-10-02"
    )
    assert len(samples) > 2500 and samples["label"].between(0, 1).all()
    assert (tmp_path / "home/dagster.yaml").exists()
    assert "succeeded" in capsys.readouterr().out

    # A day before the first partition: a clear refusal naming the setting.
    assert cli.main(["materialize", "--from", "2026-09-30"]) == 2
    assert "partitions.start" in capsys.readouterr().err

    # The per-day summary: data gate and each model's outcome (none trained on 2 days).
    assert cli.main(["report", "--from", "2026-10-01", "--to", "2026-10-02"]) == 0
    table = capsys.readouterr().out
    assert "| 2026-10-02 | SUCCESS | passed |" in table and "no candidate" in table


def test_simulate_rejects_a_bad_config(tmp_path, monkeypatch):
    monkeypatch.setenv("RECKIT_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="days"):
        cli.main(["simulate", "--days", "0"])
