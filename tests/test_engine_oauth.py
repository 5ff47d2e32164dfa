"""The engine with the real token manager: what becomes of batches when OAuth fails.

Values in, values out, on a virtual clock: ``Driver`` holds the engine and the
time, and every token request and batch request is answered by hand. The cases
are the ones a run rarely reaches: OAuth failing for good while a batch waits
for its retry, while one is in flight, and a token request that gets no reply.
"""

from __future__ import annotations

import itertools
import random
import sys
from typing import Any

import msgspec
import pytest

from segment_core import (
    OAuthError,
    Request,
    RequestPurpose,
    TransportFailure,
    TransportFailureKind,
)
from segment_core._authorization import OAUTH_EXTRA_HINT, BasicAuthorizer, UnavailableAuthorizer, authorizer_for
from segment_core._batch_requests import basic_authorization
from segment_core._oauth_tokens import TokenManager

from .test_engine_support import WRITE_KEY, Driver
from .test_oauth_core import make_config

REFUSED_CLIENT = b'{"error":"invalid_client","error_description":"unknown key id"}'


def oauth_driver(*, max_retries: int = 10, **options: Any) -> Driver:
    manager = TokenManager(make_config(max_retries=max_retries), random=random.Random(5))
    return Driver(authorizer=manager, oauth=True, **options)


def token_reply(value: str = "tok-1", expires_in: float = 3600) -> bytes:
    return msgspec.json.encode({"access_token": value, "expires_in": expires_in})


def purposes(requests: list[Request]) -> list[RequestPurpose]:
    return [request.purpose for request in requests]


def granted_driver(*, expires_in: float = 3600, **options: Any) -> Driver:
    """A driver whose first token was requested and granted at 0."""
    driver = oauth_driver(**options)
    (token_request,) = driver.poll()
    assert token_request.purpose is RequestPurpose.TOKEN
    assert driver.respond(token_request, 200, body=token_reply(expires_in=expires_in)) == []
    return driver


def test_oauth_failing_for_good_fails_the_batch_waiting_for_its_retry_and_the_queue() -> None:
    driver = granted_driver()
    (seq,) = driver.add(1)
    (batch_request,) = driver.flush()
    # The API refuses the token: it is dropped, and the batch waits for a new one.
    driver.respond(batch_request, 401, body=b'{"code":"unauthorized","message":"bad token"}')
    (retrying,) = driver.retrying
    assert (retrying.first_seq, retrying.delay) == (seq, 0.0)
    (queued,) = driver.add(1)
    driver.engine.flush(now=driver.now, waiter=7)
    (token_request,) = driver.poll()  # no token, so no batch: only the token request
    assert token_request.purpose is RequestPurpose.TOKEN
    driver.respond(token_request, 401, body=REFUSED_CLIENT)
    assert not driver.failed, "the failure is acted on at the next poll"
    assert driver.poll() == []
    error = driver.failed[seq]
    assert isinstance(error, OAuthError)
    assert (error.status, error.code, error.message) == (401, "invalid_client", "unknown key id")
    assert driver.failed[queued] is error
    assert driver.waits == {7: False}
    assert driver.engine.pending == 0
    assert driver.engine.stats().failed == {"OAuthError": 2}
    # What comes later fails too, under its own sequence number, and nothing is ever sent.
    (later,) = driver.add(1)
    assert later == queued + 1
    assert driver.poll(driver.now + 60) == []
    assert driver.failed[later] is error
    assert purposes(driver.sent) == [RequestPurpose.TOKEN, RequestPurpose.BATCH, RequestPurpose.TOKEN]


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "delivered"), (503, "OAuthError"), (401, "OAuthError")],
    ids=["delivered", "retryable", "token-refused"],
)
def test_oauth_failing_for_good_while_a_batch_is_in_flight(status: int, outcome: str) -> None:
    driver = granted_driver(expires_in=10)  # refreshed at 5 s
    (flying,) = driver.add(1)
    driver.at(5.0)
    driver.engine.flush(now=driver.now)
    token_request, batch_request = sorted(driver.poll(), key=lambda request: request.purpose.value, reverse=True)
    assert (token_request.purpose, batch_request.purpose) == (RequestPurpose.TOKEN, RequestPurpose.BATCH)
    driver.respond(token_request, 401, body=REFUSED_CLIENT)
    (queued,) = driver.add(1)
    assert driver.poll() == []
    # What waited fails at once; the batch in flight is left to its reply.
    assert isinstance(driver.failed[queued], OAuthError)
    assert flying not in driver.failed
    assert driver.engine.stats().in_flight_messages == 1
    driver.respond(batch_request, status, body=b"{}")
    driver.poll()
    assert driver.engine.pending == 0
    if outcome == "delivered":
        assert list(driver.delivered) == [flying]
    else:
        # Retried, it can never be sent again: it fails with the OAuth error, not a generic one.
        error = driver.failed[flying]
        assert isinstance(error, OAuthError)
        assert error.code == "invalid_client"
    assert purposes(driver.sent).count(RequestPurpose.BATCH) == 1


def test_a_token_request_without_a_reply_backs_off_then_fails_the_messages() -> None:
    driver = oauth_driver(max_retries=1)
    (token_request,) = driver.poll()
    (seq,) = driver.add(1)
    driver.engine.flush(now=driver.now)
    failure = TransportFailure(kind=TransportFailureKind.CONNECT, detail="connection refused (127.0.0.1:9)")
    driver.engine.receive_failure(token_request.id, failure, now=driver.now, wall=driver.wall)
    # A token failure is the token manager's: no batch retry, no settled message, no batch counted.
    assert driver.engine.next_outputs() == []
    stats = driver.engine.stats()
    assert (stats.requests, stats.retries, stats.pending) == (0, 0, 1)
    deadline = driver.engine.next_deadline()
    assert deadline is not None
    assert 0.5 <= deadline <= 0.55, "the token backoff: 0.5 s plus up to 10% jitter"
    assert driver.poll(deadline - 0.001) == []
    (second,) = driver.poll(deadline)
    assert second.purpose is RequestPurpose.TOKEN
    assert second.id > token_request.id
    driver.engine.receive_failure(
        second.id, TransportFailure(kind=TransportFailureKind.TIMEOUT), now=driver.now, wall=driver.wall
    )
    assert driver.poll() == []
    error = driver.failed[seq]
    assert isinstance(error, OAuthError)
    assert error.code == "retries_exhausted"
    assert error.message == "no token after 2 failed attempts in a row; last: transport failure: timeout"


def test_a_late_failure_of_a_token_request_is_ignored() -> None:
    driver = granted_driver()
    (token_request,) = driver.sent
    driver.engine.receive_failure(
        token_request.id, TransportFailure(kind=TransportFailureKind.RESET), now=driver.now, wall=driver.wall
    )
    assert driver.engine.next_outputs() == []
    driver.add(1)
    (batch_request,) = driver.flush()
    assert batch_request.purpose is RequestPurpose.BATCH


def test_request_ids_are_positive_and_increasing_across_token_and_batch_requests() -> None:
    driver = granted_driver(expires_in=4)  # refreshed every 2 s
    for step in range(1, 6):
        driver.add(1)
        driver.at(step * 2.0)
        driver.engine.flush(now=driver.now)
        for request in driver.poll():
            is_token = request.purpose is RequestPurpose.TOKEN
            driver.respond(request, 200, body=token_reply(expires_in=4) if is_token else b"{}")
    ids = [request.id for request in driver.sent]
    assert set(purposes(driver.sent)) == {RequestPurpose.TOKEN, RequestPurpose.BATCH}
    assert ids[0] >= 1
    assert all(earlier < later for earlier, later in itertools.pairwise(ids))
    assert len(driver.delivered) == 5


def test_oauth_without_its_extra_fails_every_message_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # As where PyJWT and cryptography are not installed: the token manager cannot be imported.
    monkeypatch.setitem(sys.modules, "segment_core._oauth_tokens", None)
    authorizer = authorizer_for(WRITE_KEY, make_config(), random.Random(0))
    assert isinstance(authorizer, UnavailableAuthorizer)
    assert repr(authorizer) == "UnavailableAuthorizer()"
    assert authorizer.authorization(now=0.0) is None
    driver = Driver(authorizer=authorizer, oauth=True)
    (seq,) = driver.add(1)
    assert driver.flush() == []
    error = driver.failed[seq]
    assert isinstance(error, OAuthError)
    assert (error.status, error.code, error.message) == (None, "missing_extra", OAUTH_EXTRA_HINT)
    assert OAUTH_EXTRA_HINT == "OAuth needs the [oauth] extra: pip install 'segment-sansio[oauth]'"


def test_without_oauth_the_write_key_authorizes_every_request() -> None:
    authorizer = authorizer_for(WRITE_KEY, None, random.Random(0))
    assert isinstance(authorizer, BasicAuthorizer)
    assert repr(authorizer) == "BasicAuthorizer()"
    assert authorizer.authorization(now=0.0) == basic_authorization(WRITE_KEY)
    assert (authorizer.next_deadline(), authorizer.failure) == (None, None)
    assert isinstance(authorizer_for(WRITE_KEY, make_config(), random.Random(0)), TokenManager)


def test_the_token_request_goes_out_as_the_token_manager_wrote_it() -> None:
    driver = oauth_driver()
    (request,) = driver.poll()
    assert request.purpose is RequestPurpose.TOKEN
    assert (request.method, request.url) == ("POST", "https://oauth2.segment.io/token")
    headers = dict(request.headers)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert b"grant_type=client_credentials" in request.body
    assert (request.message_count, request.retry_count) == (0, 0)


def test_a_key_found_unusable_fails_what_waits_in_the_same_poll() -> None:
    manager = TokenManager(make_config(private_key="not a PEM key"), random=random.Random(5))
    driver = Driver(authorizer=manager, oauth=True)
    (seq,) = driver.add(1)
    driver.engine.flush(now=driver.now)
    assert driver.poll() == []
    error = driver.failed[seq]
    assert isinstance(error, OAuthError)
    assert (error.status, error.code) == (None, "invalid_private_key")
