"""The project config: one file every run reads, sources shown, bad values refused with the key."""

from __future__ import annotations

import json

import pytest

from reckit_assets import cli
from reckit_assets.config import ConfigError, describe, load_config


def test_config_show_on_a_fresh_clone_prints_defaults_with_their_sources(monkeypatch, capsys):
    monkeypatch.delenv("RECKIT_CONFIG", raising=False)
    assert cli.main(["config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["data_quality"]["max_click_rate"] == {"value": 0.5, "source": "default"}
    assert shown["gate"]["min_auc_ratio"] == {"value": 0.99, "source": "default"}
    assert shown["partitions"]["start"] == {"value": "2026-10-01", "source": "default"}
    assert shown["training"]["window_days"]["value"] == 7
    sections = {"partitions", "data_quality", "training", "xgboost", "deepfm", "item2vec"}
    assert sections | {"gate", "release", "storage"} <= set(shown)

    assert cli.main(["config", "show"]) == 0  # YAML by default
    assert "max_click_rate:\n    value: 0.5\n    source: default" in capsys.readouterr().out


def test_a_file_value_shows_with_the_file_as_its_source(tmp_path, monkeypatch, capsys):
    file = tmp_path / "reckit.yaml"
    file.write_text("data_quality:\n  max_click_rate: 0.7\n")
    monkeypatch.setenv("RECKIT_CONFIG", str(file))
    monkeypatch.setenv("RECKIT__GATE__MIN_AUC_RATIO", "0.995")
    assert cli.main(["config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["data_quality"]["max_click_rate"] == {"value": 0.7, "source": f"file {file}"}
    assert shown["gate"]["min_auc_ratio"] == {
        "value": 0.995,
        "source": "environment RECKIT__GATE__MIN_AUC_RATIO",
    }
    assert shown["config_file"] == str(file)


def test_run_config_overrides_one_value_and_is_shown_as_such(tmp_path, monkeypatch, capsys):
    file = tmp_path / "reckit.yaml"
    file.write_text("xgboost:\n  max_depth: 4\n")
    run = tmp_path / "run.yaml"
    run.write_text("ops:\n  xgboost_candidate:\n    config:\n      max_depth: 3\n")
    monkeypatch.setenv("RECKIT_CONFIG", str(file))
    assert cli.main(["config", "show", "--json", "--run-config", str(run)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["xgboost"]["max_depth"] == {"value": 3, "source": "run config"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data_quality:\n  max_click_rate: 1.5\n", "data_quality.max_click_rate"),
        ("data_quality:\n  max_clik_rate: 0.7\n", "unknown key data_quality.max_clik_rate"),
        ("gates:\n  min_auc_ratio: 0.9\n", "unknown section 'gates'"),
        ("xgboost:\n  max_depth: deep\n", "xgboost.max_depth"),
        ("training:\n  window_days: 1\n", "training.window_days"),
        ("release:\n  new_version_alias: staging\n", "release.new_version_alias"),
        ("[1, 2]\n", "top level must be a mapping"),
    ],
)
def test_unknown_keys_and_out_of_range_values_fail_at_load_with_the_key_path(
    tmp_path, text, message
):
    file = tmp_path / "reckit.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("'", "'")) as info:
        load_config(file, env={})
    assert str(file) in str(info.value)


def test_cli_reports_a_bad_config_file_without_a_traceback(tmp_path, monkeypatch, capsys):
    file = tmp_path / "reckit.yaml"
    file.write_text("data_quality:\n  max_click_rate: -1\n")
    monkeypatch.setenv("RECKIT_CONFIG", str(file))
    assert cli.main(["config", "show"]) == 2
    assert "data_quality.max_click_rate" in capsys.readouterr().err


def test_precedence_is_default_file_environment_run(tmp_path):
    file = tmp_path / "reckit.yaml"
    file.write_text("gate:\n  min_auc_ratio: 0.98\n  auc_floor: 0.6\n")
    env = {"RECKIT__GATE__AUC_FLOOR": "0.65", "RECKIT_PARTITIONS_START": "2026-09-01"}
    effective = load_config(file, env=env, run_overrides={"gate": {"auc_floor": 0.7}})
    shown = describe(effective)
    assert shown["gate"]["min_auc_ratio"]["source"] == f"file {file}"
    assert shown["gate"]["auc_floor"] == {"value": 0.7, "source": "run config"}
    assert shown["gate"]["max_logloss_ratio"]["source"] == "default"
    assert shown["partitions"]["start"] == {
        "value": "2026-09-01",
        "source": "environment RECKIT_PARTITIONS_START",
    }
    # the digest versions the effective values
    assert effective.digest != load_config(file, env={}).digest


def test_docs_list_every_key_with_its_default():
    from pathlib import Path

    from reckit_assets.config import PROJECT_ROOT

    doc = Path(PROJECT_ROOT / "docs/configuration.md").read_text()
    values = load_config(env={}, use_default_file=False).values()
    missing = []
    for section, keys in values.items():
        if f"## `{section}`" not in doc:
            missing.append(section)
        for key_name in keys:
            if f"| `{key_name}` |" not in doc:
                missing.append(f"{section}.{key_name}")
    assert missing == [], f"docs/configuration.md lacks: {missing}"
