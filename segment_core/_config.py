"""The engine's settings: one frozen value, checked when it is built.

Defaults are segment-analytics-python 2.4's, except where ``limits`` says why
not. A bad value raises :class:`ConfigurationError` naming the field; the write
key never appears in a repr or an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import msgspec

from ._errors import ConfigurationError
from .limits import (
    DEFAULT_HOST,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_RATE_LIMIT_DURATION,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_TOTAL_BACKOFF_DURATION,
    DEFAULT_OAUTH_AUTH_SERVER,
    DEFAULT_OAUTH_SCOPE,
    DEFAULT_UPLOAD_INTERVAL,
    DEFAULT_UPLOAD_SIZE,
    MAX_MESSAGE_BYTES,
)

__all__ = ["TOKEN_PATH", "EngineConfig", "OAuthConfig"]

# RFC 6749 section 3.2: the token endpoint, under the auth server.
TOKEN_PATH = "/token"  # noqa: S105 - a path, not a password


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything that shapes delivery.

    Attributes:
        write_key: the source's write key (Basic auth user, and ``writeKey`` in each body). An empty
            one is accepted, as segment-analytics-python accepts it: the API refuses its batches.
        host: the API's base URL; a trailing slash is dropped.
        upload_size: messages per batch, at most.
        upload_interval: seconds a message may wait for its batch to fill.
        max_queue_size: messages queued, at most; more are refused (never blocking).
        max_queue_bytes: bytes of encoded messages queued, at most.
        max_retries: counted retries of one batch before it fails.
        max_total_backoff_duration: seconds after a batch's first failure past which it is not retried.
        max_rate_limit_duration: seconds one episode of Retry-After pauses may last.
        max_in_flight: batch requests at once (``thread`` in segment-analytics-python).
        gzip: gzip request bodies.
        oauth: an ``OAuthConfig`` to authenticate with OAuth tokens instead of the write key.
        durable: messages are kept on disk by the runtime (a spool): at the close
            deadline the undelivered ones are reported kept (``MessagesKept``), not failed.
    """

    write_key: str
    host: str = DEFAULT_HOST
    upload_size: int = DEFAULT_UPLOAD_SIZE
    upload_interval: float = DEFAULT_UPLOAD_INTERVAL
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    max_retries: int = DEFAULT_MAX_RETRIES
    max_total_backoff_duration: float = DEFAULT_MAX_TOTAL_BACKOFF_DURATION
    max_rate_limit_duration: float = DEFAULT_MAX_RATE_LIMIT_DURATION
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    gzip: bool = False
    # Typed loosely so that the engine does not import PyJWT unless OAuth is on.
    oauth: Any = None
    durable: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.write_key, str):
            raise ConfigurationError("write_key must be a str")
        if not isinstance(self.host, str) or not self.host.startswith(("http://", "https://")):
            raise ConfigurationError("host must be an http:// or https:// URL")
        _require_int("upload_size", self.upload_size, 1)
        _require_int("max_queue_size", self.max_queue_size, 1)
        _require_int("max_queue_bytes", self.max_queue_bytes, MAX_MESSAGE_BYTES)
        _require_int("max_retries", self.max_retries, 0)
        _require_int("max_in_flight", self.max_in_flight, 1)
        _require_number("upload_interval", self.upload_interval)
        _require_number("max_total_backoff_duration", self.max_total_backoff_duration)
        _require_number("max_rate_limit_duration", self.max_rate_limit_duration)

    def __repr__(self) -> str:
        # The write key is a secret: never shown.
        return f"EngineConfig(host={self.host!r}, upload_size={self.upload_size}, oauth={self.oauth is not None})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        # msgspec's default would list every field, write key included.
        return [("host", self.host), ("upload_size", self.upload_size), ("oauth", self.oauth is not None)]


class OAuthConfig(msgspec.Struct, frozen=True, kw_only=True):
    """OAuth settings. ``repr`` and ``str`` never show the private key.

    The key is not loaded here: as in segment-analytics-python, a key that
    cannot be used is found when the first token is requested, and reported
    then (every message fails with ``OAuthError``), never at construction.

    Raises:
        ConfigurationError: an empty field, an auth server that is not an
            http(s) URL, or a negative ``max_retries``.
    """

    client_id: str
    private_key: str  # PEM text
    key_id: str
    auth_server: str = DEFAULT_OAUTH_AUTH_SERVER  # a trailing slash is stripped wherever it is used
    scope: str = DEFAULT_OAUTH_SCOPE
    # Failed token requests retried in a row before FAILED (max_retries + 1 attempts), as
    # the engine counts batch retries, so a client's max_retries=0 is valid here too.
    max_retries: int = 10

    def __post_init__(self) -> None:
        for name in ("client_id", "private_key", "key_id", "auth_server", "scope"):
            _require_text(name, getattr(self, name))
        parts = urlsplit(self.auth_server)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError("oauth auth_server must be an http(s) URL")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigurationError("oauth max_retries must be an int of at least 0")

    @property
    def token_url(self) -> str:
        """The token endpoint: ``{auth_server}/token``, without a doubled slash."""
        return self.auth_server.rstrip("/") + TOKEN_PATH

    def _safe_fields(self) -> Iterator[tuple[str, object]]:
        yield "client_id", self.client_id
        yield "key_id", self.key_id
        yield "auth_server", self.auth_server
        yield "scope", self.scope
        yield "max_retries", self.max_retries

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._safe_fields())
        return f"OAuthConfig({fields}, private_key=<hidden>)"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return list(self._safe_fields())


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"oauth {name} must be a non-empty string")


def _require_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an int of at least {minimum}")


def _require_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError(f"{name} must be a non-negative number")
