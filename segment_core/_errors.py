"""Errors, split by whose fault they are.

- The caller's: :class:`ValidationError` (a bad argument, raised at once in the
  caller's thread), :class:`MessageTooLarge`, :class:`ConfigurationError`.
- Delivery outcomes: :class:`DeliveryError` and its subclasses are never raised
  by the core; they are values carried by a ``MessagesFailed`` output and handed
  to the user's ``on_error(exception, batch)`` callback by a runtime.

Messages never include a write key, token, private key or header value.
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "ClientClosed",
    "ConfigurationError",
    "DeliveryError",
    "MessageTooLarge",
    "OAuthError",
    "QueueFull",
    "RateLimitExceeded",
    "RetriesExhausted",
    "SegmentError",
    "ShutdownDeadline",
    "TransportError",
    "ValidationError",
]


class SegmentError(Exception):
    """Base class of every error this project defines."""


class ValidationError(SegmentError, ValueError, AssertionError):
    """An argument of a call is missing or of the wrong type.

    A subclass of AssertionError too, because segment-analytics-python raises
    AssertionError and code written for it catches that.
    """

    def __init__(self, field: str, expected: str, got: object = None) -> None:
        self.field = field
        self.expected = expected
        self.got_type = type(got).__name__
        super().__init__(f"{field} must be {expected}, got {self.got_type}")


class MessageTooLarge(ValidationError, RuntimeError):
    """A message's JSON is over the 32 KB per-message limit.

    A RuntimeError too, because segment-analytics-python raises RuntimeError.
    """

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        SegmentError.__init__(self, f"message is {size} bytes of JSON, over the limit of {limit} bytes")
        self.field = "message"
        self.expected = f"at most {limit} bytes of JSON"
        self.got_type = "bytes"


class ConfigurationError(SegmentError, ValueError):
    """A client option is invalid (raised when the client is built)."""


class DeliveryError(SegmentError):
    """Why accepted messages could not be delivered. Carried, not raised, by the core."""


class APIError(DeliveryError):
    """The API answered with a status that fails the batch.

    Same attributes as segment-analytics-python's ``APIError``: ``status``,
    ``code`` and ``message``.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(status, code, message)

    def __str__(self) -> str:
        return f"[Segment] {self.code}: {self.message} ({self.status})"


class TransportError(DeliveryError):
    """The request got no HTTP response: connect error, timeout or reset.

    ``kind`` is a ``TransportFailureKind`` value (``"connect"``, ``"timeout"``,
    ``"reset"``, ``"other"``); ``detail`` says what happened in words, with the
    address where there is one (``"connection refused (127.0.0.1:8080)"``).
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(detail or f"{kind} failure")


def _last(last_error: DeliveryError | None) -> str:
    return f"; last attempt: {last_error}" if last_error is not None else ""


class RetriesExhausted(DeliveryError):
    """Every counted retry, or the total backoff duration, was spent.

    ``last_error`` (also ``__cause__``) is what the last attempt met.
    """

    def __init__(self, attempts: int, last_error: DeliveryError) -> None:
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(f"gave up after {attempts} attempts{_last(last_error)}")
        self.__cause__ = last_error

    @property
    def status(self) -> int | None:
        """The last HTTP status seen, if the last attempt got a response."""
        return self.last_error.status if isinstance(self.last_error, APIError) else None


class RateLimitExceeded(DeliveryError):
    """The server kept asking to wait (Retry-After) for longer than max_rate_limit_duration.

    ``last_error`` (also ``__cause__``) is the last rate-limiting reply, as an APIError.
    """

    def __init__(self, waited: float, limit: float, last_error: DeliveryError | None = None) -> None:
        self.waited = waited
        self.limit = limit
        self.last_error = last_error
        super().__init__(f"rate limited for {waited:.1f}s; max_rate_limit_duration is {limit:.1f}s{_last(last_error)}")
        self.__cause__ = last_error


class ShutdownDeadline(DeliveryError):
    """The client was closed and its deadline passed before these messages were delivered.

    ``last_error`` (also ``__cause__``) is the last failed attempt to deliver
    them, or None if none failed (they were still queued, or in flight);
    ``reason`` says why the client closed when it was not a plain shutdown
    (the event loop stopped, the interpreter exited).
    """

    def __init__(
        self, last_error: DeliveryError | None = None, *, in_flight: bool = False, reason: str | None = None
    ) -> None:
        self.last_error = last_error
        self.in_flight = in_flight
        self.reason = reason
        if reason is not None:
            text = f"{reason}{_last(last_error)}"
        elif last_error is not None:
            text = f"shutdown deadline passed before delivery{_last(last_error)}"
        elif in_flight:
            text = "shutdown deadline passed while the request was in flight (no reply yet)"
        else:
            text = "shutdown deadline passed before delivery (no attempt had failed)"
        super().__init__(text)
        self.__cause__ = last_error


class QueueFull(DeliveryError):
    """The queue is at max_queue_size messages or max_queue_bytes bytes."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"queue full: {reason}")


class OAuthError(DeliveryError):
    """The OAuth token request failed in a way retrying cannot fix (a configuration error)."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"OAuth token request failed: {code}: {message}" + (f" ({status})" if status else ""))


class ClientClosed(DeliveryError):
    """The client was closed: it accepts no new messages."""

    def __init__(self) -> None:
        super().__init__("client is closed; message not accepted")
