"""The demo's crash: a process with a spool is killed mid-stream, and its restart delivers what it accepted.

:func:`crash_and_restart` starts this module as a child process
(``python -m segment_runtimes._demo_crash SPOOL HOST``), which tracks events
into a spool directory and prints the messageId of each call that returned
True. After a number of them, the parent kills it with SIGKILL (no shutdown,
no atexit: the process is simply gone), starts a fresh client on the same
directory, and checks at the collector that every accepted event arrived.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from .collector import Collector
from .threaded import Client

__all__ = ["CrashResult", "crash_and_restart"]

# The child's calls: enough to still be delivering when it is killed.
_CHILD_CALLS = 100_000


class CrashResult:
    """What the crash showed: events accepted before the kill, and how many arrived after the restart."""

    def __init__(self, accepted: list[str], delivered: int, duplicates: int, seconds: float) -> None:
        self.accepted = accepted
        self.delivered = delivered
        self.duplicates = duplicates
        self.seconds = seconds

    @property
    def missing(self) -> int:
        """Accepted events that never arrived (the promise: 0)."""
        return len(self.accepted) - self.delivered


def crash_and_restart(collector: Collector, kill_after: int) -> CrashResult:
    """Kill a tracking process after ``kill_after`` accepted events; restart on its spool; count what arrived."""
    started = time.perf_counter()
    before = set(collector.message_ids())
    with tempfile.TemporaryDirectory(prefix="segment-demo-spool-") as spool:
        child = subprocess.Popen(  # noqa: S603 - this module, run by this interpreter
            [sys.executable, "-m", "segment_runtimes._demo_crash", spool, collector.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert child.stdout is not None
        accepted: list[str] = []
        try:
            while len(accepted) < kill_after and (line := child.stdout.readline()):
                accepted.append(line.strip())
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        client = Client("demo-write-key", host=collector.url, spool_dir=spool, max_retries=20)
        try:
            wanted = set(accepted)
            deadline = time.monotonic() + 60
            while wanted - set(collector.message_ids()) and time.monotonic() < deadline:
                collector.wait_for(collector.count(unique=True) + 1, timeout=1.0, unique=True)
            client.flush(30)
        finally:
            client.shutdown(10)
    stored = [message_id for message_id in collector.message_ids() if message_id not in before]
    arrived = set(stored) & set(accepted)
    return CrashResult(accepted, len(arrived), len(stored) - len(set(stored)), time.perf_counter() - started)


def _child(spool: str, host: str) -> None:
    """Track into the spool until killed, printing each accepted messageId."""
    client = Client("demo-write-key", host=host, spool_dir=spool, upload_size=20, max_retries=20)
    properties: dict[str, Any] = {"plan": "pro"}
    write = sys.stdout.write
    for index in range(_CHILD_CALLS):
        ok, message = client.track(f"user-{index % 50}", "Checkout Step", properties)
        if ok:
            write(message["messageId"] + "\n")
            sys.stdout.flush()
    threading.Event().wait()  # until killed


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _child(sys.argv[1], sys.argv[2])
