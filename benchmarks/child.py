"""One measurement in a fresh interpreter: ``python -m benchmarks.child MODE IMPL [options]``.

Every measurement runs in its own process so that no run inherits another's
threads, garbage, warmed caches or atexit hooks, and so that a client that
hangs (the reference, with the server down) can be killed. The last line on
stdout is one JSON object with the result; :mod:`benchmarks.run` reads it.

Modes:

- ``deliver``: warm up, then time N ``track`` calls (the caller's loop) while
  the client delivers to the collector at ``--url``, then flush and shut down
  (ours: ``flush()`` + ``shutdown()``; reference: ``flush()`` + ``join()``, its
  ``shutdown()``). Writes the messageIds the calls returned to ``--ids`` so
  that the parent can check them against what the collector stored. Our async
  clients are called from their event loop, which the caller's loop yields to
  every 10 calls; ``--loop asyncio|trio`` calls the reference the same way.
  ``--spool-dir DIR --fsync POLICY`` runs ours with the disk spool there
  (``spool_dir=``, ``spool_fsync=``); after shutting down, the child reports
  how many records the spool still holds as pending (``inspect_spool``).
- ``memory``: with the server down (a bound, non-listening port) and
  ``upload_interval=3600``, enqueue N events under tracemalloc and report the
  Python memory still held per queued event, and the mean JSON size of the
  messages the calls returned.
- ``shutdown``: with the server down, queue N events and time shutting down.
  Prints ``shutting-down`` first so that the parent can bound a hang.

IMPL is ``threaded``, ``asyncio`` or ``trio`` (this project) or ``reference``
(segment-analytics-python 2.4).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import http.client
import inspect
import json
import logging
import os
import random
import socket
import sys
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from .workload import WRITE_KEY, json_size, make_call, make_calls

__all__ = ["IMPLS", "main", "replay_bodies"]

IMPLS = ("threaded", "asyncio", "trio", "reference", "replay")
# Calls between two yields to the event loop in the async runtimes: a web handler awaits
# something every so often, and that is when delivery runs.
ASYNC_CHUNK = 10
WARMUP = 300
REPLAY_BATCH = 100
_WORKLOAD_SEED = 1
_WARMUP_SEED = 2


class _Errors:
    """An on_error callback that counts the messages it is told about."""

    def __init__(self) -> None:
        self.messages = 0
        self.calls = 0

    def __call__(self, error: Exception, batch: list[Any]) -> None:
        self.calls += 1
        self.messages += len(batch)


def _client_class(impl: str) -> Any:
    if impl == "threaded":
        from segment_runtimes.threaded import Client

        return Client
    if impl == "reference":
        from segment.analytics import Client as Reference

        return Reference
    raise ValueError(f"not a threaded client: {impl}")


def _emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def _closed_port() -> tuple[socket.socket, str]:
    """A bound socket that never listens: connecting to it is refused at once (the server is down)."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    return holder, f"http://127.0.0.1:{holder.getsockname()[1]}"


# --- deliver ---------------------------------------------------------------------------------


def _spool_options(spool: tuple[str, str] | None) -> dict[str, Any]:
    """Our clients' spool settings for ``(directory, fsync policy)``; none for a memory-only run."""
    if spool is None:
        return {}
    directory, fsync = spool
    return {"spool_dir": directory, "spool_fsync": fsync}


def _deliver_threaded(
    impl: str, url: str, n: int, spool: tuple[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    warmup = make_calls(WARMUP, seed=_WARMUP_SEED, start=10_000_000)
    calls = make_calls(n, seed=_WORKLOAD_SEED)
    errors = _Errors()
    client = _client_class(impl)(
        WRITE_KEY, host=url, on_error=errors, max_queue_size=n + WARMUP + 1000, **_spool_options(spool)
    )
    ids: list[str] = []
    failed_calls = 0
    for kwargs in warmup:
        ok, msg = client.track(**kwargs)
        ids.append(msg["messageId"])
        failed_calls += not ok
    client.flush()
    track = client.track
    append = ids.append
    gc.collect()
    t0 = time.perf_counter_ns()
    c0 = time.thread_time_ns()
    for kwargs in calls:
        ok, msg = track(**kwargs)
        append(msg["messageId"])
        if not ok:
            failed_calls += 1
    c1 = time.thread_time_ns()
    t1 = time.perf_counter_ns()
    client.flush()
    t2 = time.perf_counter_ns()
    if impl == "reference":
        client.join()  # the reference's shutdown() is flush() + join()
    else:
        client.shutdown()
    t3 = time.perf_counter_ns()
    result = {
        "loop_ns": t1 - t0,
        "loop_calls_only_ns": t1 - t0,  # the worker is another thread: the loop is all calls
        "loop_thread_cpu_ns": c1 - c0,
        "flushed_ns": t2 - t0,
        "end_ns": t3 - t0,
        "failed_calls": failed_calls,
        "on_error_messages": errors.messages,
    }
    return result, ids


async def _settled(value: object) -> None:
    """Await ``value`` if it is awaitable: our async clients' flush() is, the reference's blocks."""
    if inspect.isawaitable(value):
        await value


async def _measure_async(
    client: Any,
    n: int,
    errors: _Errors,
    yield_to_loop: Callable[[], Awaitable[None]],
    stop: Callable[[], object] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Time n calls from an event loop (asyncio or trio), yielding to it every ASYNC_CHUNK calls.

    ``client`` is one of our async clients, or the reference called from the loop as async services
    call it today (its worker is a thread; its flush() blocks the loop, after the timed loop).
    ``stop`` ends delivery after flush(): by default the client's shutdown().
    """
    stop = client.shutdown if stop is None else stop
    warmup = make_calls(WARMUP, seed=_WARMUP_SEED, start=10_000_000)
    calls = make_calls(n, seed=_WORKLOAD_SEED)
    ids: list[str] = []
    failed_calls = 0
    for kwargs in warmup:
        ok, msg = client.track(**kwargs)
        ids.append(msg["messageId"])
        failed_calls += not ok
    await _settled(client.flush())
    track = client.track
    append = ids.append
    gc.collect()
    t0 = time.perf_counter_ns()
    c0 = time.thread_time_ns()
    calls_only = 0
    for start in range(0, n, ASYNC_CHUNK):
        s0 = time.perf_counter_ns()
        for kwargs in calls[start : start + ASYNC_CHUNK]:
            ok, msg = track(**kwargs)
            append(msg["messageId"])
            if not ok:
                failed_calls += 1
        calls_only += time.perf_counter_ns() - s0
        await yield_to_loop()
    c1 = time.thread_time_ns()
    t1 = time.perf_counter_ns()
    await _settled(client.flush())
    t2 = time.perf_counter_ns()
    await _settled(stop())
    t3 = time.perf_counter_ns()
    result = {
        "loop_ns": t1 - t0,
        "loop_calls_only_ns": calls_only,
        "loop_thread_cpu_ns": c1 - c0,
        "flushed_ns": t2 - t0,
        "end_ns": t3 - t0,
        "failed_calls": failed_calls,
        "on_error_messages": errors.messages,
    }
    return result, ids


async def _deliver_asyncio(
    url: str, n: int, yield_to_loop: Callable[[], Awaitable[None]], spool: tuple[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    from segment_runtimes.asyncio import AsyncClient

    errors = _Errors()
    client = AsyncClient(
        WRITE_KEY, host=url, on_error=errors, max_queue_size=n + WARMUP + 1000, **_spool_options(spool)
    )
    return await _measure_async(client, n, errors, yield_to_loop)


async def _deliver_trio(
    url: str, n: int, yield_to_loop: Callable[[], Awaitable[None]], spool: tuple[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    from segment_runtimes.trio import open_client

    errors = _Errors()
    options = _spool_options(spool)
    async with open_client(WRITE_KEY, host=url, on_error=errors, max_queue_size=n + WARMUP + 1000, **options) as client:
        return await _measure_async(client, n, errors, yield_to_loop)


async def _deliver_reference_in_loop(
    url: str, n: int, yield_to_loop: Callable[[], Awaitable[None]], spool: tuple[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    assert spool is None, "the reference has no spool"
    errors = _Errors()
    client = _client_class("reference")(WRITE_KEY, host=url, on_error=errors, max_queue_size=n + WARMUP + 1000)
    return await _measure_async(client, n, errors, yield_to_loop, stop=client.join)  # as in _deliver_threaded


def deliver(
    impl: str, url: str, n: int, ids_path: str, loop: str | None = None, spool: tuple[str, str] | None = None
) -> dict[str, Any]:
    """Time N calls and their delivery; write every returned messageId (warm-up included) to ids_path.

    ``loop`` ("asyncio" or "trio"): call the reference from that event loop, as our client of
    that name is called, so that a pair's two runs differ only in the client. ``spool``
    (ours only): ``(directory, fsync policy)`` of the disk spool.
    """
    if impl == "replay":
        return replay(url, n, ids_path)
    if spool is not None and impl not in ("threaded", "asyncio", "trio"):
        raise ValueError(f"{impl} has no spool")
    if impl == "asyncio" or (impl == "reference" and loop == "asyncio"):
        deliver_in_asyncio = _deliver_asyncio if impl == "asyncio" else _deliver_reference_in_loop
        result, ids = asyncio.run(deliver_in_asyncio(url, n, lambda: asyncio.sleep(0), spool))
    elif impl == "trio" or (impl == "reference" and loop == "trio"):
        import trio

        deliver_in_trio = _deliver_trio if impl == "trio" else _deliver_reference_in_loop
        result, ids = trio.run(deliver_in_trio, url, n, lambda: trio.sleep(0), spool)
    else:
        result, ids = _deliver_threaded(impl, url, n, spool)
    with open(ids_path, "w", encoding="ascii") as out:
        out.write("\n".join(ids))
    result.update(impl=impl, n=n, warmup=WARMUP, sent=len(ids))
    if spool is not None:
        result.update(_spool_left(spool[0]))
    return result


def _spool_left(directory: str) -> dict[str, int]:
    """What the spool still holds after shutdown: every record should be settled, and its files deleted."""
    from segment_runtimes._spool_inspect import inspect_spool

    report = inspect_spool(directory)
    return {"spool_pending": report.pending, "spool_files": len(report.files), "spool_damaged": report.damaged}


def replay_bodies(n: int) -> tuple[list[bytes], list[str]]:
    """The workload's first n events as batch bodies of 100, encoded by stdlib json; and their messageIds."""
    ids: list[str] = []
    bodies: list[bytes] = []
    calls = make_calls(n, seed=_WORKLOAD_SEED)
    for start in range(0, n, REPLAY_BATCH):
        batch = []
        for kwargs in calls[start : start + REPLAY_BATCH]:
            message_id = str(uuid.uuid4())
            ids.append(message_id)
            context = {**kwargs["context"], "library": {"name": "benchmark-replay", "version": "0"}}
            message = {
                "type": "track",
                "event": kwargs["event"],
                "userId": kwargs["user_id"],
                "properties": kwargs["properties"],
                "context": context,
                "messageId": message_id,
                "timestamp": "2026-11-23T13:08:42.123+00:00",
                "integrations": {},
            }
            batch.append(json.dumps(message, default=_isoformat, separators=(",", ":")))
        envelope = '{"batch":[' + ",".join(batch) + '],"sentAt":"2026-11-23T13:08:42.123+00:00"}'
        bodies.append(envelope.encode())
    return bodies, ids


def replay(url: str, n: int, ids_path: str) -> dict[str, Any]:
    """The collector's ceiling: POST the same events, pre-encoded, in batches of 100, one at a time.

    No client at all: stdlib json and http.client on one keep-alive connection. A client
    cannot deliver faster than this, so it bounds the events/s figures of every run.
    """
    host, _, port = url.removeprefix("http://").partition(":")
    authorization = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode("ascii")
    headers = {"Content-Type": "application/json", "Authorization": authorization}
    bodies, ids = replay_bodies(n)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    t0 = time.perf_counter_ns()
    for body in bodies:
        connection.request("POST", "/v1/batch", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"the collector answered {response.status}")
    elapsed = time.perf_counter_ns() - t0
    connection.close()
    with open(ids_path, "w", encoding="ascii") as out:
        out.write("\n".join(ids))
    return {
        "impl": "replay",
        "n": n,
        "warmup": 0,
        "sent": n,
        "loop_ns": elapsed,
        "loop_calls_only_ns": elapsed,
        "loop_thread_cpu_ns": 0,
        "flushed_ns": elapsed,
        "end_ns": elapsed,
        "failed_calls": 0,
        "on_error_messages": 0,
    }


def _isoformat(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


# --- memory ----------------------------------------------------------------------------------


def memory(impl: str, n: int) -> dict[str, Any]:
    """Python memory held per queued event while sending is stalled (server down, long upload_interval)."""
    _quiet_logging()
    holder, url = _closed_port()
    client = _client_class(impl)(
        WRITE_KEY, host=url, upload_interval=3600, max_queue_size=n + 10_000, on_error=_Errors()
    )
    # Warm up: one full batch makes the worker try (and fail) twice (the first retry is
    # immediate), so that its HTTP client, lazy imports and the like exist before measuring;
    # then it waits in its retry backoff while the events pile up.
    attempts = _count_attempts(impl, client)
    for kwargs in make_calls(150, seed=_WARMUP_SEED, start=10_000_000):
        client.track(**kwargs)
    deadline = time.monotonic() + 30.0
    while attempts() < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{impl}: the worker made no delivery attempt within 30 s")
        time.sleep(0.01)
    time.sleep(0.05)
    # Calls are made one at a time and dropped, so only what the client keeps stays alive.
    rng = random.Random(_WORKLOAD_SEED)
    track = client.track
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    json_total = 0
    accepted = 0
    for index in range(n):
        ok, msg = track(**make_call(index, rng))
        json_total += json_size(msg)
        accepted += ok
    del msg
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    ignore = (
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
        tracemalloc.Filter(False, "<unknown>"),
    )
    diff = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    held = sum(stat.size_diff for stat in diff)
    top = [
        {"where": str(stat.traceback[0]), "bytes_per_event": round(stat.size_diff / n, 1)}
        for stat in sorted(diff, key=lambda s: -s.size_diff)[:6]
    ]
    holder.close()
    return {
        "impl": impl,
        "n": n,
        "accepted": accepted,
        "held_bytes": held,
        "bytes_per_event": held / n,
        "mean_json_bytes": json_total / n,
        "top": top,
    }


def _count_attempts(impl: str, client: Any) -> Callable[[], int]:
    """How many delivery attempts the client has made so far."""
    if impl != "reference":
        return lambda: int(client.stats().requests)
    from segment.analytics import consumer

    post = consumer.post
    count = [0]

    def counting_post(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return post(*args, **kwargs)

    consumer.post = counting_post
    return lambda: count[0]


def _quiet_logging() -> None:
    # Both clients log every failed attempt and, at shutdown, every undelivered batch.
    logging.getLogger("segment").setLevel(logging.CRITICAL + 1)
    logging.getLogger("segment").propagate = False


# --- shutdown --------------------------------------------------------------------------------


def shutdown(impl: str, n: int, timeout: float | None) -> dict[str, Any]:
    """Time shutting down with the server down. Ours: shutdown(timeout); reference: flush() + join()."""
    _quiet_logging()
    holder, url = _closed_port()
    errors = _Errors()
    options: dict[str, Any] = {"host": url, "on_error": errors}
    client = _client_class(impl)(WRITE_KEY, **options)
    for kwargs in make_calls(n, seed=_WORKLOAD_SEED):
        client.track(**kwargs)
    _emit({"event": "shutting-down"})
    t0 = time.perf_counter()
    if impl == "reference":
        client.flush()
        client.join()
        delivered_all: bool | None = None
    else:
        delivered_all = client.shutdown(timeout=timeout)
    elapsed = time.perf_counter() - t0
    holder.close()
    return {
        "impl": impl,
        "n": n,
        "timeout": timeout,
        "seconds": elapsed,
        "delivered_all": delivered_all,
        "on_error_messages": errors.messages,
    }


# --- entry point -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.child")
    parser.add_argument("mode", choices=("deliver", "memory", "shutdown"))
    parser.add_argument("impl", choices=IMPLS)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--url", help="collector URL (deliver)")
    parser.add_argument("--ids", help="file to write the returned messageIds to (deliver)")
    parser.add_argument("--timeout", type=float, default=None, help="our shutdown timeout (shutdown)")
    parser.add_argument(
        "--loop", choices=("asyncio", "trio"), help="call the reference from this event loop, as ours is (deliver)"
    )
    parser.add_argument("--spool-dir", help="ours: deliver through a disk spool in this directory (deliver)")
    parser.add_argument("--fsync", choices=("never", "interval", "always"), default="interval", help="spool_fsync")
    args = parser.parse_args(argv)
    if args.mode == "deliver":
        if not args.url or not args.ids:
            parser.error("deliver needs --url and --ids")
        spool = None if args.spool_dir is None else (args.spool_dir, args.fsync)
        result = deliver(args.impl, args.url, args.n, args.ids, args.loop, spool)
    elif args.mode == "memory":
        result = memory(args.impl, args.n)
    else:
        result = shutdown(args.impl, args.n, args.timeout)
    _emit(result)
    sys.stdout.flush()
    # Skip atexit: a stalled client (memory, shutdown) would otherwise retry at exit; a
    # delivering one has already been shut down explicitly.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
