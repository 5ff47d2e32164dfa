"""The trio runtime: ``open_client()`` and ``TrioClient``.

HTTP goes through ``_http.AsyncHTTP``, on trio streams here and asyncio streams
there: keep-alive, timeouts, TLS verification and proxies are the same as the
other runtimes', from the same code. The worker runs in a nursery::

    async with open_client("WRITE_KEY") as analytics:
        analytics.track("user-1", "Signed Up")
    # leaving the block shuts down within shutdown_timeout

or in a nursery the caller provides::

    client = TrioClient("WRITE_KEY")
    await nursery.start(client.run)
    ...
    await client.shutdown()
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from segment_core import EngineState

from ._extras import missing_extra

try:
    import trio
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by test_extras
    raise ImportError(missing_extra("trio", "segment_runtimes.trio")) from exc

from ._async_base import AsyncClientBase, Waiter

__all__ = ["TrioClient", "open_client"]


class TrioClient(AsyncClientBase):
    """A Segment client for trio. Keywords as ``threaded.Client`` but sync_mode and thread.

    Calls never block; ``await run()`` in a nursery drives delivery.
    """

    _running = False
    _wake: trio.Event | None = None
    _stopped: trio.Event | None = None

    def _ensure_worker(self) -> None:
        return None  # the worker is ``run``, started by the caller's nursery

    def _wake_worker(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _resolve(self, waiter: Waiter) -> None:
        event: trio.Event = waiter.token
        event.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver until shut down. Start it with ``await nursery.start(client.run)``."""
        if self._running:
            raise RuntimeError("TrioClient.run is already running")
        self._running = True
        self._stopped = trio.Event()
        engine = self._engine
        try:
            async with trio.open_nursery() as requests:
                task_status.started()
                while True:
                    for request in self._step():
                        requests.start_soon(self._exchange, request)
                    if engine.state is EngineState.CLOSED:
                        break
                    deadline = engine.next_deadline()
                    self._wake = wake = trio.Event()
                    if deadline is None:  # the usual wait while a batch is in flight: no cancel scope to pay for
                        await wake.wait()
                        continue
                    with trio.move_on_at(trio.current_time() + _until(deadline)):
                        await wake.wait()
                requests.cancel_scope.cancel()
        finally:
            if engine.state is not EngineState.CLOSED:
                self._abandon_now()  # cancelled from outside: report, never drop silently
            with trio.CancelScope(shield=True):
                await self._close_http()
            self._running = False
            self._stopped.set()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is delivered or failed, or ``timeout`` passes.

        Returns:
            True if every message queued before the call was delivered.
        """
        pending = self._flush_range()
        if pending is None:
            return True
        event = trio.Event()
        waiter = Waiter(pending[0], pending[1], event)
        self._waiters.append(waiter)
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await event.wait()
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        return event.is_set() and not waiter.failed

    async def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop ``run``, within ``timeout`` seconds (default ``shutdown_timeout``).

        Every message not delivered by then is reported through ``on_error`` once.

        Returns:
            True if everything queued was delivered.
        """
        failed_before = self._close_engine(timeout)
        self._wake_worker()
        if self._running:
            assert self._stopped is not None
            await self._stopped.wait()
        elif self._engine.state is not EngineState.CLOSED:
            await self.run()  # never started: deliver inline, up to the deadline
        return self._all_delivered_since(failed_before)


def _until(deadline: float) -> float:
    """Seconds from now to an engine deadline (time.monotonic), for trio's own clock."""
    return max(deadline - time.monotonic(), 0.0)


@asynccontextmanager
async def open_client(write_key: str | None = None, **options: Any) -> AsyncIterator[TrioClient]:
    """A TrioClient whose worker runs in a nursery for the life of the block.

    Leaving the block (normally, by exception or by cancellation) shuts the
    client down within ``shutdown_timeout``.
    """
    client = TrioClient(write_key, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        try:
            yield client
        finally:
            with trio.CancelScope(shield=True):
                await client.shutdown()
