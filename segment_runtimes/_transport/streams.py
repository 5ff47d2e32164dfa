"""Byte streams to a server, one per backend: a blocking socket (threads), asyncio, trio.

Every stream has the same small interface, as httpcore's ``_backends`` do:
``send(head, body)`` writes a request (the body is never copied to join it to
the head where the backend can avoid it), ``receive()`` returns the next bytes
(``b""`` at the end of the stream), ``closed_while_idle()`` says whether an idle
connection has become unfit to carry a request, and ``close()`` / ``aclose()``.
Each operation runs in its stream's :class:`.failures.Failures` context, so the
only exception that leaves a stream is a :class:`.failures.StreamFailure`.

- TLS: the caller's verifying context (CA bundle, ``SSL_CERT_FILE``), with SNI
  and host name checks on the URL's host.
- Timeouts: connecting (TLS handshake included), each write and each read are
  each bounded by the client's ``timeout``, as httpx bounds them.
- asyncio or trio is told by :func:`sniffio.current_async_library`, when a
  connection is opened. An IP address host is connected to without the
  resolver, so neither starts a thread for it.
- trio over plain TCP runs on the bare non-blocking socket: trio's stream and
  socket wrappers yield to the scheduler after every send and receive (a whole
  loop turn each) and cost most of an exchange's Python; here an operation that
  cannot complete at once waits with ``wait_writable``/``wait_readable``, the
  one checkpoint it needs, and only such a wait gets a cancel scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

import sniffio

from segment_core import TransportFailure, TransportFailureKind

from .failures import Failures, Operation, StreamFailure

if TYPE_CHECKING:
    import trio

__all__ = [
    "RECEIVE_BYTES",
    "AsyncStream",
    "Operations",
    "SyncStream",
    "asyncio_within",
    "connect_async",
    "connect_sync",
]

RECEIVE_BYTES: Final = 64 * 1024

_T = TypeVar("_T")
Address = tuple[str, int]


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


def _where(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Operations:
    """A stream's three :class:`.failures.Failures` contexts (connecting, writing, reading), made once."""

    __slots__ = ("connecting", "reading", "writing")

    def __init__(self, address: Address, timeout: float) -> None:
        where = _where(address)
        self.connecting = Failures(Operation.CONNECT, where, timeout)
        self.writing = Failures(Operation.WRITE, where, timeout)
        self.reading = Failures(Operation.READ, where, timeout)


def _send_some(sock: socket.socket, buffers: list[memoryview]) -> None:
    """One system call for as much of ``buffers`` as the kernel takes; the rest stays in ``buffers``."""
    sent = sock.sendmsg(buffers)
    while sent:
        if sent >= len(buffers[0]):
            sent -= len(buffers.pop(0))
        else:
            buffers[0] = buffers[0][sent:]
            sent = 0


def _unsent(head: bytes, body: bytes) -> list[memoryview]:
    """Head and body as the buffers for ``_send_some``: a 90 KB batch is never copied to join them."""
    return [memoryview(part) for part in (head, body) if part]


# Threads ---------------------------------------------------------------------------------------


class SyncStream:
    """A blocking socket (plain or TLS) whose timeout bounds each write and read."""

    __slots__ = ("operations", "sock")

    def __init__(self, sock: socket.socket, operations: Operations) -> None:
        self.sock = sock
        self.operations = operations

    def send(self, head: bytes, body: bytes) -> None:
        """Write ``head`` then ``body``: one system call where the kernel takes them both."""
        sock = self.sock
        with self.operations.writing:
            if isinstance(sock, ssl.SSLSocket):
                sock.sendall(head + body)  # SSLSocket has no sendmsg
            else:
                buffers = _unsent(head, body)
                while buffers:
                    _send_some(sock, buffers)

    def receive(self) -> bytes:
        """The next bytes received; ``b""`` once the server has closed the connection."""
        with self.operations.reading:
            return self.sock.recv(RECEIVE_BYTES)

    def closed_while_idle(self) -> bool:
        """Whether the server has closed (or written into) this connection since its last exchange."""
        return _is_readable(self.sock)

    def close(self) -> None:
        """Release the socket; never raises."""
        with contextlib.suppress(OSError):  # nothing left to release
            self.sock.close()


def connect_sync(address: Address, timeout: float, ssl_context: ssl.SSLContext | None) -> SyncStream:
    """A connected stream to ``address`` (IDNA host, port), over TLS when ``ssl_context`` is given.

    Raises:
        StreamFailure: connecting failed (refused, unresolvable, timed out, certificate refused, ...).
    """
    operations = Operations(address, timeout)
    with operations.connecting:
        sock = socket.create_connection(address, timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a body's last segment goes at once
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock, server_hostname=address[0])
        except BaseException:
            sock.close()
            raise
    return SyncStream(sock, operations)


# asyncio and trio --------------------------------------------------------------------------------


class AsyncStream(Protocol):
    """What a connection of either event loop offers (see the module's docstring)."""

    operations: Operations

    async def send(self, head: bytes, body: bytes) -> None: ...

    async def receive(self) -> bytes: ...

    def closed_while_idle(self) -> bool: ...

    async def aclose(self) -> None: ...


async def connect_async(address: Address, timeout: float, ssl_context: ssl.SSLContext | None) -> AsyncStream:
    """A connected stream on the running event loop, asyncio or trio (see :func:`connect_sync`).

    Raises:
        StreamFailure: connecting failed, or the running event loop is neither asyncio nor trio.
    """
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = "no event loop"
    if library == "asyncio":
        return await _AsyncioStream.connect(address, timeout, ssl_context)
    if library == "trio":
        return await _connect_trio(address, timeout, ssl_context)
    unsupported = f"runs under asyncio or trio, not {library}"
    raise StreamFailure(TransportFailure(kind=TransportFailureKind.OTHER, detail=unsupported))


if sys.version_info >= (3, 11):

    async def asyncio_within(timeout: float | None, awaitable: Awaitable[_T]) -> _T:
        """``await awaitable`` for at most ``timeout`` seconds (None: no limit); asyncio.TimeoutError after."""
        async with asyncio.timeout(timeout):  # no extra task, unlike wait_for before 3.12
            return await awaitable

else:  # pragma: no cover - exercised on Python 3.10 only

    async def asyncio_within(timeout: float | None, awaitable: Awaitable[_T]) -> _T:
        """``await awaitable`` for at most ``timeout`` seconds (None: no limit); asyncio.TimeoutError after."""
        return await asyncio.wait_for(awaitable, timeout)


class _AsyncioStream:
    """asyncio's streams; TLS is the event loop's."""

    __slots__ = ("operations", "reader", "timeout", "writer")

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, operations: Operations, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.operations = operations
        self.timeout = timeout

    @classmethod
    async def connect(cls, address: Address, timeout: float, ssl_context: ssl.SSLContext | None) -> _AsyncioStream:
        host, port = address
        operations = Operations(address, timeout)
        with operations.connecting:
            # An IP address is used as it is: no resolver, so no executor thread (TCP_NODELAY is asyncio's default).
            server_hostname = host if ssl_context is not None else None
            connecting = asyncio.open_connection(host, port, ssl=ssl_context, server_hostname=server_hostname)
            reader, writer = await asyncio_within(timeout, connecting)
        return cls(reader, writer, operations, timeout)

    async def send(self, head: bytes, body: bytes) -> None:
        with self.operations.writing:
            # One write: the transport sends at once what the socket takes and buffers the rest.
            self.writer.write(head + body)
            if self.writer.transport.get_write_buffer_size():  # only then is there anything to wait for
                await asyncio_within(self.timeout, self.writer.drain())

    async def receive(self) -> bytes:
        with self.operations.reading:
            return await asyncio_within(self.timeout, self.reader.read(RECEIVE_BYTES))

    def closed_while_idle(self) -> bool:
        if self.writer.is_closing() or self.reader.at_eof():
            return True
        sock: _HasFileno | None = self.writer.get_extra_info("socket")
        return _is_readable(sock)

    async def aclose(self) -> None:
        # No wait_closed(): a TLS close_notify to a silent server must not hold the worker.
        self.writer.close()


async def _connect_trio(address: Address, timeout: float, ssl_context: ssl.SSLContext | None) -> AsyncStream:
    import trio  # noqa: PLC0415 - only under trio: threads and asyncio do not pay for importing it

    host, port = address
    operations = Operations(address, timeout)
    with operations.connecting:
        with trio.move_on_after(timeout):
            tcp = await trio.open_tcp_stream(host, port)  # an IP address skips the resolver thread
            if ssl_context is None:
                # Plain TCP runs on the bare socket (the stream has set TCP_NODELAY on it).
                return _TrioSocketStream(socket.socket(fileno=tcp.socket.detach()), operations, timeout)
            tls = trio.SSLStream(tcp, ssl_context, server_hostname=host)
            try:
                await tls.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(tcp)
                raise
            return _TrioTLSStream(tls, tcp.socket, operations, timeout)
        raise TimeoutError  # the scope's deadline passed


class _TrioTLSStream:
    """TLS under trio: trio.SSLStream over the TCP stream."""

    __slots__ = ("operations", "sock", "stream", "timeout")

    def __init__(
        self, stream: trio.SSLStream[trio.SocketStream], sock: _HasFileno, operations: Operations, timeout: float
    ) -> None:
        self.stream = stream
        self.sock = sock
        self.operations = operations
        self.timeout = timeout

    async def send(self, head: bytes, body: bytes) -> None:
        import trio  # noqa: PLC0415

        with self.operations.writing:
            # A cancel scope with a deadline rather than trio.fail_after: the same timeout, without a
            # generator-based context manager around every send and receive.
            with trio.CancelScope(deadline=trio.current_time() + self.timeout) as scope:
                await self.stream.send_all(head + body)
            if scope.cancelled_caught:
                raise TimeoutError

    async def receive(self) -> bytes:
        import trio  # noqa: PLC0415

        with self.operations.reading:
            with trio.CancelScope(deadline=trio.current_time() + self.timeout):
                return bytes(await self.stream.receive_some(RECEIVE_BYTES))
            raise TimeoutError  # only reached when the scope's deadline passed

    def closed_while_idle(self) -> bool:
        return _is_readable(self.sock)

    async def aclose(self) -> None:
        import trio  # noqa: PLC0415

        await trio.aclose_forcefully(self.stream)  # no close_notify wait on a silent server


async def _trio_wait(wait: Callable[[socket.socket], Awaitable[None]], sock: socket.socket, deadline: float) -> None:
    """``await wait(sock)`` (trio's wait_readable or wait_writable) until ``deadline``; TimeoutError after."""
    import trio  # noqa: PLC0415

    with trio.CancelScope(deadline=deadline) as scope:
        await wait(sock)
    if scope.cancelled_caught:
        raise TimeoutError


class _TrioSocketStream:
    """Plain TCP under trio on the bare non-blocking socket (see the module's docstring)."""

    __slots__ = ("operations", "sock", "timeout")

    def __init__(self, sock: socket.socket, operations: Operations, timeout: float) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.operations = operations
        self.timeout = timeout

    async def send(self, head: bytes, body: bytes) -> None:
        import trio  # noqa: PLC0415

        sock = self.sock
        with self.operations.writing:
            deadline = trio.current_time() + self.timeout  # for the whole write
            unsent = _unsent(head, body)
            while unsent:
                try:
                    _send_some(sock, unsent)
                except BlockingIOError:
                    await _trio_wait(trio.lowlevel.wait_writable, sock, deadline)

    async def receive(self) -> bytes:
        sock = self.sock
        with self.operations.reading:
            try:
                return sock.recv(RECEIVE_BYTES)
            except BlockingIOError:
                pass
            import trio  # noqa: PLC0415

            deadline = trio.current_time() + self.timeout
            while True:
                await _trio_wait(trio.lowlevel.wait_readable, sock, deadline)
                try:
                    return sock.recv(RECEIVE_BYTES)
                except BlockingIOError:
                    continue

    def closed_while_idle(self) -> bool:
        return _is_readable(self.sock)

    async def aclose(self) -> None:
        import trio  # noqa: PLC0415

        trio.lowlevel.notify_closing(self.sock)  # wakes any task still waiting on it
        self.sock.close()
