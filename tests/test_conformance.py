"""One suite, every runtime: each scenario runs against threaded, asyncio and trio
clients sending to the embedded collector on 127.0.0.1 (real sockets, no mocks)."""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
from typing import Any

import pytest

from segment_core import APIError, RetriesExhausted, ShutdownDeadline, ValidationError
from segment_core.limits import LIBRARY_NAME
from segment_runtimes.collector import Collector, Faults

from .runtimes import RUNTIMES, Runtime, run_scenario

pytestmark = pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda runtime: runtime.name)

WRITE_KEY = "conformance-write-key-7f3a9c"


class ErrorLog:
    """An on_error callback that records what it was given, after ``busy_for`` seconds of work."""

    def __init__(self, raise_after_recording: bool = False, busy_for: float = 0.0) -> None:
        self.calls: list[tuple[Exception, list[dict[str, Any]]]] = []
        self.raise_after_recording = raise_after_recording
        self.busy_for = busy_for
        self.lock = threading.Lock()

    def __call__(self, error: Exception, batch: list[dict[str, Any]]) -> None:
        if self.busy_for:
            # Stands for a callback doing real work (writing to a dead-letter store, say):
            # whoever waits on the client must see its result, not race it.
            threading.Event().wait(self.busy_for)
        with self.lock:
            self.calls.append((error, batch))
        if self.raise_after_recording:
            raise RuntimeError("callback bug")

    @property
    def message_ids(self) -> list[str]:
        return [message["messageId"] for _, batch in self.calls for message in batch]


# Bound for the whole session and never listening: connecting is refused, and no
# collector started later can be given this port (a port bound and released could be).
_REFUSING = socket.socket()
_REFUSING.bind(("127.0.0.1", 0))


def closed_port() -> int:
    """A loopback port that refuses connections for the whole test session."""
    return int(_REFUSING.getsockname()[1])


def test_every_call_type_is_delivered(runtime: Runtime, collector: Collector) -> None:
    sent: dict[str, dict[str, Any]] = {}

    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(WRITE_KEY, host=collector.url) as client:
            for method, args in [
                ("identify", ("user-1", {"plan": "pro"})),
                ("track", ("user-1", "Signed Up", {"source": "ad"})),
                ("alias", ("anon-1", "user-1")),
                ("group", ("user-1", "org-9", {"name": "Acme"})),
                ("page", ("user-1", "Docs", "Install")),
                ("screen", ("user-1", "Settings", "Profile")),
            ]:
                ok, message = client.call(method, *args)
                assert ok
                sent[method] = message
            assert await client.flush(10)

    run_scenario(runtime, scenario)
    stored = {message.message_id: message.json for message in collector.messages()}
    assert set(stored) == {message["messageId"] for message in sent.values()}
    for method, message in sent.items():
        received = stored[message["messageId"]]
        assert received["type"] == method
        assert received["context"]["library"]["name"] == LIBRARY_NAME
    assert stored[sent["track"]["messageId"]]["event"] == "Signed Up"
    assert stored[sent["track"]["messageId"]]["properties"] == {"source": "ad"}
    assert stored[sent["alias"]["messageId"]]["previousId"] == "anon-1"
    assert stored[sent["group"]["messageId"]]["groupId"] == "org-9"
    assert stored[sent["page"]["messageId"]]["category"] == "Docs"
    assert stored[sent["screen"]["messageId"]]["name"] == "Profile"


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_injected_faults_lose_nothing(runtime: Runtime, gzip: bool) -> None:
    errors = ErrorLog()
    sent: list[str] = []
    faults = Faults(rate=0.35, seed=11, retry_after=0.0, latency=0.01)

    with Collector(faults=faults) as collector:

        async def scenario(runtime: Runtime) -> None:
            async with runtime.open(
                WRITE_KEY, host=collector.url, gzip=gzip, on_error=errors, upload_size=20, max_retries=30
            ) as client:
                for index in range(300):
                    ok, message = client.call("track", f"user-{index}", "Fault Tolerated", {"n": index})
                    assert ok
                    sent.append(message["messageId"])
                assert await client.shutdown(60)

        run_scenario(runtime, scenario)
        stats = collector.stats
        stored = collector.message_ids()
    assert errors.calls == []
    assert set(stored) == set(sent)
    assert sum(stats.faults.values()) > 0, "the scenario must actually inject faults"


def test_server_down_shutdown_is_bounded_and_reports_each_message_once(runtime: Runtime) -> None:
    errors = ErrorLog(busy_for=0.02)
    sent: list[str] = []
    timeout = 1.0

    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(WRITE_KEY, host=f"http://127.0.0.1:{closed_port()}", on_error=errors) as client:
            for index in range(25):
                sent.append(client.call("track", "user", "Lost", {"n": index})[1]["messageId"])
            started = time.monotonic()
            assert not await client.shutdown(timeout)
            elapsed = time.monotonic() - started
            # Bounded: the deadline, plus scheduling slack on a loaded machine.
            assert elapsed < timeout + 2.0
            assert elapsed >= timeout * 0.85, "shutdown gave up long before its deadline"
            # Reported before shutdown returned, not by a worker still running the callback.
            assert sorted(errors.message_ids) == sorted(sent)

    run_scenario(runtime, scenario)
    assert sorted(errors.message_ids) == sorted(sent)
    assert all(isinstance(error, ShutdownDeadline | RetriesExhausted) for error, _ in errors.calls)


def test_flush_waits_for_delivery_and_reports_failure(runtime: Runtime, collector: Collector) -> None:
    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(WRITE_KEY, host=collector.url, upload_interval=30.0) as client:
            assert await client.flush(1)  # nothing queued
            ids = [client.call("track", "user", "Flushed", {"n": n})[1]["messageId"] for n in range(5)]
            # upload_interval is 30 s: only flush can make these go now.
            assert await client.flush(10)
            assert set(ids) <= set(collector.message_ids())

        async with runtime.open(
            WRITE_KEY, host=f"http://127.0.0.1:{closed_port()}", shutdown_timeout=0.5
        ) as down_client:
            down_client.call("track", "user", "Stuck")
            assert not await down_client.flush(0.3)

    run_scenario(runtime, scenario)


def test_flush_returns_after_on_error_has_run(runtime: Runtime, collector: Collector) -> None:
    errors = ErrorLog(busy_for=0.2)
    collector.set_faults(Faults(rate=1.0, seed=1, kinds=["400"]))

    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(WRITE_KEY, host=collector.url, on_error=errors) as client:
            rejected = client.call("track", "user", "Rejected")[1]["messageId"]
            assert not await client.flush(10)
            # As segment-analytics-python's flush (queue.join after on_error), so a caller
            # can check its callback's work right after flush.
            assert errors.message_ids == [rejected]

    run_scenario(runtime, scenario)


def test_callback_that_raises_is_logged_and_delivery_continues(
    runtime: Runtime, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    errors = ErrorLog(raise_after_recording=True)
    collector.set_faults(Faults(rate=1.0, seed=1, kinds=["400"]))

    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(WRITE_KEY, host=collector.url, on_error=errors) as client:
            rejected = client.call("track", "user", "Rejected")[1]["messageId"]
            assert not await client.flush(10)
            collector.set_faults(None)
            accepted = client.call("track", "user", "Accepted")[1]["messageId"]
            assert await client.flush(10)
            assert errors.message_ids == [rejected]
            assert accepted in collector.message_ids()

    with caplog.at_level(logging.ERROR, logger="segment"):
        run_scenario(runtime, scenario)
    error = errors.calls[0][0]
    assert isinstance(error, APIError)
    assert error.status == 400
    assert any("on_error callback raised" in record.getMessage() for record in caplog.records)


def test_bad_input_raises_at_once_and_the_client_keeps_working(runtime: Runtime, collector: Collector) -> None:
    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(WRITE_KEY, host=collector.url) as client:
            with pytest.raises(ValidationError, match="event"):
                client.call("track", "user", None)
            with pytest.raises(AssertionError):  # what segment-analytics-python code catches
                client.call("track", None, "No Id")
            with pytest.raises(ValidationError, match="properties"):
                client.call("track", "user", "Bad", properties=["not", "a", "dict"])
            with pytest.raises(ValidationError, match="group_id"):
                client.call("group", "user", None)
            ok, message = client.call("track", 0, "Zero Is An Id")
            assert ok
            assert message["userId"] == "0"
            assert await client.flush(10)

    run_scenario(runtime, scenario)
    assert [m.json["event"] for m in collector.messages()] == ["Zero Is An Id"]


def test_full_queue_returns_false_without_blocking(runtime: Runtime) -> None:
    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(
            WRITE_KEY, host=f"http://127.0.0.1:{closed_port()}", max_queue_size=3, shutdown_timeout=0.2
        ) as client:
            results = [client.call("track", "user", "Burst", {"n": n})[0] for n in range(10)]
            assert results[:3] == [True, True, True]
            assert not all(results)
            assert client.stats().rejected == results.count(False)

    run_scenario(runtime, scenario)


def test_secrets_never_logged(runtime: Runtime, collector: Collector, caplog: pytest.LogCaptureFixture) -> None:
    collector.set_faults(Faults(rate=0.5, seed=3, kinds=["500", "400"]))

    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(WRITE_KEY, host=collector.url, debug=True) as client:
            for index in range(10):
                client.call("track", "user", "Logged", {"n": index})
            await client.flush(10)
            # The client's own repr (not the test wrapper's): it says what it is, and holds no secret.
            real = client.client
            text = repr(real)
            assert "object at 0x" not in text  # not the default repr
            assert type(real).__name__ in text
            assert f"host={collector.url!r}" in text
            assert WRITE_KEY not in text
            assert base64.b64encode(f"{WRITE_KEY}:".encode()).decode() not in text

    with caplog.at_level(logging.DEBUG):
        run_scenario(runtime, scenario)
    assert any(record.levelno == logging.DEBUG and record.name == "segment" for record in caplog.records)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert WRITE_KEY not in text
    assert "Basic " not in text
    assert "Authorization" not in text


def test_async_runtimes_start_no_thread(runtime: Runtime, collector: Collector) -> None:
    if runtime.name == "threaded":
        pytest.skip("the threaded runtime is made of threads")
    collector.set_faults(Faults(rate=0.3, seed=5, kinds=["503", "drop"]))

    async def scenario(runtime: Runtime) -> None:
        before = set(threading.enumerate())
        async with runtime.open(WRITE_KEY, host=collector.url) as client:
            for index in range(50):
                client.call("track", "user", "Threadless", {"n": index})
            assert await client.flush(20)
            assert set(threading.enumerate()) == before

    run_scenario(runtime, scenario)
