"""From exceptions to the core's TransportFailure: one map, at the stream boundary.

Every operation a stream performs (connecting, writing the request, reading the
response) runs inside a :class:`Failures` context, as httpcore's backends run
inside ``map_exceptions``. Whatever the backend raises there (an ``OSError``
with its errno, a resolver error, a TLS error, a timeout, trio's wrappers of
those, a response that breaks HTTP/1.1) leaves it as a :class:`StreamFailure`
carrying the :class:`TransportFailure` the engine is told. The kind follows
from the operation and the cause; the detail names the cause in a user's words
and where it happened: ``connection refused (127.0.0.1:49237)``, ``timed out
reading the response after 15 s (api.segment.io:443)``, ``name resolution
failed (no-such-host.invalid)``.

The texts come from this module's own vocabulary, the OS's error names and the
TLS library's reasons, never from the request: :func:`redacted` still removes
the Authorization value and its credentials from a detail before it leaves the
transport, in case a server echoed them into something quoted.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import socket
import ssl
import sys
from collections.abc import Iterable
from types import TracebackType
from typing import Final

from segment_core import Request, TransportFailure, TransportFailureKind

from .wire import HeaderValueError, ProtocolError

__all__ = ["Failures", "Operation", "StreamFailure", "describe", "failure_of", "redacted", "request_secrets"]


class Operation(enum.Enum):
    """What a stream was doing; the value is how a detail says it."""

    CONNECT = "connecting"
    WRITE = "writing the request"
    READ = "reading the response"


class StreamFailure(Exception):
    """A stream operation failed; ``failure`` is what the engine is told."""

    def __init__(self, failure: TransportFailure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


# The OS's own words for these are terse or misleading ("Broken pipe"); the rest use strerror.
_ERRNO_WORDS: Final = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by peer",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection closed by the server (broken pipe)",
    errno.ETIMEDOUT: "connection timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EADDRNOTAVAIL: "address not available",
}
# Timeouts as each backend raises them (asyncio's is TimeoutError itself from Python 3.11).
_TIMEOUTS: Final = (TimeoutError, asyncio.TimeoutError)
# How far along __cause__ / __context__ to look for the error that says what happened (trio wraps
# an OSError or SSLError in a BrokenResourceError; httpx wraps httpcore's error, which wraps an
# OSError without errno, which wraps a group of the OSErrors of each attempt).
_CAUSES_SEARCHED: Final = 8
DETAIL_LENGTH: Final = 200
_REDACTED: Final = "[redacted]"


class Failures:
    """``with failures:`` turns any Exception raised in the block into a :class:`StreamFailure`.

    One instance per stream and operation, made once and entered for every
    operation: it holds no state between uses. A StreamFailure, and anything
    that is not an Exception (cancellation), passes through unchanged.

    Args:
        operation: what the block does.
        where: the peer as a detail names it, ``host:port``.
        timeout: the seconds each operation may take (a timeout's detail says it).
    """

    __slots__ = ("operation", "timeout", "where")

    def __init__(self, operation: Operation, where: str, timeout: float) -> None:
        self.operation = operation
        self.where = where
        self.timeout = timeout

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, StreamFailure):
            raise StreamFailure(describe(exc, self.operation, self.where, self.timeout)) from exc


def describe(exc: BaseException, operation: Operation, where: str, timeout: float) -> TransportFailure:
    """The TransportFailure for ``exc``, raised while ``operation`` was under way with ``where``.

    Args:
        exc: what was raised, or an exception wrapping it (its causes are searched).
        operation: what was being done.
        where: ``host:port`` of the peer.
        timeout: the seconds the operation was allowed.

    Returns:
        CONNECT for anything before the request could be written (the server never saw it),
        TIMEOUT for a write or read that timed out, RESET for a connection that broke or a
        response that broke HTTP/1.1, OTHER for anything else.
    """
    cause = _telling_cause(exc)
    connecting = operation is Operation.CONNECT
    broken = TransportFailureKind.CONNECT if connecting else TransportFailureKind.RESET
    if isinstance(cause, _TIMEOUTS):
        kind = TransportFailureKind.CONNECT if connecting else TransportFailureKind.TIMEOUT
        return _failure(kind, f"timed out {operation.value} after {timeout:g} s ({where})")
    if isinstance(cause, socket.gaierror):
        return _failure(TransportFailureKind.CONNECT, f"name resolution failed ({where.rpartition(':')[0]})")
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or cause.reason or "unknown reason"
        return _failure(TransportFailureKind.CONNECT, f"TLS certificate verify failed: {reason} ({where})")
    if isinstance(cause, ssl.SSLError):
        reason = (cause.reason or cause.strerror or "unknown reason").lower().replace("_", " ")
        what = "TLS handshake failed" if connecting else "TLS error"
        return _failure(broken, f"{what}: {reason} ({where})")
    if isinstance(cause, OSError):
        words = _ERRNO_WORDS.get(cause.errno or 0) or _lower_first(cause.strerror or type(cause).__name__)
        return _failure(broken, f"{words} ({where})")
    if isinstance(cause, ProtocolError):
        return _failure(TransportFailureKind.RESET, f"{cause} ({where})")
    if isinstance(cause, HeaderValueError):  # refused before anything was sent; names the header only
        return _failure(TransportFailureKind.OTHER, str(cause))
    if _is_trio_broken(cause):  # a trio stream broken or closed, with no OS error to say why
        return _failure(broken, f"connection closed while {operation.value} ({where})")
    # Not an error of the network: its text could quote anything, so only its type is named.
    return _failure(TransportFailureKind.OTHER, f"unexpected {type(cause).__name__} while {operation.value} ({where})")


def failure_of(exc: Exception, request: Request) -> TransportFailure:
    """The TransportFailure for an exception that escaped every :class:`Failures` (a bug, or a refused header)."""
    if isinstance(exc, StreamFailure):
        return exc.failure
    if isinstance(exc, HeaderValueError):
        return _failure(TransportFailureKind.OTHER, str(exc))
    return _failure(TransportFailureKind.OTHER, f"unexpected {type(exc).__name__} sending {request.url}")


def request_secrets(request: Request) -> list[str]:
    """The Authorization values of ``request`` and their credentials alone (a text may quote either)."""
    values = []
    for name, value in request.headers:
        if name.lower() in ("authorization", "proxy-authorization"):
            values.append(value)
            values.extend(part for part in value.split(" ", 1)[1:] if len(part) >= 4)
    return values


def redacted(failure: TransportFailure, secrets: Iterable[str]) -> TransportFailure:
    """``failure`` with every one of ``secrets`` replaced in its detail, which is cut to DETAIL_LENGTH."""
    detail = failure.detail
    for secret in secrets:
        if secret and secret in detail:
            detail = detail.replace(secret, _REDACTED)
    if detail is failure.detail and len(detail) <= DETAIL_LENGTH:
        return failure
    return TransportFailure(kind=failure.kind, detail=detail[:DETAIL_LENGTH])


def _failure(kind: TransportFailureKind, detail: str) -> TransportFailure:
    return TransportFailure(kind=kind, detail=detail)


def _telling_cause(exc: BaseException) -> BaseException:
    """The first of ``exc`` and its causes that this module knows how to describe, else ``exc``."""
    cause: BaseException | None = exc
    for _ in range(_CAUSES_SEARCHED):
        if cause is None:
            break
        grouped = _grouped(cause)
        if grouped:  # trio's "all attempts to connect failed": an OSError without errno, from a group of them
            cause = grouped[-1]
            continue
        if type(cause) is OSError and cause.errno is None and (cause.__cause__ or cause.__context__):
            # A wrapper ("all connection attempts failed", from trio or anyio): what it wraps says why.
            cause = cause.__cause__ or cause.__context__
            continue
        if isinstance(cause, (*_TIMEOUTS, OSError, ProtocolError, HeaderValueError)):
            return cause
        cause = cause.__cause__ or cause.__context__
    return exc


def _grouped(exc: BaseException | None) -> tuple[BaseException, ...]:
    """The exceptions of an exception group (the builtin, or the backport trio raises before 3.11), else ()."""
    exceptions = getattr(exc, "exceptions", None)
    if isinstance(exceptions, tuple) and all(isinstance(each, BaseException) for each in exceptions):
        return exceptions
    return ()


def _is_trio_broken(exc: BaseException) -> bool:
    trio = sys.modules.get("trio")  # only a trio stream raises these, and then trio is imported
    return trio is not None and isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
