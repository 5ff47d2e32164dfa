"""Our own keep-alive connections for requests sent without a proxy: threads, asyncio and trio.

Each connection carries one exchange at a time (the request head and body out,
then the whole response in, parsed by :class:`._wire.ResponseParser`) and waits
in an idle pool between exchanges. Only moving bytes differs between the
runtimes; framing, keep-alive decisions and limits are the sans-IO parser's.

- TLS: the caller's verifying context (CA bundle, ``SSL_CERT_FILE``), with SNI
  and host name checks on the URL's host.
- Keep-alive: an idle connection is dropped after :data:`KEEPALIVE_EXPIRY`, or
  when it has become readable while idle (the server closed it, or broke
  protocol), before a request is written into it.
- Timeouts: each of connecting (TLS handshake included), writing and each read
  is bounded by the client's ``timeout``, as httpx bounds them.
- Failures are raised as httpx's exception classes (``ConnectError``,
  ``ReadTimeout``, ``RemoteProtocolError``, ...) so that ``_http.transport_failure``
  remains the one place they become the core's ``TransportFailure``.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Generic, Protocol, TypeVar

import httpx

from segment_core import Request

from .wire import ParsedResponse, ProtocolError, ResponseParser, header_lines, request_head_with_lines

if TYPE_CHECKING:
    import trio

__all__ = ["KEEPALIVE_EXPIRY", "AsyncConnections", "Destination", "SyncConnections", "asyncio_within"]

# httpx's default keepalive_expiry: servers and load balancers close idle connections after 5-60 s,
# and a request written into a connection the server is closing is lost with it.
KEEPALIVE_EXPIRY: Final = 5.0
_RECEIVE_BYTES: Final = 64 * 1024

_T = TypeVar("_T")


class Destination:
    """Where a direct request goes, parsed once from its URL; and the heads of requests to it."""

    __slots__ = ("_header_lines", "address", "host", "target", "tls")

    # A client sends a handful of header sets (Basic auth, or an OAuth token now and then; with
    # and without X-Retry-Count): past this many, the cache starts again.
    _MAX_HEADER_SETS = 16

    def __init__(self, url: httpx.URL) -> None:
        self.tls = url.scheme == "https"
        # The IDNA-encoded host, as connect() and SNI want it.
        self.address = (url.raw_host.decode("ascii"), url.port or (443 if self.tls else 80))
        self.host = url.netloc  # the Host header
        self.target = url.raw_path  # path and query
        # Checked header lines by header set: every batch request carries the same few headers,
        # and checking and encoding them was a fifth of an exchange's Python.
        self._header_lines: dict[tuple[tuple[str, str], ...], bytes] = {}

    @property
    def key(self) -> tuple[str, int, bool]:
        return (*self.address, self.tls)

    def head(self, request: Request) -> bytes:
        """The head of ``request`` to this destination (see ``_wire.request_head``)."""
        headers = request.headers
        lines = self._header_lines.get(headers)
        if lines is None:
            lines = header_lines(headers)
            if len(self._header_lines) >= self._MAX_HEADER_SETS:
                self._header_lines.clear()
            self._header_lines[headers] = lines
        return request_head_with_lines(request.method, self.target, self.host, lines, len(request.body))


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


def _is_readable(sock: _HasFileno | None) -> bool:
    """Whether an idle connection has something to read: the server closed it (or broke protocol)."""
    if sock is None or sock.fileno() < 0:
        return True
    if hasattr(select, "poll"):  # select.select cannot watch a descriptor above 1023
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


def _cause_text(exc: BaseException) -> str:
    """The first non-empty text along ``exc``'s causes (trio wraps an OSError or SSLError in an empty error)."""
    cause: BaseException | None = exc
    while cause is not None:
        if str(cause):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


class _Pooled(Protocol):
    idle_since: float

    def raw_socket(self) -> _HasFileno | None: ...


_C = TypeVar("_C", bound=_Pooled)


class _IdlePool(Generic[_C]):
    """Idle connections by destination. Thread-safe; nothing under the lock blocks."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int, bool], list[_C]] = {}
        self._closed = False
        self._lock = threading.Lock()

    def take(self, destination: Destination) -> tuple[_C | None, list[_C]]:
        """An idle connection still fit to use, if any; and the stale ones met on the way, to close."""
        stale: list[_C] = []
        with self._lock:
            idle = self._idle.get(destination.key, [])
            while idle:
                connection = idle.pop()  # the most recently used: the likeliest to be alive
                fresh = time.monotonic() - connection.idle_since < KEEPALIVE_EXPIRY
                if fresh and not _is_readable(connection.raw_socket()):
                    return connection, stale
                stale.append(connection)
        return None, stale

    def keep(self, destination: Destination, connection: _C) -> bool:
        """Put ``connection`` back; False once the pool is closed (the caller closes it)."""
        connection.idle_since = time.monotonic()
        with self._lock:
            if self._closed:
                return False
            self._idle.setdefault(destination.key, []).append(connection)
            return True

    def close(self) -> list[_C]:
        """Refuse connections from now on; the idle ones, for the caller to close."""
        with self._lock:
            self._closed = True
            idle = [connection for connections in self._idle.values() for connection in connections]
            self._idle.clear()
        return idle


def _read_response(parser: ResponseParser, received: bytes) -> ParsedResponse | None:
    """Feed ``received`` (b"" at the end of the stream); the response once complete."""
    try:
        return parser.feed_eof() if not received else parser.feed(received)
    except ProtocolError as exc:
        raise httpx.RemoteProtocolError(str(exc)) from None


# Threads ---------------------------------------------------------------------------------------


class _SyncConnection:
    """A blocking socket (TLS or plain) whose timeout bounds each connect, write and read."""

    __slots__ = ("idle_since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.idle_since = 0.0

    def raw_socket(self) -> _HasFileno | None:
        return self.sock

    @classmethod
    def open(cls, destination: Destination, timeout: float, ssl_context: ssl.SSLContext | None) -> _SyncConnection:
        try:
            sock = socket.create_connection(destination.address, timeout=timeout)
        except TimeoutError:
            raise httpx.ConnectTimeout("timed out connecting") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a body's last segment goes at once
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock, server_hostname=destination.address[0])
        except TimeoutError:
            sock.close()
            raise httpx.ConnectTimeout("timed out in the TLS handshake") from None
        except OSError as exc:  # ssl.SSLError included: a certificate that does not verify
            sock.close()
            raise httpx.ConnectError(str(exc)) from None
        return cls(sock)

    def exchange(self, head: bytes, body: bytes, *, head_request: bool) -> ParsedResponse:
        sock = self.sock
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.sendall(head + body)  # SSLSocket has no sendmsg
            else:
                _send_both(sock, head, body)
        except TimeoutError:
            raise httpx.WriteTimeout("timed out writing the request") from None
        except OSError as exc:
            raise httpx.WriteError(str(exc)) from None
        parser = ResponseParser(head_request=head_request)
        while True:
            try:
                received = sock.recv(_RECEIVE_BYTES)
            except TimeoutError:
                raise httpx.ReadTimeout("timed out reading the response") from None
            except OSError as exc:
                raise httpx.ReadError(str(exc)) from None
            response = _read_response(parser, received)
            if response is not None:
                return response

    def close(self) -> None:
        with contextlib.suppress(OSError):  # nothing left to release
            self.sock.close()


def _unsent(head: bytes, body: bytes) -> list[memoryview]:
    """Head and body as the buffers to hand to ``_send_some``: a 90 KB batch is never copied to join them."""
    return [memoryview(part) for part in (head, body) if part]


def _send_some(sock: socket.socket, buffers: list[memoryview]) -> None:
    """One system call for as much of ``buffers`` as the kernel takes; the rest stays in ``buffers``."""
    sent = sock.sendmsg(buffers)
    while sent:
        if sent >= len(buffers[0]):
            sent -= len(buffers.pop(0))
        else:
            buffers[0] = buffers[0][sent:]
            sent = 0


def _send_both(sock: socket.socket, head: bytes, body: bytes) -> None:
    """Write head and body, in one system call where the kernel takes it all."""
    buffers = _unsent(head, body)
    while buffers:
        _send_some(sock, buffers)


class SyncConnections:
    """Direct requests from any number of threads; each exchange holds one connection.

    Args:
        timeout: seconds for each of connecting, writing and reading.
        ssl_context: called for the TLS context when an https connection is first opened.
    """

    def __init__(self, timeout: float, ssl_context: Callable[[], ssl.SSLContext]) -> None:
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._pool: _IdlePool[_SyncConnection] = _IdlePool()

    def exchange(self, destination: Destination, request: Request) -> ParsedResponse:
        head = destination.head(request)
        connection, stale = self._pool.take(destination)
        for old in stale:
            old.close()
        if connection is None:
            context = self._ssl_context() if destination.tls else None
            connection = _SyncConnection.open(destination, self._timeout, context)
        try:
            response = connection.exchange(head, request.body, head_request=request.method == "HEAD")
        except BaseException:
            connection.close()
            raise
        if not (response.keep_alive and self._pool.keep(destination, connection)):
            connection.close()
        return response

    def close(self) -> None:
        """Close the idle connections; one in use is closed when its exchange ends."""
        for connection in self._pool.close():
            connection.close()


# asyncio and trio --------------------------------------------------------------------------------


class _AsyncConnection(Protocol):
    idle_since: float

    def raw_socket(self) -> _HasFileno | None: ...

    async def exchange(self, head: bytes, body: bytes, *, head_request: bool) -> ParsedResponse: ...

    async def aclose(self) -> None: ...


if sys.version_info >= (3, 11):

    async def asyncio_within(timeout: float | None, awaitable: Awaitable[_T]) -> _T:
        """``await awaitable`` for at most ``timeout`` seconds (None: no limit); asyncio.TimeoutError after."""
        async with asyncio.timeout(timeout):  # no extra task, unlike wait_for before 3.12
            return await awaitable

else:  # pragma: no cover - exercised on Python 3.10 only

    async def asyncio_within(timeout: float | None, awaitable: Awaitable[_T]) -> _T:
        """``await awaitable`` for at most ``timeout`` seconds (None: no limit); asyncio.TimeoutError after."""
        return await asyncio.wait_for(awaitable, timeout)


class _AsyncioConnection:
    """asyncio streams; TLS is the event loop's."""

    __slots__ = ("idle_since", "reader", "timeout", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.idle_since = 0.0

    def raw_socket(self) -> _HasFileno | None:
        if self.writer.is_closing() or self.reader.at_eof():
            return None  # closed: not fit to use
        sock: _HasFileno | None = self.writer.get_extra_info("socket")
        return sock

    @classmethod
    async def open(
        cls, destination: Destination, timeout: float, ssl_context: ssl.SSLContext | None
    ) -> _AsyncioConnection:
        host, port = destination.address
        try:
            # An IP address is used as it is: no resolver, so no executor thread (TCP_NODELAY is asyncio's default).
            reader, writer = await asyncio_within(
                timeout,
                asyncio.open_connection(
                    host, port, ssl=ssl_context, server_hostname=host if ssl_context is not None else None
                ),
            )
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout("timed out connecting") from None
        except OSError as exc:  # ssl.SSLError included
            raise httpx.ConnectError(str(exc)) from None
        return cls(reader, writer, timeout)

    async def exchange(self, head: bytes, body: bytes, *, head_request: bool) -> ParsedResponse:
        try:
            # One write: the transport sends at once what the socket takes and buffers the rest.
            self.writer.write(head + body)
            if self.writer.transport.get_write_buffer_size():  # only then is there anything to wait for
                await asyncio_within(self.timeout, self.writer.drain())
        except asyncio.TimeoutError:
            raise httpx.WriteTimeout("timed out writing the request") from None
        except OSError as exc:
            raise httpx.WriteError(str(exc)) from None
        parser = ResponseParser(head_request=head_request)
        while True:
            try:
                received = await asyncio_within(self.timeout, self.reader.read(_RECEIVE_BYTES))
            except asyncio.TimeoutError:
                raise httpx.ReadTimeout("timed out reading the response") from None
            except OSError as exc:
                raise httpx.ReadError(str(exc)) from None
            response = _read_response(parser, received)
            if response is not None:
                return response

    async def aclose(self) -> None:
        # No wait_closed(): a TLS close_notify to a silent server must not hold the worker.
        self.writer.close()


class _TrioConnection:
    """TLS under trio: trio.SSLStream over the TCP stream (plain TCP is a _TrioPlainConnection)."""

    __slots__ = ("idle_since", "sock", "stream", "timeout")

    def __init__(self, stream: trio.abc.Stream, sock: _HasFileno, timeout: float) -> None:
        self.stream = stream
        self.sock = sock
        self.timeout = timeout
        self.idle_since = 0.0

    def raw_socket(self) -> _HasFileno | None:
        return self.sock

    @classmethod
    async def open(
        cls, destination: Destination, timeout: float, ssl_context: ssl.SSLContext | None
    ) -> _TrioConnection | _TrioPlainConnection:
        import trio  # noqa: PLC0415 - only under trio: threads and asyncio do not pay for importing it

        host, port = destination.address
        try:
            with trio.fail_after(timeout):
                tcp = await trio.open_tcp_stream(host, port)  # an IP address skips the resolver thread
                stream: trio.abc.Stream = tcp
                if ssl_context is not None:
                    tls = trio.SSLStream(tcp, ssl_context, server_hostname=host)
                    try:
                        await tls.do_handshake()
                    except BaseException:
                        await trio.aclose_forcefully(tcp)
                        raise
                    stream = tls
        except trio.TooSlowError:
            raise httpx.ConnectTimeout("timed out connecting") from None
        except (OSError, trio.BrokenResourceError) as exc:
            raise httpx.ConnectError(_cause_text(exc)) from None
        if ssl_context is None:
            # Plain TCP runs on the bare socket (the stream has set TCP_NODELAY on it).
            return _TrioPlainConnection(socket.socket(fileno=tcp.socket.detach()), timeout)
        return cls(stream, tcp.socket, timeout)

    async def exchange(self, head: bytes, body: bytes, *, head_request: bool) -> ParsedResponse:
        import trio  # noqa: PLC0415

        # Cancel scopes with a deadline rather than trio.fail_after: the same timeout, without a
        # generator-based context manager around every send and receive.
        try:
            with trio.CancelScope(deadline=trio.current_time() + self.timeout) as scope:
                await self.stream.send_all(head + body)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise httpx.WriteError(_cause_text(exc)) from None
        if scope.cancelled_caught:
            raise httpx.WriteTimeout("timed out writing the request")
        parser = ResponseParser(head_request=head_request)
        while True:
            try:
                with trio.CancelScope(deadline=trio.current_time() + self.timeout) as scope:
                    received = await self.stream.receive_some(_RECEIVE_BYTES)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise httpx.ReadError(_cause_text(exc)) from None
            if scope.cancelled_caught:
                raise httpx.ReadTimeout("timed out reading the response")
            response = _read_response(parser, bytes(received))
            if response is not None:
                return response

    async def aclose(self) -> None:
        import trio  # noqa: PLC0415

        await trio.aclose_forcefully(self.stream)  # no close_notify wait on a silent server


async def _trio_wait(wait: Callable[[socket.socket], Awaitable[None]], sock: socket.socket, deadline: float) -> bool:
    """``await wait(sock)`` (trio's wait_readable or wait_writable) until ``deadline``; False if it passed first."""
    import trio  # noqa: PLC0415

    with trio.CancelScope(deadline=deadline) as scope:
        await wait(sock)
    return not scope.cancelled_caught


class _TrioPlainConnection:
    """Plain TCP under trio on the bare non-blocking socket.

    trio's stream and socket wrappers yield to the scheduler after every send and receive (a
    whole loop turn each) and cost most of an exchange's Python; here a send or receive that
    cannot go on at once waits with wait_writable/wait_readable, the one checkpoint it needs.
    Only such a wait gets a cancel scope (entering and leaving one is some 25 Python calls):
    a batch usually fits the socket's buffer, so its send needs none.
    """

    __slots__ = ("idle_since", "sock", "timeout")

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.timeout = timeout
        self.idle_since = 0.0

    def raw_socket(self) -> _HasFileno | None:
        return self.sock

    async def exchange(self, head: bytes, body: bytes, *, head_request: bool) -> ParsedResponse:
        import trio  # noqa: PLC0415

        sock = self.sock
        deadline = trio.current_time() + self.timeout  # for the whole write
        unsent = _unsent(head, body)
        try:
            while unsent:
                try:
                    _send_some(sock, unsent)
                except BlockingIOError:
                    if not await _trio_wait(trio.lowlevel.wait_writable, sock, deadline):
                        raise httpx.WriteTimeout("timed out writing the request") from None
        except OSError as exc:
            raise httpx.WriteError(_cause_text(exc)) from None
        parser = ResponseParser(head_request=head_request)
        while True:
            deadline = trio.current_time() + self.timeout  # for each read
            try:
                while True:
                    try:
                        received = sock.recv(_RECEIVE_BYTES)
                        break
                    except BlockingIOError:
                        if not await _trio_wait(trio.lowlevel.wait_readable, sock, deadline):
                            raise httpx.ReadTimeout("timed out reading the response") from None
            except OSError as exc:
                raise httpx.ReadError(_cause_text(exc)) from None
            response = _read_response(parser, received)
            if response is not None:
                return response

    async def aclose(self) -> None:
        import trio  # noqa: PLC0415

        trio.lowlevel.notify_closing(self.sock)  # wakes any task still waiting on it
        self.sock.close()


class AsyncConnections:
    """Direct requests on the running event loop (asyncio or trio, found at first use); starts no thread.

    Args:
        timeout: seconds for each of connecting, writing and reading.
        ssl_context: called for the TLS context when an https connection is first opened.
    """

    def __init__(self, timeout: float, ssl_context: Callable[[], ssl.SSLContext]) -> None:
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._pool: _IdlePool[_AsyncConnection] = _IdlePool()
        self._open: Callable[[Destination, float, ssl.SSLContext | None], Awaitable[_AsyncConnection]] | None = None

    def _opener(self) -> Callable[[Destination, float, ssl.SSLContext | None], Awaitable[_AsyncConnection]]:
        if self._open is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # no asyncio loop: the runtimes run only on asyncio and trio
                self._open = _TrioConnection.open
            else:
                self._open = _AsyncioConnection.open
        return self._open

    async def exchange(self, destination: Destination, request: Request) -> ParsedResponse:
        head = destination.head(request)
        connection, stale = self._pool.take(destination)
        for old in stale:
            await old.aclose()
        if connection is None:
            context = self._ssl_context() if destination.tls else None
            connection = await self._opener()(destination, self._timeout, context)
        try:
            response = await connection.exchange(head, request.body, head_request=request.method == "HEAD")
        except BaseException:  # cancellation too: a half-read response leaves the connection unusable
            await connection.aclose()
            raise
        if not (response.keep_alive and self._pool.keep(destination, connection)):
            await connection.aclose()
        return response

    async def aclose(self) -> None:
        """Close the idle connections; one in use is closed when its exchange ends."""
        for connection in self._pool.close():
            await connection.aclose()
