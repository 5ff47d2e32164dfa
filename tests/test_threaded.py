"""What only the threaded runtime promises: the drop-in API, threads, fork, exit, and the CLI.

Against the embedded collector on 127.0.0.1; processes that fork or exit run
as subprocesses so the test process is never at risk.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import segment_runtimes.threaded as analytics
from segment_core import ConfigurationError, ValidationError
from segment_core.limits import DEFAULT_MAX_QUEUE_SIZE
from segment_runtimes.collector import Collector, Faults
from segment_runtimes.threaded import Client

from .test_conformance import WRITE_KEY, ErrorLog, closed_port


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether ``condition`` became true within ``timeout`` seconds (checked every 10 ms)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() >= deadline:
            return False
        pause.wait(0.01)
    return True


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segment_runtimes", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_signatures_match_segment_analytics_python() -> None:
    # The only test here that needs the reference client (a test dependency: it is there in CI).
    reference_client = pytest.importorskip("segment.analytics.client").Client
    for name in ("identify", "track", "alias", "group", "page", "screen", "__init__"):
        ours = list(inspect.signature(getattr(Client, name)).parameters)
        reference = list(inspect.signature(getattr(reference_client, name)).parameters)
        assert ours[: len(reference)] == reference, name
        ours_defaults = {k: p.default for k, p in inspect.signature(getattr(Client, name)).parameters.items()}
        for key, parameter in inspect.signature(getattr(reference_client, name)).parameters.items():
            if (name, key) == ("__init__", "max_queue_size"):
                # Raised on purpose (segment_core.limits says why; the README's migration table lists it).
                assert ours_defaults[key] == DEFAULT_MAX_QUEUE_SIZE > parameter.default
            elif key not in ("self", "host"):
                assert ours_defaults[key] == parameter.default, f"{name}({key})"


def test_missing_write_key_is_an_assertion_error() -> None:
    with pytest.raises(AssertionError):
        Client()
    with pytest.raises(ValidationError, match="write_key"):
        Client(None)
    with pytest.raises(ConfigurationError, match="upload_size"):
        Client("k", upload_size=0)


def test_send_false_validates_and_starts_nothing() -> None:
    before = threading.active_count()
    client = Client("k", send=False, host=f"http://127.0.0.1:{closed_port()}")
    ok, message = client.track("user", "Not Sent", {"a": 1})
    assert ok
    assert message["event"] == "Not Sent"
    with pytest.raises(ValidationError):
        client.track("user", None)
    assert threading.active_count() == before
    assert client.shutdown(1)


def test_sync_mode_call_from_on_error_does_not_wait_on_its_own_worker(collector: Collector) -> None:
    collector.set_faults(Faults(rate=1.0, seed=1, kinds=["400"]))
    from_callback: list[tuple[bool, dict[str, Any]]] = []

    def on_error(error: Exception, batch: list[dict[str, Any]]) -> None:
        collector.set_faults(None)
        from_callback.append(client.track("user", "From Callback"))

    client = Client(WRITE_KEY, host=collector.url, sync_mode=True, on_error=on_error)
    ok, _ = client.track("user", "Rejected")
    assert not ok
    [(queued, message)] = from_callback
    assert queued
    assert client.flush(10)
    assert message["messageId"] in collector.message_ids()
    assert client.shutdown(5)


def test_sync_mode_returns_after_delivery_with_retries(collector: Collector) -> None:
    collector.set_faults(Faults(rate=1.0, seed=1, kinds=["503"]))
    client = Client(WRITE_KEY, host=collector.url, sync_mode=True, upload_interval=30)
    done = threading.Event()
    result: dict[str, Any] = {}

    def call() -> None:
        result["value"] = client.track("user", "Synchronous")
        done.set()

    caller = threading.Thread(target=call)
    caller.start()
    # While every request fails the call must not return: three refused attempts take at
    # least 0.5 s (the first retry is immediate, the second waits 0.5 s), and it still waits.
    assert wait_until(lambda: collector.stats.faults.get("503", 0) >= 3)
    assert not done.is_set()
    assert collector.count() == 0
    collector.set_faults(None)
    assert done.wait(10)
    ok, message = result["value"]
    assert ok
    assert message["messageId"] in collector.message_ids()
    assert client.shutdown(5)


def test_many_threads_at_once(collector: Collector) -> None:
    client = Client(WRITE_KEY, host=collector.url, thread=3, upload_size=25)
    ids: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def producer(worker: int) -> None:
        barrier.wait()
        for index in range(150):
            ok, message = client.track(f"user-{worker}", "Concurrent", {"n": index})
            assert ok
            with lock:
                ids.append(message["messageId"])

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = time.monotonic()
    assert client.shutdown(30)
    # Every worker must notice the close, not only the one that saw it happen.
    assert time.monotonic() - started < 10
    stored = collector.message_ids()
    assert len(ids) == 1200
    assert sorted(stored) == sorted(ids)


@pytest.fixture
def module_api() -> Iterator[None]:
    saved = {name: getattr(analytics, name) for name in ("write_key", "host", "on_error", "send", "default_client")}
    yield
    if analytics.default_client is not None:
        analytics.default_client.shutdown(1)
    for name, value in saved.items():
        setattr(analytics, name, value)


@pytest.mark.usefixtures("module_api")
def test_module_level_api(collector: Collector) -> None:
    errors = ErrorLog()
    analytics.write_key = WRITE_KEY
    analytics.host = collector.url
    analytics.on_error = errors
    ids = [
        analytics.identify("user", {"plan": "pro"})[1]["messageId"],
        analytics.track("user", "Module Call")[1]["messageId"],
        analytics.page("user", "Docs", "Home")[1]["messageId"],
        analytics.screen("user", "App", "Home")[1]["messageId"],
        analytics.group("user", "org")[1]["messageId"],
        analytics.alias("anon", "user")[1]["messageId"],
    ]
    assert analytics.flush(10)
    assert analytics.default_client is not None
    assert analytics.default_client.on_error is errors
    analytics.shutdown()
    assert sorted(collector.message_ids()) == sorted(ids)
    assert errors.calls == []


@pytest.mark.usefixtures("module_api")
def test_module_level_api_works_again_after_shutdown(collector: Collector) -> None:
    analytics.write_key = WRITE_KEY
    analytics.host = collector.url
    first = analytics.track("user", "Before Shutdown")[1]["messageId"]
    assert analytics.shutdown(5)
    ok, message = analytics.track("user", "After Shutdown")
    assert ok
    assert analytics.flush(10)
    assert sorted(collector.message_ids()) == sorted([first, message["messageId"]])


def test_demo_runs_every_runtime_and_loses_nothing() -> None:
    result = run_cli("demo", "--events", "400", "--faults", "0.3", "--seed", "4", "--crash-after", "200", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.split()}
    for runtime in ("threaded", "asyncio", "trio"):
        sent, delivered, _retried, _duplicates, failed = rows[runtime][1:6]
        assert sent == delivered == "401"
        assert failed == "0"
    assert "duplicates: messages stored twice" in result.stdout
    assert "a few of the events that arrived:" in result.stdout
    assert "crash: 200 accepted before the kill, 200 delivered by a fresh client" in result.stdout
    assert "0 missing" in result.stdout
    assert "nothing lost" in result.stdout


def test_fork_child_delivers_its_own_and_parent_sends_nothing_twice(collector: Collector) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    script = """
        import os, sys
        from segment_runtimes.threaded import Client
        client = Client("k", host=sys.argv[1], upload_interval=30)
        client.track("parent", "Before Fork")
        pid = os.fork()
        if pid == 0:
            client.track("child", "In Child")
            ok = client.flush(10)
            os._exit(0 if ok and client.stats().delivered == 1 else 3)
        _, status = os.waitpid(pid, 0)
        client.track("parent", "After Fork")
        print("child-exit", os.waitstatus_to_exitcode(status))
        print("parent-flush", client.flush(10))
        client.shutdown(5)
    """
    result = run_python(script, collector.url)
    assert "child-exit 0" in result.stdout, result.stderr
    assert "parent-flush True" in result.stdout, result.stderr
    events = sorted((m.user_id or "", m.event_or_name or "") for m in collector.messages())
    assert events == [("child", "In Child"), ("parent", "After Fork"), ("parent", "Before Fork")]
    assert collector.duplicate_count() == 0


def test_exit_without_shutdown_delivers_without_waiting_for_upload_interval(collector: Collector) -> None:
    script = """
        import sys
        from segment_runtimes.threaded import Client
        client = Client("k", host=sys.argv[1], upload_interval=60, shutdown_timeout=10)
        for n in range(40):
            client.track("user", "At Exit", {"n": n})
    """
    started = time.monotonic()
    result = run_python(script, collector.url)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert collector.count() == 40
    assert elapsed < 30, "exit must not wait for upload_interval (60 s)"


def test_exit_with_server_down_is_bounded_by_shutdown_timeout() -> None:
    script = """
        import sys
        from segment_runtimes.threaded import Client
        report = lambda error, batch: print("reported", len(batch), type(error).__name__, flush=True)
        client = Client("k", host=sys.argv[1], shutdown_timeout=1, on_error=report)
        for n in range(5):
            client.track("user", "Unreachable", {"n": n})
    """
    started = time.monotonic()
    result = run_python(script, f"http://127.0.0.1:{closed_port()}")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["reported 5 ShutdownDeadline"]
    assert elapsed < 20


def test_cli_send_delivers_and_exits_zero(collector: Collector) -> None:
    result = run_cli(
        "send",
        "--writeKey",
        WRITE_KEY,
        "--host",
        collector.url,
        "--type",
        "track",
        "--userId",
        "cli-user",
        "--event",
        "CLI Event",
        "--properties",
        '{"plan": "pro"}',
        "--context",
        '{"source": "cli"}',
    )
    assert result.returncode == 0, result.stderr
    (stored,) = collector.messages()
    assert stored.json["event"] == "CLI Event"
    assert stored.json["properties"] == {"plan": "pro"}
    assert stored.json["context"]["source"] == "cli"
    assert stored.message_id in result.stdout


@pytest.mark.parametrize(
    ("extra", "code", "needle"),
    [
        (["--type", "track", "--userId", "u"], 2, "event"),
        (["--type", "track", "--userId", "u", "--event", "E", "--properties", "[1]"], 2, "JSON object"),
        (["--type", "identify", "--userId", "u", "--timeout", "1"], 1, "not delivered"),
    ],
    ids=["missing-event", "properties-not-object", "server-down"],
)
def test_cli_send_fails_clearly(extra: list[str], code: int, needle: str) -> None:
    result = run_cli("send", "--writeKey", WRITE_KEY, "--host", f"http://127.0.0.1:{closed_port()}", *extra)
    assert result.returncode == code
    assert needle in result.stderr
    assert WRITE_KEY not in result.stderr + result.stdout
