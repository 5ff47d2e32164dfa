"""The trio runtime: ``open_client()`` and ``TrioClient``.

HTTP goes through ``_transport.AsyncHTTP``, on trio streams here and asyncio
streams there: keep-alive, timeouts, TLS verification and proxies are the same
as the other runtimes', from the same code. The worker runs in a nursery::

    async with open_client("WRITE_KEY") as analytics:
        analytics.track("user-1", "Signed Up")
    # leaving the block shuts down within shutdown_timeout

or in a nursery the caller provides::

    client = TrioClient("WRITE_KEY")
    await nursery.start(client.run)
    client.track("user-1", "Signed Up")
    await client.shutdown()

Nothing the client does cancels the host's tasks: whatever raises inside the
worker or a request is logged and delivery goes on; only a cancellation from
outside ends ``run``, and then what is pending is reported through
``on_error``. A call made while ``run`` is not running returns
``(False, msg)`` with a warning naming the fix.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from segment_core import BuiltMessage, EngineState, Enqueued

from ._async_base import AFTER_A_BUG, SPOOL_TENDING, AsyncClientBase
from ._extras import missing_extra
from ._options import args_doc

try:
    import trio
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by test_extras
    raise ImportError(missing_extra("trio", "segment_runtimes.trio")) from exc

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._options import ClientOptions

__all__ = ["TrioClient", "open_client"]

# Per call, as module constants: no attribute lookups on the hot path.
_thread_id = threading.get_ident
_monotonic = time.monotonic
_QUIET = Enqueued.QUIET
_WAKE = Enqueued.WAKE

_NOT_RUNNING = (
    "TrioClient is not running, so nothing would send; the message was not queued. "
    "Use `async with open_client(...) as client:`, or `await nursery.start(client.run)` before calling it"
)
_OTHER_THREAD = (
    "TrioClient was called from another thread than the one its run() runs on; the message was not queued. "
    "Call it from its own trio thread (or use threaded.Client from threads)"
)
_RUN_CANCELLED = "the nursery running the client was cancelled before shutdown() (use `async with open_client(...)`)"


class _Wait:
    """A flush or shutdown waiting for the engine's WaitSettled."""

    __slots__ = ("delivered", "done")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.delivered = False


class TrioClient(AsyncClientBase):
    """A Segment client for trio: plain calls; ``await run()`` in a nursery drives delivery.

    ``max_in_flight`` (default 1) bounds concurrent requests.
    """

    _running = False
    _thread: int | None = None
    _wake: trio.Event | None = None
    _stopped: trio.Event | None = None

    def _submit(self, built: BuiltMessage) -> tuple[bool, dict[str, Any]]:
        # The common call, checked and queued in a few steps: run() is running on this thread,
        # nothing to log, send on. Anything else takes the full path, which says what is wrong.
        if self._running and _thread_id() == self._thread and not built.dropped:
            if self._plain:
                result = self._engine.enqueue(built.data, now=_monotonic())
                if result is _QUIET:
                    return True, built.message
                if result is _WAKE:
                    self._wake_worker()
                    return True, built.message
                return self._refused(result, built.message)
            if (spool := self._spool) is not None and self._settings.send:
                return self._submit_durably(built, spool)
        return super()._submit(built)

    def _call_misuse(self) -> str | None:
        if self._closed:
            return None  # the engine refuses it, saying the client is closed
        if not self._running:
            return _NOT_RUNNING
        if threading.get_ident() != self._thread:
            return _OTHER_THREAD
        return None

    def _wake_worker(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _worker_running(self) -> bool:
        return self._running

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(function, *args)

    def _resolve(self, primitive: _Wait, delivered: bool) -> None:
        primitive.delivered = delivered
        primitive.done.set()

    _room: trio.Event | None = None

    def _room_freed(self) -> None:
        if self._room is not None:
            self._room.set()

    async def wait_for_room(self, timeout: float | None = None, *, size: int = 1024) -> bool:
        """Wait until the queue has room for a message of ``size`` bytes, at most ``timeout`` seconds.

        The event loop's form of ``queue_full_timeout`` (a call never blocks)::

            if await client.wait_for_room(5):
                client.track("user-1", "Signed Up")   # nothing ran in between: the room is still there

        Returns:
            Whether there is room (False: the timeout passed, or the client is closed).
        """
        engine = self._engine
        with trio.move_on_after(math.inf if timeout is None else timeout):
            while not engine.has_room(size):
                if engine.state is not EngineState.OPEN:
                    return False
                self._room = room = trio.Event()
                self._kick()
                await room.wait()
        return engine.has_room(size)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver until shut down. Start it with ``await nursery.start(client.run)``.

        Raises:
            RuntimeError: it is already running.
        """
        if self._running:
            raise RuntimeError("TrioClient.run is already running")
        self._running = True
        self._thread = threading.get_ident()
        self._stopped = trio.Event()
        engine = self._engine
        try:
            async with trio.open_nursery() as requests:
                task_status.started()
                while True:
                    try:
                        if self._spool is not None:
                            await self._tend_spool(self._spool)
                        for request in self._step():
                            requests.start_soon(self._exchange, request)
                        if engine.state is EngineState.CLOSED:
                            break
                        deadline = engine.next_deadline()
                        if self._spool is not None:  # a scan or an fsync may fall due: look at least every second
                            soon = time.monotonic() + SPOOL_TENDING
                            deadline = soon if deadline is None else min(deadline, soon)
                        self._wake = wake = trio.Event()
                        if deadline is None:  # the usual wait while a batch is in flight: no cancel scope to pay for
                            await wake.wait()
                            continue
                        with trio.move_on_at(trio.current_time() + _until(deadline)):
                            await wake.wait()
                    except trio.Cancelled:
                        raise
                    except Exception as exc:  # a bug of ours: never lose the worker, never fail the host's nursery
                        self._reporter.bug("the worker", exc)
                        await trio.sleep(AFTER_A_BUG)
                requests.cancel_scope.cancel()
        finally:
            self._running = False
            if engine.state is not EngineState.CLOSED:
                self._abandon(_RUN_CANCELLED)  # cancelled from outside: report, never drop silently
            with trio.CancelScope(shield=True):
                await self._close_http()
                await self._close_spool()
            self._stopped.set()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is delivered or failed, or ``timeout`` seconds pass.

        Returns:
            True if every message queued before the call was delivered.
        """
        wait = _Wait()
        token = self._new_wait(wait)
        self._engine.flush(now=time.monotonic(), waiter=token)
        self._kick()
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await wait.done.wait()
        if not wait.done.is_set():
            self._forget_wait(token)
            return False
        return wait.delivered

    async def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop ``run``, within ``timeout`` seconds (default ``shutdown_timeout``).

        Every message not delivered by then is reported through ``on_error`` once
        (or, with a spool, kept on disk for the next start).

        Returns:
            True if everything queued was delivered.
        """
        timeout = self._settings.shutdown_timeout if timeout is None else timeout
        wait = _Wait()
        token = self._new_wait(wait)
        now = time.monotonic()
        self._engine.close(now=now, deadline=now + max(timeout, 0.0), waiter=token)
        if self._running:
            self._wake_worker()
            assert self._stopped is not None
            await self._stopped.wait()
        elif self._engine.state is not EngineState.CLOSED:
            await self.run()  # never started: deliver inline, up to the deadline
        self._dispatch(self._engine.next_outputs())
        self._reporter.throttle.flush()
        return wait.done.is_set() and wait.delivered


TrioClient.__doc__ = (TrioClient.__doc__ or "") + "\n" + args_doc()


def _until(deadline: float) -> float:
    """Seconds from now to an engine deadline (time.monotonic), for trio's own clock."""
    return max(deadline - time.monotonic(), 0.0)


@asynccontextmanager
async def open_client(write_key: str | None = None, **options: Unpack[ClientOptions]) -> AsyncIterator[TrioClient]:
    """A TrioClient whose worker runs in a nursery for the life of the block.

    Leaving the block (normally, by exception or by cancellation) shuts the
    client down within ``shutdown_timeout``.

    Args:
        write_key: the source's write key.
        **options: the other settings, as ``TrioClient`` takes them.
    """
    client = TrioClient(write_key, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        try:
            yield client
        finally:
            with trio.CancelScope(shield=True):
                await client.shutdown()
