"""Configuration from the environment: defaults that run locally, clear errors otherwise."""

from __future__ import annotations

import pytest

from serving.config import ConfigError, ServingConfig


def test_defaults_come_from_the_pipeline_settings(tmp_path):
    config = ServingConfig.from_env({"RECKIT_DATA_DIR": str(tmp_path)})
    assert config.registry_uri == f"{tmp_path}/registry"
    assert config.feedback_uri == f"{tmp_path}/feedback"
    assert config.models == ("xgboost", "item2vec")
    assert config.ranker == "xgboost" and config.embedding == "item2vec"
    assert (config.poll_seconds, config.canary_share) == (30.0, 0.1)
    assert (config.max_candidates, config.max_body_bytes) == (500, 1 << 20)
    assert config.admin_token is None  # /reload disabled until a token is set


def test_every_variable_is_read():
    config = ServingConfig.from_env(
        {
            "RECKIT_REGISTRY_URI": "s3://bucket/registry",
            "RECKIT_SERVING_MODELS": " item2vec , deepfm,xgboost ",
            "RECKIT_POLL_SECONDS": "2.5",
            "RECKIT_CANARY_SHARE": "0.25",
            "RECKIT_ADMIN_TOKEN": "secret",
            "RECKIT_MAX_CANDIDATES": "100",
            "RECKIT_MAX_BODY_BYTES": "2048",
            "RECKIT_FEEDBACK_URI": "none",
        }
    )
    assert config.registry_uri == "s3://bucket/registry"
    assert config.models == ("item2vec", "deepfm", "xgboost")
    assert config.ranker == "deepfm"  # the first ranker listed
    assert config.primary == "deepfm"
    assert (config.poll_seconds, config.canary_share, config.admin_token) == (2.5, 0.25, "secret")
    assert (config.max_candidates, config.max_body_bytes) == (100, 2048)
    assert config.feedback_uri is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECKIT_POLL_SECONDS": "soon"}, "RECKIT_POLL_SECONDS='soon' is not a valid float"),
        ({"RECKIT_CANARY_SHARE": "1.5"}, "RECKIT_CANARY_SHARE must be in [0, 1]"),
        ({"RECKIT_MAX_CANDIDATES": "0"}, "RECKIT_MAX_CANDIDATES must be > 0"),
        ({"RECKIT_MAX_BODY_BYTES": "1MB"}, "RECKIT_MAX_BODY_BYTES='1MB' is not a valid int"),
        ({"RECKIT_SERVING_MODELS": "xgboost,xgboost"}, "lists a model twice"),
        ({"RECKIT_ACCESS_LOG": "maybe"}, "RECKIT_ACCESS_LOG"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError) as info:
        ServingConfig.from_env({"RECKIT_REGISTRY_URI": "/tmp/r", **env})
    assert message in str(info.value)


def test_api_keys_and_connection_settings_are_read_and_keys_never_shown():
    config = ServingConfig.from_env(
        {
            "RECKIT_REGISTRY_URI": "/tmp/r",
            "RECKIT_API_KEYS": "shop:key-of-the-shop-0001, app : key-of-the-app-00002",
            "RECKIT_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2",
            "RECKIT_HEADER_TIMEOUT_SECONDS": "3",
            "RECKIT_MAX_PENDING_CONNECTIONS": "100",
            "RECKIT_MAX_PENDING_PER_CLIENT": "10",
        }
    )
    assert config.callers_by_key == {"key-of-the-shop-0001": "shop", "key-of-the-app-00002": "app"}
    assert config.trusted_proxies == ("10.0.0.1", "10.0.0.2")
    assert (config.header_timeout_seconds, config.max_pending_connections) == (3.0, 100)
    assert config.max_pending_per_client == 10
    assert "key-of-the" not in repr(config)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("shop-without-colon-secret-value", "entry 1 of 1 has no ':'"),
        ("shop:short", "entry 1 of 1 is not caller:key with a key of at least 16"),
        ("a:same-key-0000000001,b:same-key-0000000001", "two callers share a key"),
    ],
)
def test_bad_api_keys_are_named_by_position_never_echoed(keys, message):
    with pytest.raises(ConfigError) as info:
        ServingConfig.from_env({"RECKIT_REGISTRY_URI": "/tmp/r", "RECKIT_API_KEYS": keys})
    assert message in str(info.value)
    assert "secret" not in str(info.value) and "same-key" not in str(info.value)
