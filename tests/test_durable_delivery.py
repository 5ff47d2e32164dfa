"""An accepted event survives the death of its process: real processes, SIGKILL, a fresh client.

A child process (tests/durable_child.py) tracks events into a spool directory and
reports each call that returned True; the parent kills it with SIGKILL at a random
point, with the API down or while it delivers through injected faults. A fresh
client on the same directory must then deliver every reported event: zero
missing. Duplicates (delivered, then killed before the acknowledgement) are
counted, and must be few. Waits are on the child's output and on the collector,
never on sleeps.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from segment_runtimes import _spool as spool_module
from segment_runtimes.collector import Collector, Faults
from segment_runtimes.threaded import Client

from .runtimes import RUNTIMES as RUNTIME_HANDLES
from .runtimes import Runtime, run_scenario
from .test_conformance import closed_port

RUNTIMES = ["threaded", "asyncio", "trio"]
ROOT = Path(__file__).resolve().parent.parent


def run_child_until(runtime: str, spool: Path, host: str, accepted_count: int) -> list[str]:
    """Start a child, read until it has accepted ``accepted_count`` events, SIGKILL it; the ids it reported."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.durable_child", runtime, str(spool), host],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    accepted: list[str] = []
    try:
        assert child.stdout.readline().strip() == "ready"
        while len(accepted) < accepted_count:
            line = child.stdout.readline()
            assert line, f"the child ended after {len(accepted)} events"
            accepted.append(line.split()[1])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    return accepted


def wait_until_delivered(collector: Collector, wanted: set[str], timeout: float = 60.0) -> set[str]:
    """Wait (on the collector's condition, for each new message) until ``wanted`` arrived; what is missing."""
    deadline = time.monotonic() + timeout
    while missing := wanted - set(collector.message_ids()):
        if time.monotonic() >= deadline:
            return missing
        collector.wait_for(collector.count(unique=True) + 1, timeout=1.0, unique=True)
    return set()


def deliver_what_is_left(spool: Path, collector: Collector, expected: list[str]) -> None:
    client = Client("durable-key", host=collector.url, spool_dir=spool)
    try:
        missing = wait_until_delivered(collector, set(expected))
        assert missing == set(), f"{len(missing)} of {len(expected)} accepted event(s) never delivered"
        assert client.flush(30)
    finally:
        client.shutdown(10)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("seed", [1, 2])
def test_killed_with_the_api_down_a_fresh_client_delivers_every_accepted_event(
    runtime: str, seed: int, tmp_path: Path, collector: Collector
) -> None:
    count = random.Random(seed).randint(20, 400)
    accepted = run_child_until(runtime, tmp_path, f"http://127.0.0.1:{closed_port()}", count)
    deliver_what_is_left(tmp_path, collector, accepted)
    # Nothing was delivered before the kill: nothing can be there twice.
    assert collector.duplicate_count() == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_killed_while_delivering_through_faults_nothing_is_missing(
    runtime: str, tmp_path: Path, collector: Collector
) -> None:
    collector.set_faults(Faults(rate=0.3, seed=7, retry_after=0.05, latency=0.005))
    count = random.Random(runtime).randint(300, 900)
    accepted = run_child_until(runtime, tmp_path, collector.url, count)
    collector.set_faults(None)
    # Lost-reply faults make duplicates of their own; count only those the restart sends.
    duplicates_before = collector.duplicate_count()
    deliver_what_is_left(tmp_path, collector, accepted)
    # A message is sent again only if it was delivered and not yet acknowledged at the kill: the
    # batch in flight and the one being acknowledged (upload_size 10), never a whole backlog again.
    assert collector.duplicate_count() - duplicates_before <= 2 * 10


def test_two_processes_on_one_directory_lose_nothing(tmp_path: Path, collector: Collector) -> None:
    down = f"http://127.0.0.1:{closed_port()}"
    first = run_child_until("threaded", tmp_path, down, 150)
    second = run_child_until("asyncio", tmp_path, down, 120)
    files = sorted(tmp_path.glob("*.spool"))
    assert len({name.name.split("-")[1] for name in files}) == 2, "each process wrote files of its own"
    deliver_what_is_left(tmp_path, collector, first + second)


def test_a_damaged_file_is_survived_and_named(
    tmp_path: Path, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    accepted = run_child_until("threaded", tmp_path, f"http://127.0.0.1:{closed_port()}", 60)
    (spool_file,) = tmp_path.glob("*.spool")
    raw = bytearray(spool_file.read_bytes())
    victim = accepted[len(accepted) // 2]
    at = raw.find(victim.encode())
    assert at > 0
    raw[at + 3] ^= 0x01  # a flipped bit in that one record's data
    raw += b"garbage appended by a broken disk"
    spool_file.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="segment"):
        client = Client("durable-key", host=collector.url, spool_dir=tmp_path)
        try:
            # One read of the file recovers all its records: once most arrived, a flush covers the rest.
            assert collector.wait_for(len(accepted) - 1, timeout=60, unique=True)
            assert client.flush(30)
            missing = set(accepted) - set(collector.message_ids())
        finally:
            client.shutdown(10)
    assert missing == {victim}, "only the damaged record is lost"
    damage = [record.getMessage() for record in caplog.records if spool_file.name in record.getMessage()]
    assert damage, caplog.text
    assert any("offset" in line for line in damage)


def test_the_spool_bound_refuses_loudly_and_never_blocks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    down = f"http://127.0.0.1:{closed_port()}"
    client = Client("durable-key", host=down, spool_dir=tmp_path, max_spool_bytes=20_000)
    try:
        with caplog.at_level(logging.WARNING, logger="segment"):
            results = [client.track("user-1", "Bounded", {"i": index})[0] for index in range(200)]
        assert results[0] is True
        assert results[-1] is False
        refused = results.count(False)
        assert 0 < refused < 200
        assert client.stats().rejected == refused
        assert "message not queued" in caplog.text
        assert sum(path.stat().st_size for path in tmp_path.glob("*.spool")) <= 20_000
    finally:
        client.shutdown(0.2)


@pytest.mark.parametrize("runtime", RUNTIME_HANDLES, ids=lambda runtime: runtime.name)
def test_settled_files_are_deleted_by_the_worker_never_on_the_callers_thread(
    runtime: Runtime, tmp_path: Path, collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    unlinked_on: list[int] = []
    unlink = spool_module._unlink_quietly

    def recording_unlink(path: Path) -> None:
        if path.suffix == spool_module.SPOOL_SUFFIX:  # not the directory's probe at construction
            unlinked_on.append(threading.get_ident())
        unlink(path)

    monkeypatch.setattr(spool_module, "_unlink_quietly", recording_unlink)

    async def scenario(runtime: Runtime) -> None:
        async with runtime.open("durable-key", host=collector.url, spool_dir=tmp_path, upload_size=10) as handle:
            handle.client._spool.spool.segment_bytes = 4096  # a few records a file: files rotate, then settle
            for index in range(60):
                assert handle.call("track", "user-1", "Rotating", {"index": index})[0]
            assert await handle.flush(30)
            assert await handle.flush(30)  # one more turn of the worker: it deletes what the first settled
            assert len(list(tmp_path.glob("*.spool"))) <= 1  # the file being written, at most
            assert unlinked_on, "no settled file was deleted"
            assert threading.get_ident() not in unlinked_on

    run_scenario(runtime, scenario)
    assert collector.count(unique=True) == 60
    assert os.listdir(tmp_path) == []


def test_a_forked_child_writes_its_own_files(tmp_path: Path, collector: Collector) -> None:
    code = f"""
import os, sys
from segment_runtimes.threaded import Client
client = Client("durable-key", host="http://127.0.0.1:{closed_port()}", spool_dir={str(tmp_path)!r})
client.track("parent", "Before Fork")
pid = os.fork()
if pid == 0:
    ok = client.track("child", "In Child")[0]
    client.shutdown(0.2)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
client.track("parent", "After Fork")
client.shutdown(0.2)
sys.exit(os.waitstatus_to_exitcode(status))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    pids = {name.name.split("-")[1] for name in tmp_path.glob("*.spool")}
    assert len(pids) == 2, pids
    client = Client("durable-key", host=collector.url, spool_dir=tmp_path)
    try:
        assert collector.wait_for(3, timeout=30, unique=True)
        assert client.flush(30)
    finally:
        client.shutdown(10)
    assert client.stats().delivered == 3
    events = sorted(message.json["event"] for message in collector.messages())
    assert events == ["After Fork", "Before Fork", "In Child"]
    assert not list(tmp_path.glob("*.spool")), "delivered files are deleted"
    assert os.listdir(tmp_path) == []


def test_send_with_a_spool_to_a_down_host_says_the_message_stays(tmp_path: Path) -> None:
    port = closed_port()
    command = [
        sys.executable,
        "-m",
        "segment_runtimes",
        "send",
        "--writeKey",
        "k",
        "--host",
        f"http://127.0.0.1:{port}",
    ]
    command += ["--type", "track", "--userId", "u1", "--event", "E", "--timeout", "1", "--spool-dir", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert f"stays in the spool at {tmp_path}" in result.stderr
    assert f"connection refused (127.0.0.1:{port})" in result.stderr
    drain = [sys.executable, "-m", "segment_runtimes", "spool", "drain", str(tmp_path), "--writeKey", "k"]
    drain += ["--host", f"http://127.0.0.1:{port}", "--timeout", "1"]
    drained = subprocess.run(drain, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert drained.returncode == 1
    assert "1 left in" in drained.stderr
    assert f"last attempt: connection refused (127.0.0.1:{port})" in drained.stderr
