"""The part of the asyncio and trio runtimes that does not depend on the event loop.

Both run one worker task that polls the engine, reports what it settled
(callbacks, log lines, waking a flush) and starts one task per request it asks
for; requests go through ``_transport.AsyncHTTP``, which runs on asyncio and
trio alike. What differs (events, waiting with a timeout, spawning tasks, which
calls are misuse) is left to the subclass. Everything here runs on the event
loop's thread, so no lock is needed.

No call returns True for a message no worker will deliver: a call the client
cannot serve (outside its event loop, before ``run``, after shutdown) returns
``(False, msg)`` with a warning naming the fix. Messages still held when the
loop stops, or when the interpreter exits, are reported failed, saying so.
"""

from __future__ import annotations

import atexit
import itertools
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from segment_core import (
    BuiltMessage,
    ConfigurationError,
    DeliveryError,
    EngineState,
    Enqueued,
    Output,
    Request,
    Response,
    TransportFailure,
    WaitSettled,
)
from segment_core.spool import SpoolRef

from ._client_base import ClientBase
from ._durability import SpoolLink
from ._options import ClientOptions, Settings
from ._reporting import is_cancellation
from ._transport import AsyncHTTP

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["AFTER_A_BUG", "SPOOL_TENDING", "AsyncClientBase"]

# After an exception where none should be, the worker pauses this long before going on.
AFTER_A_BUG = 0.5
# With a spool, the worker looks at least this often whether a scan or an fsync is due.
SPOOL_TENDING = 1.0

_QUIET = Enqueued.QUIET
_WAKE = Enqueued.WAKE


class AsyncClientBase(ClientBase):
    """Settings, engine, reporting and misuse checks shared by AsyncClient and TrioClient.

    Args:
        write_key: the source's write key.
        **options: the other settings (see ``Settings``).
    """

    def __init__(self, write_key: str | None = None, **options: Unpack[ClientOptions]) -> None:
        settings = Settings(write_key=write_key, **options)
        if settings.queue_full_timeout:
            raise ConfigurationError(
                f"{type(self).__name__} never blocks a call on a full queue (it would block the event loop): "
                "leave queue_full_timeout at 0 and `await client.wait_for_room(timeout)` before calling instead"
            )
        self._setup(settings)
        self._waiter_ids = itertools.count(1)
        self._waiters: dict[int, Any] = {}  # token -> the loop's primitive for it
        self._http: AsyncHTTP | None = None
        _live_clients.add(self)

    # Loop-specific hooks ------------------------------------------------------

    def _call_misuse(self) -> str | None:
        """Why a call made now cannot be served (the fix, in words), or None; may start the worker."""
        raise NotImplementedError

    def _wake_worker(self) -> None:
        raise NotImplementedError

    def _resolve(self, primitive: Any, delivered: bool) -> None:
        """Wake whoever waits on ``primitive`` (what ``_new_wait`` was given), with the outcome."""
        raise NotImplementedError

    def _worker_running(self) -> bool:
        raise NotImplementedError

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run blocking file work (a spool's reads and fsyncs) off the event loop's thread."""
        raise NotImplementedError

    # The spool ------------------------------------------------------------------

    async def _tend_spool(self, spool: SpoolLink) -> None:
        """Read recovered records for the engine, feed them, delete settled files, fsync when due.

        The file work (reads, unlinks, fsyncs) runs in a thread, never on the loop's.
        """
        now = time.monotonic()
        if spool.wants_pull(now) and self._engine.state is EngineState.OPEN:
            await self._in_thread(spool.pull, now)
        if spool.backlog:
            spool.feed(self._engine, now)
        if spool.untidy:
            await self._in_thread(spool.tidy)
        if spool.sync_due(now):
            await self._in_thread(spool.sync, now)

    async def _close_spool(self) -> None:
        spool = self._spool
        if spool is not None and not spool.spool.closed:
            await self._in_thread(spool.close)

    # Calls --------------------------------------------------------------------

    def _submit(self, built: BuiltMessage) -> tuple[bool, dict[str, Any]]:
        message = built.message
        if built.dropped:
            self._reporter.dropped_values(built)
        if not self._settings.send:
            return True, message
        misuse = self._call_misuse()
        if misuse is not None:
            self._reporter.misuse(f"misuse of {type(self).__name__}", misuse)
            return False, message
        spool = self._spool
        if spool is not None:
            return self._submit_durably(built, spool)
        result = self._engine.enqueue(built.data, now=time.monotonic())
        if result is _QUIET:
            return True, message
        if result is _WAKE:
            self._wake_worker()
            return True, message
        return self._refused(result, message)

    def _refused(self, result: object, message: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        if isinstance(result, DeliveryError):
            self._reporter.refused(result)
        return False, message

    def _submit_durably(self, built: BuiltMessage, spool: SpoolLink) -> tuple[bool, dict[str, Any]]:
        """With a spool: True only once the message is in a spool file (a write, never an fsync here)."""
        data = built.data
        ref = spool.spool.append(data)  # the link's own method would be one more frame per call
        if type(ref) is not SpoolRef:
            self._engine.record_refused()
            self._reporter.spool_refused(ref)
            return False, built.message
        result = self._engine.enqueue(data, now=time.monotonic())
        if result is not _QUIET and result is not _WAKE:  # refused: identity tests keep isinstance off the common path
            spool.refused(ref)
            if isinstance(result, DeliveryError):
                self._reporter.refused(result)
            return False, built.message
        spool.refs[self._engine.last_seq] = ref
        if result is _WAKE:
            self._wake_worker()
        return True, built.message

    # The worker's steps --------------------------------------------------------

    def _step(self) -> list[Request]:
        """Poll the engine; report what it settled; return the requests to start."""
        self._engine.poll(now=time.monotonic(), wall=time.time())
        return self._dispatch(self._engine.next_outputs())

    def _dispatch(self, outputs: list[Output]) -> list[Request]:
        requests: list[Request] = []
        spool = self._spool
        for output in outputs:
            if type(output) is Request:
                requests.append(output)
                continue
            if spool is not None:
                spool.settled(output)
            if isinstance(output, WaitSettled):
                primitive = self._waiters.pop(output.waiter, None)
                if primitive is not None:
                    self._resolve(primitive, output.delivered)
            else:
                self._reporter.report(output)
        if requests:  # batches left the queue: a wait for room may end
            self._room_freed()
        return requests

    def _room_freed(self) -> None:
        """Wake whoever waits in ``wait_for_room``."""

    def _new_wait(self, primitive: Any) -> int:
        token = next(self._waiter_ids)
        self._waiters[token] = primitive
        return token

    def _kick(self) -> None:
        """After an input: wake the worker, or, with none running, report what the engine settled here."""
        if self._worker_running():
            self._wake_worker()
        else:
            self._dispatch(self._engine.next_outputs())

    def _forget_wait(self, token: int) -> None:
        if self._waiters.pop(token, None) is not None:
            self._engine.cancel_wait(token)

    def _abandon(self, reason: str) -> None:
        """The worker cannot run any more: report every pending message failed now, saying why."""
        now = time.monotonic()
        self._engine.close(now=now, deadline=now, reason=reason)
        self._engine.poll(now=now, wall=time.time())
        self._dispatch(self._engine.next_outputs())
        self._reporter.throttle.flush()

    async def _exchange(self, request: Request) -> None:
        """Perform one request and feed its outcome back to the engine; nothing but cancellation escapes."""
        outcome: Response | TransportFailure
        try:
            http = self._http
            if http is None:
                settings = self._settings
                http = self._http = AsyncHTTP(timeout=settings.request_timeout, proxies=settings.proxies)
            outcome = await http.perform(request)
        except BaseException as exc:  # the transport promises not to raise; if it does, the batch retries
            if is_cancellation(exc):
                raise
            outcome = self._internal_failure("the transport", exc)
        self._feed_outcome(request, outcome)
        self._wake_worker()

    async def _close_http(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    def _report_at_exit(self) -> None:
        if self._engine.state is not EngineState.CLOSED and self._engine.pending:
            self._abandon(
                f"the interpreter exited before {type(self).__name__}.shutdown() "
                "(use `async with`, or await shutdown() before the event loop ends)"
            )
        if self._spool is not None and not self._spool.spool.closed:
            self._spool.close()  # no event loop runs any more: this thread may block


_live_clients: weakref.WeakSet[AsyncClientBase] = weakref.WeakSet()


def _report_at_exit() -> None:
    """At exit, a client still holding messages reports them failed (on_error, one ERROR line) rather than lose them."""
    for client in list(_live_clients):
        try:
            client._report_at_exit()
        except Exception as exc:  # exit must go on
            client._reporter.bug("the exit report", exc)


atexit.register(_report_at_exit)
