"""Our own keep-alive connections for requests sent without a proxy, and the one exchange over them.

A connection is a stream (``streams.py``: a blocking socket, asyncio or trio)
and the wire that speaks HTTP/1.1 on it (``wire.py``). An exchange is written
once for threads and once for event loops, and is the same in both: write the
head and the body, then feed what is received to the wire until it has the
response. Streams raise only :class:`.failures.StreamFailure`; the wire's
complaints about the response are mapped by the same read context.

- Keep-alive: a connection goes back to an idle pool after an exchange whose
  response allows it; an idle connection is dropped after
  :data:`KEEPALIVE_EXPIRY`, or when it has become readable while idle (the
  server closed it, or broke protocol), before a request is written into it.
- Any failure or cancellation during an exchange closes its connection: a
  half-read response leaves it unusable.
- A header set that cannot be sent is refused before anything is connected.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from typing import Final, Generic, TypeVar

import httpx

from segment_core import Request

from .streams import AsyncStream, SyncStream, asyncio_within, connect_async, connect_sync
from .wire import CheckedHeaders, ParsedResponse, Wire

__all__ = ["KEEPALIVE_EXPIRY", "AsyncConnections", "Destination", "SyncConnections", "asyncio_within"]

# httpx's default keepalive_expiry: servers and load balancers close idle connections after 5-60 s,
# and a request written into a connection the server is closing is lost with it.
KEEPALIVE_EXPIRY: Final = 5.0


class Destination:
    """Where a direct request goes, parsed once from its URL; and the header sets sent to it, checked.

    Connections are pooled by origin (``key``): a token request and a batch to one server share them.

    Args:
        url: the request URL (http or https).
    """

    __slots__ = ("address", "headers", "host", "key", "target", "tls")

    def __init__(self, url: httpx.URL) -> None:
        self.tls = url.scheme == "https"
        # The IDNA-encoded host, as connect() and SNI want it.
        self.address = (url.raw_host.decode("ascii"), url.port or (443 if self.tls else 80))
        self.key = (*self.address, self.tls)
        self.host = url.netloc  # the Host header
        self.target = url.raw_path  # path and query
        self.headers = CheckedHeaders()

    def head(self, wire: Wire, request: Request) -> bytes:
        """The head of ``request`` to this destination, written by the connection's ``wire``."""
        return wire.request_head(request, self.target, self.host, self.headers.fields(request.headers))


_S = TypeVar("_S", SyncStream, AsyncStream)


class _Connection(Generic[_S]):
    """A stream and the HTTP/1.1 state on it."""

    __slots__ = ("idle_since", "stream", "wire")

    def __init__(self, stream: _S, wire: Wire) -> None:
        self.stream: _S = stream
        self.wire = wire
        self.idle_since = 0.0


class _IdlePool(Generic[_S]):
    """Idle connections by destination. Thread-safe; nothing under the lock blocks."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int, bool], list[_Connection[_S]]] = {}
        self._closed = False
        self._lock = threading.Lock()

    def take(self, destination: Destination) -> tuple[_Connection[_S] | None, list[_Connection[_S]]]:
        """An idle connection still fit to use, if any; and the stale ones met on the way, to close."""
        stale: list[_Connection[_S]] = []
        with self._lock:
            idle = self._idle.get(destination.key, [])
            while idle:
                connection = idle.pop()  # the most recently used: the likeliest to be alive
                fresh = time.monotonic() - connection.idle_since < KEEPALIVE_EXPIRY
                if fresh and not connection.stream.closed_while_idle():
                    return connection, stale
                stale.append(connection)
        return None, stale

    def keep(self, destination: Destination, connection: _Connection[_S]) -> bool:
        """Put ``connection`` back; False once the pool is closed (the caller closes it)."""
        connection.idle_since = time.monotonic()
        with self._lock:
            if self._closed:
                return False
            self._idle.setdefault(destination.key, []).append(connection)
            return True

    def close(self) -> list[_Connection[_S]]:
        """Refuse connections from now on; the idle ones, for the caller to close."""
        with self._lock:
            self._closed = True
            idle = [connection for connections in self._idle.values() for connection in connections]
            self._idle.clear()
        return idle


class SyncConnections:
    """Direct requests from any number of threads; each exchange holds one connection.

    Args:
        timeout: seconds for each of connecting, writing and reading.
        ssl_context: called for the TLS context when an https connection is first opened.
    """

    def __init__(self, timeout: float, ssl_context: Callable[[], ssl.SSLContext]) -> None:
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._pool: _IdlePool[SyncStream] = _IdlePool()

    def exchange(self, destination: Destination, request: Request) -> ParsedResponse:
        """Send ``request`` and read its response.

        Raises:
            StreamFailure: the request could not be sent or its response read.
            HeaderValueError: a header cannot be sent (nothing was).
        """
        destination.headers.fields(request.headers)  # a header that cannot be sent fails here
        connection, stale = self._pool.take(destination)
        for old in stale:
            old.stream.close()
        if connection is None:
            context = self._ssl_context() if destination.tls else None
            stream = connect_sync(destination.address, self._timeout, context)
            connection = _Connection(stream, Wire())
        try:
            response = _exchange(connection, destination.head(connection.wire, request), request.body)
        except BaseException:
            connection.stream.close()
            raise
        if not (response.keep_alive and self._pool.keep(destination, connection)):
            connection.stream.close()
        return response

    def close(self) -> None:
        """Close the idle connections; one in use is closed when its exchange ends."""
        for connection in self._pool.close():
            connection.stream.close()


def _exchange(connection: _Connection[SyncStream], head: bytes, body: bytes) -> ParsedResponse:
    """The request out, the response in; the one exchange for threads (see :func:`_async_exchange`)."""
    stream, wire = connection.stream, connection.wire
    stream.send(head, body)
    with stream.operations.reading:  # the wire's complaints about the response
        while True:
            response = wire.feed(stream.receive())
            if response is not None:
                return response


class AsyncConnections:
    """Direct requests on the running event loop (asyncio or trio); starts no thread.

    Args:
        timeout: seconds for each of connecting, writing and reading.
        ssl_context: called for the TLS context when an https connection is first opened.
    """

    def __init__(self, timeout: float, ssl_context: Callable[[], ssl.SSLContext]) -> None:
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._pool: _IdlePool[AsyncStream] = _IdlePool()

    async def exchange(self, destination: Destination, request: Request) -> ParsedResponse:
        """Send ``request`` and read its response (see :meth:`SyncConnections.exchange`)."""
        destination.headers.fields(request.headers)  # a header that cannot be sent fails here
        connection, stale = self._pool.take(destination)
        for old in stale:
            await old.stream.aclose()
        if connection is None:
            context = self._ssl_context() if destination.tls else None
            stream = await connect_async(destination.address, self._timeout, context)
            connection = _Connection(stream, Wire())
        try:
            response = await _async_exchange(connection, destination.head(connection.wire, request), request.body)
        except BaseException:  # cancellation too: a half-read response leaves the connection unusable
            await connection.stream.aclose()
            raise
        if not (response.keep_alive and self._pool.keep(destination, connection)):
            await connection.stream.aclose()
        return response

    async def aclose(self) -> None:
        """Close the idle connections; one in use is closed when its exchange ends."""
        for connection in self._pool.close():
            await connection.stream.aclose()


async def _async_exchange(connection: _Connection[AsyncStream], head: bytes, body: bytes) -> ParsedResponse:
    """The request out, the response in; the one exchange for event loops (see :func:`_exchange`)."""
    stream, wire = connection.stream, connection.wire
    await stream.send(head, body)
    with stream.operations.reading:
        while True:
            response = wire.feed(await stream.receive())
            if response is not None:
                return response
