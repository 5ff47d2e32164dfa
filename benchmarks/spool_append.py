"""What a spool append costs the caller, per fsync policy, on a real disk and on tmpfs.

Run: ``python -m benchmarks.spool_append [DIRECTORY ...]`` (default: a
temporary directory on the disk, and one in /dev/shm). For each directory and
policy it appends ~600-byte records (a typical track call's JSON) and prints
the median microseconds per ``append`` over several runs, and the cost of
``acknowledge`` per record in batches of 100. With ``"interval"`` a worker
thread calls ``maybe_sync`` meanwhile, as a client's worker would, so the
appends pay for whatever contention the syncs cause.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from segment_runtimes._spool import Spool, SpoolRef

RECORD = json.dumps(
    {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-0123456789",
        "messageId": "0b8e9c52-4b1e-4c1f-9d64-6e0f1c2a3b4c",
        "timestamp": "2024-05-01T12:00:00.000+00:00",
        "properties": {
            "order": "A-1234567",
            "total": 42.5,
            "currency": "EUR",
            "items": ["sku-1", "sku-2"] * 6,
            "coupon": "SPRING-" + "X" * 100,
        },
        "context": {"library": {"name": "segment-sansio", "version": "0.1.0"}, "ip": "203.0.113.7"},
        "integrations": {},
    }
).encode()
RUNS = 5
APPENDS = {"never": 20_000, "interval": 20_000, "always": 300}


def measure(directory: Path, fsync: str) -> tuple[float, float]:
    """(median µs per append, median µs per acknowledged record)."""
    append_costs, acknowledge_costs = [], []
    for run in range(RUNS):
        with Spool(directory / f"{fsync}-{run}", max_bytes=1 << 30, fsync=fsync) as spool:
            stop = threading.Event()
            syncer = threading.Thread(target=_sync_until, args=(spool, stop), daemon=True)
            syncer.start()
            count = APPENDS[fsync]
            refs: list[SpoolRef] = []
            started = time.perf_counter()
            for _ in range(count):
                ref = spool.append(RECORD)
                assert isinstance(ref, SpoolRef), ref
                refs.append(ref)
            append_costs.append((time.perf_counter() - started) / count * 1e6)
            stop.set()
            syncer.join()
            started = time.perf_counter()
            for first in range(0, count - 100, 100):  # the last batch would delete the file instead
                spool.acknowledge(refs[first : first + 100])
            acknowledge_costs.append((time.perf_counter() - started) / max(1, count - 100) * 1e6)
    return statistics.median(append_costs), statistics.median(acknowledge_costs)


def _sync_until(spool: Spool, stop: threading.Event) -> None:
    while not stop.wait(0.05):
        spool.maybe_sync(time.monotonic())


def main(directories: list[str]) -> None:
    """Print one line per directory and policy."""
    if not directories:
        with tempfile.TemporaryDirectory() as disk, tempfile.TemporaryDirectory(dir="/dev/shm") as memory:
            main([disk, memory])
        return
    print(f"record: {len(RECORD)} bytes of JSON; median of {RUNS} runs")
    for directory in directories:
        for fsync in ("never", "interval", "always"):
            append_us, acknowledge_us = measure(Path(directory), fsync)
            costs = f"append {append_us:8.1f} µs   acknowledge {acknowledge_us:5.2f} µs/record"
            print(f"{directory:30} fsync={fsync:9} {costs}")


if __name__ == "__main__":
    main(sys.argv[1:])
