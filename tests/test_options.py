"""Options live once, in Settings: every constructor, the module API and the docs agree with it."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest

import segment_runtimes.threaded as module_api
from segment_core import ConfigurationError, ValidationError
from segment_runtimes._options import ClientOptions, Settings, args_doc, settings_fields
from segment_runtimes.asyncio import AsyncClient
from segment_runtimes.threaded import Client
from segment_runtimes.trio import TrioClient, open_client

# The threaded client names two settings as 2.4 does, and has one of its own.
THREADED_NAMES = {"max_in_flight": "thread"}
THREADED_ONLY = {"sync_mode"}


def setting_names() -> list[str]:
    return [field.name for field in settings_fields()]


def test_the_threaded_client_takes_every_setting_with_its_default() -> None:
    parameters = inspect.signature(Client).parameters
    expected = {THREADED_NAMES.get(name, name) for name in setting_names()} | THREADED_ONLY
    assert set(parameters) == expected
    for field in settings_fields():
        parameter = parameters[THREADED_NAMES.get(field.name, field.name)]
        assert parameter.default == field.default, field.name


def test_the_async_clients_take_every_setting_typed() -> None:
    hints = typing.get_type_hints(ClientOptions)
    assert set(hints) == set(setting_names()) - {"write_key"}
    settings_hints = typing.get_type_hints(Settings)
    for name, hint in hints.items():
        assert hint == settings_hints[name], name
    for factory in (AsyncClient, TrioClient, open_client):
        assert list(inspect.signature(factory).parameters) == ["write_key", "options"], factory


def test_the_module_api_has_every_setting_of_the_client() -> None:
    parameters = inspect.signature(Client).parameters
    assert set(module_api.MODULE_SETTINGS) == set(parameters)
    for name in module_api.MODULE_SETTINGS:
        assert getattr(module_api, name) == parameters[name].default, name


def test_every_constructor_documents_every_setting() -> None:
    for client, renamed in ((Client, THREADED_NAMES), (AsyncClient, {}), (TrioClient, {})):
        doc = client.__doc__ or ""
        for field in settings_fields():
            name = renamed.get(field.name, field.name)
            line = next((line for line in doc.splitlines() if line.strip().startswith(f"{name} (")), None)
            assert line is not None, f"{client.__name__} does not document {name}"
            assert field.metadata["doc"] in line
            assert "default" in line or name == "write_key"
    assert "sync_mode (bool)" in (Client.__doc__ or "")


def test_args_doc_names_type_and_default() -> None:
    text = args_doc()
    assert text.startswith("Args:\n")
    assert "    upload_interval (float): Seconds a message may wait for its batch to fill. (default 0.5)." in text


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("write_key", None, ValidationError),
        ("write_key", 5, ValidationError),
        ("on_error", "not callable", ConfigurationError),
        ("on_success", 5, ConfigurationError),
        ("timeout", -1, ConfigurationError),
        ("shutdown_timeout", None, ConfigurationError),
        ("max_queue_size", "10", ConfigurationError),
        ("upload_size", 0, ConfigurationError),
        ("max_in_flight", 0, ConfigurationError),
        ("max_queue_bytes", 10, ConfigurationError),
        ("spool_fsync", "sometimes", ConfigurationError),
        ("max_spool_bytes", 0, ConfigurationError),
        ("spool_dir", 5, ConfigurationError),
        ("host", "ftp://example.com", ConfigurationError),
    ],
)
def test_a_bad_value_names_its_setting(name: str, value: object, error: type[Exception]) -> None:
    values: dict[str, object] = {"write_key": "k", name: value}
    with pytest.raises(error) as caught:
        Settings(**values)  # type: ignore[arg-type]
    assert name.split("_")[0] in str(caught.value) or name == "write_key"


@pytest.mark.parametrize(
    ("name", "value"),
    [("on_error", False), ("on_error", 0), ("on_error", ""), ("max_queue_size", 0), ("timeout", None)],
)
def test_what_2_4_accepts_is_accepted(name: str, value: object) -> None:
    values: dict[str, object] = {"write_key": "k", name: value}
    settings = Settings(**values)  # type: ignore[arg-type]
    assert getattr(settings, name) == value


def test_settings_are_frozen_and_show_no_secret() -> None:
    settings = Settings(write_key="super-secret-key", oauth_client_key="-----BEGIN PRIVATE KEY-----")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.debug = True  # type: ignore[misc]
    for text in (repr(settings), str(settings), repr(settings.__rich_repr__())):
        assert "super-secret-key" not in text
        assert "PRIVATE KEY" not in text


def test_the_send_command_has_a_flag_for_every_plain_setting() -> None:
    import argparse

    from segment_runtimes import _cli_send

    parser = argparse.ArgumentParser()
    _cli_send.add_arguments(parser)
    flags = {option for action in parser._actions for option in action.option_strings}
    callables = {"on_error", "on_success", "log_handler", "write_key"}
    for field in settings_fields():
        if field.name in callables:
            continue
        named = "--" + field.name.replace("_", "-")
        assert named in flags or field.name in {"host", "gzip", "timeout", "shutdown_timeout", "send"}, named
    args = parser.parse_args(
        ["--writeKey", "k", "--type", "track", "--upload-size", "7", "--spool-fsync", "never", "--debug"]
    )
    from segment_runtimes._options import settings_from_flags

    assert settings_from_flags(args, args.setting_names) == {"upload_size": 7, "spool_fsync": "never", "debug": True}
