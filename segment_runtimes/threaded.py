"""The threaded runtime: ``Client``, a drop-in for ``segment.analytics.Client``, and the module API.

Switch by changing one import::

    import segment_runtimes.threaded as analytics   # was: import segment.analytics as analytics
    analytics.write_key = "..."
    analytics.track("user-1", "Signed Up", {"plan": "pro"})

How it works: a call builds and encodes its message in the caller's thread,
then takes one lock just long enough to hand the bytes to the engine. Worker
threads (``thread`` of them, started on first use) loop: poll the engine, take
a request it asks for, perform it outside the lock, feed the outcome back, and
sleep on a condition until the engine's next deadline or a wake-up (a full
batch, flush, shutdown). What the engine settles is reported (log lines,
``on_error``, ``on_success``, waking a flush) by one worker at a time, in the
engine's order, outside the lock.

A worker cannot be lost: whatever raises in it (the transport, the engine, a
callback, ``SystemExit`` from ``on_error`` included) is logged with its
traceback, the request's batch is retried with that cause, and the loop goes on.

Fork: a child gets a fresh lock, queue, worker and HTTP client on first use;
what the parent queued stays the parent's. Exit: an atexit hook shuts every
client down within its ``shutdown_timeout``, reporting what it could not send.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import Any

from segment_core import (
    BuiltMessage,
    ConfigurationError,
    DeliveryError,
    EngineState,
    Enqueued,
    Output,
    QueueFull,
    Request,
    Response,
    TransportFailure,
    WaitSettled,
)
from segment_core import __version__ as VERSION
from segment_core.limits import (
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_RATE_LIMIT_DURATION,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_SPOOL_BYTES,
    DEFAULT_MAX_TOTAL_BACKOFF_DURATION,
    DEFAULT_OAUTH_AUTH_SERVER,
    DEFAULT_OAUTH_SCOPE,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TIMEOUT,
    DEFAULT_UPLOAD_INTERVAL,
    DEFAULT_UPLOAD_SIZE,
)
from segment_core.plugins import Enrichment, Plugin, PluginKind
from segment_core.spool import SpoolRef

from ._client_base import ClientBase
from ._common import log
from ._durability import SpoolLink
from ._options import ErrorCallback, FsyncPolicy, Proxies, Settings, SuccessCallback, args_doc
from ._transport import SyncHTTP

__all__ = [
    "VERSION",
    "Client",
    "add_plugin",
    "alias",
    "flush",
    "group",
    "identify",
    "join",
    "page",
    "remove_plugin",
    "screen",
    "shutdown",
    "track",
]

__version__ = VERSION

# A worker that finds a deadline already due polls again at once; this floor
# only guards against a spin if the engine ever reported a stale deadline.
_MIN_WAIT = 0.001
# After an exception where none should be, a worker pauses this long before going on:
# a bug that repeats must not turn into a busy loop.
_AFTER_A_BUG = 0.5
# shutdown() stops delivery this much before its deadline (at most a tenth of the
# timeout) so that on_error has run for every leftover message when it returns.
_REPORTING_MARGIN = 0.25

# With a spool, a worker wakes at least this often to fsync it and look for orphaned files.
_SPOOL_TENDING = 1.0

_QUIET = Enqueued.QUIET
_WAKE = Enqueued.WAKE


class _Waiter:
    """A flush, sync-mode call or shutdown waiting for the engine's WaitSettled."""

    __slots__ = ("delivered", "done")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.delivered = False


class Client(ClientBase):
    """A Segment client driven by worker threads: a drop-in for segment-analytics-python 2.4's ``Client``.

    The same keywords, positional order and defaults (but ``max_queue_size``, see
    ``segment_core.limits``), plus ours after ``*``. The six calls (``track``,
    ``identify``, ``group``, ``alias``, ``page``, ``screen``) return
    ``(success, msg)`` as before.

    Raises:
        ValidationError: write_key missing (an AssertionError, as before).
        ConfigurationError: another setting is invalid; the message names it.
    """

    class DefaultConfig:
        """segment-analytics-python 2.4's defaults, by name (ours where they differ)."""

        write_key = None
        host = None
        on_error = None
        debug = False
        log_handler = None
        send = True
        sync_mode = False
        max_queue_size = DEFAULT_MAX_QUEUE_SIZE
        gzip = False
        timeout = DEFAULT_TIMEOUT
        max_retries = DEFAULT_MAX_RETRIES
        max_total_backoff_duration = DEFAULT_MAX_TOTAL_BACKOFF_DURATION
        max_rate_limit_duration = DEFAULT_MAX_RATE_LIMIT_DURATION
        proxies = None
        thread = 1
        upload_interval = DEFAULT_UPLOAD_INTERVAL
        upload_size = DEFAULT_UPLOAD_SIZE
        oauth_client_id = None
        oauth_client_key = None
        oauth_key_id = None
        oauth_auth_server = DEFAULT_OAUTH_AUTH_SERVER
        oauth_scope = DEFAULT_OAUTH_SCOPE
        shutdown_timeout = DEFAULT_SHUTDOWN_TIMEOUT
        max_queue_bytes = DEFAULT_MAX_QUEUE_BYTES

    log = log

    def __init__(
        self,
        write_key: str | None = None,
        host: str | None = None,
        debug: bool = False,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        send: bool = True,
        on_error: ErrorCallback | Any = None,
        gzip: bool = False,
        max_retries: int = DEFAULT_MAX_RETRIES,
        sync_mode: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT,
        proxies: Proxies = None,
        thread: int = 1,
        upload_size: int = DEFAULT_UPLOAD_SIZE,
        upload_interval: float = DEFAULT_UPLOAD_INTERVAL,
        log_handler: logging.Handler | None = None,
        oauth_client_id: str | None = None,
        oauth_client_key: str | None = None,
        oauth_key_id: str | None = None,
        oauth_auth_server: str = DEFAULT_OAUTH_AUTH_SERVER,
        oauth_scope: str = DEFAULT_OAUTH_SCOPE,
        max_total_backoff_duration: float = DEFAULT_MAX_TOTAL_BACKOFF_DURATION,
        max_rate_limit_duration: float = DEFAULT_MAX_RATE_LIMIT_DURATION,
        *,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        on_success: SuccessCallback | None = None,
        queue_full_timeout: float = 0.0,
        spool_dir: str | os.PathLike[str] | None = None,
        max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES,
        spool_fsync: FsyncPolicy = "interval",
    ) -> None:
        arguments = dict(locals())
        del arguments["self"]
        self.sync_mode = bool(arguments.pop("sync_mode"))
        if isinstance(thread, bool) or not isinstance(thread, int) or thread < 1:
            raise ConfigurationError("thread must be an int of at least 1 (worker threads, requests at once)")
        arguments["max_in_flight"] = arguments.pop("thread")
        self._setup(Settings(**arguments))
        self._waiter_ids = itertools.count(1)
        self._fresh_process_state()
        _live_clients.add(self)
        if self._spool is not None and self._settings.send:
            with self._lock:
                self._start_workers()  # to deliver what a process before this one left in the spool

    _may_block = True

    def _fresh_process_state(self) -> None:
        """Locks, workers, waits and the HTTP client: made new at construction and in a forked child."""
        self._lock = self._guard = threading.Lock()
        self._work_ready = threading.Condition(self._lock)  # workers wait here
        self._room = threading.Condition(self._lock)  # calls waiting for room in a full queue wait here
        self._workers: list[threading.Thread] = []
        self._to_send: deque[Request] = deque()
        self._reports: deque[Output] = deque()  # settled outputs, in the engine's order
        self._reporting = False  # a worker is reporting them
        self._waiters: dict[int, _Waiter] = {}
        self._http: SyncHTTP | None = None

    def _after_fork_in_child(self) -> None:
        self._fresh_process_state()
        self._engine.reset_after_fork()
        self._seed_ids()
        if self._spool is not None:
            self._spool.forget_after_fork()

    # Calls ------------------------------------------------------------------

    def _submit(self, built: BuiltMessage) -> tuple[bool, dict[str, Any]]:
        message = built.message
        if built.dropped:
            self._reporter.dropped_values(built)
        if not self._settings.send:
            return True, message
        spool = self._spool
        if spool is not None:
            return self._submit_durably(built, spool)
        with self._lock:
            result = self._engine.enqueue(built.data, now=time.monotonic())
            if result is _WAKE:
                if not self._workers:
                    self._start_workers()
                self._work_ready.notify()
            elif isinstance(result, QueueFull) and self._settings.queue_full_timeout:
                result = self._enqueue_when_room(built.data)
        if result is not _QUIET and result is not _WAKE:
            if isinstance(result, DeliveryError):
                self._reporter.refused(result)
            return False, message
        if not self.sync_mode:
            return True, message
        if self._in_worker():
            # Called from a callback: waiting would wait on ourselves. It goes with the next batch.
            return True, message
        return self._wait(timeout=None), message

    def _submit_durably(self, built: BuiltMessage, spool: SpoolLink) -> tuple[bool, dict[str, Any]]:
        """With a spool: True only once the message is in a spool file, and the engine has it."""
        message = built.message
        ref = spool.spool.append(built.data)  # the link's own method would be one more frame per call
        if not isinstance(ref, SpoolRef):
            with self._lock:
                self._engine.record_refused()
            self._reporter.spool_refused(ref)
            return False, message
        with self._lock:
            result = self._engine.enqueue(built.data, now=time.monotonic())
            if isinstance(result, QueueFull) and self._settings.queue_full_timeout:
                result = self._enqueue_when_room(built.data)
            if isinstance(result, DeliveryError):
                refused: DeliveryError | None = result
            else:
                refused = None
                spool.refs[self._engine.last_seq] = ref
                if result is _WAKE:
                    if not self._workers:
                        self._start_workers()
                    self._work_ready.notify()
        if refused is not None:
            spool.refused(ref)
            self._reporter.refused(refused)
            return False, message
        if not self.sync_mode or self._in_worker():
            return True, message
        return self._wait(timeout=None), message

    def _enqueue_when_room(self, data: bytes) -> Enqueued | DeliveryError:
        """With the lock held, the queue full: wait up to ``queue_full_timeout`` for room, then try again.

        Never from a worker (it would wait on itself): there the message is refused at once.
        """
        engine = self._engine
        if self._in_worker():
            return engine.enqueue(data, now=time.monotonic())
        if not self._workers:
            self._start_workers()
        self._work_ready.notify_all()
        deadline = time.monotonic() + self._settings.queue_full_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or engine.state is not EngineState.OPEN:
                return engine.enqueue(data, now=time.monotonic())
            if engine.has_room(len(data)):
                result = engine.enqueue(data, now=time.monotonic())
                if result is _WAKE:
                    self._work_ready.notify()
                if not isinstance(result, QueueFull):
                    return result
            self._room.wait(remaining)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything queued so far is delivered or failed, or ``timeout`` seconds pass.

        ``on_error`` has run for whatever failed when this returns, as with 2.4's flush.

        Args:
            timeout: seconds to wait at most; None waits as long as retries take.

        Returns:
            True if every message queued before the call was delivered.
        """
        if self._in_worker():
            # Called from a callback: waiting here would wait on ourselves.
            with self._lock:
                self._engine.flush(now=time.monotonic())
                self._work_ready.notify_all()
            return False
        return self._wait(timeout)

    def _wait(self, timeout: float | None, *, closing_at: float | None = None) -> bool:
        """Register a wait with the engine (a flush, or a close), wake the workers, and wait for it."""
        waiter = _Waiter()
        with self._lock:
            token = next(self._waiter_ids)
            self._waiters[token] = waiter
            now = time.monotonic()
            if closing_at is None:
                self._engine.flush(now=now, waiter=token)
            else:
                self._engine.close(now=now, deadline=closing_at, waiter=token)
            self._start_or_settle_here()
        if not waiter.done.wait(timeout):
            with self._lock:
                self._engine.cancel_wait(token)
                self._waiters.pop(token, None)
            return False
        return waiter.delivered

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop the workers, within ``timeout`` seconds (default ``shutdown_timeout``).

        Every message not delivered by then is reported through ``on_error``
        exactly once, before this returns (with a spool, it stays on disk for
        the next start instead): delivery stops a little before the deadline (a
        tenth of the timeout, at most 0.25 s) to leave time for the callbacks.
        Calls after shutdown return ``(False, msg)``.

        Args:
            timeout: seconds; None means ``shutdown_timeout``.

        Returns:
            True if everything queued was delivered.
        """
        timeout = max(self._settings.shutdown_timeout if timeout is None else timeout, 0.0)
        deadline = time.monotonic() + timeout
        delivery_deadline = deadline - min(timeout / 10, _REPORTING_MARGIN)
        if self._in_worker():  # from a callback: close, and let the workers finish on their own
            with self._lock:
                self._engine.close(now=time.monotonic(), deadline=delivery_deadline)
                self._work_ready.notify_all()
            return False
        waiter = _Waiter()
        with self._lock:
            token = next(self._waiter_ids)
            self._waiters[token] = waiter
            self._engine.close(now=time.monotonic(), deadline=delivery_deadline, waiter=token)
            self._start_or_settle_here()
        if not waiter.done.wait(max(delivery_deadline - time.monotonic(), 0.0)):
            # A worker is stuck in a request past the deadline: expire the engine from here.
            with self._lock:
                self._engine.poll(now=max(time.monotonic(), delivery_deadline), wall=time.time())
                self._take_outputs()
        self._report_pending()
        waiter.done.wait(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            self._waiters.pop(token, None)
            http, self._http = self._http, None
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(deadline - time.monotonic(), 0.0))
        if self._spool is not None:
            self._spool.close()
        self._reporter.throttle.flush()
        if http is not None and not any(worker.is_alive() for worker in workers):
            http.close()
        return waiter.done.is_set() and waiter.delivered

    def join(self) -> None:
        """Kept for compatibility: the same as ``shutdown()``."""
        self.shutdown()

    # Workers ----------------------------------------------------------------

    def _in_worker(self) -> bool:
        return threading.current_thread() in self._workers

    def _start_or_settle_here(self) -> None:
        """With the lock held, after a wait was registered: wake the workers, or start them if there is work.

        A client that never sent anything has no worker: what it has to report is only
        the wait just registered (settled at once), so it is settled here, not by a new thread.
        """
        self._take_outputs()
        if not self._workers:
            if all(isinstance(output, WaitSettled) for output in self._reports):
                while self._reports:
                    self._deliver_report(self._reports.popleft())
            if self._reports or self._engine.pending:
                self._start_workers()
        self._work_ready.notify_all()

    def _start_workers(self) -> None:
        for index in range(self._settings.max_in_flight):
            worker = threading.Thread(target=self._work, name=f"segment-sansio-worker-{index}", daemon=True)
            self._workers.append(worker)
            worker.start()

    def _work(self) -> None:
        while True:
            try:
                spool = self._spool
                if spool is not None:
                    self._tend(spool)
                request = self._next_request()
                self._report_pending()
                if request is not None:
                    self._exchange(request)
                    self._report_pending()
                elif self._finished():
                    return
            except BaseException as exc:  # a bug of ours: never lose the worker
                self._reporter.bug("the worker", exc)
                with self._lock:
                    self._work_ready.wait(_AFTER_A_BUG)

    def _tend(self, spool: SpoolLink) -> None:
        """Outside the lock: read recovered records for the engine, delete settled files, fsync when due."""
        now = time.monotonic()
        if spool.wants_pull(now) and self._engine.state is EngineState.OPEN:
            spool.pull(now)
        if spool.untidy:  # a file rotated away with nothing unsettled
            spool.tidy()
        if spool.sync_due(now):
            spool.sync(now)

    def _spool_needs_tending(self, spool: SpoolLink, now: float) -> bool:
        return spool.untidy or spool.sync_due(now) or (spool.wants_pull(now) and self._engine.state is EngineState.OPEN)

    def _finished(self) -> bool:
        with self._lock:
            done = self._engine.state is EngineState.CLOSED and not self._to_send and not self._reports
            if done:
                self._work_ready.notify_all()  # the other workers may sleep with no deadline
            return done

    def _next_request(self) -> Request | None:
        """Poll the engine until it asks for a request (returned) or has something to report (None)."""
        engine = self._engine
        spool = self._spool
        with self._lock:
            while True:
                now = time.monotonic()
                if spool is not None and spool.backlog:
                    spool.feed(engine, now)
                engine.poll(now=now, wall=time.time())
                self._take_outputs()
                if self._to_send:
                    return self._to_send.popleft()
                if self._reports and not self._reporting:
                    return None
                if engine.state is EngineState.CLOSED and not self._reports:
                    return None
                if spool is not None and self._spool_needs_tending(spool, now):
                    return None  # the spool needs tending, outside the lock
                deadline = engine.next_deadline()
                if spool is not None:  # a scan or a sync falls due within the second
                    deadline = now + _SPOOL_TENDING if deadline is None else min(deadline, now + _SPOOL_TENDING)
                self._work_ready.wait(None if deadline is None else max(deadline - now, _MIN_WAIT))

    def _take_outputs(self) -> None:
        """With the lock held: requests for the workers, the rest for the reporter, in order."""
        sent = False
        for output in self._engine.next_outputs():
            if type(output) is Request:
                self._to_send.append(output)
                sent = True
            else:
                self._reports.append(output)
        if len(self._to_send) > 1:
            self._work_ready.notify(len(self._to_send) - 1)
        if sent:  # a batch left the queue: a call waiting for room may go on
            self._room.notify_all()

    def _exchange(self, request: Request) -> None:
        """Perform one request outside the lock and feed its outcome to the engine."""
        outcome: Response | TransportFailure
        try:
            outcome = self._perform(request)
        except BaseException as exc:  # the transport promises not to raise; if it does, the batch retries
            outcome = self._internal_failure("the transport", exc)
        with self._lock:
            self._feed_outcome(request, outcome)
            self._take_outputs()
            self._work_ready.notify()

    def _perform(self, request: Request) -> Response | TransportFailure:
        http = self._http
        if http is None:
            with self._lock:  # one client for every worker; built after a fork too, since that drops it
                http = self._http
                if http is None:
                    settings = self._settings
                    http = self._http = SyncHTTP(timeout=settings.request_timeout, proxies=settings.proxies)
        return http.perform(request)

    def _report_pending(self) -> None:
        """Report what the engine settled, in order, by one thread at a time, outside the lock."""
        with self._lock:
            if self._reporting or not self._reports:
                return
            self._reporting = True
        try:
            while True:
                with self._lock:
                    if not self._reports:
                        return
                    output = self._reports.popleft()
                self._deliver_report(output)
        finally:
            with self._lock:
                self._reporting = False
                self._work_ready.notify_all()

    def _deliver_report(self, output: Output) -> None:
        if self._spool is not None:
            self._spool.settled(output)
        if isinstance(output, WaitSettled):
            waiter = self._waiters.pop(output.waiter, None)
            if waiter is not None:
                waiter.delivered = output.delivered
                waiter.done.set()
        else:
            self._reporter.report(output)


Client.__doc__ = (
    (Client.__doc__ or "")
    + "\n"
    + args_doc(
        renamed={"max_in_flight": "thread"},
        extra=[("sync_mode", "bool", "Each call waits until its message is delivered or failed (default False).")],
    )
)

_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()


# Fork holds every client's lock so that no child copies an engine halfway
# through a change; the lock is only ever held briefly (never across I/O or callbacks).
_forking: list[Client] = []


def _before_fork() -> None:
    _forking[:] = list(_live_clients)
    for client in _forking:
        client._lock.acquire()


def _after_fork_in_parent() -> None:
    for client in _forking:
        client._lock.release()
    _forking.clear()


def _after_fork_in_child() -> None:
    _forking.clear()
    for client in list(_live_clients):
        client._after_fork_in_child()


def _shutdown_at_exit() -> None:
    for client in list(_live_clients):
        if client.send and client._engine.state is not EngineState.CLOSED:
            try:
                client.shutdown()
            except Exception:
                log.exception("shutdown at exit failed")


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
atexit.register(_shutdown_at_exit)


# Module-level API, as in ``import segment.analytics as analytics``. ---------

write_key: str | None = Client.DefaultConfig.write_key
host: str | None = Client.DefaultConfig.host
on_error: ErrorCallback | Any = Client.DefaultConfig.on_error
debug: bool = Client.DefaultConfig.debug
log_handler: logging.Handler | None = Client.DefaultConfig.log_handler
send: bool = Client.DefaultConfig.send
sync_mode: bool = Client.DefaultConfig.sync_mode
max_queue_size: int = Client.DefaultConfig.max_queue_size
gzip: bool = Client.DefaultConfig.gzip
timeout: float | None = Client.DefaultConfig.timeout
max_retries: int = Client.DefaultConfig.max_retries
proxies: Proxies = Client.DefaultConfig.proxies
thread: int = Client.DefaultConfig.thread
upload_size: int = Client.DefaultConfig.upload_size
upload_interval: float = Client.DefaultConfig.upload_interval
max_total_backoff_duration: float = Client.DefaultConfig.max_total_backoff_duration
max_rate_limit_duration: float = Client.DefaultConfig.max_rate_limit_duration
oauth_client_id: str | None = Client.DefaultConfig.oauth_client_id
oauth_client_key: str | None = Client.DefaultConfig.oauth_client_key
oauth_key_id: str | None = Client.DefaultConfig.oauth_key_id
oauth_auth_server: str = Client.DefaultConfig.oauth_auth_server
oauth_scope: str = Client.DefaultConfig.oauth_scope
shutdown_timeout: float = Client.DefaultConfig.shutdown_timeout
max_queue_bytes: int = Client.DefaultConfig.max_queue_bytes
on_success: SuccessCallback | None = None
queue_full_timeout: float = 0.0
spool_dir: str | os.PathLike[str] | None = None
max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES
spool_fsync: FsyncPolicy = "interval"

# The module settings, by the name Client takes them: every keyword of Client.
MODULE_SETTINGS = (
    "write_key",
    "host",
    "debug",
    "max_queue_size",
    "send",
    "on_error",
    "gzip",
    "max_retries",
    "sync_mode",
    "timeout",
    "proxies",
    "thread",
    "upload_size",
    "upload_interval",
    "log_handler",
    "oauth_client_id",
    "oauth_client_key",
    "oauth_key_id",
    "oauth_auth_server",
    "oauth_scope",
    "max_total_backoff_duration",
    "max_rate_limit_duration",
    "shutdown_timeout",
    "max_queue_bytes",
    "on_success",
    "queue_full_timeout",
    "spool_dir",
    "max_spool_bytes",
    "spool_fsync",
)

default_client: Client | None = None
_default_client_lock = threading.Lock()


def _default() -> Client:
    """The default client, made on first use from the module settings (and again after a shutdown)."""
    global default_client  # noqa: PLW0603 - the module API is a lazily made singleton by design
    client = default_client
    if client is None or client._engine.state is EngineState.CLOSED:
        with _default_client_lock:
            if default_client is None or default_client._engine.state is EngineState.CLOSED:
                settings = globals()
                default_client = Client(**{name: settings[name] for name in MODULE_SETTINGS})
            client = default_client
    return client


def track(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Send a track call on the default client (see ``Client.track``)."""
    return _default().track(*args, **kwargs)


def identify(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Send an identify call on the default client (see ``Client.identify``)."""
    return _default().identify(*args, **kwargs)


def group(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Send a group call on the default client (see ``Client.group``)."""
    return _default().group(*args, **kwargs)


def alias(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Send an alias call on the default client (see ``Client.alias``)."""
    return _default().alias(*args, **kwargs)


def page(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Send a page call on the default client (see ``Client.page``)."""
    return _default().page(*args, **kwargs)


def screen(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Send a screen call on the default client (see ``Client.screen``)."""
    return _default().screen(*args, **kwargs)


def add_plugin(plugin: Plugin | Enrichment, *, kind: PluginKind = "before") -> None:
    """Add a plugin to the default client (see ``Client.add_plugin``)."""
    _default().add_plugin(plugin, kind=kind)


def remove_plugin(plugin: object) -> None:
    """Remove a plugin from the default client (see ``Client.remove_plugin``)."""
    _default().remove_plugin(plugin)


def flush(timeout: float | None = None) -> bool:
    """Flush the default client (see ``Client.flush``)."""
    return _default().flush(timeout)


def join() -> None:
    """Shut the default client down (kept for compatibility)."""
    _default().join()


def shutdown(timeout: float | None = None) -> bool:
    """Flush and shut the default client down, within ``timeout`` (default ``shutdown_timeout``)."""
    return _default().shutdown(timeout)
