"""The OAuth token lifecycle: a sans-IO state machine for client-credentials tokens.

Strategy: :class:`TokenManager` holds at most one access token and asks for the
next one by returning a :class:`TokenRequest` from ``poll()``; the engine sends
it and feeds back the response or transport failure. Nothing here reads a clock
or entropy: ``now`` (monotonic) schedules refreshes and backoff, ``wall`` (epoch
seconds) dates the client assertion, and a :class:`RandomSource` supplies jti
values and jitter. Every state change goes through ``_TRANSITIONS``.

The client authenticates with a signed JWT (private_key_jwt), as Segment's
Public API OAuth requires (https://segment.com/docs/connections/oauth/):

- token request: RFC 6749 section 4.4, https://www.rfc-editor.org/rfc/rfc6749#section-4.4
- client assertion and its type: RFC 7523 sections 2.2 and 3,
  https://www.rfc-editor.org/rfc/rfc7523#section-2.2
- token response (``access_token``, ``expires_in``) and error response (``error``,
  ``error_description``): RFC 6749 sections 5.1 and 5.2,
  https://www.rfc-editor.org/rfc/rfc6749#section-5.1
- ``Date`` and ``Retry-After``: RFC 9110 sections 6.6.1 and 10.2.3,
  https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3

The claim offsets (iat 5 s back, exp 55 s ahead, both corrected by the clock
skew read from ``Date``), the "Token is expired" retry, the X-RateLimit-Reset
wait and the 5 s default rate-limit wait follow segment-analytics-python 2.4
(``segment/analytics/oauth_manager.py``).
"""

from __future__ import annotations

import enum
import math
import re
import uuid
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import urlencode

import jwt
import msgspec
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ._config import OAuthConfig
from ._errors import OAuthError, SegmentError
from ._events import RandomSource, Response, TransportFailure
from ._redaction import Redactor
from ._retry_policy import backoff_delay, http_date_seconds, parse_retry_after
from .limits import MAX_RETRY_AFTER, USER_AGENT

__all__ = [
    "TokenManager",
    "TokenRequest",
    "TokenState",
    "TokenStateError",
]

# RFC 6749 section 4.4.2 and RFC 7523 section 2.2.
GRANT_TYPE: Final = "client_credentials"
CLIENT_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# segment-analytics-python 2.4: iat = now - 5, exp = now + 55 (a 60 s assertion, tolerant of small skew).
ASSERTION_BACKDATE: Final = 5
ASSERTION_LIFETIME: Final = 55
# segment-analytics-python 2.4 waits 5 s after a 429 without a usable reset time.
DEFAULT_RATE_LIMIT_WAIT: Final = 5.0
# X-RateLimit-Reset values at least this large are epoch seconds (2001-09-09), smaller ones a delay.
EPOCH_THRESHOLD: Final = 1_000_000_000
# A token response without ``expires_in`` (RFC 6749 makes it RECOMMENDED, not required):
# segment-analytics-python refreshes after 60 s, so assume a 120 s lifetime.
DEFAULT_TOKEN_LIFETIME: Final = 120.0
# The server's error text is shown to users: keep it readable.
MAX_ERROR_MESSAGE: Final = 200
# Error descriptions that mean "our clock is off": fix the skew from Date and retry at once.
SKEW_ERRORS: Final = ("token is expired", "token used before issued")
# Statuses worth retrying after a backoff; 429 has its own wait. 501/505 are as fatal as for batches.
_TRANSIENT_STATUSES: Final = frozenset({408, 460})
_FATAL_5XX: Final = frozenset({501, 505})
# A bearer token goes into a header: visible ASCII only, so it can never inject a header.
_TOKEN_CHARS: Final = re.compile(r"[\x21-\x7e]+")
# A token is refreshed at half its lifetime, so at least twice a day whatever expires_in says.
_MAX_TOKEN_LIFETIME: Final = 24 * 3600.0
# A reply is shown from its start: a body of megabytes is not decoded whole to show 200 characters.
_MAX_SHOWN_BODY: Final = 64 * 1024
_KEY_ERROR: Final = "oauth private key must be an unencrypted PEM RSA private key"


class TokenStateError(SegmentError, RuntimeError):
    """A bug in the caller: an input the token state machine has no transition for.

    For example a response when no token request is in flight.
    """


def _load_rsa_key(pem: str) -> RSAPrivateKey | None:
    """An unencrypted PEM RSA private key, or None if ``pem`` is not one (the key is never quoted)."""
    try:
        key = load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm, UnicodeError):
        return None
    return key if isinstance(key, RSAPrivateKey) else None


class TokenState(enum.Enum):
    """Where a token's lifecycle is."""

    NO_TOKEN = "no_token"  # noqa: S105 - a state, not a password
    """Nothing usable, nothing in flight: request at the next poll."""
    REQUESTING = "requesting"
    """No usable token, a request in flight."""
    VALID = "valid"
    """A usable token, nothing in flight; refresh (or retry) at a set time."""
    REFRESHING = "refreshing"
    """A usable token, its successor's request in flight."""
    BACKING_OFF = "backing_off"
    """No usable token, nothing in flight: request after a wait."""
    FAILED = "failed"
    """Terminal: a configuration error (an unusable key, a refused client), or max_retries + 1 failures in a row."""


class TokenRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A token request to send. ``repr`` hides the body: it holds the signed assertion."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def __repr__(self) -> str:
        return f"TokenRequest(method={self.method}, url={self.url}, body_bytes={len(self.body)})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("method", self.method), ("url", self.url), ("body_bytes", len(self.body))]


class _Event(enum.Enum):
    SEND = "send"  # poll() sends a token request
    GRANTED = "granted"  # the server issued a token
    RETRY_LATER = "retry_later"  # a failed attempt under the limit: wait
    RETRY_NOW = "retry_now"  # the server disliked our clock: retry at once with the new skew
    GIVE_UP = "give_up"  # a configuration error, or too many failures in a row
    DROP = "drop"  # the token expired or the API refused it
    DROP_DURING_BACKOFF = "drop_during_backoff"  # the same, while a failed refresh waits out a backoff
    RESET = "reset"  # after fork: start over


_S = TokenState
_E = _Event
_TRANSITIONS: Final[dict[tuple[TokenState, _Event], TokenState]] = {
    (_S.NO_TOKEN, _E.SEND): _S.REQUESTING,
    (_S.BACKING_OFF, _E.SEND): _S.REQUESTING,
    (_S.VALID, _E.SEND): _S.REFRESHING,
    (_S.REQUESTING, _E.GRANTED): _S.VALID,
    (_S.REFRESHING, _E.GRANTED): _S.VALID,
    (_S.REQUESTING, _E.RETRY_LATER): _S.BACKING_OFF,
    (_S.REFRESHING, _E.RETRY_LATER): _S.VALID,  # the old token serves until it expires
    (_S.REQUESTING, _E.RETRY_NOW): _S.NO_TOKEN,
    (_S.REFRESHING, _E.RETRY_NOW): _S.VALID,  # refresh due at once
    # The private key cannot be used: found when the next assertion is signed.
    (_S.NO_TOKEN, _E.GIVE_UP): _S.FAILED,
    (_S.VALID, _E.GIVE_UP): _S.FAILED,
    (_S.BACKING_OFF, _E.GIVE_UP): _S.FAILED,
    (_S.REQUESTING, _E.GIVE_UP): _S.FAILED,
    (_S.REFRESHING, _E.GIVE_UP): _S.FAILED,
    (_S.VALID, _E.DROP): _S.NO_TOKEN,
    (_S.VALID, _E.DROP_DURING_BACKOFF): _S.BACKING_OFF,
    (_S.REFRESHING, _E.DROP): _S.REQUESTING,  # the request in flight brings the next token
    (_S.NO_TOKEN, _E.DROP): _S.NO_TOKEN,
    (_S.REQUESTING, _E.DROP): _S.REQUESTING,
    (_S.BACKING_OFF, _E.DROP): _S.BACKING_OFF,
    (_S.FAILED, _E.DROP): _S.FAILED,
    **{(state, _E.RESET): _S.NO_TOKEN for state in TokenState},
}
_IN_FLIGHT: Final = frozenset({_S.REQUESTING, _S.REFRESHING})
_HAS_TOKEN: Final = frozenset({_S.VALID, _S.REFRESHING})


def _backoff_delay(failures: int, unit_random: float) -> float:
    """Seconds to wait after the ``failures``-th consecutive failed request (1-based).

    The batch schedule without its immediate first retry: 0.5 s, 1 s, 2 s, ... plus jitter, capped.
    """
    return backoff_delay(failures + 1, unit_random)


def _positive_number(value: str) -> float | None:
    try:
        number = float(value.strip())
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _decode_json(body: bytes) -> Any:
    """The reply's JSON, or None for anything else (any bytes, any nesting: a server's choice)."""
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError, MemoryError):
        return None


class TokenManager:
    """One access token's lifecycle: request, serve, refresh at half-life, back off, give up.

    Drive it like the engine does: call ``poll`` whenever ``next_deadline`` has
    passed (or any time), send the :class:`TokenRequest` it returns, and feed
    the outcome to ``receive_response`` or ``receive_failure``. At most one
    request is in flight. Not thread-safe: the caller serialises access.
    """

    __slots__ = (
        "_assertion",
        "_config",
        "_expires_at",
        "_failure",
        "_failures",
        "_key",
        "_last_error",
        "_last_status",
        "_next_request_at",
        "_redactor",
        "_rng",
        "_sent_at",
        "_skew",
        "_state",
        "_token",
    )

    def __init__(self, config: OAuthConfig, *, random: RandomSource, secrets: Iterable[str] = ()) -> None:
        """Args:
        config: the OAuth settings.
        random: the source of jti values and backoff jitter; seed it to replay a run.
        secrets: other secrets a token server might echo (the write key), cut from its text.

        The private key is loaded at the first ``poll``; one that cannot be used
        fails the manager then (``failure`` says why), as segment-analytics-python
        finds it at delivery.
        """
        self._config = config
        self._key: RSAPrivateKey | None = None
        self._rng = random
        self._redactor = Redactor(secrets)
        self._skew = 0  # wall - server time, whole seconds; survives reset (the clocks did not change)
        self._start_over()

    def _start_over(self) -> None:
        self._state = TokenState.NO_TOKEN
        self._token: str | None = None
        self._expires_at = -math.inf
        self._next_request_at = -math.inf
        self._failures = 0
        self._failure: OAuthError | None = None
        self._last_status: int | None = None
        self._last_error = ""
        self._assertion = ""
        self._sent_at = -math.inf

    def __repr__(self) -> str:
        expires_at = self._expires_at if self._token is not None else None
        return f"TokenManager(state={self._state.name}, expires_at={expires_at})"

    def _move(self, event: _Event) -> None:
        try:
            self._state = _TRANSITIONS[self._state, event]
        except KeyError:
            raise TokenStateError(f"no transition from {self._state.name} on {event.name}") from None

    # Queries ---------------------------------------------------------------

    @property
    def state(self) -> TokenState:
        """The state as of the last input (a token that expired since is dropped at the next call with ``now``)."""
        return self._state

    @property
    def failure(self) -> OAuthError | None:
        """Why the manager is FAILED (retries exhausted or a configuration error), else None."""
        return self._failure

    @property
    def clock_skew(self) -> int:
        """Local wall clock minus the auth server's, in whole seconds, from the last ``Date`` header."""
        return self._skew

    def authorization(self, *, now: float) -> str | None:
        """The Authorization header value for a batch request sent at monotonic ``now``.

        Returns:
            ``"Bearer <token>"`` while a token is held and unexpired, else None.
        """
        self._expire(now)
        if self._state in _HAS_TOKEN and self._token is not None:
            return f"Bearer {self._token}"
        return None

    def next_deadline(self) -> float | None:
        """When ``poll`` must be called even if nothing else happens (monotonic seconds).

        Returns:
            ``-inf`` in NO_TOKEN (due now); the refresh, retry or expiry time in
            VALID, whichever is first; the end of the wait in BACKING_OFF; None
            while a request is in flight or once FAILED.
        """
        state = self._state
        if state is TokenState.NO_TOKEN:
            return -math.inf
        if state is TokenState.VALID:
            return min(self._next_request_at, self._expires_at)
        if state is TokenState.BACKING_OFF:
            return self._next_request_at
        return None

    # Inputs ----------------------------------------------------------------

    def poll(self, *, now: float, wall: float) -> TokenRequest | None:
        """Start a token request if one is due and none is in flight.

        Args:
            now: monotonic seconds, for scheduling.
            wall: epoch seconds, for the assertion's iat and exp.

        Returns:
            The request to send now, or None.
        """
        self._expire(now)
        state = self._state
        due = state is TokenState.NO_TOKEN or (
            state in (TokenState.VALID, TokenState.BACKING_OFF) and now >= self._next_request_at
        )
        if not due:
            return None
        assertion = self._sign_assertion(wall)
        if assertion is None:
            return None
        self._assertion = assertion
        self._sent_at = now
        self._move(_Event.SEND)
        config = self._config
        body = urlencode(
            (
                ("grant_type", GRANT_TYPE),
                ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                ("client_assertion", self._assertion),
                ("scope", config.scope),
            )
        ).encode("ascii")
        return TokenRequest(
            method="POST",
            url=config.token_url,
            headers=(("Content-Type", "application/x-www-form-urlencoded"), ("User-Agent", USER_AGENT)),
            body=body,
        )

    def receive_response(self, response: Response, *, now: float, wall: float) -> None:
        """The token endpoint's answer to the request in flight.

        Args:
            response: status, lower-case headers and body.
            now: monotonic seconds at arrival.
            wall: epoch seconds at arrival, for the clock skew and HTTP-dates.

        Raises:
            TokenStateError: no token request is in flight.
        """
        self._require_in_flight("receive_response")
        self._expire(now)
        date = response.headers.get("date")
        server_time = http_date_seconds(date) if date else None
        if server_time is not None:
            self._skew = int(wall - server_time)
        status = response.status
        self._last_status = status
        assertion, self._assertion = self._assertion, ""
        text = response.body[:_MAX_SHOWN_BODY].decode("utf-8", "replace")
        if 200 <= status < 300:
            self._grant(response.body, now)
        elif status == 429:
            self._attempt_failed(
                f"HTTP 429: {self._sanitize(text, assertion, self._token)}", now, self._rate_limit_wait(response, wall)
            )
        elif 400 <= status < 500 and any(phrase in text.lower() for phrase in SKEW_ERRORS):
            self._attempt_failed(f"HTTP {status}: {self._sanitize(text, assertion, self._token)}", now, 0.0)
        elif (300 <= status < 500 and status not in _TRANSIENT_STATUSES) or status in _FATAL_5XX:
            self._give_up(self._configuration_error(status, response.body, assertion, self._token))
        else:  # 1xx, 408, 460, 5xx, nonsense statuses: the server's trouble, worth a retry
            self._attempt_failed(f"HTTP {status}: {self._sanitize(text, assertion, self._token)}", now, None)

    def receive_failure(self, failure: TransportFailure, *, now: float) -> None:
        """The token request got no response (connect error, timeout, reset).

        Raises:
            TokenStateError: no token request is in flight.
        """
        self._require_in_flight("receive_failure")
        self._expire(now)
        self._last_status = None
        assertion, self._assertion = self._assertion, ""
        detail = f"{failure.kind.value}: {failure.detail}" if failure.detail else failure.kind.value
        self._attempt_failed(f"transport failure: {self._sanitize(detail, assertion)}", now, None)

    def invalidate(self, *, now: float) -> None:
        """The batch endpoint refused the token (400/401/403/511): drop it.

        The next ``poll`` requests a new one, unless a failed refresh is still
        waiting out its backoff (then it asks when the wait ends). A request in
        flight carries on and its token becomes the current one.
        """
        self._expire(now)
        self._drop(now)

    def reset(self) -> None:
        """Start over after a fork: NO_TOKEN, nothing in flight, no failure, no counted attempts.

        The clock skew is kept. A FAILED manager starts over too, so a runtime
        can also use this to retry after ``retries_exhausted``.
        """
        self._move(_Event.RESET)
        self._start_over()

    shift_for_fork = reset

    # Internals -------------------------------------------------------------

    def _require_in_flight(self, method: str) -> None:
        if self._state not in _IN_FLIGHT:
            raise TokenStateError(f"{method}() with no token request in flight (state {self._state.name})")

    def _expire(self, now: float) -> None:
        """Drop the token once monotonic ``now`` reaches its expiry."""
        if self._state in _HAS_TOKEN and now >= self._expires_at:
            self._drop(now)

    def _drop(self, now: float) -> None:
        backing_off = self._state is TokenState.VALID and self._failures > 0 and self._next_request_at > now
        self._move(_Event.DROP_DURING_BACKOFF if backing_off else _Event.DROP)
        if self._state not in _HAS_TOKEN:
            self._token = None
            self._expires_at = -math.inf

    def _sign_assertion(self, wall: float) -> str | None:
        """The RS256 client assertion (RFC 7523 section 3), dated on the server's clock.

        None (and FAILED) when the private key cannot be used.
        """
        if self._key is None:
            self._key = _load_rsa_key(self._config.private_key)
            if self._key is None:
                self._give_up(OAuthError(None, "invalid_private_key", _KEY_ERROR))
                return None
        config = self._config
        server_now = int(wall) - self._skew
        claims = {
            "iss": config.client_id,
            "sub": config.client_id,
            "aud": config.auth_server.rstrip("/"),
            "iat": server_now - ASSERTION_BACKDATE,
            "exp": server_now + ASSERTION_LIFETIME,
            "jti": str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
        }
        try:
            return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": config.key_id})
        except Exception as exc:  # a key PyJWT refuses (too small, say): no token can ever be signed
            message = f"could not sign the client assertion: {type(exc).__name__}"
            self._give_up(OAuthError(None, "invalid_private_key", message))
            return None

    def _grant(self, body: bytes, now: float) -> None:
        data = _decode_json(body)
        token = data.get("access_token") if isinstance(data, dict) else None
        lifetime = self._lifetime(data.get("expires_in")) if isinstance(data, dict) else None
        if not isinstance(token, str) or not _TOKEN_CHARS.fullmatch(token) or lifetime is None:
            self._attempt_failed(f"HTTP {self._last_status}: malformed token response", now, None)
            return
        # Lifetimes count from when the request left: the token was issued after that.
        self._move(_Event.GRANTED)
        self._token = token
        self._expires_at = self._sent_at + lifetime
        self._next_request_at = self._sent_at + lifetime / 2
        self._failures = 0
        self._last_error = ""

    @staticmethod
    def _lifetime(value: object) -> float | None:
        """Seconds from ``expires_in`` (a number or numeric string), the default if absent, None if bad.

        A lifetime past a day is read as a day: the token is refreshed at least twice a day.
        """
        if value is None:
            return DEFAULT_TOKEN_LIFETIME
        number: float | None
        if isinstance(value, str):
            number = _positive_number(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value if value > 0 else None  # compared as an int: it may be too large for a float
        elif isinstance(value, float):
            number = value if math.isfinite(value) and value > 0 else None
        else:
            number = None
        return None if number is None else float(min(number, _MAX_TOKEN_LIFETIME))

    def _rate_limit_wait(self, response: Response, wall: float) -> float:
        """Seconds to wait after a 429: X-RateLimit-Reset, else Retry-After, else 5 s; at most 300 s.

        segment-analytics-python 2.4 sleeps ``int(X-RateLimit-Reset)`` seconds, a
        delay; a value that can only be an epoch time is read as one.
        """
        server_now = wall - self._skew
        delay: float | None = None
        reset = response.headers.get("x-ratelimit-reset")
        if reset is not None and (value := _positive_number(reset)) is not None:
            delay = value - server_now if value >= EPOCH_THRESHOLD else value
        retry_after = response.headers.get("retry-after")
        if (delay is None or delay <= 0) and retry_after is not None:
            delay = parse_retry_after(retry_after, wall=server_now)
        if delay is None or delay <= 0:
            delay = DEFAULT_RATE_LIMIT_WAIT
        return min(delay, MAX_RETRY_AFTER)

    def _attempt_failed(self, description: str, now: float, delay: float | None) -> None:
        """Count a failed attempt; wait ``delay`` (None: the exponential backoff), or give up."""
        self._failures += 1
        self._last_error = description
        if self._failures > self._config.max_retries:
            attempts = f"{self._failures} failed attempt" + ("s" if self._failures > 1 else "")
            message = f"no token after {attempts} in a row; last: {description}"
            self._give_up(OAuthError(self._last_status, "retries_exhausted", message))
            return
        if delay is None:
            delay = _backoff_delay(self._failures, self._rng.random())
        self._next_request_at = now + delay
        self._move(_Event.RETRY_NOW if delay == 0 else _Event.RETRY_LATER)

    def _give_up(self, error: OAuthError) -> None:
        self._move(_Event.GIVE_UP)
        self._failure = error
        self._token = None
        self._expires_at = -math.inf
        self._next_request_at = -math.inf

    def _sanitize(self, text: str, *secrets: str | None) -> str:
        """Server text fit to show: secrets and credential-shaped strings cut, one line, truncated."""
        return self._redactor.redact(text, also=secrets, max_length=MAX_ERROR_MESSAGE)

    def _configuration_error(self, status: int, body: bytes, *secrets: str | None) -> OAuthError:
        """OAuthError from an RFC 6749 section 5.2 error body (or whatever the server sent)."""
        data = _decode_json(body)
        code = "invalid_request" if 400 <= status < 500 else "unexpected_status"
        message = ""
        if isinstance(data, dict):
            if isinstance(data.get("error"), str) and data["error"].strip():
                code = self._sanitize(data["error"], *secrets)
            for field in ("error_description", "message"):
                if isinstance(data.get(field), str) and data[field].strip():
                    message = data[field]
                    break
        elif body:
            message = body[:_MAX_SHOWN_BODY].decode("utf-8", "replace")
        message = self._sanitize(message, *secrets) or f"HTTP {status}"
        return OAuthError(status, code, message)
