"""One interface over the three runtimes, so a scenario is written once and run on each.

A scenario is ``async def scenario(runtime: Runtime) -> None``. ``runtime.open(...)``
gives a client handle whose calls are plain methods and whose ``flush`` and
``shutdown`` are awaited (for the threaded client they simply block). The
scenario runs under asyncio for the threaded and asyncio runtimes and under
trio for the trio runtime.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import trio

from segment_core import Stats
from segment_runtimes.asyncio import AsyncClient
from segment_runtimes.threaded import Client
from segment_runtimes.trio import open_client

__all__ = ["RUNTIMES", "Handle", "Runtime", "run_scenario"]


class Handle(Protocol):
    client: Any  # the runtime's client itself

    def call(self, method: str, *args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]: ...

    async def flush(self, timeout: float | None = None) -> bool: ...

    async def shutdown(self, timeout: float | None = None) -> bool: ...

    def stats(self) -> Stats: ...


class Runtime(Protocol):
    name: str

    def open(self, write_key: str, **options: Any) -> AbstractAsyncContextManager[Handle]: ...


class _ThreadedHandle:
    def __init__(self, client: Client) -> None:
        self.client = client

    def call(self, method: str, *args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
        result: tuple[bool, dict[str, Any]] = getattr(self.client, method)(*args, **kwargs)
        return result

    async def flush(self, timeout: float | None = None) -> bool:
        return self.client.flush(timeout)

    async def shutdown(self, timeout: float | None = None) -> bool:
        return self.client.shutdown(timeout)

    def stats(self) -> Stats:
        return self.client.stats()


class _AsyncHandle:
    def __init__(self, client: Any) -> None:
        self.client = client

    def call(self, method: str, *args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
        result: tuple[bool, dict[str, Any]] = getattr(self.client, method)(*args, **kwargs)
        return result

    async def flush(self, timeout: float | None = None) -> bool:
        result: bool = await self.client.flush(timeout)
        return result

    async def shutdown(self, timeout: float | None = None) -> bool:
        result: bool = await self.client.shutdown(timeout)
        return result

    def stats(self) -> Stats:
        result: Stats = self.client.stats()
        return result


class ThreadedRuntime:
    name = "threaded"

    @asynccontextmanager
    async def open(self, write_key: str, **options: Any) -> AsyncIterator[Handle]:
        client = Client(write_key, **options)
        try:
            yield _ThreadedHandle(client)
        finally:
            client.shutdown()


class AsyncioRuntime:
    name = "asyncio"

    @asynccontextmanager
    async def open(self, write_key: str, **options: Any) -> AsyncIterator[Handle]:
        async with AsyncClient(write_key, **options) as client:
            yield _AsyncHandle(client)


class TrioRuntime:
    name = "trio"

    @asynccontextmanager
    async def open(self, write_key: str, **options: Any) -> AsyncIterator[Handle]:
        async with open_client(write_key, **options) as client:
            yield _AsyncHandle(client)


RUNTIMES: list[Runtime] = [ThreadedRuntime(), AsyncioRuntime(), TrioRuntime()]


def run_scenario(runtime: Runtime, scenario: Callable[[Runtime], Awaitable[None]]) -> None:
    """Run ``scenario(runtime)`` on the event loop that runtime needs."""

    async def main() -> None:
        await scenario(runtime)

    if runtime.name == "trio":
        trio.run(main)
    else:
        asyncio.run(main())


async def sleep(seconds: float, runtime: Runtime) -> None:
    """Yield to the runtime's loop (used only to let async workers run, never to wait for a result)."""
    if runtime.name == "trio":
        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)
