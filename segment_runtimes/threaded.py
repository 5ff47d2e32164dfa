"""The threaded runtime: ``Client``, a drop-in for ``segment.analytics.Client``, and the module API.

Switch by changing one import::

    import segment_runtimes.threaded as analytics   # was: import segment.analytics as analytics
    analytics.write_key = "..."
    analytics.track("user-1", "Signed Up", {"plan": "pro"})

How it works: a call builds and encodes its message in the caller's thread,
then takes one lock just long enough to hand the bytes to the engine. Worker
threads (``thread`` of them, started on first use) loop: poll the engine, take
a request it asks for, perform it (``_http.SyncHTTP``) outside the lock, feed the outcome
back, and sleep on a condition until the engine's next deadline or a wake-up
(a full batch, flush, shutdown). ``on_error`` runs in a worker, outside the lock.

Fork: a child gets a fresh lock, queue, worker and HTTP client on first use;
what the parent queued stays the parent's. Exit: an atexit hook shuts every
client down within its ``shutdown_timeout``, delivering what is queued.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any

from segment_core import (
    BuiltMessage,
    Engine,
    EngineState,
    MessagesDelivered,
    MessagesFailed,
    MessagesKept,
    Output,
    Request,
    Response,
    Retrying,
    Stats,
    TransportFailure,
    WaitSettled,
)
from segment_core.limits import (
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_RATE_LIMIT_DURATION,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_TOTAL_BACKOFF_DURATION,
    DEFAULT_OAUTH_AUTH_SERVER,
    DEFAULT_OAUTH_SCOPE,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TIMEOUT,
    DEFAULT_UPLOAD_INTERVAL,
    DEFAULT_UPLOAD_SIZE,
)

from ._common import (
    QUIET,
    WAKE,
    ErrorCallback,
    Options,
    RealTimeCalls,
    log,
    log_dropped,
    report_outcomes,
)
from ._transport.http import SyncHTTP

__all__ = [
    "Client",
    "alias",
    "flush",
    "group",
    "identify",
    "join",
    "page",
    "screen",
    "shutdown",
    "track",
]

# A worker that finds a deadline already due polls again at once; this floor
# only guards against a spin if the engine ever reported a stale deadline.
_MIN_WAIT = 0.001

# shutdown() stops delivery this much before its deadline (at most a tenth of the
# timeout) so that on_error has run for every leftover message when it returns.
_REPORTING_MARGIN = 0.25


class _Waiter:
    """A flush (or sync_mode call) waiting for sequence numbers [first, last] to settle."""

    __slots__ = ("failed", "first", "last")

    def __init__(self, first: int, last: int) -> None:
        self.first = first
        self.last = last
        self.failed = False


class Client(RealTimeCalls):
    """A Segment client driven by worker threads. Same keywords, order and defaults as
    segment-analytics-python 2.4's ``Client``, plus ``shutdown_timeout`` and ``max_queue_bytes``.

    Raises:
        ValidationError: write_key missing (an AssertionError, as before).
        ConfigurationError: another option is invalid.
    """

    class DefaultConfig:
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
        write_key: str | None = DefaultConfig.write_key,
        host: str | None = DefaultConfig.host,
        debug: bool = DefaultConfig.debug,
        max_queue_size: int = DefaultConfig.max_queue_size,
        send: bool = DefaultConfig.send,
        on_error: ErrorCallback | None = DefaultConfig.on_error,
        gzip: bool = DefaultConfig.gzip,
        max_retries: int = DefaultConfig.max_retries,
        sync_mode: bool = DefaultConfig.sync_mode,
        timeout: float = DefaultConfig.timeout,
        proxies: str | Mapping[str, str] | None = DefaultConfig.proxies,
        thread: int = DefaultConfig.thread,
        upload_size: int = DefaultConfig.upload_size,
        upload_interval: float = DefaultConfig.upload_interval,
        log_handler: logging.Handler | None = DefaultConfig.log_handler,
        oauth_client_id: str | None = DefaultConfig.oauth_client_id,
        oauth_client_key: str | None = DefaultConfig.oauth_client_key,
        oauth_key_id: str | None = DefaultConfig.oauth_key_id,
        oauth_auth_server: str = DefaultConfig.oauth_auth_server,
        oauth_scope: str = DefaultConfig.oauth_scope,
        max_total_backoff_duration: float = DefaultConfig.max_total_backoff_duration,
        max_rate_limit_duration: float = DefaultConfig.max_rate_limit_duration,
        shutdown_timeout: float = DefaultConfig.shutdown_timeout,
        max_queue_bytes: int = DefaultConfig.max_queue_bytes,
    ) -> None:
        self._options = Options(
            write_key=write_key,
            host=host,
            debug=debug,
            max_queue_size=max_queue_size,
            send=send,
            on_error=on_error,
            gzip=gzip,
            max_retries=max_retries,
            timeout=timeout,
            proxies=proxies,
            thread=thread,
            upload_size=upload_size,
            upload_interval=upload_interval,
            log_handler=log_handler,
            oauth_client_id=oauth_client_id,
            oauth_client_key=oauth_client_key,
            oauth_key_id=oauth_key_id,
            oauth_auth_server=oauth_auth_server,
            oauth_scope=oauth_scope,
            max_total_backoff_duration=max_total_backoff_duration,
            max_rate_limit_duration=max_rate_limit_duration,
            shutdown_timeout=shutdown_timeout,
            max_queue_bytes=max_queue_bytes,
        )
        self._options.configure_logging()
        self.sync_mode = bool(sync_mode)
        self._seed_ids()
        self._engine = Engine(self._options.engine, random=random.Random(os.urandom(16)))
        self._fresh_process_state()
        _live_clients.add(self)

    def _fresh_process_state(self) -> None:
        """Locks, workers and the HTTP client: made new at construction and in a forked child."""
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)  # workers wait here
        self._settled = threading.Condition(self._lock)  # flush and sync_mode wait here
        self._workers: list[threading.Thread] = []
        self._to_send: deque[Request] = deque()
        self._waiters: list[_Waiter] = []
        # Outcome lists taken from the engine whose on_error calls have not finished:
        # flush and shutdown wait for them, as the reference's queue.join() does.
        self._reports_pending = 0
        self._http: SyncHTTP | None = None

    def _after_fork_in_child(self) -> None:
        self._fresh_process_state()
        self._engine.reset_after_fork()
        self._seed_ids()

    # Compatibility attributes of segment.analytics.Client.
    @property
    def send(self) -> bool:
        return self._options.send

    @property
    def on_error(self) -> ErrorCallback | None:
        return self._options.on_error

    @property
    def host(self) -> str:
        return self._options.engine.host

    @property
    def write_key(self) -> str:
        return self._options.engine.write_key

    def __repr__(self) -> str:
        return f"<segment_runtimes.threaded.Client host={self.host!r} state={self._engine.state.value}>"

    # Calls ------------------------------------------------------------------

    def _submit(self, built: BuiltMessage) -> tuple[bool, dict[str, Any]]:
        message = built.message
        if built.dropped:
            log_dropped(built)
        if not self._options.send:
            return True, message
        with self._lock:
            if not self._workers and self._engine.state is EngineState.OPEN:
                self._start_workers()
            result = self._engine.enqueue(built.data, now=time.monotonic())
            if result is QUIET:
                pass
            elif result is WAKE:
                self._work_ready.notify()
            else:
                log.warning("message not queued: %s", result)
                return False, message
            if not self.sync_mode:
                return True, message
            seq = self._engine.last_seq
            self._engine.flush(now=time.monotonic())
            self._work_ready.notify()
            if threading.current_thread() in self._workers:
                # Called from on_error: waiting would wait on ourselves. It goes with the next batch.
                return True, message
            delivered = self._wait_settled(seq, seq, timeout=None)
        return delivered, message

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything queued so far is delivered or failed, or ``timeout`` passes.

        Returns:
            True if every message queued before the call was delivered.
        """
        with self._lock:
            engine = self._engine
            first, last = engine.oldest_unsettled_seq, engine.last_seq
            if first > last:
                return True
            engine.flush(now=time.monotonic())
            self._work_ready.notify_all()
            if threading.current_thread() in self._workers:
                # Called from on_error: waiting here would wait on ourselves.
                return False
            return self._wait_settled(first, last, timeout)

    def _wait_settled(self, first: int, last: int, timeout: float | None) -> bool:
        """With the lock held: wait until [first, last] is settled; True if none of it failed."""
        waiter = _Waiter(first, last)
        self._waiters.append(waiter)
        try:
            engine = self._engine
            settled = self._settled.wait_for(
                lambda: engine.oldest_unsettled_seq > last and not self._reports_pending, timeout
            )
        finally:
            self._waiters.remove(waiter)
        return settled and not waiter.failed

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop the workers, within ``timeout`` seconds (default ``shutdown_timeout``).

        Every message not delivered by then is reported through ``on_error``
        exactly once, before this returns: delivery stops a little before the
        deadline (a tenth of the timeout, at most 0.25 s) to leave time for the
        callbacks. Calls after shutdown return ``(False, msg)``.

        Returns:
            True if everything queued was delivered.
        """
        timeout = max(self._options.shutdown_timeout if timeout is None else timeout, 0.0)
        deadline = time.monotonic() + timeout
        delivery_deadline = deadline - min(timeout / 10, _REPORTING_MARGIN)
        in_worker = threading.current_thread() in self._workers
        with self._lock:
            failed_before = self._engine.stats().failed
            self._engine.close(now=time.monotonic(), deadline=delivery_deadline)
            self._work_ready.notify_all()
            workers = list(self._workers)
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(max(deadline - time.monotonic(), 0.0))
        leftovers: list[Output] = []
        with self._lock:
            if self._engine.state is not EngineState.CLOSED:
                # A worker is stuck in a request past the deadline: expire it from here.
                self._engine.poll(now=max(time.monotonic(), delivery_deadline), wall=time.time())
                self._collect(self._engine.next_outputs(), leftovers)
                if leftovers:
                    self._reports_pending += 1
        if leftovers:
            self._report(leftovers)
        with self._lock:
            if not in_worker:  # from on_error, our own report is one of those pending
                self._settled.wait_for(lambda: not self._reports_pending, max(deadline - time.monotonic(), 0.0))
            http, self._http = self._http, None
            all_delivered = self._engine.stats().failed == failed_before
        if http is not None and not any(worker.is_alive() for worker in workers):
            http.close()
        return all_delivered

    def join(self) -> None:
        """Kept for compatibility: the same as ``shutdown()``."""
        self.shutdown()

    def stats(self) -> Stats:
        """Counters: enqueued, delivered, failed by reason, retries, queue depth, ..."""
        with self._lock:
            return self._engine.stats()

    # Workers ----------------------------------------------------------------

    def _start_workers(self) -> None:
        for index in range(self._options.thread):
            worker = threading.Thread(target=self._work, name=f"segment-sansio-worker-{index}", daemon=True)
            self._workers.append(worker)
            worker.start()

    def _work(self) -> None:
        engine = self._engine
        while True:
            outcomes: list[Output] = []
            request: Request | None = None
            with self._lock:
                while True:
                    now = time.monotonic()
                    engine.poll(now=now, wall=time.time())
                    self._collect(engine.next_outputs(), outcomes)
                    if self._to_send:
                        request = self._to_send.popleft()
                        break
                    if outcomes or engine.state is EngineState.CLOSED:
                        break
                    deadline = engine.next_deadline()
                    self._work_ready.wait(None if deadline is None else max(deadline - now, _MIN_WAIT))
                closed = engine.state is EngineState.CLOSED and request is None
                if closed:
                    self._work_ready.notify_all()  # the other workers may sleep with no deadline
                if outcomes:
                    self._reports_pending += 1
            if outcomes:
                self._report(outcomes)
            if closed:
                return
            if request is not None:
                self._exchange(request)

    def _exchange(self, request: Request) -> None:
        """Perform one request outside the lock and feed its outcome to the engine."""
        outcome = self._perform(request)
        outcomes: list[Output] = []
        with self._lock:
            now, wall = time.monotonic(), time.time()
            if isinstance(outcome, Response):
                self._engine.receive_response(request.id, outcome, now=now, wall=wall)
            else:
                self._engine.receive_failure(request.id, outcome, now=now, wall=wall)
            self._collect(self._engine.next_outputs(), outcomes)
            if outcomes:
                self._reports_pending += 1
        if outcomes:
            self._report(outcomes)

    def _report(self, outcomes: list[Output]) -> None:
        """Outside the lock: log and call on_error, then wake the flushes waiting for these outcomes."""
        try:
            report_outcomes(outcomes, self._options.on_error)
        finally:
            with self._lock:
                self._reports_pending -= 1
                self._settled.notify_all()

    def _perform(self, request: Request) -> Response | TransportFailure:
        http = self._http
        if http is None:
            with self._lock:  # one client for every worker; built after a fork too, since that drops it
                http = self._http
                if http is None:
                    http = self._http = SyncHTTP(timeout=self._options.timeout, proxies=self._options.proxies)
        return http.perform(request)

    def _collect(self, outputs: list[Output], outcomes: list[Output]) -> None:
        """With the lock held: queue requests for the workers, mark failed waiters, keep outcomes to report."""
        for output in outputs:
            if isinstance(output, Request):
                self._to_send.append(output)
                continue
            outcomes.append(output)
            if isinstance(output, MessagesFailed):
                last = output.first_seq + len(output.messages) - 1
                for waiter in self._waiters:
                    if output.first_seq <= waiter.last and last >= waiter.first:
                        waiter.failed = True
            elif not isinstance(output, MessagesDelivered | Retrying | WaitSettled | MessagesKept):
                raise AssertionError(f"unknown output {output!r}")
        if len(self._to_send) > 1:
            self._work_ready.notify(len(self._to_send) - 1)


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
on_error: ErrorCallback | None = Client.DefaultConfig.on_error
debug: bool = Client.DefaultConfig.debug
log_handler: logging.Handler | None = Client.DefaultConfig.log_handler
send: bool = Client.DefaultConfig.send
sync_mode: bool = Client.DefaultConfig.sync_mode
max_queue_size: int = Client.DefaultConfig.max_queue_size
gzip: bool = Client.DefaultConfig.gzip
timeout: float = Client.DefaultConfig.timeout
max_retries: int = Client.DefaultConfig.max_retries
proxies: str | Mapping[str, str] | None = Client.DefaultConfig.proxies
upload_size: int = Client.DefaultConfig.upload_size
upload_interval: float = Client.DefaultConfig.upload_interval
max_total_backoff_duration: float = Client.DefaultConfig.max_total_backoff_duration
max_rate_limit_duration: float = Client.DefaultConfig.max_rate_limit_duration
shutdown_timeout: float = Client.DefaultConfig.shutdown_timeout
max_queue_bytes: int = Client.DefaultConfig.max_queue_bytes
oauth_client_id: str | None = Client.DefaultConfig.oauth_client_id
oauth_client_key: str | None = Client.DefaultConfig.oauth_client_key
oauth_key_id: str | None = Client.DefaultConfig.oauth_key_id
oauth_auth_server: str = Client.DefaultConfig.oauth_auth_server
oauth_scope: str = Client.DefaultConfig.oauth_scope

default_client: Client | None = None
_default_client_lock = threading.Lock()


def _default() -> Client:
    """The default client, made on first use from the module settings (and again after a shutdown)."""
    global default_client  # noqa: PLW0603 - the module API is a lazily made singleton by design
    client = default_client
    if client is None or client._engine.state is EngineState.CLOSED:
        with _default_client_lock:
            if default_client is None or default_client._engine.state is EngineState.CLOSED:
                default_client = Client(
                    write_key,
                    host=host,
                    debug=debug,
                    max_queue_size=max_queue_size,
                    send=send,
                    on_error=on_error,
                    gzip=gzip,
                    max_retries=max_retries,
                    sync_mode=sync_mode,
                    timeout=timeout,
                    proxies=proxies,
                    upload_size=upload_size,
                    upload_interval=upload_interval,
                    log_handler=log_handler,
                    oauth_client_id=oauth_client_id,
                    oauth_client_key=oauth_client_key,
                    oauth_key_id=oauth_key_id,
                    oauth_auth_server=oauth_auth_server,
                    oauth_scope=oauth_scope,
                    max_total_backoff_duration=max_total_backoff_duration,
                    max_rate_limit_duration=max_rate_limit_duration,
                    shutdown_timeout=shutdown_timeout,
                    max_queue_bytes=max_queue_bytes,
                )
            client = default_client
    return client


def track(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Send a track call on the default client."""
    return _default().track(*args, **kwargs)


def identify(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Send an identify call on the default client."""
    return _default().identify(*args, **kwargs)


def group(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Send a group call on the default client."""
    return _default().group(*args, **kwargs)


def alias(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Send an alias call on the default client."""
    return _default().alias(*args, **kwargs)


def page(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Send a page call on the default client."""
    return _default().page(*args, **kwargs)


def screen(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    """Send a screen call on the default client."""
    return _default().screen(*args, **kwargs)


def flush(timeout: float | None = None) -> bool:
    """Flush the default client."""
    return _default().flush(timeout)


def join() -> None:
    """Shut the default client down (kept for compatibility)."""
    _default().join()


def shutdown(timeout: float | None = None) -> bool:
    """Flush and shut the default client down, within ``timeout`` (default ``shutdown_timeout``)."""
    return _default().shutdown(timeout)
