"""segment_core: the sans-IO heart of the client.

Pure: no sockets, threads, tasks, sleeps, clock reads, timezone reads or
entropy reads. Time and randomness are arguments; I/O is the runtime's job
(see ``segment_runtimes``). The public names, by role:

- Messages, typed: ``Message`` (the union), ``Track``, ``Identify``, ``Group``,
  ``Alias``, ``Page``, ``Screen``.
- Building a message from a call: ``build_message``, ``BuiltMessage``,
  ``CallMethods`` (the six calls, for a client to inherit), ``message_ids``.
- Delivery: ``Engine`` (the state machine), ``EngineConfig``, ``OAuthConfig``,
  ``EngineState``, ``Enqueued``, ``Stats``.
- What goes into the engine: ``Response``, ``TransportFailure``,
  ``TransportFailureKind``; what comes out: ``Output``, that is ``Request`` (with its ``RequestPurpose``),
  ``MessagesDelivered`` or ``MessagesFailed``.
- Errors: ``SegmentError``; the caller's (``ValidationError``,
  ``MessageTooLarge``, ``ConfigurationError``); delivery outcomes
  (``DeliveryError`` and ``APIError``, ``TransportError``,
  ``RetriesExhausted``, ``RateLimitExceeded``, ``ShutdownDeadline``,
  ``QueueFull``, ``OAuthError``, ``ClientClosed``).

Public modules: ``segment_core.limits`` (wire limits and defaults, each with
its source) and ``segment_core.testing`` (the deterministic simulator).
"""

from typing import TYPE_CHECKING

from ._call_api import CallMethods
from ._engine import Engine, EngineConfig, EngineState, Enqueued, Stats
from ._errors import (
    APIError,
    ClientClosed,
    ConfigurationError,
    DeliveryError,
    MessageTooLarge,
    OAuthError,
    QueueFull,
    RateLimitExceeded,
    RetriesExhausted,
    SegmentError,
    ShutdownDeadline,
    TransportError,
    ValidationError,
)
from ._events import (
    MessagesDelivered,
    MessagesFailed,
    Output,
    Request,
    RequestPurpose,
    Response,
    TransportFailure,
    TransportFailureKind,
)
from ._message_builder import BuiltMessage, build_message, message_ids
from ._messages import Alias, Group, Identify, Message, Page, Screen, Track
from ._version import __version__

if TYPE_CHECKING:
    from ._oauth_tokens import OAuthConfig

__all__ = [
    "APIError",
    "Alias",
    "BuiltMessage",
    "CallMethods",
    "ClientClosed",
    "ConfigurationError",
    "DeliveryError",
    "Engine",
    "EngineConfig",
    "EngineState",
    "Enqueued",
    "Group",
    "Identify",
    "Message",
    "MessageTooLarge",
    "MessagesDelivered",
    "MessagesFailed",
    "OAuthConfig",
    "OAuthError",
    "Output",
    "Page",
    "QueueFull",
    "RateLimitExceeded",
    "Request",
    "RequestPurpose",
    "Response",
    "RetriesExhausted",
    "Screen",
    "SegmentError",
    "ShutdownDeadline",
    "Stats",
    "Track",
    "TransportError",
    "TransportFailure",
    "TransportFailureKind",
    "ValidationError",
    "__version__",
    "build_message",
    "message_ids",
]


def __getattr__(name: str) -> object:
    # OAuth (PyJWT, cryptography) loads on first use: most clients authenticate with the write key.
    if name == "OAuthConfig":
        from ._oauth_tokens import OAuthConfig  # noqa: PLC0415

        return OAuthConfig
    raise AttributeError(f"module 'segment_core' has no attribute {name!r}")
