"""What only the async runtimes promise: cancellation is harmless, trio runs in the caller's nursery,
and the event loop ending early reports what was pending instead of dropping it."""

from __future__ import annotations

import asyncio

import pytest
import trio

from segment_runtimes.asyncio import AsyncClient
from segment_runtimes.collector import Collector, Faults
from segment_runtimes.trio import TrioClient, open_client

from .test_conformance import WRITE_KEY, ErrorLog, closed_port

SLOW = Faults(rate=1.0, seed=1, kinds=["latency"], latency=0.3)


def test_asyncio_cancelled_flush_loses_and_duplicates_nothing(collector: Collector) -> None:
    collector.set_faults(SLOW)
    sent: list[str] = []

    async def main() -> None:
        async with AsyncClient(WRITE_KEY, host=collector.url, upload_size=10) as client:
            sent.extend(client.track("user", "Cancelled Wait", {"n": n})[1]["messageId"] for n in range(30))
            flushing = asyncio.create_task(client.flush())
            await asyncio.sleep(0.05)
            flushing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await flushing
            # A wait_for timeout cancels the same way.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.flush(), 0.05)
            collector.set_faults(None)
            assert await client.flush(10)

    asyncio.run(main())
    assert sorted(collector.message_ids()) == sorted(sent)


def test_asyncio_cancelled_shutdown_still_delivers(collector: Collector) -> None:
    collector.set_faults(SLOW)
    sent: list[str] = []

    async def main() -> None:
        client = AsyncClient(WRITE_KEY, host=collector.url)
        sent.extend(client.track("user", "Shutdown Cancelled", {"n": n})[1]["messageId"] for n in range(5))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.shutdown(10), 0.05)
        # The worker was shielded: it goes on to deliver.
        assert client._worker is not None
        await asyncio.wait_for(asyncio.shield(client._worker), 10)

    asyncio.run(main())
    assert sorted(collector.message_ids()) == sorted(sent)


def test_asyncio_loop_ending_without_shutdown_reports_pending() -> None:
    errors = ErrorLog()

    async def main() -> None:
        client = AsyncClient(WRITE_KEY, host=f"http://127.0.0.1:{closed_port()}", on_error=errors)
        client.track("user", "Abandoned")
        await asyncio.sleep(0)  # the worker starts, then asyncio.run cancels it at the end

    asyncio.run(main())
    assert len(errors.message_ids) == 1


def test_asyncio_calls_outside_a_loop_are_refused_loudly(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing would ever send a message queued where no loop runs: the call says so, never True.
    client = AsyncClient(WRITE_KEY, host=collector.url)
    with caplog.at_level("WARNING", logger="segment"):
        ok, message = client.track("user", "Outside A Loop")
    assert ok is False
    assert message["event"] == "Outside A Loop"
    assert "outside a running event loop" in caplog.text
    assert "async with AsyncClient(" in caplog.text

    async def main() -> None:
        async with client:
            assert client.track("user", "Inside The Loop")[0]
            assert await client.flush(10)

    asyncio.run(main())
    assert [m.json["properties"] for m in collector.messages()] == [{}]
    assert [m.json["event"] for m in collector.messages()] == ["Inside The Loop"]


def test_trio_cancelled_flush_loses_and_duplicates_nothing(collector: Collector) -> None:
    collector.set_faults(SLOW)
    sent: list[str] = []

    async def main() -> None:
        async with open_client(WRITE_KEY, host=collector.url, upload_size=10) as client:
            sent.extend(client.track("user", "Cancelled Wait", {"n": n})[1]["messageId"] for n in range(30))
            with trio.move_on_after(0.05) as scope:
                await client.flush()
            assert scope.cancelled_caught
            collector.set_faults(None)
            assert await client.flush(10)

    trio.run(main)
    assert sorted(collector.message_ids()) == sorted(sent)


def test_trio_client_in_the_callers_nursery(collector: Collector) -> None:
    sent: list[str] = []

    async def main() -> None:
        client = TrioClient(WRITE_KEY, host=collector.url)
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            sent.append(client.track("user", "Caller Nursery")[1]["messageId"])
            assert await client.flush(10)
            assert await client.shutdown(5)
        # A closed client's run returns at once, and it accepts nothing more.
        with trio.fail_after(5):
            await client.run()
        assert client.track("user", "Too Late")[0] is False

    trio.run(main)
    assert collector.message_ids() == sent


def test_trio_outer_cancellation_reports_pending_within_shutdown_timeout() -> None:
    errors = ErrorLog()

    async def main() -> None:
        with trio.move_on_after(0.2):
            async with open_client(
                WRITE_KEY, host=f"http://127.0.0.1:{closed_port()}", on_error=errors, shutdown_timeout=0.5
            ) as client:
                client.track("user", "Cancelled Outside")
                await trio.sleep_forever()

    trio.run(main)
    assert len(errors.message_ids) == 1
