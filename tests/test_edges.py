"""No reply, callback or misuse stops delivery, and every loss says why: one suite, every runtime.

Each scenario runs against the threaded, asyncio and trio clients, sending to a
real server on 127.0.0.1 that answers from a script of raw replies
(tests/hostile_server.py): bodies nested thousands deep, replies that echo the
credentials, replies that are not HTTP, absurd Retry-After values, callbacks that
raise SystemExit. After each, delivery must go on: the next messages arrive, a
flush returns, and whatever failed reached ``on_error`` once, naming its cause
and no secret.
"""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from segment_core import APIError, RetriesExhausted, ShutdownDeadline, TransportError
from segment_runtimes.collector import Collector
from segment_runtimes.threaded import Client

from .hostile_server import HANG_UP, hostile_server, reply
from .runtimes import RUNTIMES, Runtime, run_scenario
from .test_conformance import ErrorLog, closed_port

WRITE_KEY = "edges-write-key-5b1e77"
BASIC = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()

runtimes = pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda runtime: runtime.name)

DEEP_500 = reply(500, b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}", Content_Type="application/json")


def echo_headers(head: bytes, body: bytes) -> bytes:
    """A 400 whose body echoes the request's head, credentials included."""
    text = head.decode("latin-1") + "\r\nProxy-Authorization: Basic dXNlcjpzM2NyZXQ="
    return reply(400, text.encode("latin-1"))


def secrets_in(text: str) -> list[str]:
    return [secret for secret in (WRITE_KEY, BASIC, "dXNlcjpzM2NyZXQ=") if secret in text]


@runtimes
@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param(DEEP_500, id="500-nested-2000-deep"),
        pytest.param(reply(503, b"\xff\xfe" * 100, Retry_After="1e400"), id="503-invalid-utf8-absurd-retry-after"),
        pytest.param(reply(429, b"", Retry_After="-5"), id="429-negative-retry-after"),
        pytest.param(reply(503, b"x", Retry_After="Wed, 21 Oct 2015 07:28:00 GMT"), id="503-retry-after-in-the-past"),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", id="not-http"),
        pytest.param(HANG_UP, id="hang-up"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", id="absurd-length"),
    ],
)
def test_a_hostile_reply_is_retried_and_delivery_goes_on(runtime: Runtime, hostile: bytes) -> None:
    errors = ErrorLog()
    with hostile_server([hostile]) as server:

        async def scenario(runtime: Runtime) -> None:
            async with runtime.open(
                WRITE_KEY, host=server.url, on_error=errors, max_rate_limit_duration=5.0, timeout=5
            ) as client:
                first = client.call("track", "user-1", "Before")[1]["messageId"]
                assert await client.flush(30)
                second = client.call("track", "user-1", "After")[1]["messageId"]
                assert await client.flush(30)
                assert server.delivered_ids() == [first, second]

        run_scenario(runtime, scenario)
    assert errors.calls == []


@runtimes
def test_echoed_credentials_never_reach_on_error_or_the_log(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    errors = ErrorLog()
    with hostile_server([echo_headers]) as server, caplog.at_level(logging.DEBUG, logger="segment"):

        async def scenario(runtime: Runtime) -> None:
            async with runtime.open(WRITE_KEY, host=server.url, on_error=errors) as client:
                client.call("track", "user-1", "Refused")
                assert not await client.flush(30)
                client.call("track", "user-1", "Accepted")
                assert await client.flush(30)

        run_scenario(runtime, scenario)
    ((error, batch),) = errors.calls
    assert isinstance(error, APIError)
    assert error.status == 400
    assert [message["event"] for message in batch] == ["Refused"]
    assert "[redacted]" in error.message
    for text in (str(error), repr(error), error.message, caplog.text):
        assert secrets_in(text) == [], text


@runtimes
@pytest.mark.parametrize("raised", [SystemExit(3), KeyboardInterrupt(), RuntimeError("callback bug")], ids=repr)
def test_a_callback_that_raises_does_not_stop_delivery(
    runtime: Runtime, raised: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def on_error(error: Exception, batch: list[dict[str, Any]]) -> None:
        calls.extend(message["event"] for message in batch)
        raise raised

    def on_success(batch: list[dict[str, Any]]) -> None:
        calls.extend(f"ok:{message['event']}" for message in batch)
        raise raised

    with hostile_server([reply(400, b'{"code":"bad","message":"no"}')]) as server:

        async def scenario(runtime: Runtime) -> None:
            async with runtime.open(WRITE_KEY, host=server.url, on_error=on_error, on_success=on_success) as client:
                client.call("track", "user-1", "Refused")
                assert not await client.flush(30)
                client.call("track", "user-1", "Next")
                assert await client.flush(30)

        run_scenario(runtime, scenario)
        assert [message["event"] for message in server.delivered] == ["Next"]
    assert calls == ["Refused", "ok:Next"]
    assert f"on_error callback raised {type(raised).__name__}" in caplog.text
    assert "Traceback" in caplog.text


@runtimes
def test_a_down_host_fails_at_shutdown_naming_the_refused_connection(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    errors = ErrorLog()
    port = closed_port()

    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(WRITE_KEY, host=f"http://127.0.0.1:{port}", on_error=errors) as client:
            client.call("track", "user-1", "Nobody Home")
            assert not await client.shutdown(1.5)

    with caplog.at_level(logging.WARNING, logger="segment"):
        run_scenario(runtime, scenario)
    ((error, batch),) = errors.calls
    assert len(batch) == 1
    assert isinstance(error, ShutdownDeadline)
    assert isinstance(error.last_error, TransportError)
    assert error.__cause__ is error.last_error
    assert f"connection refused (127.0.0.1:{port})" in str(error)
    # The retries said why, and when the next attempt would be, as they happened.
    assert "retrying 1 message(s) in" in caplog.text
    assert f"connection refused (127.0.0.1:{port})" in caplog.text


@runtimes
def test_retries_exhausted_names_the_last_attempt(runtime: Runtime) -> None:
    errors = ErrorLog()
    with hostile_server([DEEP_500, DEEP_500, reply(502, b'{"code":"gateway","message":"down"}')]) as server:

        async def scenario(runtime: Runtime) -> None:
            async with runtime.open(WRITE_KEY, host=server.url, on_error=errors, max_retries=2) as client:
                client.call("track", "user-1", "Doomed")
                assert not await client.flush(30)

        run_scenario(runtime, scenario)
    ((error, _),) = errors.calls
    assert isinstance(error, RetriesExhausted)
    assert isinstance(error.last_error, APIError)
    assert error.__cause__ is error.last_error
    assert "last attempt: [Segment] gateway: down (502)" in str(error)


@runtimes
def test_a_closed_client_refuses_loudly(
    runtime: Runtime, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(WRITE_KEY, host=collector.url) as client:
            assert client.call("track", "user-1", "Open")[0]
            assert await client.shutdown(10)
            with caplog.at_level(logging.WARNING, logger="segment"):
                ok, message = client.call("track", "user-1", "Too Late")
            assert ok is False
            assert message["event"] == "Too Late"

    run_scenario(runtime, scenario)
    assert "message not queued" in caplog.text
    assert [m.json["event"] for m in collector.messages()] == ["Open"]


def test_a_trio_client_never_run_refuses_loudly(caplog: pytest.LogCaptureFixture) -> None:
    import trio

    from segment_runtimes.trio import TrioClient

    async def main() -> None:
        client = TrioClient(WRITE_KEY, host=f"http://127.0.0.1:{closed_port()}")
        with caplog.at_level(logging.WARNING, logger="segment"):
            ok, _ = client.track("user-1", "Nobody Runs Me")
        assert ok is False

    trio.run(main)
    assert "TrioClient is not running" in caplog.text
    assert "open_client(" in caplog.text


def test_queue_full_warnings_are_aggregated_not_a_flood(caplog: pytest.LogCaptureFixture) -> None:
    client = Client(WRITE_KEY, host=f"http://127.0.0.1:{closed_port()}", max_queue_size=50, upload_interval=3600)
    try:
        with caplog.at_level(logging.WARNING, logger="segment"):
            results = [client.track("user-1", "Flood")[0] for _ in range(20_000)]
        assert results.count(True) == 50
        lines = [record for record in caplog.records if "message not queued" in record.getMessage()]
        assert 1 <= len(lines) <= 3, len(lines)
        assert "queue full" in lines[0].getMessage()
        assert client.stats().rejected == 19_950
    finally:
        client.shutdown(0.5)
    # What was held back is counted when the client shuts down: no message goes uncounted.
    assert "more time(s) since the last report" in caplog.text


def test_a_burst_from_eight_threads_loses_nothing_with_default_settings(collector: Collector) -> None:
    client = Client(WRITE_KEY, host=collector.url)
    refused: list[int] = []
    start = threading.Barrier(8)

    def burst(thread: int) -> None:
        start.wait()
        for index in range(2_000):
            if not client.track(f"user-{thread}", "Burst", {"i": index})[0]:
                refused.append(index)

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert refused == []
        assert client.flush(60)
        assert collector.wait_for(16_000, timeout=30, unique=True)
    finally:
        client.shutdown(10)


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("runtime", ["threaded", "asyncio"])
def test_messages_held_at_exit_are_reported_not_lost(runtime: str) -> None:
    # A script that tracks and ends without shutdown: at exit, on_error hears of it and one ERROR line says so.
    port = closed_port()
    if runtime == "threaded":
        body = f"""
            from segment_runtimes.threaded import Client
            client = Client("k", host="http://127.0.0.1:{port}", on_error=on_error, shutdown_timeout=0.5)
            client.track("user-1", "At Exit")
        """
    else:
        body = f"""
            import asyncio
            from segment_runtimes.asyncio import AsyncClient
            client = AsyncClient("k", host="http://127.0.0.1:{port}", on_error=on_error)
            async def main():
                client.track("user-1", "At Exit")
            loop = asyncio.new_event_loop()
            loop.run_until_complete(main())  # the loop is left, never closed, the worker never cancelled
        """
    script = textwrap.dedent(
        """
        import logging, sys
        logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
        def on_error(error, batch):
            print("on_error", type(error).__name__, [m["event"] for m in batch], flush=True)
        """
    ) + textwrap.dedent(body)
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    assert "on_error ShutdownDeadline ['At Exit']" in result.stdout
    assert "1 message(s) not delivered" in result.stderr
    assert "Traceback" not in result.stderr


def run_send(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m segment_runtimes send`` of one track call, with ``args``."""
    command = [sys.executable, "-m", "segment_runtimes", "send", *args, "--type", "track", "--userId", "u1"]
    return subprocess.run([*command, "--event", "E"], capture_output=True, text=True, timeout=60, check=False)


def test_the_send_cli_says_why_once_and_exits_non_zero() -> None:
    port = closed_port()
    result = run_send("--writeKey", "k", "--host", f"http://127.0.0.1:{port}", "--timeout", "1.5")
    assert result.returncode == 1
    assert f"connection refused (127.0.0.1:{port})" in result.stderr
    assert result.stderr.count("connection refused") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_the_send_cli_refuses_an_empty_write_key_in_one_line() -> None:
    result = run_send("--writeKey", "")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "write key" in result.stderr
    assert "Traceback" not in result.stderr


@runtimes
@pytest.mark.parametrize("where", ["engine", "transport"])
def test_a_bug_in_the_loop_is_logged_and_the_batch_still_delivered(
    runtime: Runtime,
    where: str,
    collector: Collector,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Whatever raises inside a worker (here the engine, or the transport, once) is logged with its
    # traceback, the request's batch takes a retry naming it, and delivery goes on.
    from segment_core import Engine
    from segment_runtimes._transport import AsyncHTTP, SyncHTTP

    raised: list[str] = []

    def once(original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not raised:
                raised.append("boom")
                raise RuntimeError("a bug inside the worker")
            return original(*args, **kwargs)

        return wrapper

    def once_async(original: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not raised:
                raised.append("boom")
                raise RuntimeError("a bug inside the worker")
            return await original(*args, **kwargs)

        return wrapper

    if where == "engine":
        monkeypatch.setattr(Engine, "receive_response", once(Engine.receive_response))
    else:
        monkeypatch.setattr(SyncHTTP, "perform", once(SyncHTTP.perform))
        monkeypatch.setattr(AsyncHTTP, "perform", once_async(AsyncHTTP.perform))
    errors = ErrorLog()

    async def scenario(runtime: Runtime) -> None:
        async with runtime.open(WRITE_KEY, host=collector.url, on_error=errors) as client:
            client.call("track", "user-1", "Survives")
            assert await client.flush(30)
            client.call("track", "user-1", "Next")
            assert await client.flush(30)

    with caplog.at_level(logging.ERROR, logger="segment"):
        run_scenario(runtime, scenario)
    assert raised == ["boom"]
    assert errors.calls == []
    assert sorted(m.json["event"] for m in collector.messages() if not m.duplicate) == ["Next", "Survives"]
    assert f"internal error in the {where}" in caplog.text
    assert "Traceback" in caplog.text


def test_a_trio_client_whose_nursery_is_cancelled_reports_what_it_held() -> None:
    import trio

    from segment_runtimes.trio import TrioClient

    errors = ErrorLog()

    async def main() -> None:
        client = TrioClient(WRITE_KEY, host=f"http://127.0.0.1:{closed_port()}", on_error=errors)
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            assert client.track("user-1", "Held")[0]
            nursery.cancel_scope.cancel()  # the host's own cancellation: run() ends, nothing escapes

    trio.run(main)
    ((error, batch),) = errors.calls
    assert isinstance(error, ShutdownDeadline)
    assert "the nursery running the client was cancelled before shutdown()" in str(error)
    assert [message["event"] for message in batch] == ["Held"]
