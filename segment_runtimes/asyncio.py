"""The asyncio runtime: ``AsyncClient``.

Calls (track, identify, ...) are plain methods that never block or await: they
build the message and hand it to the engine. One worker task, started by
``async with`` or by the first call made inside a running loop, polls the
engine and starts one task per request (``_transport.AsyncHTTP``, on asyncio
streams). Lifecycle is awaitable::

    async with AsyncClient("WRITE_KEY") as analytics:
        analytics.track("user-1", "Signed Up")
        await analytics.flush()
    # leaving the block shuts down within shutdown_timeout

A call made where the worker cannot run (outside a running event loop, or
from another thread or loop than the client's) returns ``(False, msg)`` with a
warning naming the fix, never True for a message nothing would send. If the
loop ends with messages pending and no shutdown, they are reported through
``on_error`` (``ShutdownDeadline`` saying so), not dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from segment_core import BuiltMessage, EngineState, Enqueued

from ._async_base import AFTER_A_BUG, SPOOL_TENDING, AsyncClientBase
from ._options import args_doc
from ._transport.connections import asyncio_within

__all__ = ["AsyncClient"]

# Per call, as module constants: no attribute lookups on the hot path.
_running_loop = asyncio.events._get_running_loop
_monotonic = time.monotonic
_QUIET = Enqueued.QUIET
_WAKE = Enqueued.WAKE

_OUTSIDE_A_LOOP = (
    "AsyncClient was called outside a running event loop, where no worker can send; the message was not queued. "
    "Use it inside async code: `async with AsyncClient(...) as client: client.track(...)`"
)
_OTHER_LOOP = (
    "AsyncClient was called from another thread or event loop than the one it runs on; the message was not queued. "
    "Call it from its own loop (use one client per loop, or threaded.Client from threads)"
)
_LOOP_STOPPED = "the event loop stopped the client's worker before shutdown() (use `async with AsyncClient(...)`)"


class AsyncClient(AsyncClientBase):
    """A Segment client for asyncio: plain calls, awaitable ``flush()`` and ``shutdown()``, ``async with``.

    ``max_in_flight`` (default 1) bounds concurrent requests.
    """

    _worker: asyncio.Task[None] | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    def _submit(self, built: BuiltMessage) -> tuple[bool, dict[str, Any]]:
        # The common call, checked and queued in a few steps: on the client's loop, nothing to log,
        # send on. Anything else takes the full path, which says what is wrong.
        if _running_loop() is self._loop is not None and not built.dropped:
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
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            return _OUTSIDE_A_LOOP
        if self._loop is None:
            self._start_worker(loop)
        elif loop is not self._loop:
            return _OTHER_LOOP
        return None

    def _start_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._worker is not None or self._engine.state is EngineState.CLOSED:
            return
        self._loop = loop
        self._wake = asyncio.Event()
        self._requests: set[asyncio.Task[None]] = set()
        self._worker = loop.create_task(self._work(), name="segment-sansio-worker")

    def _wake_worker(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _resolve(self, primitive: asyncio.Future[bool], delivered: bool) -> None:
        if not primitive.done():
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
                primitive.set_result(delivered)

    def _worker_running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(function, *args)

    async def _work(self) -> None:
        engine = self._engine
        wake = self._wake
        assert wake is not None
        try:
            while True:
                try:
                    if self._spool is not None:
                        await self._tend_spool(self._spool)
                    for request in self._step():
                        task = asyncio.create_task(self._exchange(request))
                        self._requests.add(task)
                        task.add_done_callback(self._requests.discard)
                    if engine.state is EngineState.CLOSED:
                        return
                    deadline = engine.next_deadline()
                    if self._spool is not None:  # a scan or an fsync may fall due: look at least every second
                        soon = time.monotonic() + SPOOL_TENDING
                        deadline = soon if deadline is None else min(deadline, soon)
                    wake.clear()
                    if deadline is None:  # the usual wait while a batch is in flight: no timeout to arm
                        await wake.wait()
                        continue
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio_within(max(deadline - time.monotonic(), 0.0), wake.wait())  # no task per wait
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug of ours: never lose the worker
                    self._reporter.bug("the worker", exc)
                    await asyncio.sleep(AFTER_A_BUG)
        except asyncio.CancelledError:
            if engine.state is not EngineState.CLOSED:
                self._abandon(_LOOP_STOPPED)
            raise
        finally:
            for task in list(self._requests):
                task.cancel()
            await self._close_http()
            await self._close_spool()

    def _register(self) -> tuple[int, asyncio.Future[bool]]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        return self._new_wait(future), future

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is delivered or failed, or ``timeout`` seconds pass.

        Cancelling the wait loses nothing: the messages stay queued.

        Returns:
            True if every message queued before the call was delivered.
        """
        self._ensure_worker()
        token, future = self._register()
        self._engine.flush(now=time.monotonic(), waiter=token)
        self._kick()
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            self._forget_wait(token)
            return False

    async def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop, within ``timeout`` seconds (default ``shutdown_timeout``).

        Every message not delivered by then is reported through ``on_error``
        once (or, with a spool, kept on disk for the next start). Cancelling the
        caller does not cut delivery short: the worker still runs to the deadline.

        Returns:
            True if everything queued was delivered.
        """
        timeout = self._settings.shutdown_timeout if timeout is None else timeout
        self._ensure_worker()
        token, future = self._register()
        now = time.monotonic()
        self._engine.close(now=now, deadline=now + max(timeout, 0.0), waiter=token)
        self._kick()
        delivered = await asyncio.shield(future)
        if self._worker is not None:
            await asyncio.shield(self._worker)
        self._reporter.throttle.flush()
        return delivered

    _room: asyncio.Event | None = None

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
        self._ensure_worker()
        engine = self._engine
        deadline = None if timeout is None else time.monotonic() + timeout
        while not engine.has_room(size):
            if engine.state is not EngineState.OPEN:
                return False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            room = self._room = self._room or asyncio.Event()
            room.clear()
            self._kick()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(room.wait(), remaining)
        return True

    def _ensure_worker(self) -> None:
        if self._worker is None:
            self._start_worker(asyncio.get_running_loop())

    async def __aenter__(self) -> AsyncClient:
        self._ensure_worker()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.shutdown()


AsyncClient.__doc__ = (AsyncClient.__doc__ or "") + "\n" + args_doc()
