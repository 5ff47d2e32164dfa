"""The asyncio runtime: ``AsyncClient``.

Calls (track, identify, ...) are plain methods that never block or await: they
build the message and hand it to the engine. One worker task, started on first
use inside a running loop, polls the engine and starts one task per request
(``_http.AsyncHTTP``, on asyncio streams). Lifecycle is awaitable::

    async with AsyncClient("WRITE_KEY") as analytics:
        analytics.track("user-1", "Signed Up")
        await analytics.flush()
    # leaving the block shuts down within shutdown_timeout

No thread is started (with a numeric host, or one the loop resolves without
its executor). If the loop ends with messages pending and no shutdown, they
are reported through on_error, not dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType

from segment_core import EngineState

from ._async_base import AsyncClientBase, Waiter
from ._common import log
from ._transport.connections import asyncio_within

__all__ = ["AsyncClient"]


class AsyncClient(AsyncClientBase):
    """A Segment client for asyncio. Keywords as ``threaded.Client`` but sync_mode and thread.

    ``max_in_flight`` (default 1) bounds concurrent requests.
    """

    _worker: asyncio.Task[None] | None = None
    _wake: asyncio.Event | None = None

    def _ensure_worker(self) -> None:
        if self._worker is not None or self._engine.state is EngineState.CLOSED:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside a loop: the worker starts at the next use inside one
        self._wake = asyncio.Event()
        self._requests: set[asyncio.Task[None]] = set()
        self._worker = loop.create_task(self._work(), name="segment-sansio-worker")

    def _wake_worker(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _resolve(self, waiter: Waiter) -> None:
        future: asyncio.Future[None] = waiter.token
        if not future.done():
            future.set_result(None)

    async def _work(self) -> None:
        engine = self._engine
        wake = self._wake
        assert wake is not None
        try:
            while True:
                for request in self._step():
                    task = asyncio.create_task(self._exchange(request))
                    self._requests.add(task)
                    task.add_done_callback(self._requests.discard)
                if engine.state is EngineState.CLOSED:
                    return
                deadline = engine.next_deadline()
                wake.clear()
                if deadline is None:  # the usual wait while a batch is in flight: no timeout to arm
                    await wake.wait()
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio_within(max(deadline - time.monotonic(), 0.0), wake.wait())  # no task per wait
        except asyncio.CancelledError:
            if engine.state is not EngineState.CLOSED:
                self._abandon_now()
            raise
        except Exception:  # pragma: no cover - a bug; keep what is pending visible
            log.exception("worker failed")
            self._abandon_now()
        finally:
            for task in list(self._requests):
                task.cancel()
            await self._close_http()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is delivered or failed, or ``timeout`` passes.

        Cancelling the wait loses nothing: the messages stay queued.

        Returns:
            True if every message queued before the call was delivered.
        """
        pending = self._flush_range()
        if pending is None:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = Waiter(pending[0], pending[1], future)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return not waiter.failed

    async def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop, within ``timeout`` seconds (default ``shutdown_timeout``).

        Every message not delivered by then is reported through ``on_error``
        once. Cancelling the caller does not cut delivery short: the worker
        still runs to the deadline.

        Returns:
            True if everything queued was delivered.
        """
        failed_before = self._close_engine(timeout)
        self._ensure_worker()
        self._wake_worker()
        if self._worker is not None:
            await asyncio.shield(self._worker)
        return self._all_delivered_since(failed_before)

    async def __aenter__(self) -> AsyncClient:
        self._ensure_worker()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.shutdown()
