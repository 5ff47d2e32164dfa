"""OAuth through the whole engine on the virtual clock: the simulator's scripted
server answers both /token and /v1/batch. No sockets, no sleeps."""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

import msgspec
import pytest

from segment_core import EngineConfig, OAuthConfig, OAuthError, RequestPurpose
from segment_core.testing import DEFAULT_WALL_START, Reply, ScriptedServer, Simulator, TraceEvent

from .keys import rsa_pems

AUTH_SERVER = "https://oauth.example"


@pytest.fixture(scope="module")
def private_key() -> str:
    return rsa_pems()[0]


def token(value: str, expires_in: float, **headers: str) -> Reply:
    body = msgspec.json.encode({"access_token": value, "token_type": "Bearer", "expires_in": expires_in})
    return Reply(body=body, headers=headers)


def simulator(private_key: str, server: ScriptedServer, **options: Any) -> Simulator:
    oauth = OAuthConfig(client_id="client", private_key=private_key, key_id="kid", auth_server=AUTH_SERVER)
    return Simulator(EngineConfig(write_key="unused", oauth=oauth, **options), server, seed=3)


def tokens_requested(sim: Simulator) -> list[float]:
    return [record.time for record in sim.trace.requests if record.purpose is RequestPurpose.TOKEN]


def test_batches_wait_for_a_token_and_it_is_refreshed_at_half_its_lifetime(private_key: str) -> None:
    server = ScriptedServer(token_script=[token("t1", 100), token("t2", 100), token("t3", 100)])
    sim = simulator(private_key, server)
    sim.call("track", user_id="u", event="First")
    sim.run(until=10)
    assert sim.trace.delivered_count == 1
    # The token was requested first, and the batch went out after it.
    assert [r.purpose for r in sim.trace.requests] == [RequestPurpose.TOKEN, RequestPurpose.BATCH]
    sim.run(until=260)
    assert tokens_requested(sim) == [0.0, 50.0, 100.0, 150.0, 200.0, 250.0][: len(tokens_requested(sim))]
    assert len(tokens_requested(sim)) >= 4
    sim.call("track", user_id="u", event="Later")
    sim.flush()
    sim.run(until=265)
    assert sim.trace.delivered_count == 2


def test_batch_endpoint_refusal_invalidates_the_token_and_retries(private_key: str) -> None:
    server = ScriptedServer(
        [Reply(status=401, body=b'{"code":"unauthorized","message":"bad token"}'), Reply()],
        token_script=[token("first", 3600), token("second", 3600)],
    )
    sim = simulator(private_key, server)
    sim.call("track", user_id="u", event="Refused Once")
    sim.run(until=60)
    purposes = [r.purpose for r in sim.trace.requests]
    assert purposes == [RequestPurpose.TOKEN, RequestPurpose.BATCH, RequestPurpose.TOKEN, RequestPurpose.BATCH]
    assert sim.trace.delivered_count == 1
    assert sim.trace.requests[-1].retry_count == 1


def test_expired_assertion_corrects_the_skew_and_retries_at_once(private_key: str) -> None:
    server_date = formatdate(DEFAULT_WALL_START - 120, usegmt=True)  # the server is 2 minutes behind
    expired = Reply(
        status=400,
        headers={"date": server_date},
        body=b'{"error":"invalid_request","error_description":"Token used before issued"}',
    )
    server = ScriptedServer(token_script=[expired, token("t", 3600)])
    sim = simulator(private_key, server)
    sim.call("track", user_id="u", event="Skewed")
    sim.run(until=5)
    assert tokens_requested(sim) == [0.0, 0.0]
    assert sim.trace.delivered_count == 1
    manager = sim.engine._auth
    assert getattr(manager, "clock_skew", None) == 120


def test_rate_limited_token_request_waits_then_succeeds(private_key: str) -> None:
    limited = Reply(status=429, headers={"retry-after": "30"}, body=b'{"error":"rate_limited"}')
    server = ScriptedServer(token_script=[limited, token("t", 3600)])
    sim = simulator(private_key, server)
    sim.call("track", user_id="u", event="After A Wait")
    sim.run(until=10)
    # Waiting for the token, the engine asks to be polled when the wait ends, not at once
    # (a due batch that cannot be sent must not make a runtime spin).
    assert sim.engine.next_deadline() == 30.0
    sim.run(until=100)
    assert tokens_requested(sim) == [0.0, 30.0]
    assert sim.trace.delivered == {0: 30.0}


def test_configuration_error_fails_waiting_batches_with_a_typed_error(private_key: str) -> None:
    refused = Reply(status=401, body=b'{"error":"invalid_client","error_description":"unknown key"}')
    server = ScriptedServer(token_script=[refused])
    sim = simulator(private_key, server)
    for n in range(3):
        sim.call("track", user_id="u", event="Never Sent", properties={"n": n})
    sim.run(until=10)
    assert sim.trace.delivered_count == 0
    assert set(sim.trace.failed) == {0, 1, 2}
    error = sim.trace.failed[0]
    assert isinstance(error, OAuthError)
    assert (error.status, error.code) == (401, "invalid_client")
    assert "BEGIN" not in str(error)
    # Messages enqueued after the failure fail too instead of waiting forever.
    sim.call("track", user_id="u", event="Also Never Sent")
    sim.run(until=20)
    assert 3 in sim.trace.failed
    assert not any(isinstance(e, TraceEvent) and e.kind == "request" and "batch" in e.detail for e in sim.trace.events)


def test_token_expiry_without_refresh_holds_batches_until_a_new_token(private_key: str) -> None:
    failing = Reply(status=503, body=b"{}")
    # One token for 10 s; every refresh fails for a while, then succeeds.
    server = ScriptedServer(token_script=[token("t1", 10), *([failing] * 4), token("t2", 3600)])
    sim = simulator(private_key, server)
    sim.run(until=12)  # t1 has expired; refreshes are backing off
    sim.call("track", user_id="u", event="Held")
    sim.flush()
    sim.run(until=13)
    assert sim.trace.delivered_count == 0
    sim.run(until=200)
    assert sim.trace.delivered_count == 1
    batch_time = next(r.time for r in sim.trace.requests if r.purpose is RequestPurpose.BATCH)
    assert batch_time >= max(tokens_requested(sim))
