"""The settings refuse a bad value by naming the field and what it must be.

A user reads ``ConfigurationError``'s text to fix their call, so each row
checks the whole message: the field it names and the rule it states. Values at
each bound are accepted, one step past it refused.
"""

from __future__ import annotations

from typing import Any

import pytest

from segment_core import ConfigurationError, EngineConfig
from segment_core.limits import DEFAULT_MAX_QUEUE_BYTES, DEFAULT_UPLOAD_SIZE, MAX_MESSAGE_BYTES

from .test_oauth_core import make_config

WRITE_KEY = "wk-config-3c1f"

ENGINE_REFUSALS = [
    # (field, bad value, the whole message)
    ("write_key", None, "write_key must be a str"),
    ("host", "api.segment.io", "host must be an http:// or https:// URL"),
    ("host", 5, "host must be an http:// or https:// URL"),
    ("upload_size", 0, "upload_size must be an int of at least 1"),
    ("upload_size", True, "upload_size must be an int of at least 1"),
    ("upload_size", 2.0, "upload_size must be an int of at least 1"),
    ("max_queue_size", 0, "max_queue_size must be an int of at least 1"),
    ("max_queue_bytes", MAX_MESSAGE_BYTES - 1, f"max_queue_bytes must be an int of at least {MAX_MESSAGE_BYTES}"),
    ("max_retries", -1, "max_retries must be an int of at least 0"),
    ("max_in_flight", 0, "max_in_flight must be an int of at least 1"),
    ("upload_interval", -0.5, "upload_interval must be a non-negative number"),
    ("upload_interval", float("nan"), "upload_interval must be a non-negative number"),
    ("upload_interval", False, "upload_interval must be a non-negative number"),
    ("upload_interval", "1", "upload_interval must be a non-negative number"),
    ("max_total_backoff_duration", -1, "max_total_backoff_duration must be a non-negative number"),
    ("max_rate_limit_duration", -1, "max_rate_limit_duration must be a non-negative number"),
]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    ENGINE_REFUSALS,
    ids=[f"{field}={value!r}" for field, value, _ in ENGINE_REFUSALS],
)
def test_a_bad_engine_setting_is_refused_by_name(field: str, value: object, message: str) -> None:
    options: dict[str, Any] = {"write_key": WRITE_KEY, field: value}
    with pytest.raises(ConfigurationError) as caught:
        EngineConfig(**options)
    assert str(caught.value) == message
    assert WRITE_KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("upload_size", 1),
        ("max_queue_size", 1),
        ("max_queue_bytes", MAX_MESSAGE_BYTES),
        ("max_retries", 0),
        ("max_in_flight", 1),
        ("upload_interval", 0),
        ("upload_interval", 0.0),
        ("max_total_backoff_duration", 0.0),
        ("max_rate_limit_duration", 0),
        ("host", "http://127.0.0.1:9"),
    ],
)
def test_each_bound_itself_is_accepted(field: str, value: object) -> None:
    options: dict[str, Any] = {"write_key": WRITE_KEY, field: value}
    assert getattr(EngineConfig(**options), field) == value


def test_the_engine_settings_repr_shows_no_write_key() -> None:
    config = EngineConfig(write_key=WRITE_KEY, upload_size=7)
    assert repr(config) == "EngineConfig(host='https://api.segment.io', upload_size=7, oauth=False)"
    assert list(config.__rich_repr__()) == [("host", "https://api.segment.io"), ("upload_size", 7), ("oauth", False)]
    assert (config.upload_size, config.max_queue_bytes) == (7, DEFAULT_MAX_QUEUE_BYTES)
    assert EngineConfig(write_key=WRITE_KEY).upload_size == DEFAULT_UPLOAD_SIZE


OAUTH_REFUSALS = [
    ("client_id", "", "oauth client_id must be a non-empty string"),
    ("client_id", " ", "oauth client_id must be a non-empty string"),
    ("private_key", b"pem", "oauth private_key must be a non-empty string"),
    ("key_id", "", "oauth key_id must be a non-empty string"),
    ("auth_server", "", "oauth auth_server must be a non-empty string"),
    ("scope", "", "oauth scope must be a non-empty string"),
    ("auth_server", "oauth2.segment.io", "oauth auth_server must be an http(s) URL"),
    ("auth_server", "ftp://oauth2.segment.io", "oauth auth_server must be an http(s) URL"),
    ("auth_server", "https://", "oauth auth_server must be an http(s) URL"),
    ("max_retries", -1, "oauth max_retries must be an int of at least 0"),
    ("max_retries", True, "oauth max_retries must be an int of at least 0"),
    ("max_retries", 1.0, "oauth max_retries must be an int of at least 0"),
]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    OAUTH_REFUSALS,
    ids=[f"{field}={value!r}" for field, value, _ in OAUTH_REFUSALS],
)
def test_a_bad_oauth_setting_is_refused_by_name(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_config(**{field: value})
    assert str(caught.value) == message


@pytest.mark.parametrize("auth_server", ["http://127.0.0.1:8080", "https://oauth2.segment.io/"])
def test_an_http_or_https_auth_server_is_accepted(auth_server: str) -> None:
    config = make_config(auth_server=auth_server, max_retries=0)
    assert (config.auth_server, config.max_retries) == (auth_server, 0)
    assert config.token_url == auth_server.rstrip("/") + "/token"


def test_the_oauth_settings_repr_names_every_field_but_the_key() -> None:
    config = make_config(scope="tracking_api:write", max_retries=3)
    expected = [
        ("client_id", "client-1"),
        ("key_id", "key-1"),
        ("auth_server", "https://oauth2.segment.io"),
        ("scope", "tracking_api:write"),
        ("max_retries", 3),
    ]
    assert list(config.__rich_repr__()) == expected
    fields = ", ".join(f"{name}={value!r}" for name, value in expected)
    assert repr(config) == f"OAuthConfig({fields}, private_key=<hidden>)"
