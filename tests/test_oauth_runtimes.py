"""OAuth end to end, on every runtime: a generated RSA key pair, the collector's
/token endpoint verifying RS256 assertions, and Bearer checks on /v1/batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from segment_core import OAuthError, ShutdownDeadline
from segment_runtimes.collector import Collector, OAuthServerSettings

from .keys import rsa_pems
from .runtimes import RUNTIMES, Runtime, run_scenario, sleep
from .test_conformance import ErrorLog

pytestmark = pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda runtime: runtime.name)

CLIENT_ID = "client-4d1b"
KEY_ID = "key-2026"


@pytest.fixture(scope="module")
def key_pair() -> tuple[str, str]:
    return rsa_pems()


@pytest.fixture(scope="module")
def other_private_key() -> str:
    return rsa_pems("other")[0]


@pytest.fixture
def oauth_collector(key_pair: tuple[str, str]) -> Iterator[Collector]:
    settings = OAuthServerSettings(public_key_pem=key_pair[1], key_id=KEY_ID, client_id=CLIENT_ID, token_lifetime=1)
    with Collector(oauth=settings) as collector:
        yield collector


def test_events_delivered_with_bearer_tokens_refreshed_before_expiry(
    runtime: Runtime, oauth_collector: Collector, key_pair: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    errors = ErrorLog()
    sent: list[str] = []

    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(
            "write-key-not-used-with-oauth",
            host=oauth_collector.url,
            on_error=errors,
            debug=True,
            oauth_client_id=CLIENT_ID,
            oauth_client_key=key_pair[0],
            oauth_key_id=KEY_ID,
            oauth_auth_server=oauth_collector.url + "/",
        ) as client:
            sent.append(client.call("track", "user", "With Token")[1]["messageId"])
            assert await client.flush(10)
            # Tokens live 1 s and refresh at half their lifetime: keep sending past two lifetimes.
            started = time.monotonic()
            while time.monotonic() - started < 2.5:
                sent.append(client.call("track", "user", "Later")[1]["messageId"])
                assert await client.flush(10)
                await sleep(0.2, runtime)

    with caplog.at_level(logging.DEBUG):
        run_scenario(runtime, scenario)
    assert errors.calls == []
    assert sorted(oauth_collector.message_ids()) == sorted(sent)
    assert oauth_collector.tokens_issued >= 3, "the token must have been refreshed"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "BEGIN" not in logged
    assert "Bearer" not in logged


def test_wrong_key_fails_clearly_within_the_shutdown_timeout(
    runtime: Runtime, oauth_collector: Collector, other_private_key: str
) -> None:
    errors = ErrorLog()
    sent: list[str] = []

    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(
            "write-key",
            host=oauth_collector.url,
            on_error=errors,
            shutdown_timeout=3,
            oauth_client_id=CLIENT_ID,
            oauth_client_key=other_private_key,
            oauth_key_id=KEY_ID,
            oauth_auth_server=oauth_collector.url,
        ) as client:
            for index in range(3):
                sent.append(client.call("track", "user", "Never Authorised", {"n": index})[1]["messageId"])
            started = time.monotonic()
            assert not await client.shutdown()
            assert time.monotonic() - started < 3 + 2.0

    run_scenario(runtime, scenario)
    assert oauth_collector.count() == 0
    assert sorted(errors.message_ids) == sorted(sent)
    error = errors.calls[0][0]
    assert isinstance(error, OAuthError), error
    assert not isinstance(error, ShutdownDeadline)
    assert error.status == 400
    assert "BEGIN" not in str(error)
