"""How batch requests are authorised: the write key as Basic credentials, or OAuth tokens.

The engine talks to one :class:`Authorizer`. The Basic one is always ready and
sends nothing. The OAuth one is ``_oauth_tokens.TokenManager``, loaded only when
OAuth is configured (it needs PyJWT and cryptography, the ``[oauth]`` extra);
when those cannot be imported, :class:`UnavailableAuthorizer` stands in and
fails every message with an :class:`OAuthError` that names the extra, so a
setting segment-analytics-python accepted never raises at construction.
"""

from __future__ import annotations

from typing import Any, Protocol

from ._batch_requests import basic_authorization
from ._errors import DeliveryError, OAuthError
from ._events import RandomSource, Response, TransportFailure

__all__ = ["Authorizer", "BasicAuthorizer", "UnavailableAuthorizer", "authorizer_for"]

OAUTH_EXTRA_HINT = "OAuth needs the [oauth] extra: pip install 'segment-sansio[oauth]'"


class Authorizer(Protocol):
    """How batch requests are authorised: a static Basic header, or an OAuth token lifecycle."""

    def authorization(self, *, now: float) -> str | None:
        """The Authorization value for a request sent now, or None if there is none yet."""
        ...

    def poll(self, *, now: float, wall: float) -> Any:
        """A token request to send now (with ``method``, ``url``, ``headers``, ``body``), or None."""
        ...

    def receive_response(self, response: Response, *, now: float, wall: float) -> None:
        """The reply to the token request in flight."""
        ...

    def receive_failure(self, failure: TransportFailure, *, now: float) -> None:
        """The token request in flight got no reply."""
        ...

    def invalidate(self, *, now: float) -> None:
        """The API refused the current credentials."""
        ...

    @property
    def failure(self) -> DeliveryError | None:
        """Why nothing can ever be authorised, or None."""
        ...

    def next_deadline(self) -> float | None:
        """When ``poll`` must be called even if nothing else happens, or None."""
        ...

    def reset(self) -> None:
        """Start over (after a fork)."""
        ...


class BasicAuthorizer:
    """The write key as HTTP Basic credentials: always ready, nothing to request."""

    __slots__ = ("_header",)

    def __init__(self, write_key: str) -> None:
        self._header = basic_authorization(write_key)

    def __repr__(self) -> str:
        return "BasicAuthorizer()"

    def authorization(self, *, now: float) -> str | None:
        """The Basic header value."""
        return self._header

    def poll(self, *, now: float, wall: float) -> None:
        """Nothing to request."""
        return

    def receive_response(self, response: Response, *, now: float, wall: float) -> None:
        """Never called: no request is ever sent."""
        return

    def receive_failure(self, failure: TransportFailure, *, now: float) -> None:
        """Never called: no request is ever sent."""
        return

    def invalidate(self, *, now: float) -> None:
        """A write key cannot be renewed: nothing to do."""
        return

    @property
    def failure(self) -> DeliveryError | None:
        """Never fails."""
        return None

    def next_deadline(self) -> float | None:
        """No deadline of its own."""
        return None

    def reset(self) -> None:
        """Nothing to reset."""
        return


class UnavailableAuthorizer(BasicAuthorizer):
    """OAuth was asked for but cannot run here: every message fails with ``error``."""

    __slots__ = ("_error",)

    def __init__(self, error: OAuthError) -> None:
        self._error = error

    def __repr__(self) -> str:
        return "UnavailableAuthorizer()"

    def authorization(self, *, now: float) -> str | None:
        """Never authorised."""
        return None

    @property
    def failure(self) -> DeliveryError | None:
        """The reason, from the start."""
        return self._error


def authorizer_for(write_key: str, oauth: Any, random: RandomSource) -> Authorizer:
    """The authorizer a config asks for: Basic with the write key, or OAuth when ``oauth`` is set."""
    if oauth is None:
        return BasicAuthorizer(write_key)
    try:
        from ._oauth_tokens import TokenManager  # noqa: PLC0415 - PyJWT only when OAuth is on
    except ImportError:
        return UnavailableAuthorizer(OAuthError(None, "missing_extra", OAUTH_EXTRA_HINT))
    return TokenManager(oauth, random=random, secrets=(write_key,))
