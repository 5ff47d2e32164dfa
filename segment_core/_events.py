"""The values that go into and come out of the engine.

Inputs describe what happened on the wire (:class:`Response`,
:class:`TransportFailure`); outputs say what the runtime must do or report:
:class:`Request` (send this), :class:`MessagesDelivered` and
:class:`MessagesFailed` (each accepted message ends in exactly one of them, or
in :class:`MessagesKept` when a spool keeps it for the next process),
:class:`Retrying` (a batch will be sent again, and why) and
:class:`WaitSettled` (what a flush, shutdown or sync call waited for is
settled). All are small frozen structs; the runtime drains outputs with
``Engine.next_outputs()``, in order.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

import msgspec

from ._errors import DeliveryError

__all__ = [
    "MessagesDelivered",
    "MessagesFailed",
    "MessagesKept",
    "Output",
    "RandomSource",
    "Request",
    "RequestPurpose",
    "Response",
    "Retrying",
    "TransportFailure",
    "TransportFailureKind",
    "WaitSettled",
]


class RandomSource(Protocol):
    """Where jitter and generated ids come from; ``random.Random`` fits."""

    def random(self) -> float:
        """A float in [0, 1)."""
        ...

    def getrandbits(self, k: int, /) -> int:
        """An int of ``k`` random bits."""
        ...


class RequestPurpose(enum.Enum):
    """What a request is for."""

    BATCH = "batch"
    """A batch of messages to ``/v1/batch``."""
    TOKEN = "token"  # noqa: S105 - a purpose, not a password
    """An OAuth token request."""


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """Send this HTTP request and report its outcome under ``id``."""

    id: int
    purpose: RequestPurpose
    method: str
    url: str
    # Names as sent; the Authorization value is a secret, so repr hides headers.
    headers: tuple[tuple[str, str], ...]
    body: bytes
    # Number of messages in a batch request (0 for a token request).
    message_count: int = 0
    # The n-th retry of this batch (also sent as X-Retry-Count).
    retry_count: int = 0

    def __repr__(self) -> str:
        return (
            f"Request(id={self.id}, purpose={self.purpose.value}, method={self.method}, url={self.url}, "
            f"body_bytes={len(self.body)}, message_count={self.message_count}, retry_count={self.retry_count})"
        )

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        # msgspec's default would list the headers, Authorization included.
        return [("id", self.id), ("purpose", self.purpose.value), ("url", self.url), ("body_bytes", len(self.body))]


class Response(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP response. Header names must be lower case.

    ``repr`` shows the status, the header names and the body's size only: a body
    or a header can hold a token.
    """

    status: int
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: bytes = b""

    def __repr__(self) -> str:
        return f"Response(status={self.status}, headers={sorted(self.headers)}, body_bytes={len(self.body)})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("status", self.status), ("headers", sorted(self.headers)), ("body_bytes", len(self.body))]

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 999:
            raise ValueError(f"HTTP status must be a 3-digit number, got {self.status}")
        for name in self.headers:
            if name != name.lower():
                raise ValueError(f"header names must be lower case, got {name!r}")


class TransportFailureKind(enum.Enum):
    """Why a request got no HTTP response."""

    CONNECT = "connect"
    """Never reached the server (refused, unresolvable, TLS failed): always safe to retry."""
    TIMEOUT = "timeout"
    """No reply in time: the server may have processed the batch."""
    RESET = "reset"
    """The connection dropped mid-request or mid-response, or the reply was not valid HTTP."""
    OTHER = "other"
    """Anything else (a bug in the transport, named in ``detail``)."""


class TransportFailure(msgspec.Struct, frozen=True, kw_only=True):
    """The request got no HTTP response.

    ``detail`` says what happened in words, with the address where there is one:
    ``"connection refused (127.0.0.1:8080)"``. It must hold no secret.
    """

    kind: TransportFailureKind
    detail: str = ""


class MessagesDelivered(msgspec.Struct, frozen=True, kw_only=True):
    """These messages were accepted by the API.

    ``first_seq`` is the sequence number ``Engine.enqueue`` returned for the
    first of them; the rest follow in order.
    """

    first_seq: int
    messages: tuple[bytes, ...]

    def __repr__(self) -> str:
        return f"MessagesDelivered(first_seq={self.first_seq}, count={len(self.messages)})"


class MessagesFailed(msgspec.Struct, frozen=True, kw_only=True):
    """These messages will never be delivered, and why. Reported once per message."""

    first_seq: int
    messages: tuple[bytes, ...]
    error: DeliveryError

    def __repr__(self) -> str:
        return f"MessagesFailed(first_seq={self.first_seq}, count={len(self.messages)}, error={self.error!r})"


class MessagesKept(msgspec.Struct, frozen=True, kw_only=True):
    """These messages were not delivered by the close deadline and stay in the spool for the next process.

    Only with ``EngineConfig(durable=True)``; never reported through ``on_error``.
    ``last_error`` is the last failed attempt to deliver them, if any.
    """

    first_seq: int
    messages: tuple[bytes, ...]
    last_error: DeliveryError | None = None

    def __repr__(self) -> str:
        return f"MessagesKept(first_seq={self.first_seq}, count={len(self.messages)})"


class Retrying(msgspec.Struct, frozen=True, kw_only=True):
    """A batch will be sent again in ``delay`` seconds, because of ``error``.

    ``paused`` is True when the server asked to wait (Retry-After, which holds
    the whole pipeline and is not a counted retry); ``attempt`` counts the
    requests sent for this batch so far.
    """

    first_seq: int
    count: int
    error: DeliveryError
    delay: float
    attempt: int
    paused: bool = False


class WaitSettled(msgspec.Struct, frozen=True, kw_only=True):
    """What a wait (a flush, a shutdown, a sync-mode call) covered is settled.

    ``waiter`` is the token the runtime passed to ``flush`` or ``close``;
    ``delivered`` is True if every message it covered was delivered (none failed
    or was kept for later).
    """

    waiter: int
    delivered: bool


Output = Request | MessagesDelivered | MessagesFailed | MessagesKept | Retrying | WaitSettled
