"""segment_core: the sans-IO heart of the client.

Pure: no sockets, threads, tasks, sleeps, clock reads, timezone reads or
entropy reads. Time and randomness are arguments; I/O is the runtime's job
(see ``segment_runtimes``). The public names, by role:

- Messages, typed: ``Message`` (the union), ``Track``, ``Identify``, ``Group``,
  ``Alias``, ``Page``, ``Screen``.
- Building a message from a call: ``build_message``, ``BuiltMessage``,
  ``CallMethods`` (the six calls, for a client to inherit), ``message_ids``;
  ``call_context`` (ids, traits and context for every call inside a block).
- Delivery: ``Engine`` (the state machine), ``EngineConfig``, ``OAuthConfig``,
  ``EngineState``, ``Enqueued``, ``Stats``.
- What goes into the engine: ``Response``, ``TransportFailure``,
  ``TransportFailureKind``; what comes out: ``Output``, that is ``Request``
  (with its ``RequestPurpose``), ``MessagesDelivered``, ``MessagesFailed``,
  ``MessagesKept``, ``Retrying`` or ``WaitSettled``.
- Errors: ``SegmentError``; the caller's (``ValidationError``,
  ``MessageTooLarge``, ``ConfigurationError``); delivery outcomes
  (``DeliveryError`` and ``APIError``, ``TransportError``,
  ``RetriesExhausted``, ``RateLimitExceeded``, ``ShutdownDeadline``,
  ``QueueFull``, ``OAuthError``, ``ClientClosed``).

- Which path runs: ``c_speedups_active`` (the C fast path, or pure Python
  where it is not built or ``SEGMENT_SANSIO_PURE=1`` turned it off).

Public modules: ``segment_core.limits`` (wire limits and defaults, each with
its source), ``segment_core.testing`` (the deterministic simulator),
``segment_core.plugins`` (plugin protocols and ``Sampling``) and
``segment_core.spool`` (the spool's record format, for the runtimes).
"""

from ._call_api import CallMethods
from ._call_context import call_context
from ._config import EngineConfig, OAuthConfig
from ._engine import Engine, EngineState, Enqueued, Stats
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
    MessagesKept,
    Output,
    Request,
    RequestPurpose,
    Response,
    Retrying,
    TransportFailure,
    TransportFailureKind,
    WaitSettled,
)
from ._message_builder import BuiltMessage, build_message, message_ids
from ._messages import Alias, Group, Identify, Message, Page, Screen, Track
from ._native import c_speedups_active
from ._version import __version__

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
    "MessagesKept",
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
    "Retrying",
    "Screen",
    "SegmentError",
    "ShutdownDeadline",
    "Stats",
    "Track",
    "TransportError",
    "TransportFailure",
    "TransportFailureKind",
    "ValidationError",
    "WaitSettled",
    "__version__",
    "build_message",
    "call_context",
    "c_speedups_active",
    "message_ids",
]
