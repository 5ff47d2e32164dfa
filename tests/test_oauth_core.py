"""The OAuth token lifecycle, values in and values out: no sockets, no sleeps."""

from __future__ import annotations

import functools
import json
import math
import random
import uuid
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from segment_core import OAuthConfig
from segment_core._errors import ConfigurationError, OAuthError
from segment_core._events import Response, TransportFailure, TransportFailureKind
from segment_core._oauth_tokens import (
    _TRANSITIONS,
    CLIENT_ASSERTION_TYPE,
    DEFAULT_RATE_LIMIT_WAIT,
    DEFAULT_TOKEN_LIFETIME,
    EPOCH_THRESHOLD,
    MAX_ERROR_MESSAGE,
    TokenManager,
    TokenRequest,
    TokenState,
    TokenStateError,
    _Event,
)
from segment_core._retry_policy import BACKOFF_BASE, BACKOFF_CAP, BACKOFF_JITTER
from segment_core.limits import DEFAULT_OAUTH_AUTH_SERVER, MAX_RETRY_AFTER, USER_AGENT

from .keys import rsa_pems

WALL = 1_700_000_000.0  # epoch seconds at monotonic 0 in these tests
S = TokenState


@functools.cache
def _key_pair() -> tuple[str, Any]:
    private, public = rsa_pems()
    return private, serialization.load_pem_public_key(public.encode())


@pytest.fixture(scope="module")
def pem() -> str:
    return _key_pair()[0]


@pytest.fixture(scope="module")
def public_key() -> Any:
    return _key_pair()[1]


def make_config(**overrides: Any) -> OAuthConfig:
    fields: dict[str, Any] = {"client_id": "client-1", "private_key": _key_pair()[0], "key_id": "key-1"}
    fields.update(overrides)
    return OAuthConfig(**fields)


@functools.cache
def _valid_config(overrides: tuple[tuple[str, Any], ...]) -> OAuthConfig:
    # Checking an RSA key takes ~40 ms: build each valid config once.
    return make_config(**dict(overrides))


def make_manager(seed: int = 0, **overrides: Any) -> TokenManager:
    return TokenManager(_valid_config(tuple(sorted(overrides.items()))), random=random.Random(seed))


def state_of(manager: TokenManager) -> TokenState:
    """The state, read through a call so mypy does not narrow it across inputs."""
    return manager.state


def ok(token: str = "tok-1", expires_in: object = 3600, **headers: str) -> Response:
    return Response(
        status=200, headers=headers, body=json.dumps({"access_token": token, "expires_in": expires_in}).encode()
    )


def claims_of(request: TokenRequest, aud: str = DEFAULT_OAUTH_AUTH_SERVER) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of the request's verified client assertion."""
    form = parse_qs(request.body.decode("ascii"), strict_parsing=True)
    assertion = form["client_assertion"][0]
    claims = jwt.decode(assertion, _key_pair()[1], algorithms=["RS256"], audience=aud, options={"verify_exp": False})
    return jwt.get_unverified_header(assertion), claims


def assertion_of(request: TokenRequest) -> str:
    return parse_qs(request.body.decode("ascii"))["client_assertion"][0]


def granted(seed: int = 0, *, at: float = 0.0, expires_in: int = 3600, **overrides: Any) -> TokenManager:
    """A manager in VALID, its request sent and answered at monotonic ``at``."""
    manager = make_manager(seed, **overrides)
    assert manager.poll(now=at, wall=WALL + at) is not None
    manager.receive_response(ok(expires_in=expires_in), now=at, wall=WALL + at)
    assert state_of(manager) is S.VALID
    return manager


# The client assertion and the form -------------------------------------------


@pytest.mark.parametrize(
    ("auth_server", "aud", "url"),
    [
        ("https://oauth2.segment.io", "https://oauth2.segment.io", "https://oauth2.segment.io/token"),
        ("https://oauth2.segment.io/", "https://oauth2.segment.io", "https://oauth2.segment.io/token"),
        ("http://127.0.0.1:8080/auth//", "http://127.0.0.1:8080/auth", "http://127.0.0.1:8080/auth/token"),
        # Only slashes are stripped.
        ("https://oauth.example/realmX/", "https://oauth.example/realmX", "https://oauth.example/realmX/token"),
    ],
)
def test_assertion_claims_and_form(auth_server: str, aud: str, url: str) -> None:
    manager = make_manager(seed=3, auth_server=auth_server, scope="tracking_api:write extra")
    request = manager.poll(now=0.0, wall=WALL + 0.75)
    assert request is not None
    header, claims = claims_of(request, aud)
    assert header["alg"] == "RS256"
    assert header["kid"] == "key-1"
    expected_jti = str(uuid.UUID(int=random.Random(3).getrandbits(128), version=4))
    assert claims == {
        "iss": "client-1",
        "sub": "client-1",
        "aud": aud,
        "iat": int(WALL) - 5,
        "exp": int(WALL) + 55,
        "jti": expected_jti,
    }
    assert request.method == "POST"
    assert request.url == url
    assert dict(request.headers) == {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT}
    form = parse_qs(request.body.decode("ascii"), strict_parsing=True)
    assert form == {
        "grant_type": ["client_credentials"],
        "client_assertion_type": [CLIENT_ASSERTION_TYPE],
        "client_assertion": [assertion_of(request)],
        "scope": ["tracking_api:write extra"],
    }


def test_same_seed_same_jti_sequence_and_jtis_unique() -> None:
    def jtis(seed: int) -> list[str]:
        manager = make_manager(seed)
        seen = []
        for step in range(4):
            request = manager.poll(now=step * 100.0, wall=WALL + step * 100.0)
            assert request is not None
            seen.append(claims_of(request)[1]["jti"])
            manager.receive_response(Response(status=503), now=step * 100.0, wall=WALL + step * 100.0)
        return seen

    assert jtis(11) == jtis(11)
    assert jtis(11) != jtis(12)
    assert len(set(jtis(11))) == 4


@pytest.mark.parametrize("server_behind", [30, -30, 0, 3600])
@pytest.mark.parametrize("naive_date", [False, True])
def test_clock_skew_from_date_puts_claims_on_the_server_clock(server_behind: int, naive_date: bool) -> None:
    manager = make_manager()
    assert manager.poll(now=0.0, wall=WALL) is not None
    server_time = WALL + 100 - server_behind
    date = formatdate(server_time, usegmt=True)
    if naive_date:  # RFC 5322 "-0000": no zone information, read as UTC
        date = date.replace("GMT", "-0000")
    manager.receive_response(ok(date=date), now=100.0, wall=WALL + 100)
    assert manager.clock_skew == server_behind
    request = manager.poll(now=1800.0, wall=WALL + 1800.25)
    assert request is not None
    _, claims = claims_of(request)
    server_now = int(WALL + 1800) - server_behind
    assert (claims["iat"], claims["exp"]) == (server_now - 5, server_now + 55)


@pytest.mark.parametrize("date", ["", "yesterday", "Mon, 99 Foo 2023 99:99:99 GMT"])
def test_unreadable_date_keeps_the_skew(date: str) -> None:
    manager = make_manager()
    manager.poll(now=0.0, wall=WALL)
    manager.receive_response(ok(date=formatdate(WALL - 10, usegmt=True)), now=0.0, wall=WALL)
    manager.poll(now=1800.0, wall=WALL + 1800)
    manager.receive_response(ok(date=date), now=1800.0, wall=WALL + 1800)
    assert manager.clock_skew == 10


# Lifecycle --------------------------------------------------------------------


def test_lifecycle_request_serve_refresh_expire() -> None:
    manager = make_manager()
    assert state_of(manager) is S.NO_TOKEN
    assert manager.authorization(now=0.0) is None
    assert manager.next_deadline() == -math.inf
    assert manager.poll(now=10.0, wall=WALL + 10) is not None
    assert state_of(manager) is S.REQUESTING
    assert manager.poll(now=10.0, wall=WALL + 10) is None  # one in flight at most
    assert manager.next_deadline() is None
    # The lifetime counts from when the request left (10), not when the answer came (12).
    manager.receive_response(ok("tok-1", 100), now=12.0, wall=WALL + 12)
    assert state_of(manager) is S.VALID
    assert manager.authorization(now=12.0) == "Bearer tok-1"
    assert manager.next_deadline() == 60.0  # half the lifetime
    assert manager.poll(now=59.9, wall=WALL + 59.9) is None
    assert manager.poll(now=60.0, wall=WALL + 60) is not None
    assert state_of(manager) is S.REFRESHING
    assert manager.authorization(now=60.0) == "Bearer tok-1"  # the old token serves meanwhile
    assert manager.poll(now=61.0, wall=WALL + 61) is None
    manager.receive_response(ok("tok-2", 100), now=61.0, wall=WALL + 61)
    assert manager.authorization(now=109.9) == "Bearer tok-2"
    assert manager.next_deadline() == 110.0
    # Nobody polls at the refresh time: the token expires at 60 + 100.
    assert manager.authorization(now=159.999) == "Bearer tok-2"
    assert manager.authorization(now=160.0) is None
    assert state_of(manager) is S.NO_TOKEN
    assert manager.next_deadline() == -math.inf
    assert manager.poll(now=160.0, wall=WALL + 160) is not None


def test_token_expiring_while_its_refresh_is_in_flight() -> None:
    manager = granted(expires_in=100)
    assert manager.poll(now=50.0, wall=WALL + 50) is not None
    assert manager.authorization(now=100.0) is None
    assert state_of(manager) is S.REQUESTING
    manager.receive_response(ok("tok-2"), now=101.0, wall=WALL + 101)
    assert manager.authorization(now=101.0) == "Bearer tok-2"


def test_failed_refresh_keeps_serving_the_old_token_until_it_expires() -> None:
    manager = granted(expires_in=100)
    manager.poll(now=50.0, wall=WALL + 50)
    manager.receive_response(Response(status=503), now=50.0, wall=WALL + 50)
    assert state_of(manager) is S.VALID
    assert manager.authorization(now=50.0) == "Bearer tok-1"
    deadline = manager.next_deadline()
    assert deadline is not None
    assert 50.5 <= deadline <= 50.55
    assert manager.poll(now=50.4, wall=WALL + 50.4) is None
    assert manager.poll(now=deadline, wall=WALL + deadline) is not None
    # Refused again, with a long wait that outlives the token.
    manager.receive_response(Response(status=429, headers={"retry-after": "120"}), now=51.0, wall=WALL + 51)
    assert state_of(manager) is S.VALID
    assert manager.next_deadline() == 100.0  # expiry comes first
    assert manager.poll(now=100.0, wall=WALL + 100) is None  # token gone, still waiting
    assert state_of(manager) is S.BACKING_OFF
    assert manager.authorization(now=100.0) is None
    assert manager.next_deadline() == 171.0
    assert manager.poll(now=171.0, wall=WALL + 171) is not None


def test_invalidate_in_each_state() -> None:
    manager = granted()
    manager.invalidate(now=5.0)
    assert state_of(manager) is S.NO_TOKEN
    assert manager.authorization(now=5.0) is None
    assert manager.poll(now=5.0, wall=WALL + 5) is not None
    manager.invalidate(now=6.0)  # REQUESTING: nothing to drop, the request carries on
    assert state_of(manager) is S.REQUESTING
    manager.receive_response(ok("tok-2"), now=6.0, wall=WALL + 6)
    assert manager.authorization(now=6.0) == "Bearer tok-2"
    # REFRESHING: the old token goes, the request in flight brings the next one.
    assert manager.poll(now=1805.0, wall=WALL + 1805) is not None
    manager.invalidate(now=1806.0)
    assert state_of(manager) is S.REQUESTING
    assert manager.authorization(now=1806.0) is None
    manager.receive_response(ok("tok-3"), now=1806.0, wall=WALL + 1806)
    assert manager.authorization(now=1806.0) == "Bearer tok-3"


def test_invalidate_during_a_refresh_backoff_respects_the_wait() -> None:
    manager = granted()
    manager.poll(now=1800.0, wall=WALL + 1800)
    manager.receive_response(Response(status=429, headers={"retry-after": "30"}), now=1800.0, wall=WALL + 1800)
    manager.invalidate(now=1801.0)
    assert state_of(manager) is S.BACKING_OFF
    assert manager.poll(now=1829.0, wall=WALL + 1829) is None
    assert manager.poll(now=1830.0, wall=WALL + 1830) is not None


def test_invalidate_is_a_no_op_without_a_token() -> None:
    manager = make_manager()
    manager.invalidate(now=0.0)
    assert state_of(manager) is S.NO_TOKEN
    manager.poll(now=0.0, wall=WALL)
    manager.receive_response(Response(status=500), now=0.0, wall=WALL)
    manager.invalidate(now=0.1)
    assert state_of(manager) is S.BACKING_OFF


# The skew errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, b'{"error":"invalid_request","error_description":"Token is expired"}'),
        (400, b'{"error":"invalid_request","error_description":"Token used before issued"}'),
        (401, b"Token used before issued"),
        (400, b'{"message":"token is expired"}'),
    ],
)
def test_skew_error_retries_at_once_with_the_new_skew(status: int, body: bytes) -> None:
    manager = make_manager(max_retries=2)
    manager.poll(now=0.0, wall=WALL)
    headers = {"date": formatdate(WALL + 1 + 120, usegmt=True)}  # the server is 120 s ahead
    manager.receive_response(Response(status=status, headers=headers, body=body), now=1.0, wall=WALL + 1)
    assert state_of(manager) is S.NO_TOKEN
    assert manager.clock_skew == -120
    assert manager.next_deadline() == -math.inf
    request = manager.poll(now=1.0, wall=WALL + 1)
    assert request is not None
    assert claims_of(request)[1]["iat"] == int(WALL) + 1 + 120 - 5
    # Counted: a server that keeps saying so cannot loop forever.
    manager.receive_response(Response(status=status, headers=headers, body=body), now=1.0, wall=WALL + 1)
    assert manager.poll(now=1.0, wall=WALL + 1) is not None
    manager.receive_response(Response(status=status, headers=headers, body=body), now=1.0, wall=WALL + 1)
    assert state_of(manager) is S.FAILED
    assert manager.failure is not None
    assert (manager.failure.code, manager.failure.status) == ("retries_exhausted", status)


def test_skew_error_during_refresh_keeps_the_token_and_refreshes_at_once() -> None:
    manager = granted()
    manager.poll(now=1800.0, wall=WALL + 1800)
    manager.receive_response(Response(status=400, body=b"Token is expired"), now=1800.0, wall=WALL + 1800)
    assert state_of(manager) is S.VALID
    assert manager.next_deadline() == 1800.0
    assert manager.authorization(now=1800.0) == "Bearer tok-1"
    assert manager.poll(now=1800.0, wall=WALL + 1800) is not None


# Rate limits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "delay"),
    [
        ({"x-ratelimit-reset": "30"}, 30.0),
        ({"x-ratelimit-reset": str(int(WALL) + 40)}, 40.0),  # an epoch time
        ({"x-ratelimit-reset": "100000"}, MAX_RETRY_AFTER),
        ({"x-ratelimit-reset": str(int(WALL) + 100000)}, MAX_RETRY_AFTER),
        ({"retry-after": "12"}, 12.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": formatdate(WALL + 20, usegmt=True)}, 20.0),
        ({"retry-after": formatdate(WALL + 3600, usegmt=True)}, MAX_RETRY_AFTER),
        ({"x-ratelimit-reset": "7", "retry-after": "12"}, 7.0),
        ({"x-ratelimit-reset": "soon", "retry-after": "12"}, 12.0),
        ({"x-ratelimit-reset": str(int(WALL) - 10)}, DEFAULT_RATE_LIMIT_WAIT),  # already past
        ({"x-ratelimit-reset": str(EPOCH_THRESHOLD)}, DEFAULT_RATE_LIMIT_WAIT),  # the first epoch time: long past
        ({"x-ratelimit-reset": "0.5"}, 0.5),
        ({"x-ratelimit-reset": "0.5", "retry-after": "12"}, 0.5),
        ({"x-ratelimit-reset": str(int(WALL))}, DEFAULT_RATE_LIMIT_WAIT),  # resets now: no wait is no answer
        ({"x-ratelimit-reset": str(int(WALL)), "retry-after": "12"}, 12.0),
        ({"x-ratelimit-reset": "inf"}, DEFAULT_RATE_LIMIT_WAIT),
        ({"retry-after": "0"}, DEFAULT_RATE_LIMIT_WAIT),
        ({"retry-after": "later"}, DEFAULT_RATE_LIMIT_WAIT),
        ({}, DEFAULT_RATE_LIMIT_WAIT),
    ],
)
def test_429_waits_for_the_reset(headers: dict[str, str], delay: float) -> None:
    manager = make_manager()
    manager.poll(now=0.0, wall=WALL)
    manager.receive_response(Response(status=429, headers=headers), now=10.0, wall=WALL)
    assert state_of(manager) is S.BACKING_OFF
    assert manager.next_deadline() == pytest.approx(10.0 + delay)
    assert manager.poll(now=10.0 + delay - 0.01, wall=WALL + delay) is None
    assert manager.poll(now=10.0 + delay, wall=WALL + delay) is not None


def test_429_http_date_is_read_on_the_server_clock() -> None:
    manager = make_manager()
    manager.poll(now=0.0, wall=WALL)
    server_now = WALL - 50  # our clock is 50 s ahead
    headers = {"date": formatdate(server_now, usegmt=True), "retry-after": formatdate(server_now + 20, usegmt=True)}
    manager.receive_response(Response(status=429, headers=headers), now=0.0, wall=WALL)
    assert manager.next_deadline() == 20.0


def test_429_counts_as_an_attempt() -> None:
    manager = make_manager(max_retries=1)
    manager.poll(now=0.0, wall=WALL)
    manager.receive_response(Response(status=429), now=0.0, wall=WALL)
    manager.poll(now=5.0, wall=WALL + 5)
    manager.receive_response(Response(status=429, body=b"slow down"), now=5.0, wall=WALL + 5)
    assert manager.failure is not None
    assert (manager.failure.code, manager.failure.status) == ("retries_exhausted", 429)
    assert manager.failure.message == "no token after 2 failed attempts in a row; last: HTTP 429: slow down"


# Backoff and giving up ---------------------------------------------------------------


def _fail(manager: TokenManager, how: str, now: float) -> None:
    if how == "transport":
        manager.receive_failure(TransportFailure(kind=TransportFailureKind.TIMEOUT, detail="read"), now=now)
    else:
        manager.receive_response(Response(status=int(how), body=b"upstream trouble"), now=now, wall=WALL + now)


@pytest.mark.parametrize("how", ["transport", "500", "502", "503", "504", "408", "460", "599", "600", "103"])
def test_transient_failures_back_off_then_fail(how: str) -> None:
    max_retries = 12
    manager = make_manager(seed=5, max_retries=max_retries)
    now = 0.0
    delays = []
    for _ in range(max_retries):
        assert manager.poll(now=now, wall=WALL + now) is not None
        _fail(manager, how, now)
        assert state_of(manager) is S.BACKING_OFF
        assert manager.authorization(now=now) is None
        deadline = manager.next_deadline()
        assert deadline is not None
        assert manager.poll(now=math.nextafter(deadline, -math.inf), wall=WALL + deadline) is None
        delays.append(deadline - now)
        now = deadline
    for k, delay in enumerate(delays, start=1):
        base = BACKOFF_BASE * 2 ** (k - 1)
        low, high = min(base, BACKOFF_CAP), min(base * (1 + BACKOFF_JITTER), BACKOFF_CAP)
        assert low - 1e-9 <= delay <= high + 1e-9
    assert delays[-1] == pytest.approx(BACKOFF_CAP)
    assert manager.poll(now=now, wall=WALL + now) is not None
    _fail(manager, how, now)
    assert state_of(manager) is S.FAILED
    failure = manager.failure
    assert isinstance(failure, OAuthError)
    assert failure.code == "retries_exhausted"
    assert failure.status == (None if how == "transport" else int(how))
    assert failure.message.startswith(f"no token after {max_retries + 1} failed attempts in a row; last: ")
    assert manager.next_deadline() is None


def test_jitter_replays_with_the_seed() -> None:
    def deadlines(seed: int) -> list[float | None]:
        manager = make_manager(seed)
        out = []
        now = 0.0
        for _ in range(5):
            manager.poll(now=now, wall=WALL + now)
            _fail(manager, "503", now)
            out.append(deadline := manager.next_deadline())
            assert deadline is not None
            now = deadline
        return out

    assert deadlines(1) == deadlines(1)
    assert deadlines(1) != deadlines(2)


def test_max_retries_zero_gives_up_at_the_first_failure() -> None:
    manager = make_manager(max_retries=0)
    manager.poll(now=0.0, wall=WALL)
    _fail(manager, "transport", 0.0)
    assert manager.failure is not None
    assert (manager.failure.status, manager.failure.code) == (None, "retries_exhausted")
    assert manager.failure.message == "no token after 1 failed attempt in a row; last: transport failure: timeout: read"


def test_a_token_resets_the_failure_count() -> None:
    manager = make_manager(max_retries=1)
    manager.poll(now=0.0, wall=WALL)
    _fail(manager, "503", 0.0)
    manager.poll(now=10.0, wall=WALL + 10)
    manager.receive_response(ok(expires_in=100), now=10.0, wall=WALL + 10)
    manager.poll(now=60.0, wall=WALL + 60)
    _fail(manager, "503", 60.0)  # the first failure of a new run
    assert state_of(manager) is S.VALID
    assert manager.failure is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'"tok"',
        b'{"expires_in": 10}',
        b'{"access_token": "", "expires_in": 10}',
        b'{"access_token": 5, "expires_in": 10}',
        b'{"access_token": "a b", "expires_in": 10}',
        b'{"access_token": "t\\r\\nX-Evil: 1", "expires_in": 10}',
        b'{"access_token": "t", "expires_in": "soon"}',
        b'{"access_token": "t", "expires_in": 0}',
        b'{"access_token": "t", "expires_in": -5}',
        b'{"access_token": "t", "expires_in": true}',
        b'{"access_token": "t", "expires_in": [1]}',
        b'{"access_token": "t", "expires_in": "0"}',
        b'{"access_token": "t", "expires_in": "-5"}',
        b'{"access_token": "t", "expires_in": "inf"}',
        b'{"access_token": "t", "expires_in": "nan"}',
        b'{"access_token": "t", "expires_in": 0.0}',
        b'{"access_token": "t", "expires_in": -1.5}',
    ],
)
def test_malformed_200_is_a_failed_attempt(body: bytes) -> None:
    manager = make_manager()
    manager.poll(now=0.0, wall=WALL)
    manager.receive_response(Response(status=200, body=body), now=0.0, wall=WALL)
    assert state_of(manager) is S.BACKING_OFF
    assert manager.authorization(now=0.0) is None
    assert manager.failure is None


def test_a_malformed_200_is_named_when_it_was_the_last_straw() -> None:
    manager = make_manager(max_retries=0)
    manager.poll(now=0.0, wall=WALL)
    manager.receive_response(Response(status=200, body=b"{}"), now=0.0, wall=WALL)
    assert manager.failure is not None
    last = "HTTP 200: malformed token response"
    assert manager.failure.message == f"no token after 1 failed attempt in a row; last: {last}"


@pytest.mark.parametrize(
    ("body", "lifetime"),
    [
        (b'{"access_token": "t", "expires_in": "3600"}', 3600.0),
        (b'{"access_token": "t", "expires_in": 1.5}', 1.5),
        (b'{"access_token": "t", "expires_in": "0.5"}', 0.5),
        (b'{"access_token": "t", "expires_in": 0.25}', 0.25),
        (b'{"access_token": "t", "token_type": "Bearer"}', DEFAULT_TOKEN_LIFETIME),
        (b'{"access_token": "t", "expires_in": null}', DEFAULT_TOKEN_LIFETIME),
    ],
)
def test_token_lifetime_forms(body: bytes, lifetime: float) -> None:
    manager = make_manager()
    manager.poll(now=0.0, wall=WALL)
    manager.receive_response(Response(status=200, body=body), now=0.0, wall=WALL)
    assert manager.next_deadline() == lifetime / 2
    assert manager.authorization(now=math.nextafter(lifetime, 0)) == "Bearer t"
    assert manager.authorization(now=lifetime) is None


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (400, b'{"error":"invalid_client","error_description":"unknown key id"}', "invalid_client", "unknown key id"),
        (401, b'{"error":"invalid_grant","message":"bad signature"}', "invalid_grant", "bad signature"),
        (401, b"Unauthorized\n  please check\tthe key", "invalid_request", "Unauthorized please check the key"),
        (403, b"", "invalid_request", "HTTP 403"),
        (400, b"Bad Request", "invalid_request", "Bad Request"),
        (404, b'{"message": "no such route"}', "invalid_request", "no such route"),
        (415, b'{"error": 7, "error_description": ["x"]}', "invalid_request", "HTTP 415"),
        (302, b"", "unexpected_status", "HTTP 302"),
        (300, b'{"access_token": "t", "expires_in": 60}', "unexpected_status", "HTTP 300"),  # not a grant
        (501, b"not implemented", "unexpected_status", "not implemented"),
    ],
)
def test_configuration_errors_fail_at_once(status: int, body: bytes, code: str, message: str) -> None:
    manager = granted()
    manager.poll(now=1800.0, wall=WALL + 1800)
    manager.receive_response(Response(status=status, body=body), now=1800.0, wall=WALL + 1800)
    assert state_of(manager) is S.FAILED
    failure = manager.failure
    assert isinstance(failure, OAuthError)
    assert (failure.status, failure.code, failure.message) == (status, code, message)
    # Terminal: nothing more to serve, send or schedule.
    assert manager.authorization(now=1800.0) is None
    assert manager.poll(now=1e9, wall=WALL + 1e9) is None
    assert manager.next_deadline() is None
    manager.invalidate(now=1e9)
    assert state_of(manager) is S.FAILED
    with pytest.raises(TokenStateError):
        manager.receive_response(ok(), now=1e9, wall=WALL)
    with pytest.raises(TokenStateError):
        manager.receive_failure(TransportFailure(kind=TransportFailureKind.RESET), now=1e9)


def test_error_messages_are_truncated_and_redacted() -> None:
    manager = make_manager()
    request = manager.poll(now=0.0, wall=WALL)
    assert request is not None
    assertion = assertion_of(request)
    description = f"assertion {assertion} rejected; also eyJhbGciOiJIUzI1NiJ9.e30.c2ln and " + "x" * 500
    body = json.dumps({"error": "invalid_client", "error_description": description}).encode()
    manager.receive_response(Response(status=400, body=body), now=0.0, wall=WALL)
    failure = manager.failure
    assert failure is not None
    assert len(failure.message) <= MAX_ERROR_MESSAGE
    assert failure.message.startswith("assertion [redacted] rejected; also [redacted] and xxx")
    assert failure.message.endswith("...")
    assert assertion not in str(failure)
    assert "eyJ" not in str(failure)


def test_response_without_a_request_in_flight_is_a_bug() -> None:
    manager = make_manager()
    not_in_flight = r"\(\) with no token request in flight \(state NO_TOKEN\)$"
    with pytest.raises(TokenStateError, match="^receive_response" + not_in_flight):
        manager.receive_response(ok(), now=0.0, wall=WALL)
    with pytest.raises(TokenStateError, match=r"^receive_failure\(\) with no token request in flight \(state VALID\)$"):
        granted().receive_failure(TransportFailure(kind=TransportFailureKind.CONNECT), now=0.0)


def test_a_token_request_repr_names_its_fields_and_hides_the_body() -> None:
    request = make_manager().poll(now=0.0, wall=WALL)
    assert request is not None
    size = len(request.body)
    assert repr(request) == f"TokenRequest(method=POST, url={DEFAULT_OAUTH_AUTH_SERVER}/token, body_bytes={size})"
    assert list(request.__rich_repr__()) == [
        ("method", "POST"),
        ("url", f"{DEFAULT_OAUTH_AUTH_SERVER}/token"),
        ("body_bytes", size),
    ]


def test_a_refused_token_is_forgotten_at_once_and_a_finished_backoff_does_not_hold_the_next() -> None:
    manager = granted()
    assert manager.poll(now=1800.0, wall=WALL + 1800) is not None
    manager.receive_response(Response(status=503), now=1800.0, wall=WALL + 1800)  # a failed refresh
    backoff_ends = manager.next_deadline()
    assert backoff_ends is not None
    assert 1800.5 <= backoff_ends <= 1800.55
    # Refused exactly when the refresh's backoff ends: nothing to wait for, ask at once.
    manager.invalidate(now=backoff_ends)
    assert state_of(manager) is S.NO_TOKEN
    assert manager.next_deadline() == -math.inf
    assert repr(manager) == "TokenManager(state=NO_TOKEN, expires_at=None)"


# A token with characters no credential pattern expects: only knowing it cuts it.
ODD_TOKEN = "ab!cd$ef!gh"


@pytest.mark.parametrize(
    ("status", "body", "last"),
    [
        (429, f"slow down, {ODD_TOKEN}", "HTTP 429: slow down, [redacted]"),
        (400, f"Token is expired: {ODD_TOKEN}", "HTTP 400: Token is expired: [redacted]"),
        (503, f"busy with {ODD_TOKEN}", "HTTP 503: busy with [redacted]"),
    ],
    ids=["rate-limited", "skew", "transient"],
)
def test_a_failed_refresh_cuts_the_current_token_from_the_final_error(status: int, body: str, last: str) -> None:
    manager = make_manager(max_retries=0)
    assert manager.poll(now=0.0, wall=WALL) is not None
    manager.receive_response(ok(token=ODD_TOKEN), now=0.0, wall=WALL)
    assert manager.poll(now=1800.0, wall=WALL + 1800) is not None
    manager.receive_response(Response(status=status, body=body.encode()), now=1800.0, wall=WALL + 1800)
    failure = manager.failure
    assert failure is not None
    assert failure.message == f"no token after 1 failed attempt in a row; last: {last}"


def test_a_server_error_that_mentions_an_expired_token_is_not_a_clock_skew() -> None:
    # Only a 4xx says our clock is off; a 5xx is the server's trouble, retried after a backoff.
    manager = make_manager()
    assert manager.poll(now=0.0, wall=WALL) is not None
    manager.receive_response(Response(status=500, body=b"Token is expired"), now=10.0, wall=WALL + 10)
    assert state_of(manager) is S.BACKING_OFF
    deadline = manager.next_deadline()
    assert deadline is not None
    assert 10.5 <= deadline <= 10.55


def test_a_configuration_error_cuts_the_current_token_from_its_code_and_message() -> None:
    manager = make_manager()
    assert manager.poll(now=0.0, wall=WALL) is not None
    manager.receive_response(ok(token=ODD_TOKEN), now=0.0, wall=WALL)
    assert manager.poll(now=1800.0, wall=WALL + 1800) is not None
    body = json.dumps({"error": f"{ODD_TOKEN}", "error_description": f"token {ODD_TOKEN} refused"}).encode()
    manager.receive_response(Response(status=401, body=body), now=1800.0, wall=WALL + 1800)
    failure = manager.failure
    assert failure is not None
    assert (failure.code, failure.message) == ("[redacted]", "token [redacted] refused")


# next_deadline, reset, the table ------------------------------------------------------


def test_next_deadline_in_each_state() -> None:
    manager = make_manager()
    assert (state_of(manager), manager.next_deadline()) == (S.NO_TOKEN, -math.inf)
    manager.poll(now=0.0, wall=WALL)
    assert (state_of(manager), manager.next_deadline()) == (S.REQUESTING, None)
    manager.receive_response(ok(expires_in=600), now=1.0, wall=WALL + 1)
    assert (state_of(manager), manager.next_deadline()) == (S.VALID, 300.0)
    manager.poll(now=300.0, wall=WALL + 300)
    assert (state_of(manager), manager.next_deadline()) == (S.REFRESHING, None)
    manager.receive_response(Response(status=429, headers={"retry-after": "10"}), now=300.0, wall=WALL + 300)
    assert (state_of(manager), manager.next_deadline()) == (S.VALID, 310.0)
    manager.invalidate(now=301.0)
    assert (state_of(manager), manager.next_deadline()) == (S.BACKING_OFF, 310.0)
    manager.poll(now=310.0, wall=WALL + 310)
    manager.receive_response(Response(status=401), now=310.0, wall=WALL + 310)
    assert (state_of(manager), manager.next_deadline()) == (S.FAILED, None)


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
def test_reset_starts_over_from_any_state(steps: int) -> None:
    manager = make_manager()
    if steps >= 1:
        manager.poll(now=0.0, wall=WALL)  # REQUESTING
    if steps >= 2:
        manager.receive_response(ok(date=formatdate(WALL - 7, usegmt=True)), now=0.0, wall=WALL)  # VALID
    if steps >= 3:
        manager.poll(now=1800.0, wall=WALL + 1800)
        manager.receive_response(Response(status=403), now=1800.0, wall=WALL + 1800)  # FAILED
    manager.reset()
    assert state_of(manager) is S.NO_TOKEN
    assert manager.failure is None
    assert manager.authorization(now=1800.0) is None
    assert manager.clock_skew == (7 if steps >= 2 else 0)
    with pytest.raises(TokenStateError):  # a reply to the parent's request is not ours
        manager.receive_response(ok(), now=1800.0, wall=WALL + 1800)
    assert manager.poll(now=1800.0, wall=WALL + 1800) is not None
    assert TokenManager.shift_for_fork is TokenManager.reset


def test_transition_table_is_closed_and_unknown_pairs_raise() -> None:
    assert all(isinstance(target, TokenState) for target in _TRANSITIONS.values())
    for state in TokenState:
        for event in _Event:
            manager = make_manager()
            manager._state = state
            if (state, event) in _TRANSITIONS:
                manager._move(event)
                assert state_of(manager) is _TRANSITIONS[state, event]
            else:
                with pytest.raises(TokenStateError, match=f"{state.name} on {event.name}"):
                    manager._move(event)
                assert state_of(manager) is state


# Configuration and secrets ---------------------------------------------------------------


def _ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _encrypted_pem() -> str:
    key = serialization.load_pem_private_key(_key_pair()[0].encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret-password"),
    ).decode()


BROKEN_PEM = "-----BEGIN PRIVATE KEY-----\nSUPERSECRETKEYMATERIAL\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": ""},
        {"client_id": "  "},
        {"client_id": 5},
        {"key_id": ""},
        {"scope": ""},
        {"private_key": ""},
        {"private_key": b"bytes are not text"},
        {"auth_server": ""},
        {"auth_server": "oauth2.segment.io"},
        {"auth_server": "ftp://oauth2.segment.io"},
        {"max_retries": -1},
        {"max_retries": True},
        {"max_retries": "3"},
    ],
)
def test_bad_configuration_is_refused_without_echoing_the_key(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_config(**overrides)
    text = f"{caught.value} {caught.value!r}"
    assert "SUPERSECRET" not in text
    assert "KEY-----" not in text
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


@pytest.mark.parametrize("private_key", [BROKEN_PEM, "SUPERSECRETKEYMATERIAL", "ec", "encrypted"])
def test_an_unusable_key_fails_at_the_first_token_request_not_at_construction(private_key: str) -> None:
    # As segment-analytics-python 2.4 finds it: when the first assertion is signed, at delivery.
    if private_key == "ec":
        private_key = _ec_pem()
    elif private_key == "encrypted":
        private_key = _encrypted_pem()
    manager = TokenManager(make_config(private_key=private_key), random=random.Random(0))
    before = manager.state
    assert before is TokenState.NO_TOKEN
    assert manager.poll(now=0.0, wall=WALL) is None
    assert manager.state is TokenState.FAILED
    failure = manager.failure
    assert isinstance(failure, OAuthError)
    assert (failure.status, failure.code) == (None, "invalid_private_key")
    assert "unencrypted PEM RSA private key" in failure.message
    text = f"{failure} {failure!r}"
    assert "SUPERSECRET" not in text
    assert "KEY-----" not in text
    # Nothing more is ever requested, and a fork's reset finds the same key unusable.
    assert manager.next_deadline() is None
    manager.reset()
    assert manager.poll(now=1.0, wall=WALL + 1) is None
    assert manager.state is TokenState.FAILED


def test_a_key_that_cannot_sign_fails_for_good_without_quoting_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> str:
        raise ValueError("key material SUPERSECRET")

    monkeypatch.setattr(jwt, "encode", refuse)
    manager = make_manager()
    assert manager.poll(now=0.0, wall=WALL) is None
    assert manager.state is TokenState.FAILED
    failure = manager.failure
    assert failure is not None
    assert (failure.status, failure.code) == (None, "invalid_private_key")
    assert failure.message == "could not sign the client assertion: ValueError"


def test_config_defaults() -> None:
    config = make_config()
    assert (config.auth_server, config.scope, config.max_retries) == (
        DEFAULT_OAUTH_AUTH_SERVER,
        "tracking_api:write",
        10,
    )
    assert config.token_url == DEFAULT_OAUTH_AUTH_SERVER + "/token"


def test_secrets_never_appear_in_reprs_or_errors(pem: str) -> None:
    key_body = pem.splitlines()[5]
    config = make_config()
    manager = TokenManager(config, random=random.Random(0))
    request = manager.poll(now=0.0, wall=WALL)
    assert request is not None
    assertion = assertion_of(request)
    manager.receive_response(ok("very-secret-token-value"), now=0.0, wall=WALL)
    refresh = manager.poll(now=1800.0, wall=WALL + 1800)
    assert refresh is not None
    manager.receive_response(
        Response(status=401, body=json.dumps({"error": "invalid_client", "error_description": assertion}).encode()),
        now=1800.0,
        wall=WALL + 1800,
    )
    failure = manager.failure
    assert failure is not None
    texts = [
        repr(config),
        str(config),
        repr(list(config.__rich_repr__())),
        repr(manager),
        str(manager),
        repr(request),
        str(request),
        repr(list(request.__rich_repr__())),
        repr(refresh),
        repr(failure),
        str(failure),
        failure.message,
    ]
    for text in texts:
        for secret in (key_body, "PRIVATE KEY", assertion, "very-secret-token-value"):
            assert secret not in text, (secret[:20], text)
    assert repr(manager) == "TokenManager(state=FAILED, expires_at=None)"


def test_manager_repr_shows_state_and_expiry_only() -> None:
    manager = granted(at=2.0, expires_in=100)
    assert repr(manager) == "TokenManager(state=VALID, expires_at=102.0)"
    assert repr(make_manager()) == "TokenManager(state=NO_TOKEN, expires_at=None)"
    manager.reset()
    assert repr(manager) == "TokenManager(state=NO_TOKEN, expires_at=None)"


def test_config_round_trips_through_msgspec_validation() -> None:
    # msgspec runs __post_init__ on decode too, so a decoded config is validated.
    raw = {"client_id": "c", "private_key": "SUPERSECRET", "key_id": "k", "auth_server": "nope"}
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert(raw, OAuthConfig)
    assert "SUPERSECRET" not in str(caught.value)


# The state machine under arbitrary interleavings ----------------------------------------


SKEW_BODIES = [b"Token is expired", b'{"error":"invalid_request","error_description":"Token used before issued"}']
RATE_LIMIT_HEADERS = st.dictionaries(
    st.sampled_from(["retry-after", "x-ratelimit-reset", "date"]),
    st.sampled_from(["0", "3", "1000", "-1", "junk", str(int(WALL) + 30), formatdate(WALL + 60, usegmt=True)]),
)


class TokenMachine(RuleBasedStateMachine):
    """Any interleaving of polls, answers, failures, invalidations and time keeps the invariants.

    The model tracks what must hold from the outside: whether a request is in
    flight, the last token granted (until it expires or is invalidated), and
    whether the manager has failed.
    """

    @initialize(seed=st.integers(0, 2**32), max_retries=st.integers(0, 7))
    def start(self, seed: int, max_retries: int) -> None:
        self.manager = make_manager(seed, max_retries=max_retries)
        self.now = 0.0
        self.in_flight = False
        self.sent_at = 0.0
        self.failed = False
        self.token: str | None = None
        self.expires_at = -math.inf
        self.issued = 0

    @property
    def wall(self) -> float:
        return WALL + self.now

    @rule(dt=st.one_of(st.floats(0, 5), st.floats(0, 120), st.sampled_from([0.0, 1.0, 30.0, 1800.0, 3600.0])))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @precondition(lambda self: self.token is not None)
    @rule(offset=st.sampled_from([-0.001, 0.0, 0.001]))
    def to_the_expiry(self, offset: float) -> None:
        self.now = max(self.now, self.expires_at + offset)

    @rule()
    def wake_at_the_deadline(self) -> None:
        # What the engine does: sleep until next_deadline, then poll.
        deadline = self.manager.next_deadline()
        if deadline is not None:
            self.now = max(self.now, deadline)
        self.poll()

    @rule()
    def poll(self) -> None:
        request = self.manager.poll(now=self.now, wall=self.wall)
        if self.in_flight or self.failed:
            assert request is None
        if request is not None:
            self.in_flight = True
            self.sent_at = self.now
        deadline = self.manager.next_deadline()
        assert deadline is None or deadline > self.now

    def _answered(self) -> None:
        self.in_flight = False
        if state_of(self.manager) is S.FAILED:
            self.failed = True
            self.token = None

    @precondition(lambda self: self.in_flight)
    @rule(expires_in=st.one_of(st.sampled_from([60, 600, 3600]), st.integers(1, 7200)))
    def grant(self, expires_in: int) -> None:
        self.issued += 1
        self.token = f"tok-{self.issued}"
        self.expires_at = self.sent_at + expires_in
        self.manager.receive_response(ok(self.token, expires_in), now=self.now, wall=self.wall)
        self._answered()

    @precondition(lambda self: self.in_flight)
    @rule(
        response=st.one_of(
            st.builds(Response, status=st.just(429), headers=RATE_LIMIT_HEADERS),
            st.builds(Response, status=st.sampled_from([408, 500, 503, 600])),
            st.builds(Response, status=st.just(200), body=st.sampled_from([b"", b"{}", b'{"access_token": 1}'])),
            st.builds(Response, status=st.sampled_from([400, 401]), body=st.sampled_from(SKEW_BODIES)),
        )
    )
    def refuse_for_now(self, response: Response) -> None:
        self.manager.receive_response(response, now=self.now, wall=self.wall)
        self._answered()

    @precondition(lambda self: self.in_flight)
    @rule(kind=st.sampled_from(TransportFailureKind))
    def transport_failure(self, kind: TransportFailureKind) -> None:
        self.manager.receive_failure(TransportFailure(kind=kind), now=self.now)
        self._answered()

    # Rare, or the manager would spend most runs FAILED.
    @precondition(lambda self: self.in_flight)
    @rule(status=st.sampled_from([400, 401, 403, 404]), roll=st.integers(0, 9))
    def refuse_for_good(self, status: int, roll: int) -> None:
        if roll == 0:
            self.manager.receive_response(Response(status=status), now=self.now, wall=self.wall)
            self._answered()

    @rule(roll=st.integers(0, 2))
    def invalidate(self, roll: int) -> None:
        if roll == 0:
            self.manager.invalidate(now=self.now)
            self.token = None

    @rule(roll=st.integers(0, 4))
    def fork(self, roll: int) -> None:
        if roll == 0:
            self.manager.reset()
            self.in_flight = self.failed = False
            self.token = None

    @invariant()
    def in_flight_as_the_model_says(self) -> None:
        if hasattr(self, "manager"):
            assert (state_of(self.manager) in (S.REQUESTING, S.REFRESHING)) == self.in_flight

    @invariant()
    def serves_exactly_the_unexpired_token(self) -> None:
        if not hasattr(self, "manager"):
            return
        expected = f"Bearer {self.token}" if self.token is not None and self.now < self.expires_at else None
        assert self.manager.authorization(now=self.now) == expected
        if state_of(self.manager) is S.VALID:  # it wakes by the time the token expires
            deadline = self.manager.next_deadline()
            assert deadline is not None
            assert deadline <= self.expires_at

    @invariant()
    def failed_is_terminal(self) -> None:
        if not hasattr(self, "manager"):
            return
        # Only a reset (the fork path) leaves FAILED; no answer, poll or time does.
        assert (state_of(self.manager) is S.FAILED) == self.failed
        assert (self.manager.failure is not None) == self.failed
        if self.failed:
            assert self.manager.next_deadline() is None


TestTokenMachine = TokenMachine.TestCase
