"""The core is total over what servers send: any reply, to a batch or a token request.

Hypothesis writes the server's script (any status, header values that are
absurd, negative, huge or not numbers at all, bodies nested thousands deep,
numbers hundreds of digits long, invalid UTF-8, lost replies) and the
simulator runs an engine against it, with and without OAuth. Whatever the
script: no input raises, every accepted message is settled exactly once by the
close deadline, every wait settles, and no error text carries a secret.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segment_core import (
    APIError,
    DeliveryError,
    EngineConfig,
    OAuthConfig,
    OAuthError,
    Response,
    TransportFailureKind,
)
from segment_core._oauth_tokens import TokenManager
from segment_core.testing import Drop, Reply, ScriptedServer, Simulator

from .keys import rsa_pems

WRITE_KEY = "wk_hostile_secret_key"

ABSURD_NUMBERS = [
    "0",
    "-1",
    "-99999999999999999999",
    "1e400",
    "-1e400",
    "nan",
    "inf",
    "-inf",
    "9" * 400,
    "1_000",
    "  7  ",
    "0x10",
    "",
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Mon, 01 Jan 0001 00:00:00 GMT",
    "Mon, 99 Foo 99999 99:99:99 GMT",
    "\x00\xff",
]
header_values = st.sampled_from(ABSURD_NUMBERS) | st.text(max_size=40)
headers = st.dictionaries(
    st.sampled_from(["retry-after", "x-ratelimit-reset", "date", "content-type"])
    | st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12),
    header_values,
    max_size=4,
)


def _nested(depth: int, opener: bytes = b"[") -> bytes:
    closer = b"]" if opener == b"[" else b"}"
    inner = b'{"a":' if opener == b"{" else b"["
    return b'{"code":' + inner * depth + b"1" + closer * depth + b"}"


HOSTILE_BODIES = [
    _nested(2000),
    _nested(2000, b"{"),
    b'{"a":' + b"[" * 100_000,
    b'{"access_token":"t","expires_in":' + b"9" * 400 + b"}",
    b'{"access_token":"t","expires_in":-' + b"9" * 400 + b"}",
    b'{"access_token":"t","expires_in":1e400}',
    b'{"access_token":"t","expires_in":"' + b"9" * 400 + b'"}',
    b'{"access_token":"t","expires_in":"nan"}',
    b'{"access_token":"t\\r\\nX-Injected: 1","expires_in":60}',
    b'{"access_token":' + b"1" * 5000 + b"}",
    b'{"access_token":"t","expires_in":[1]}',
    b'{"error":' + b"[" * 3000 + b"}",
    b'{"code":"c","message":"' + WRITE_KEY.encode() + b'"}',
    b"Authorization: Basic d2tfaG9zdGlsZV9zZWNyZXRfa2V5Og==\r\n",
    b"\xff\xfe\xfd" * 100,
    b"",
]
bodies = st.sampled_from(HOSTILE_BODIES) | st.binary(max_size=200)
replies = st.builds(
    Reply,
    status=st.sampled_from([200, 400, 401, 429, 500, 503, 511]) | st.integers(100, 999),
    headers=headers,
    body=bodies,
    delay=st.sampled_from([0.0, 0.1, 3.0]),
)
drops = st.builds(
    Drop, kind=st.sampled_from(list(TransportFailureKind)), delay=st.sampled_from([0.0, 1.0]), processed=st.booleans()
)
steps = replies | drops


@pytest.fixture(scope="module")
def private_key() -> str:
    return rsa_pems()[0]


def _run(config: EngineConfig, script: list[Any], token_script: list[Any], calls: int, seed: int) -> Simulator:
    server = ScriptedServer(script, token_script=token_script)
    sim = Simulator(config, server, seed=seed)
    for index in range(calls):
        sim.call("track", user_id=f"u{index}", event="Hostile")
    waiter_done = sim.client.flush()
    assert waiter_done in (True, False)
    sim.close(timeout=120.0)
    return sim


def _check(sim: Simulator, calls: int) -> None:
    trace = sim.trace
    assert not trace.settled_twice
    assert set(trace.delivered) | set(trace.failed) == set(range(calls))
    assert not set(trace.delivered) & set(trace.failed)
    for error in trace.failed.values():
        assert isinstance(error, DeliveryError)
        text = f"{error} {error!r}"
        assert WRITE_KEY not in text
        assert "d2tfaG9zdGlsZV9zZWNyZXRfa2V5Og" not in text
        assert len(str(error)) < 2000


@given(
    script=st.lists(steps, max_size=12),
    calls=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    upload_size=st.sampled_from([1, 3, 100]),
)
def test_any_batch_reply_settles_every_message_once(script: list[Any], calls: int, seed: int, upload_size: int) -> None:
    config = EngineConfig(write_key=WRITE_KEY, max_retries=3, upload_size=upload_size, max_rate_limit_duration=60.0)
    _check(_run(config, script, [], calls, seed), calls)


@given(
    script=st.lists(steps, max_size=8),
    token_script=st.lists(steps, max_size=8),
    calls=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_any_token_reply_settles_every_message_once(
    private_key: str, script: list[Any], token_script: list[Any], calls: int, seed: int
) -> None:
    oauth = OAuthConfig(client_id="client", private_key=private_key, key_id="kid", max_retries=2)
    config = EngineConfig(write_key=WRITE_KEY, oauth=oauth, max_retries=3, max_rate_limit_duration=60.0)
    _check(_run(config, script, token_script, calls, seed), calls)


@pytest.mark.parametrize("status", [400, 429, 500])
def test_a_token_server_echoing_the_write_key_never_shows_it(private_key: str, status: int) -> None:
    oauth = OAuthConfig(client_id="client", private_key=private_key, key_id="kid", max_retries=0)
    config = EngineConfig(write_key=WRITE_KEY, oauth=oauth, max_retries=0)
    echo = Reply(status=status, body=b'{"error":"' + WRITE_KEY.encode() + b'","message":"' + WRITE_KEY.encode() + b'"}')
    sim = _run(config, [], [echo], 1, 0)
    assert list(sim.trace.failed) == [0]
    _check(sim, 1)


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
@pytest.mark.parametrize("status", [200, 400, 429, 500])
def test_a_hostile_token_reply_is_a_token_failure(private_key: str, body: bytes, status: int) -> None:
    oauth = OAuthConfig(client_id="client", private_key=private_key, key_id="kid", max_retries=1)
    manager = TokenManager(oauth, random=__import__("random").Random(0))
    assert manager.poll(now=0.0, wall=1_700_000_000.0) is not None
    manager.receive_response(Response(status=status, body=body), now=0.0, wall=1_700_000_000.0)
    authorization = manager.authorization(now=0.0)
    if authorization is not None:
        # Only a well-formed token is ever used, and its lifetime is bounded.
        token = authorization.removeprefix("Bearer ")
        assert token.isprintable()
        assert " " not in token
        assert "\n" not in token
        deadline = manager.next_deadline()
        assert deadline is not None
        assert 0 < deadline <= 24 * 3600
    elif manager.failure is not None:
        assert isinstance(manager.failure, OAuthError)


def test_a_500_nested_two_thousand_deep_is_retried_as_a_500() -> None:
    body = b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}"
    server = ScriptedServer([Reply(status=500, body=body), Reply()])
    sim = Simulator(EngineConfig(write_key=WRITE_KEY), server, seed=1)
    sim.call("track", user_id="u", event="e")
    trace = sim.close(timeout=30)
    assert trace.delivered_count == 1
    assert [r.retry_count for r in trace.requests] == [0, 1]


def test_error_text_echoing_credentials_is_redacted() -> None:
    echoed = msgspec.json.encode(
        {
            "code": "bad_request",
            "message": (
                f"headers were Authorization: Basic d2tfaG9zdGlsZV9zZWNyZXRfa2V5Og== and key {WRITE_KEY} "
                "Proxy-Authorization: Basic dXNlcjpwYXNzd29yZA== Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl"
            ),
        }
    )
    server = ScriptedServer([Reply(status=400, body=echoed)])
    sim = Simulator(EngineConfig(write_key=WRITE_KEY), server, seed=1)
    sim.call("track", user_id="u", event="e")
    trace = sim.close(timeout=30)
    (error,) = trace.failed.values()
    assert isinstance(error, APIError)
    for secret in (WRITE_KEY, "d2tfaG9zdGlsZV9zZWNyZXRfa2V5Og", "dXNlcjpwYXNzd29yZA", "eyJhbGciOi"):
        assert secret not in error.message
    assert "[redacted]" in error.message
    assert error.message.startswith("headers were Authorization: [redacted]")
