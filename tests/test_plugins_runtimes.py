"""Plugins, delivery hooks, call context, stats and the queue-full policy in every runtime, on real sockets."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
import trio
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from segment_core import ConfigurationError, call_context
from segment_runtimes.asyncio import AsyncClient
from segment_runtimes.collector import Collector, Faults
from segment_runtimes.plugins import OpenTelemetryIds, Sampling
from segment_runtimes.threaded import Client
from segment_runtimes.trio import TrioClient, open_client

from .runtimes import RUNTIMES, Runtime, run_scenario

runtimes = pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda runtime: runtime.name)
WRITE_KEY = "plugins-write-key"


@runtimes
def test_plugins_context_and_hooks_in_every_runtime(
    runtime: Runtime, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    delivered_batches: list[tuple[str, list[str]]] = []
    caller = threading.current_thread().name

    def on_success(batch: list[dict[str, Any]]) -> None:
        delivered_batches.append((threading.current_thread().name, [m["event"] for m in batch]))

    def tag(message: dict[str, Any]) -> dict[str, Any] | None:
        if message["event"] == "Noise":
            return None
        message["properties"]["tagged"] = True
        return message

    def broken(message: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("a plugin bug")

    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(WRITE_KEY, host=collector.url, on_success=on_success) as handle:
            client = handle.client
            client.add_plugin(tag)
            client.add_plugin(broken)
            client.add_plugin(lambda m: {"context": {"app": {"name": "shop"}}}, kind="enrichment")
            with call_context(user_id="scoped-user", context={"ip": "10.0.0.1"}):
                assert handle.call("track", event="Signal")[0]
                assert handle.call("track", event="Noise")[0] is False
            assert await handle.flush(10)
            stats = handle.stats()
            assert (stats.dropped, stats.delivered, stats.enqueued) == (1, 1, 1)

    with caplog.at_level(logging.ERROR, logger="segment"):
        run_scenario(runtime, scenario)
    (message,) = (m.json for m in collector.messages())
    assert message["event"] == "Signal"
    assert message["userId"] == "scoped-user"
    assert message["properties"] == {"tagged": True}
    assert message["context"]["ip"] == "10.0.0.1"
    assert message["context"]["app"] == {"name": "shop"}
    assert len(delivered_batches) == 1
    thread, events = delivered_batches[0]
    assert events == ["Signal"]
    if runtime.name == "threaded":
        assert thread != caller, "on_success runs on a worker, never on the caller's thread"
    assert "plugin broken raised RuntimeError" in caplog.text
    assert "Traceback" in caplog.text


def test_sampling_and_opentelemetry_ids_on_a_real_client(collector: Collector) -> None:
    client = Client(WRITE_KEY, host=collector.url)
    try:
        client.add_plugin(Sampling(1.0))
        client.add_plugin(OpenTelemetryIds(), kind="enrichment")
        span = NonRecordingSpan(SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=False, trace_flags=TraceFlags(1)))
        with trace.use_span(span):
            client.track("user-1", "Traced")
        client.track("user-1", "Untraced")
        assert client.flush(10)
    finally:
        client.shutdown(5)
    by_event = {m.json["event"]: m.json for m in collector.messages()}
    assert by_event["Traced"]["context"]["opentelemetry"] == {
        "traceId": f"{0xABC:032x}",
        "spanId": f"{0xDEF:016x}",
    }
    assert "opentelemetry" not in by_event["Untraced"]["context"]


def test_a_threaded_call_waits_for_room_up_to_its_timeout(collector: Collector) -> None:
    collector.set_faults(Faults(rate=1.0, kinds=("latency",), latency=0.2, seed=1))
    client = Client(WRITE_KEY, host=collector.url, max_queue_size=5, upload_size=5, queue_full_timeout=10)
    try:
        results = [client.track("user-1", "Patient", {"i": n})[0] for n in range(30)]
        assert all(results), "every call waited for room instead of dropping"
        assert client.flush(30)
        assert collector.wait_for(30, timeout=30, unique=True)
    finally:
        client.shutdown(5)


def test_a_threaded_call_that_waits_too_long_drops_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    client = Client(
        WRITE_KEY, host="http://127.0.0.1:9", max_queue_size=2, upload_interval=3600, queue_full_timeout=0.2
    )
    try:
        with caplog.at_level(logging.WARNING, logger="segment"):
            results = [client.track("user-1", "Impatient")[0] for _ in range(3)]
        assert results == [True, True, False]
        assert "queue full" in caplog.text
    finally:
        client.shutdown(0.2)


def test_async_clients_never_block_and_offer_wait_for_room(collector: Collector) -> None:
    with pytest.raises(ConfigurationError, match="wait_for_room"):
        AsyncClient(WRITE_KEY, queue_full_timeout=1)
    with pytest.raises(ConfigurationError, match="wait_for_room"):
        TrioClient(WRITE_KEY, queue_full_timeout=1)

    async def asyncio_main() -> None:
        async with AsyncClient(WRITE_KEY, host=collector.url, max_queue_size=3, upload_size=3) as client:
            sent = 0
            for _ in range(12):
                assert await client.wait_for_room(10)
                sent += client.track("user-1", "Awaited")[0]
            assert sent == 12
            assert await client.flush(10)

    asyncio.run(asyncio_main())

    async def trio_main() -> None:
        async with open_client(WRITE_KEY, host=collector.url, max_queue_size=3, upload_size=3) as client:
            for _ in range(12):
                assert await client.wait_for_room(10)
                assert client.track("user-1", "Awaited")[0]
            assert await client.flush(10)

    trio.run(trio_main)
    assert collector.wait_for(24, timeout=10, unique=True)
