"""An embedded, loopback Segment-compatible collector: h11 + selectors + SQLite.

Strategy: :meth:`Collector.start` binds a socket in the caller's thread (so the port is known and
errors surface there), opens the SQLite store and starts ONE background thread running a
``selectors`` loop; every connection is a non-blocking socket with its own ``h11.Connection``
(``_server``). No thread per connection, no sleeps: injected latency is a timer in that
loop. Requests are answered by :class:`Collector` itself (auth, injected faults, validation from
``_protocol``, storage in ``_store``), which commits every accepted message to
SQLite before replying, so an acknowledged message survives Ctrl-C and SIGTERM.

Speaks Segment's HTTP Tracking API (https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/):
``POST /v1/batch`` and the single-call ``/v1/{track,identify,group,alias,page,screen}``, Basic
auth or ``writeKey`` in the body (Bearer tokens from ``POST /token`` in OAuth mode), gzip bodies,
keep-alive. Answers are Segment-shaped: 200 ``{"success": true}`` or
``{"success": false, "code": ..., "message": ...}`` with 400 (bad JSON, an invalid message, a
message over 32 KB), 401, 404, 405 or 413 (a body over 500,000 bytes; Segment documents 400 for
both size limits, and clients treat 400 and 413 alike: not retryable). A batch with one invalid
message is rejected whole with 400, so what the client reports always matches what is stored.

Every outcome (stored batch, rejection, injected fault) also goes to a live event viewer:
``GET /`` serves a page that follows ``GET /events`` (server-sent events, ``_viewer``). Its
requests are not counted as traffic.

Also a CLI: ``python -m segment_runtimes collector --port 8080 --db events.sqlite`` (``_cli``).
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import types
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

import msgspec

from segment_core.limits import MAX_BATCH_BYTES

from ._protocol import (
    BATCH_PATH,
    SINGLE_PATHS,
    TOKEN_PATH,
    AcceptedMessage,
    Action,
    Delay,
    Drop,
    HttpRequest,
    OAuthServerSettings,
    Reply,
    RequestRejected,
    TokenAuthority,
    bearer_token,
    decode_body,
    error_reply,
    json_reply,
    parse_basic_write_key,
    validate_payload,
)
from ._server import Server
from ._store import Store, StoredMessage, row_to_message
from ._viewer import MAX_FEED_ROWS, Feed, viewer_action

__all__ = [
    "DEFAULT_FAULT_KINDS",
    "FAULT_KINDS",
    "Collector",
    "CollectorStats",
    "Faults",
    "OAuthServerSettings",
    "StoredMessage",
]

log = logging.getLogger("segment_runtimes.collector")

# Injected statuses and the Segment-like code each reply carries.
_STATUS_FAULTS: Final = {
    "500": (500, "internal_error"),
    "503": (503, "service_unavailable"),
    "429": (429, "rate_limited"),
    "408": (408, "request_timeout"),
    "400": (400, "bad_request"),
}
FAULT_KINDS: Final = (*_STATUS_FAULTS, "drop", "lose_reply", "latency")
# Every fault a correct client survives without losing data; 400 makes clients drop the batch,
# so it is injected only when asked for.
DEFAULT_FAULT_KINDS: Final = ("500", "503", "429", "408", "drop", "lose_reply", "latency")
DEFAULT_READ_TIMEOUT: Final = 10.0


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault injection on /v1/* requests, reproducible: the n-th request's fate depends only on ``seed``.

    Each request draws ``rng.random() < rate``; if it hits, ``rng.choice(kinds)`` picks the fault:
    a status ("500", "503", "429" with ``Retry-After``, "408", "400"), "drop" (close without
    storing or replying), "lose_reply" (store, then close without replying: the retry is flagged
    duplicate), or "latency" (reply ``latency`` seconds late, otherwise normally).

    Args:
        rate: probability in [0, 1] that a request gets a fault.
        seed: seeds ``random.Random``; :meth:`Collector.set_faults` restarts the sequence.
        kinds: fault names (statuses may be ints); default :data:`DEFAULT_FAULT_KINDS`.
        retry_after: seconds sent in ``Retry-After`` with 429: a whole number when integral,
            else a decimal (understood by segment_core; the reference client ignores it).
        latency: seconds the "latency" fault delays a reply.

    Raises:
        ValueError: a rate outside [0, 1], an unknown kind, a negative time.
    """

    rate: float = 0.0
    seed: int = 0
    kinds: Collection[str | int] = DEFAULT_FAULT_KINDS
    retry_after: float = 1.0
    latency: float = 0.05

    def __post_init__(self) -> None:
        raw = (self.kinds,) if isinstance(self.kinds, str | int) else self.kinds
        kinds = tuple(dict.fromkeys(str(kind).strip() for kind in raw))
        unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {list(FAULT_KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        if self.rate > 0 and not kinds:
            raise ValueError("a positive rate needs at least one fault kind")
        if self.retry_after < 0 or self.latency < 0:
            raise ValueError("retry_after and latency must not be negative")
        object.__setattr__(self, "kinds", kinds)


@dataclass(frozen=True, slots=True)
class CollectorStats:
    """A snapshot of what the collector has seen.

    Attributes:
        requests: HTTP requests received (a delayed request counts once).
        connections: TCP connections accepted.
        batches_accepted: requests whose messages were stored (lose_reply included).
        messages_stored: rows stored, duplicates included.
        duplicates: rows flagged duplicate.
        faults: injected faults by kind.
        rejected: error replies by status, injected faults excluded.
        tokens_issued: OAuth tokens issued.
        peak_connection_bytes: the most one connection has held at once (unparsed input, a request
            body, a reply not yet sent); bounded whatever a client sends or fails to read.
    """

    requests: int
    connections: int
    batches_accepted: int
    messages_stored: int
    duplicates: int
    faults: Mapping[str, int]
    rejected: Mapping[int, int]
    tokens_issued: int
    peak_connection_bytes: int = 0


class _Lifecycle(Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class Collector:
    """A Segment-compatible collector on loopback, served by one background thread.

    Usable as a context manager (``with Collector() as c:``) or with :meth:`start` / :meth:`stop`.

    Args:
        port: TCP port, 0 for a free one (read it back from :attr:`port` / :attr:`url`).
        db_path: SQLite file to store into, or None for a private temporary one.
        write_keys: accepted write keys; None accepts any non-empty key.
        faults: fault injection; None injects none.
        oauth: turn on OAuth (``POST /token``; Bearer required on /v1/*).
        host: address to listen on.
        read_timeout: seconds a request may take to arrive, and the idle keep-alive timeout.
        on_message: called on the collector's thread with each stored message, after commit.
        viewer_rows: how many recent rows (messages, rejections, faults) the live viewer keeps
            for a page opened later; a viewer that falls further behind is disconnected.

    Raises:
        ValueError: an OAuth public key that is not an RSA PEM, a read_timeout or viewer_rows out of range.
    """

    def __init__(
        self,
        port: int = 0,
        db_path: str | os.PathLike[str] | None = None,
        write_keys: Collection[str] | None = None,
        faults: Faults | None = None,
        oauth: OAuthServerSettings | None = None,
        host: str = "127.0.0.1",
        *,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        on_message: Callable[[StoredMessage], None] | None = None,
        viewer_rows: int = MAX_FEED_ROWS,
    ) -> None:
        if read_timeout <= 0:
            raise ValueError("read_timeout must be positive")
        if viewer_rows < 1:
            raise ValueError("viewer_rows must be at least 1")
        self.host = host
        self._requested_port = port
        self._db_path = db_path
        if isinstance(write_keys, str):
            write_keys = (write_keys,)
        self._write_keys = None if write_keys is None else frozenset(write_keys)
        self._read_timeout = read_timeout
        self._on_message = on_message
        self._authority = None if oauth is None else TokenAuthority(oauth, audience="")
        self._lock = threading.Lock()  # guards faults, rng and counters
        self._faults = faults or Faults()
        self._rng = random.Random(self._faults.seed)
        self._requests = 0
        self._connections = 0
        self._batches = 0
        self._fault_counts: Counter[str] = Counter()
        self._rejected: Counter[int] = Counter()
        self._lifecycle = _Lifecycle.NEW
        self._lifecycle_lock = threading.Lock()
        self._store: Store | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._feed = Feed(self._feed_counters, max_rows=viewer_rows)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Collector:
        """Bind, open the store and start the serving thread.

        Returns:
            self, so that ``c = Collector().start()`` works.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: the collector was stopped (it cannot be restarted).
        """
        with self._lifecycle_lock:
            if self._lifecycle is _Lifecycle.RUNNING:
                return self
            if self._lifecycle is _Lifecycle.STOPPED:
                raise RuntimeError("a stopped Collector cannot be restarted")
            store = Store(self._db_path)
            server = Server(
                _Callbacks(self),
                self.host,
                self._requested_port,
                read_timeout=self._read_timeout,
                max_body=MAX_BATCH_BYTES,
            )
            try:
                self._port = server.bind()
            except BaseException:
                server.close_unstarted()
                store.close()
                raise
            self._store, self._server = store, server
            if self._authority is not None:
                self._authority.audience = self.url
            self._thread = threading.Thread(target=server.serve, name="segment-collector", daemon=True)
            self._thread.start()
            self._lifecycle = _Lifecycle.RUNNING
        log.info("collector listening on %s", self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close every socket, stop the thread and close the store. Idempotent.

        Messages stay readable afterwards (:meth:`messages`, :meth:`count`, ...).

        Args:
            timeout: seconds to wait for the serving thread.
        """
        with self._lifecycle_lock:
            if self._lifecycle is not _Lifecycle.RUNNING:
                self._lifecycle = _Lifecycle.STOPPED
                return
            self._lifecycle = _Lifecycle.STOPPED
        assert self._server is not None
        assert self._thread is not None
        assert self._store is not None
        self._server.request_stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("collector thread did not stop within %.1f s", timeout)
        self._store.close()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"url={self.url!r}" if self._port is not None else f"host={self.host!r}"
        return f"<Collector {where} {self._lifecycle.value}>"

    # --- where and what -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port. Raises RuntimeError before :meth:`start`."""
        if self._port is None:
            raise RuntimeError("the collector is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://<host>:<port>``, no trailing slash; also the OAuth audience."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def viewer_url(self) -> str:
        """The live event viewer: a page where messages, rejections and faults appear as they happen."""
        return f"{self.url}/"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._lifecycle is _Lifecycle.RUNNING

    @property
    def db_path(self) -> str:
        """The SQLite file in use (a temporary one if none was given)."""
        return self._started_store().path

    def _started_store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the collector is not started")
        return self._store

    def wait_for(self, count: int, timeout: float = 10.0, *, unique: bool = False) -> bool:
        """Wait until ``count`` messages are stored (distinct messageIds with ``unique``).

        Returns:
            True if reached, False if ``timeout`` seconds passed first.
        """
        return self._started_store().wait_for(count, timeout, unique=unique)

    def messages(self) -> list[StoredMessage]:
        """Every stored message, duplicates included, in arrival order."""
        return self._started_store().messages()

    def message_ids(self) -> list[str]:
        """Every stored messageId, duplicates repeated, in arrival order."""
        return self._started_store().message_ids()

    def count(self, unique: bool = False) -> int:
        """Messages stored, or distinct messageIds with ``unique``."""
        return self._started_store().count(unique=unique)

    def duplicate_count(self) -> int:
        """Stored copies of a messageId seen before."""
        return self._started_store().duplicate_count()

    @property
    def tokens_issued(self) -> int:
        """OAuth tokens issued so far."""
        return 0 if self._authority is None else self._authority.tokens_issued

    @property
    def stats(self) -> CollectorStats:
        """A consistent snapshot of the counters."""
        store = self._store
        with self._lock:
            return CollectorStats(
                requests=self._requests,
                connections=self._connections,
                batches_accepted=self._batches,
                messages_stored=0 if store is None else store.count(),
                duplicates=0 if store is None else store.duplicate_count(),
                faults=types.MappingProxyType(dict(self._fault_counts)),
                rejected=types.MappingProxyType(dict(self._rejected)),
                tokens_issued=self.tokens_issued,
                peak_connection_bytes=0 if self._server is None else self._server.peak_connection_bytes,
            )

    @property
    def faults(self) -> Faults:
        """The fault settings in force."""
        with self._lock:
            return self._faults

    def set_faults(self, faults: Faults | None) -> None:
        """Change fault injection while running; the random sequence restarts from ``faults.seed``."""
        faults = faults or Faults()
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)

    def set_oauth_fail_status(self, status: int | None) -> None:
        """Force every ``/token`` reply to ``status`` (None: answer normally).

        Raises:
            RuntimeError: OAuth mode is off.
        """
        if self._authority is None:
            raise RuntimeError("OAuth mode is off")
        self._authority.fail_status = status

    # --- what the server loop calls (loop thread only), through _Callbacks ---------------

    def _connection_opened(self) -> None:
        with self._lock:
            self._connections += 1

    def _reject(self, status: int, code: str, message: str, method: str, path: str) -> Reply:
        with self._lock:
            self._requests += 1
            self._rejected[status] += 1
        self._feed.record_rejected(method, path, status, code, message, 0)
        return error_reply(status, code, message, close=True)

    def _handle(self, request: HttpRequest, *, faults: bool) -> Action:
        """Answer one complete request: faults first, then route, auth, decode, validate, store.

        ``faults`` is False for a request replayed after a latency fault: it gets no second fault.
        """
        viewer = viewer_action(request, self._feed)
        if viewer is not None:
            return viewer  # the viewer's own requests are not traffic: nothing is counted
        if faults:
            with self._lock:
                self._requests += 1
        if request.path == TOKEN_PATH and self._authority is not None:
            reply = self._authority.token_endpoint(request)
            if reply.status >= 400:
                self._count_rejected(request, reply)
            return reply
        if not request.path.startswith("/v1/"):
            return self._rejected_reply(request, RequestRejected(404, "not_found", "no such endpoint"))
        fault = self._draw_fault(request) if faults else None
        if fault == "latency":
            return Delay(self.faults.latency)
        if fault == "drop":
            return Drop()
        if fault in _STATUS_FAULTS:
            return self._fault_reply(fault)
        try:
            messages = self._accept(request)
        except RequestRejected as exc:
            reply = self._rejected_reply(request, exc)
            return Drop() if fault == "lose_reply" else reply
        except Exception:  # a bug: say so, but answer, and keep the connection
            log.exception("collector: failed to read a request; replying 500")
            return self._rejected_reply(request, RequestRejected(500, "internal_error", "the collector failed"))
        try:
            stored = self._started_store().insert(messages)
        except sqlite3.Error:
            log.exception("collector: could not store a batch; replying 500")
            return self._rejected_reply(request, RequestRejected(500, "storage_error", "could not store the batch"))
        with self._lock:
            self._batches += 1
        log.debug("collector: %s %s stored %d messages", request.method, request.path, len(messages))
        self._feed.record_batch(request.path, stored, fault or (None if faults else "latency"))
        if self._on_message is not None:
            for row in stored:
                try:
                    self._on_message(row_to_message(row))
                except Exception:
                    log.exception("collector: on_message callback failed")
        return Drop() if fault == "lose_reply" else json_reply(200, {"success": True})

    def _draw_fault(self, request: HttpRequest) -> str | None:
        with self._lock:
            settings = self._faults
            if settings.rate <= 0 or self._rng.random() >= settings.rate:
                return None
            fault = str(self._rng.choice(list(settings.kinds)))
            self._fault_counts[fault] += 1
        status = _STATUS_FAULTS[fault][0] if fault in _STATUS_FAULTS else None
        note = {
            "latency": f"reply delayed {settings.latency:g} s; the request is then handled as usual",
            "drop": "connection closed: nothing stored, no reply",
            "lose_reply": "batch handled, then the connection closed without a reply (a retry shows as duplicates)",
        }.get(fault, f"answered {status} instead of handling the request")
        self._feed.record_fault(request.path, fault, note, status)
        return fault

    def _fault_reply(self, fault: str) -> Reply:
        status, code = _STATUS_FAULTS[fault]
        headers: tuple[tuple[str, str], ...] = ()
        if status == 429:
            headers = (("retry-after", _retry_after_text(self.faults.retry_after)),)
        return error_reply(status, code, "injected fault", headers=headers)

    def _count_rejected(self, request: HttpRequest, reply: Reply) -> None:
        """Count and show an OAuth error reply from ``/token``."""
        with self._lock:
            self._rejected[reply.status] += 1
        try:
            body = msgspec.json.decode(reply.body, type=dict[str, str])
        except msgspec.DecodeError:
            body = {}
        reason = body.get("error_description", "")
        self._feed.record_rejected(
            request.method, request.path, reply.status, body.get("error", "error"), reason, len(request.body)
        )

    def _rejected_reply(self, request: HttpRequest, exc: RequestRejected) -> Reply:
        with self._lock:
            self._rejected[exc.status] += 1
        self._feed.record_rejected(request.method, request.path, exc.status, exc.code, exc.message, len(request.body))
        log.debug("collector: rejected with %d %s", exc.status, exc.code)
        headers = (("allow", "POST"),) if exc.status == 405 else ()
        return error_reply(exc.status, exc.code, exc.message, headers=headers)

    def _feed_counters(self) -> dict[str, int]:
        store = self._store
        received, unique, duplicates = (0, 0, 0) if store is None else store.counts()
        with self._lock:
            rejected = sum(self._rejected.values())
            faults = sum(self._fault_counts.values())
        return {
            "received": received,
            "unique": unique,
            "duplicates": duplicates,
            "rejected": rejected,
            "faults": faults,
        }

    def _accept(self, request: HttpRequest) -> list[AcceptedMessage]:
        """Route, authenticate, decode and validate; returns the messages to store."""
        if request.path != BATCH_PATH and request.path not in SINGLE_PATHS:
            raise RequestRejected(404, "not_found", "no such endpoint")
        if request.method != "POST":
            raise RequestRejected(405, "method_not_allowed", "use POST")
        authorization = request.header("authorization")
        if self._authority is not None:
            token = bearer_token(authorization or "")
            if not token or not self._authority.is_valid(token):
                raise RequestRejected(401, "unauthorized", "a valid Bearer token is required")
            header_key_ok = True
        elif authorization is not None:
            key = parse_basic_write_key(authorization)
            if key is None:
                raise RequestRejected(401, "unauthorized", "use Basic auth with the write key")
            self._check_write_key(key)
            header_key_ok = True
        else:
            header_key_ok = False
        payload = decode_body(request.path, request.body, request.header("content-encoding"))
        if not header_key_ok:
            self._check_write_key(payload.write_key)
        return validate_payload(request.path, payload)

    def _check_write_key(self, key: str | None) -> None:
        if not key:
            raise RequestRejected(401, "unauthorized", "a write key is required")
        if self._write_keys is not None and key not in self._write_keys:
            raise RequestRejected(401, "unauthorized", "invalid write key")


def _retry_after_text(seconds: float) -> str:
    # RFC 9110 section 10.2.3 wants whole seconds. A fractional value (a test convenience) is
    # sent as a decimal: segment_core reads it, the reference client ignores it and backs off.
    return str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"


class _Callbacks:
    """The :class:`~segment_runtimes.collector._server.Application` a Collector gives its server."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector

    def handle(self, request: HttpRequest, *, faults: bool) -> Action:
        return self._collector._handle(request, faults=faults)

    def reject(self, status: int, code: str, message: str, *, method: str = "", path: str = "") -> Reply:
        return self._collector._reject(status, code, message, method, path)

    def connection_opened(self) -> None:
        self._collector._connection_opened()
