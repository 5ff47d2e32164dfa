"""Where the time goes: cProfile of the caller path and the worker path, ours and the reference's.

Usage, from the repository root::

    python -m benchmarks.profiling [--n 10000] [--out DIR]

1. Stage timings of one ``track`` call, without a profiler (a profiler inflates
   small functions): building the message (cleaning each dict, stamping,
   encoding) and queueing it, for ours and for the reference.
2. The caller path under cProfile: N ``Client.track`` calls while the worker
   delivers to a collector in another process.
3. The worker path under cProfile: the worker thread of ``threaded.Client``
   (its ``_work`` loop, profiled from inside the thread) and the reference's
   ``Consumer.run``, delivering the same N events.
4. With ``--collector``: the collector's server thread while the same events
   are replayed to it, since its time per batch bounds every events/s figure.

Profiles count the profiled thread's CPU time (``time.thread_time``), from the
first request after a warm-up.

``--out DIR`` also writes the ``.prof`` files (for snakeviz, pstats, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import os
import pstats
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .run import CollectorProcess
from .workload import WRITE_KEY, make_calls

__all__ = ["main"]


def _per_call_us(function: Callable[[], object], repeat: int) -> float:
    """The best of five means of ``repeat`` calls, in µs (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(repeat):
            function()
        best = min(best, (time.perf_counter_ns() - t0) / repeat / 1000)
    return best


def stage_timings(repeat: int) -> list[tuple[str, float]]:
    """µs per call of each stage of a track call, ours then the reference's."""
    import json
    import queue
    import random
    import threading
    from datetime import datetime
    from uuid import uuid4

    import segment.analytics.client as reference_client
    from segment.analytics.request import DatetimeSerializer
    from segment.analytics.utils import clean as reference_clean

    from segment_core import Engine, EngineConfig
    from segment_core._message_builder import build_message, format_timestamp, message_ids
    from segment_core._value_cleaning import clean_field
    from segment_core.limits import MAX_MESSAGE_BYTES
    from segment_runtimes.threaded import Client

    call = make_calls(1)[0]
    props, context = call["properties"], call["context"]
    rng = random.Random(1)
    new_id = message_ids(os.urandom)  # what the runtimes' clients use
    built = build_message("track", wall=time.time(), new_message_id=new_id, **call)
    sent = _decode(built.data)  # the wire message (built.message is the one the call returns)
    engine = Engine(EngineConfig(write_key=WRITE_KEY, max_queue_size=10**9, max_queue_bytes=10**12), random=rng)
    lock = threading.Lock()

    def enqueue() -> None:
        with lock:
            engine.enqueue(built.data, now=time.monotonic())

    offline = Client(WRITE_KEY, send=False)
    reference = reference_client.Client(WRITE_KEY, send=False)
    reference_msg = reference.track(**call)[1]
    q: queue.Queue[Any] = queue.Queue()

    def reference_put() -> None:
        q.put(reference_msg, block=False)
        if q.qsize() > 10_000:
            q.queue.clear()

    stages: list[tuple[str, Callable[[], object]]] = [
        ("ours: Client.track, send=False (build only)", lambda: offline.track(**call)),
        (
            "ours:   build_message (validate, clean, stamp, encode)",
            lambda: build_message("track", wall=time.time(), new_message_id=new_id, **call),
        ),
        ("ours:     clean_field(properties)", lambda: clean_field(props, "properties", [], MAX_MESSAGE_BYTES)),
        ("ours:     clean_field(context)", lambda: clean_field(context, "context", [], MAX_MESSAGE_BYTES)),
        ("ours:     msgspec encode of the message", lambda: _encode(sent)),
        ("ours:     messageId (message_ids(os.urandom))", new_id),
        ("ours:     timestamp (format_timestamp)", lambda: format_timestamp(time.time())),
        ("ours:   lock + Engine.enqueue + monotonic", enqueue),
        ("reference: Client.track, send=False (build only)", lambda: reference.track(**call)),
        ("reference:   utils.clean(message)", lambda: reference_clean(reference_msg)),
        ("reference:   json.dumps size check", lambda: len(json.dumps(reference_msg, cls=DatetimeSerializer).encode())),
        ("reference:   uuid4()", lambda: str(uuid4())),
        (
            "reference:   datetime.now(tzutc()).isoformat",
            lambda: datetime.now(tz=reference_client.tzutc()).isoformat(timespec="milliseconds"),
        ),
        ("reference:   queue.put", reference_put),
    ]
    results = []
    for name, function in stages:
        results.append((name, _per_call_us(function, repeat)))
    return results


def _decode(data: bytes) -> dict[str, Any]:
    import msgspec

    decoded: dict[str, Any] = msgspec.json.decode(data)
    return decoded


def _encode(message: dict[str, Any]) -> bytes:
    import msgspec

    return msgspec.json.encode(message)


def _report(profile: cProfile.Profile, title: str, calls: int, limit: int, out: Path | None, name: str) -> str:
    """The profile's top functions by own time and by cumulative time, per call in µs."""
    if out is not None:
        profile.dump_stats(str(out / f"{name}.prof"))
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.strip_dirs()
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    lines = [f"== {title}: {total * 1e6 / calls:.1f} µs of thread CPU per event under cProfile"]
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for key, label in (("tottime", "own time"), ("cumulative", "cumulative")):
        index = 2 if key == "tottime" else 3
        ranked = sorted(entries.items(), key=lambda item: -item[1][index])[:limit]
        lines.append(f"-- top {limit} by {label} (µs per event, share of the total)")
        for (filename, line, function), values in ranked:
            seconds = values[index]
            lines.append(
                f"  {seconds * 1e6 / calls:8.2f}  {100 * seconds / total:5.1f}%  {values[1]:>7} calls  "
                f"{function} ({filename}:{line})"
            )
    return "\n".join(lines)


@contextlib.contextmanager
def _collector() -> Iterator[CollectorProcess]:
    with tempfile.TemporaryDirectory(
        prefix="segment-profile-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
    ) as d:
        process = CollectorProcess(Path(d) / "profile.sqlite")
        try:
            yield process
        finally:
            process.stop()


def _cpu_profile() -> cProfile.Profile:
    # CPU time of the profiled thread: time spent waiting (for the GIL, a lock, the collector's
    # reply) is not work, and a wall-clock profile of a worker is mostly waiting.
    return cProfile.Profile(time.thread_time)


def profile_ours(n: int, limit: int, out: Path | None) -> list[str]:
    """cProfile of Client.track in the caller's thread and of the worker thread, in steady state."""
    from segment_core import Request
    from segment_runtimes.threaded import Client

    worker_profile = _cpu_profile()
    measuring = threading.Event()
    started = threading.Event()

    class ProfiledClient(Client):
        def _work(self) -> None:
            try:
                super()._work()
            finally:
                if started.is_set():
                    worker_profile.disable()

        def _exchange(self, request: Request) -> None:
            # Enabled from inside the worker thread, at its first request after the warm-up.
            if measuring.is_set() and not started.is_set():
                started.set()
                worker_profile.enable()
            super()._exchange(request)

    reports = []
    with _collector() as server:
        client = ProfiledClient(WRITE_KEY, host=server.url, max_queue_size=n + 1000)
        for kwargs in make_calls(300, seed=2, start=10_000_000):
            client.track(**kwargs)
        client.flush()
        calls = make_calls(n)
        caller_profile = _cpu_profile()
        gc.collect()
        measuring.set()
        caller_profile.enable()
        for kwargs in calls:
            client.track(**kwargs)
        caller_profile.disable()
        client.flush()
        client.shutdown()
        stored = len(set(server.stored_ids()))
    reports.append(_report(caller_profile, "ours, caller path (Client.track)", n, limit, out, "ours-caller"))
    reports.append(_report(worker_profile, "ours, worker path (threaded.Client._work)", n, limit, out, "ours-worker"))
    reports.append(f"(ours: collector stored {stored} distinct messageIds of {n + 300} sent)")
    return reports


def profile_reference(n: int, limit: int, out: Path | None) -> list[str]:
    """cProfile of the reference's Client.track and of its Consumer thread, in steady state."""
    from segment.analytics import consumer
    from segment.analytics.client import Client as Reference

    worker_profile = _cpu_profile()
    measuring = threading.Event()
    started = threading.Event()
    original_run, original_upload = consumer.Consumer.run, consumer.Consumer.upload

    def profiled_run(self: Any) -> None:
        try:
            original_run(self)
        finally:
            if started.is_set():
                worker_profile.disable()

    def profiled_upload(self: Any) -> Any:
        if measuring.is_set() and not started.is_set():
            started.set()
            worker_profile.enable()
        return original_upload(self)

    consumer.Consumer.run = profiled_run
    consumer.Consumer.upload = profiled_upload
    reports = []
    try:
        with _collector() as server:
            client = Reference(WRITE_KEY, host=server.url, max_queue_size=n + 1000)
            for kwargs in make_calls(300, seed=2, start=10_000_000):
                client.track(**kwargs)
            client.flush()
            calls = make_calls(n)
            caller_profile = _cpu_profile()
            gc.collect()
            measuring.set()
            caller_profile.enable()
            for kwargs in calls:
                client.track(**kwargs)
            caller_profile.disable()
            client.flush()
            client.join()
            stored = len(set(server.stored_ids()))
    finally:
        consumer.Consumer.run, consumer.Consumer.upload = original_run, original_upload
    reports.append(_report(caller_profile, "reference, caller path (Client.track)", n, limit, out, "reference-caller"))
    reports.append(_report(worker_profile, "reference, worker path (Consumer.run)", n, limit, out, "reference-worker"))
    reports.append(f"(reference: collector stored {stored} distinct messageIds of {n + 300} sent)")
    return reports


def profile_collector(n: int, limit: int, out: Path | None) -> list[str]:
    """cProfile of the collector's server thread (CPU) while batches of 100 are replayed to it.

    The collector's time per batch bounds every events/s figure of the benchmark: a client
    with one request in flight cannot deliver faster than the collector stores.
    """
    import base64
    import http.client

    from segment_runtimes.collector import Collector
    from segment_runtimes.collector import _server as _collector_server

    from .child import replay_bodies

    server_profile = _cpu_profile()
    original_serve = _collector_server.Server.serve

    def profiled_serve(self: Any) -> None:
        server_profile.enable()
        try:
            original_serve(self)
        finally:
            server_profile.disable()

    bodies, _ = replay_bodies(n)
    authorization = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode("ascii")
    headers = {"Content-Type": "application/json", "Authorization": authorization}
    _collector_server.Server.serve = profiled_serve  # type: ignore[method-assign]
    try:
        with (
            tempfile.TemporaryDirectory(prefix="segment-profile-", dir=_shm()) as directory,
            Collector(db_path=Path(directory) / "collector.sqlite") as server,
        ):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            t0 = time.perf_counter()
            for body in bodies:
                connection.request("POST", "/v1/batch", body=body, headers=headers)
                response = connection.getresponse()
                response.read()
            elapsed = time.perf_counter() - t0
            connection.close()
            stored = server.count(unique=True)
    finally:
        _collector_server.Server.serve = original_serve  # type: ignore[method-assign]
    return [
        _report(server_profile, "collector, server thread (POST /v1/batch, 100 per batch)", n, limit, out, "collector"),
        f"(collector: {n / elapsed:,.0f} events/s while profiled; stored {stored} distinct messageIds of {n})",
    ]


def _shm() -> str | None:
    return "/dev/shm" if Path("/dev/shm").is_dir() else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="track calls profiled (default 10000)")
    parser.add_argument("--repeat", type=int, default=2000, help="calls per stage timing (default 2000)")
    parser.add_argument("--limit", type=int, default=15, help="functions listed per table (default 15)")
    parser.add_argument("--out", type=Path, default=None, help="also write the .prof files here")
    parser.add_argument("--skip-reference", action="store_true", help="profile ours only")
    parser.add_argument("--collector", action="store_true", help="also profile the collector (the events/s ceiling)")
    args = parser.parse_args(argv)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    print("== stage timings of one track call (no profiler; best of 5 means, µs)")
    for name, micros in stage_timings(args.repeat):
        print(f"  {micros:8.2f}  {name}")
    print()
    for text in profile_ours(args.n, args.limit, args.out):
        print(text, end="\n\n")
    if not args.skip_reference:
        for text in profile_reference(args.n, args.limit, args.out):
            print(text, end="\n\n")
    if args.collector:
        for text in profile_collector(args.n, args.limit, args.out):
            print(text, end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
