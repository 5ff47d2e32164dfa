"""The values that go into and come out of the engine.

Inputs describe what happened on the wire (:class:`Response`,
:class:`TransportFailure`); outputs say what the runtime must do or report
(:class:`Request`, :class:`MessagesDelivered`, :class:`MessagesFailed`). All are
small frozen structs; the runtime drains outputs with ``Engine.next_outputs()``.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

import msgspec

from ._errors import DeliveryError

__all__ = [
    "MessagesDelivered",
    "MessagesFailed",
    "Output",
    "RandomSource",
    "Request",
    "RequestPurpose",
    "Response",
    "TransportFailure",
    "TransportFailureKind",
]


class RandomSource(Protocol):
    """Where jitter and generated ids come from; ``random.Random`` fits."""

    def random(self) -> float: ...

    def getrandbits(self, k: int, /) -> int: ...


class RequestPurpose(enum.Enum):
    BATCH = "batch"
    TOKEN = "token"  # noqa: S105 - a purpose, not a password


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
    """An HTTP response. Header names must be lower case."""

    status: int
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 999:
            raise ValueError(f"HTTP status must be a 3-digit number, got {self.status}")
        for name in self.headers:
            if name != name.lower():
                raise ValueError(f"header names must be lower case, got {name!r}")


class TransportFailureKind(enum.Enum):
    CONNECT = "connect"  # never reached the server: always safe to retry
    TIMEOUT = "timeout"  # the server may have processed the batch
    RESET = "reset"  # connection dropped mid-request or mid-response
    OTHER = "other"


class TransportFailure(msgspec.Struct, frozen=True, kw_only=True):
    """The request got no HTTP response."""

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


Output = Request | MessagesDelivered | MessagesFailed
