"""The collector's event loop: one thread, ``selectors`` over non-blocking sockets, h11 per socket.

Strategy: the listening socket, a wake-up socketpair and every client socket share one selector.
Each client socket has an ``h11.Connection`` (server role) and an output buffer. Bytes read are
fed to h11; a complete request (head, body up to the size limit, end of message) is handed to the
:class:`Application`, whose answer is a :class:`Reply` to send, a :class:`Drop` (close at once) or
a :class:`Delay` (a timer in this loop, never a sleep), or a :class:`Stream` (a response that
stays open, such as the viewer's server-sent events, filled as its reader keeps up). One request
per connection is in progress at a time; pipelined requests wait in h11's buffer.

Memory per connection is bounded by construction: a socket is read only while nothing waits to be
written to it and no delayed reply is pending, and each read (64 KiB) is turned into h11 events
before the next, so h11 never holds more than one read plus an incomplete head. A client that
pipelines requests and never reads the replies fills its own socket buffers, then stalls. A
stream's buffer is refilled only below a low-water mark; its source drops a reader that falls
too far behind.

At the file-descriptor limit, ``accept`` fails (EMFILE): the listener is then left out of the
selector for a short back-off instead of waking the loop at once, forever, and the failures are
logged as one line per few seconds with their count.

Every connection has one deadline: reading a request (``read_timeout`` from its first byte, or
from going idle), writing a reply, or lingering after a close. A request cut off by the deadline
gets 408; an idle keep-alive connection is just closed. After replying with ``Connection: close``
the socket is half-closed and drained for a moment ("lingering close") so that the client reads
the reply instead of a reset, even when it is still sending a body we refused (413).

Hostile input never escapes one connection: h11 protocol errors become 400 (or h11's hint) and a
close; an exception from the application is logged and costs only its connection.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import selectors
import socket
import time
from collections.abc import Callable
from email.utils import formatdate
from enum import Enum
from http import HTTPStatus
from typing import Final, Protocol

from segment_runtimes._extras import missing_extra

from ._protocol import Action, Delay, Drop, HttpRequest, Reply, Stream

try:
    import h11
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by test_extras
    raise ImportError(missing_extra("collector", "the collector's server")) from exc

__all__ = ["Application", "Server"]

log = logging.getLogger("segment_runtimes.collector")

_RECV_SIZE: Final = 65536
# How long a closing connection is drained so the client sees our reply, not a reset.
LINGER_SECONDS: Final = 2.0
# Bytes drained while lingering before giving up: a bit more than one refused body.
_LINGER_MAX_BYTES: Final = 4 * 1024 * 1024
# Connections served at once; more are accepted and closed at once (protects file descriptors).
MAX_CONNECTIONS: Final = 1024
# The kernel's send buffer per connection. Replies are small; a fixed size (instead of Linux's
# autotuning, up to 4 MiB) bounds the kernel memory a client that never reads can tie up, and how
# many of its pipelined requests are served before it must read.
_SEND_BUFFER_BYTES: Final = 128 * 1024
# Largest request head (request line + headers); h11's default is 16 KiB as well.
MAX_HEAD_BYTES: Final = 16 * 1024
# How long accepting pauses after accept() fails (EMFILE at the descriptor limit, ...); connections
# wait in the kernel's listen backlog meanwhile.
ACCEPT_BACKOFF_SECONDS: Final = 0.5
# At most one log line per this many seconds about failed accepts (it says how many failed).
ACCEPT_LOG_INTERVAL: Final = 5.0
# A stream's buffer is refilled when it holds less than this, with about this much again.
STREAM_LOW_WATER: Final = 64 * 1024
# Bytes a stream's reader may send us (it should send none) before it is disconnected.
_STREAM_MAX_INPUT: Final = 64 * 1024


class Application(Protocol):
    """What the loop calls. Every call happens on the loop thread."""

    def handle(self, request: HttpRequest, *, faults: bool) -> Action:
        """Answer a complete request; ``faults`` is False when replaying a delayed one."""

    def reject(self, status: int, code: str, message: str, *, method: str = "", path: str = "") -> Reply:
        """A reply for an error the loop found itself (413 by Content-Length, 400, 408).

        ``method`` and ``path`` are the request's when its head has arrived, else empty.
        """

    def connection_opened(self) -> None:
        """Count an accepted connection."""


class _State(Enum):
    READING = "reading"  # reading a request, or writing its reply
    DELAYED = "delayed"  # a Delay timer holds the request
    STREAMING = "streaming"  # writing a Stream's body until either side closes
    LINGERING = "lingering"  # write side shut, draining until EOF or the deadline


class _Connection:
    __slots__ = (
        "advancing",
        "body",
        "closed",
        "deadline",
        "drained",
        "eof",
        "h11",
        "in_request",
        "mask",
        "out",
        "request",
        "sock",
        "state",
        "stream",
    )

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.state = _State.READING
        self.out = bytearray()
        self.body = bytearray()
        self.request: h11.Request | None = None
        self.deadline: float | None = deadline
        self.in_request = False  # a request has started arriving and is not answered yet
        self.advancing = False  # _advance is on the stack: do not re-enter it
        self.eof = False
        self.closed = False
        self.drained = 0  # bytes read and thrown away (lingering, or from a stream's reader)
        self.mask = 0  # the selector events registered
        self.stream: Stream | None = None

    def held_bytes(self) -> int:
        """Bytes this connection holds: unparsed input, a request body, output not yet sent."""
        return len(self.out) + len(self.body) + len(self.h11.trailing_data[0])


class Server:
    """A loopback HTTP/1.1 server; :meth:`bind` in the caller's thread, :meth:`serve` in the loop's.

    Args:
        app: answers requests.
        host, port: where to listen (port 0 picks a free one).
        read_timeout: seconds a request may take to arrive (and a reply to be read) before the
            connection is closed; also the idle keep-alive timeout.
        max_body: request bodies larger than this get 413 (by Content-Length, before reading).
    """

    def __init__(
        self,
        app: Application,
        host: str,
        port: int,
        *,
        read_timeout: float,
        max_body: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._read_timeout = read_timeout
        self._max_body = max_body
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._connections: set[_Connection] = set()
        self._streams: set[_Connection] = set()
        self._timers: list[tuple[float, int, _Connection]] = []
        self._sequence = itertools.count()
        self._stopping = False
        self._accept_resumes_at: float | None = None  # set while accepting is paused
        self._accept_failures = 0  # failed accepts not yet logged
        self._accept_logged_at = -ACCEPT_LOG_INTERVAL
        #: The most bytes one connection has held at once (see ``_Connection.held_bytes``).
        self.peak_connection_bytes = 0

    def bind(self) -> int:
        """Bind and listen; returns the port. Raises OSError if the address is unavailable."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.create_server((self._host, self._port), family=family, backlog=128)
        listener.setblocking(False)
        self._listener = listener
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        port: int = listener.getsockname()[1]
        return port

    def request_stop(self) -> None:
        """Ask the loop to close everything and return (any thread)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def close_unstarted(self) -> None:
        """Release the sockets of a server whose loop never ran."""
        self._close_all()

    # --- the loop -------------------------------------------------------------------------

    def serve(self) -> None:
        """Run until :meth:`request_stop`; closes every socket on the way out."""
        try:
            while not self._stopping:
                events = self._selector.select(self._next_timeout())
                for key, mask in events:
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:
                        self._guarded(key.data, mask)
                self._fire_timers()
                self._pump_streams()
        except Exception:
            log.exception("collector: the event loop failed; closing every connection")
            raise
        finally:
            self._close_all()

    def _guarded(self, conn: _Connection, mask: int) -> None:
        try:
            if mask & selectors.EVENT_WRITE and not conn.closed:
                self._flush(conn)
            if mask & selectors.EVENT_READ and not conn.closed:
                self._on_readable(conn)
            self._update_interest(conn)
        except Exception:
            log.exception("collector: internal error on a connection; closing it")
            self._close(conn)

    def _next_timeout(self) -> float | None:
        deadlines = [conn.deadline for conn in self._connections if conn.deadline is not None]
        if self._timers:
            deadlines.append(self._timers[0][0])
        if self._accept_resumes_at is not None:
            deadlines.append(self._accept_resumes_at)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - self._clock())

    def _fire_timers(self) -> None:
        now = self._clock()
        if self._accept_resumes_at is not None and self._accept_resumes_at <= now:
            self._accept_resumes_at = None
            assert self._listener is not None
            self._selector.register(self._listener, selectors.EVENT_READ, None)
        while self._timers and self._timers[0][0] <= now:
            _, _, conn = heapq.heappop(self._timers)
            if not conn.closed and conn.state is _State.DELAYED:
                conn.state = _State.READING
                try:
                    self._dispatch(conn, faults=False)
                    self._update_interest(conn)
                except Exception:
                    log.exception("collector: internal error on a delayed request; closing it")
                    self._close(conn)
        for conn in [c for c in self._connections if c.deadline is not None and c.deadline <= now]:
            try:
                self._on_deadline(conn)
                self._update_interest(conn)
            except Exception:
                log.exception("collector: internal error on a connection's deadline; closing it")
                self._close(conn)

    def _on_deadline(self, conn: _Connection) -> None:
        if conn.state is _State.STREAMING and not conn.out:
            assert conn.stream is not None
            conn.deadline = self._clock() + conn.stream.keepalive_interval
            if conn.stream.keepalive:
                self._write(conn, _send(conn, h11.Data(data=conn.stream.keepalive)))
        elif conn.state is _State.LINGERING or conn.out:  # a reader that stopped reading
            self._close(conn)
        elif conn.in_request and conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            log.debug("collector: request not received within %.1f s", self._read_timeout)
            reply = self._app.reject(408, "request_timeout", "request not received in time", **_target(conn))
            self._respond(conn, reply, force_close=True)
        else:
            self._close(conn)

    # --- connections ----------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        for _ in range(64):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:  # that client gave up before we accepted it
                    continue
                # EMFILE, ENFILE, ENOBUFS, ENOMEM (no descriptor or memory now) or anything that
                # would fail again at once: the listener stays readable, so wait instead of spinning.
                self._pause_accepting(exc)
                return
            if len(self._connections) >= MAX_CONNECTIONS:
                sock.close()
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER_BYTES)
            conn = _Connection(sock, self._clock() + self._read_timeout)
            self._connections.add(conn)
            self._update_interest(conn)
            self._app.connection_opened()

    def _pause_accepting(self, exc: OSError) -> None:
        """Leave the listener out of the selector for a while: it stays readable, and would spin."""
        assert self._listener is not None
        now = self._clock()
        self._selector.unregister(self._listener)
        self._accept_resumes_at = now + ACCEPT_BACKOFF_SECONDS
        self._accept_failures += 1
        if now - self._accept_logged_at >= ACCEPT_LOG_INTERVAL:
            log.warning(
                "collector: cannot accept connections (%s): %d accept(s) failed since the last report; "
                "retrying every %.1f s, %d connection(s) open",
                exc.strerror or exc,
                self._accept_failures,
                ACCEPT_BACKOFF_SECONDS,
                len(self._connections),
            )
            self._accept_logged_at = now
            self._accept_failures = 0

    def _wants_read(self, conn: _Connection) -> bool:
        if conn.eof or conn.state is _State.DELAYED:
            return False
        if conn.state is _State.READING:
            # Read only once the previous input is handled and its reply written: this is what
            # bounds a connection's memory, whatever the client sends without reading.
            return not conn.out
        return True  # lingering or streaming: read and discard, to notice the close

    def _update_interest(self, conn: _Connection) -> None:
        if conn.closed:
            return
        mask = (selectors.EVENT_READ if self._wants_read(conn) else 0) | (selectors.EVENT_WRITE if conn.out else 0)
        if mask == conn.mask:
            return
        if conn.mask == 0:
            self._selector.register(conn.sock, mask, conn)
        elif mask == 0:
            self._selector.unregister(conn.sock)
        else:
            self._selector.modify(conn.sock, mask, conn)
        conn.mask = mask

    def _close(self, conn: _Connection) -> None:
        if conn.closed:
            return
        if conn.mask:
            self._selector.unregister(conn.sock)
            conn.mask = 0
        conn.closed = True
        conn.sock.close()
        self._connections.discard(conn)
        if conn.stream is not None:
            self._streams.discard(conn)
            conn.stream.source.close()

    def _close_all(self) -> None:
        for conn in list(self._connections):
            self._close(conn)
        self._timers.clear()
        self._accept_resumes_at = None
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._selector.close()

    def _linger(self, conn: _Connection) -> None:
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.state = _State.LINGERING
        conn.deadline = self._clock() + min(LINGER_SECONDS, self._read_timeout)
        if conn.eof:
            self._close(conn)

    # --- reading --------------------------------------------------------------------------

    def _on_readable(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            conn.eof = True
        if conn.state is _State.LINGERING or conn.state is _State.STREAMING:
            conn.drained += len(data)
            limit = _LINGER_MAX_BYTES if conn.state is _State.LINGERING else _STREAM_MAX_INPUT
            if conn.eof or conn.drained > limit:
                self._close(conn)
            return
        if data and not conn.in_request:
            conn.in_request = True
            conn.deadline = self._clock() + self._read_timeout
        conn.h11.receive_data(data)
        self._advance(conn)
        if not conn.closed:
            held = conn.held_bytes()
            self.peak_connection_bytes = max(self.peak_connection_bytes, held)

    def _advance(self, conn: _Connection) -> None:
        """Process h11 events until it needs data or a reply is waiting to be written.

        Replies written at once come back here through :meth:`_after_write`; the ``advancing``
        flag turns that into another turn of this loop instead of recursion, so a long run of
        pipelined requests cannot exhaust the stack.
        """
        if conn.advancing:
            return
        conn.advancing = True
        try:
            while conn.state is _State.READING and not conn.out and not conn.closed:
                try:
                    event = conn.h11.next_event()
                except h11.RemoteProtocolError as exc:
                    self._protocol_error(conn, exc)
                    return
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Request):
                    self._on_head(conn, event)
                elif isinstance(event, h11.Data):
                    conn.body += event.data
                    if len(conn.body) > self._max_body:
                        self._too_large(conn)
                elif isinstance(event, h11.EndOfMessage):
                    conn.deadline = None
                    self._dispatch(conn, faults=True)
                elif isinstance(event, h11.ConnectionClosed):
                    self._close(conn)
        finally:
            conn.advancing = False

    def _on_head(self, conn: _Connection, request: h11.Request) -> None:
        conn.request = request
        conn.body = bytearray()
        conn.in_request = True
        length = _content_length(request)
        if length is not None and length > self._max_body:
            self._too_large(conn)
        elif conn.h11.they_are_waiting_for_100_continue:
            self._write(conn, _send(conn, h11.InformationalResponse(status_code=100, headers=[])))

    def _too_large(self, conn: _Connection) -> None:
        message = f"request body exceeds {self._max_body} bytes"
        reply = self._app.reject(413, "request_too_large", message, **_target(conn))
        self._respond(conn, reply, force_close=True)

    def _protocol_error(self, conn: _Connection, exc: h11.RemoteProtocolError) -> None:
        # Never echo h11's message: it may quote the sender's bytes.
        if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            status = exc.error_status_hint
            self._respond(conn, self._app.reject(status, "bad_request", "malformed HTTP request"), force_close=True)
        else:
            self._close(conn)

    def _dispatch(self, conn: _Connection, *, faults: bool) -> None:
        head = conn.request
        assert head is not None
        request = HttpRequest(
            method=head.method.decode("ascii", "replace"),
            path=_path(head),
            headers=tuple((name.decode("ascii", "replace"), value.decode("latin-1")) for name, value in head.headers),
            body=bytes(conn.body),
        )
        action = self._app.handle(request, faults=faults)
        if isinstance(action, Delay):
            conn.state = _State.DELAYED
            heapq.heappush(self._timers, (self._clock() + action.seconds, next(self._sequence), conn))
        elif isinstance(action, Drop):
            self._close(conn)
        elif isinstance(action, Stream):
            self._start_stream(conn, action)
        else:
            self._respond(conn, action)

    # --- writing --------------------------------------------------------------------------

    def _respond(self, conn: _Connection, reply: Reply, *, force_close: bool = False) -> None:
        close = reply.close or force_close
        headers = [
            ("date", formatdate(usegmt=True)),
            ("server", "segment-sansio-collector"),
            ("content-length", str(len(reply.body))),
            *reply.headers,
        ]
        if close:
            headers.append(("connection", "close"))
        try:
            data = _send(conn, h11.Response(status_code=reply.status, headers=headers, reason=_reason(reply.status)))
            if reply.body and not (conn.request is not None and conn.request.method == b"HEAD"):
                data += _send(conn, h11.Data(data=reply.body))
            data += _send(conn, h11.EndOfMessage())
        except h11.LocalProtocolError:
            log.debug("collector: cannot reply in h11 state %s; closing", conn.h11.our_state)
            self._close(conn)
            return
        conn.body = bytearray()
        conn.deadline = self._clock() + self._read_timeout  # the client must read the reply in time
        self._write(conn, data)

    def _start_stream(self, conn: _Connection, stream: Stream) -> None:
        headers = [("date", formatdate(usegmt=True)), ("server", "segment-sansio-collector"), *stream.headers]
        try:
            head = _send(conn, h11.Response(status_code=200, headers=headers, reason=b"OK"))
        except h11.LocalProtocolError:
            stream.source.close()
            self._close(conn)
            return
        conn.state = _State.STREAMING
        conn.stream = stream
        conn.deadline = self._clock() + stream.keepalive_interval
        self._streams.add(conn)
        self._write(conn, head)
        self._pump(conn)

    def _pump_streams(self) -> None:
        for conn in list(self._streams):
            try:
                self._pump(conn)
                self._update_interest(conn)
            except Exception:
                log.exception("collector: internal error on a stream; closing it")
                self._close(conn)

    def _pump(self, conn: _Connection) -> None:
        """Top up a stream's buffer from its source until the source is empty or the buffer is full.

        Called at the end of every loop turn: whatever a turn added to a source is written in it,
        and a full buffer resumes once the socket drains (a write event, then this again).
        """
        assert conn.stream is not None
        while not conn.closed and len(conn.out) < STREAM_LOW_WATER:
            chunk = conn.stream.source.read(STREAM_LOW_WATER)
            if chunk is None:
                log.info("collector: a stream's reader fell too far behind; disconnected it")
                self._close(conn)
            elif not chunk:
                return
            else:
                self._write(conn, _send(conn, h11.Data(data=chunk)))

    def _write(self, conn: _Connection, data: bytes) -> None:
        conn.out += data
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        progressed = False
        while conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn)
                return
            del conn.out[:sent]
            progressed = True
        if conn.stream is not None and (progressed or not conn.out):
            # A stream's reader must keep making progress; an idle one gets a keepalive.
            wait = self._read_timeout if conn.out else conn.stream.keepalive_interval
            conn.deadline = self._clock() + wait
        self._update_interest(conn)
        if not conn.out:
            self._after_write(conn)

    def _after_write(self, conn: _Connection) -> None:
        ours, theirs = conn.h11.our_state, conn.h11.their_state
        if conn.state is not _State.READING:
            return
        if ours is h11.DONE and theirs is h11.DONE:
            conn.h11.start_next_cycle()
            conn.request = None
            # Bytes already buffered (pipelining, or junk after a short Content-Length) have
            # started the next request; its read timeout runs from now either way.
            conn.in_request = bool(conn.h11.trailing_data[0])
            conn.deadline = self._clock() + self._read_timeout  # idle keep-alive timeout
            self._advance(conn)
        elif ours in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._linger(conn)
        else:  # after a 100 Continue: keep reading the body
            self._advance(conn)


def _target(conn: _Connection) -> dict[str, str]:
    """The method and path of the request being read, for a rejection's record."""
    head = conn.request
    if head is None:
        return {}
    return {"method": head.method.decode("ascii", "replace"), "path": _path(head)}


def _path(head: h11.Request) -> str:
    return head.target.decode("ascii", "replace").partition("?")[0]


def _send(conn: _Connection, event: h11.Event) -> bytes:
    return conn.h11.send(event) or b""


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def _content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is a valid, single number
    return None
