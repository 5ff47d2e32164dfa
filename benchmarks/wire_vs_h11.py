"""The hand-written request writer and response parser against h11, paired: worker CPU per exchange.

The client's hand-written code (``segment_runtimes._transport.wire``) against
h11 behind the same interface (``benchmarks/h11_wire.py``, the version the
client used for a while).

    .venv/bin/python -m benchmarks.wire_vs_h11                  # about a minute
    .venv/bin/python -m benchmarks.wire_vs_h11 --instructions   # also counts instructions (valgrind, minutes)

Each exchange is what the threaded worker does for one batch: write a 100-event
batch request (the engine's own, about 90 KB) on a kept-alive loopback
connection (``streams.connect_sync``), and read a typical 200 reply
(api.segment.io's headers) until it is parsed. Both implementations run the
same exchange loop over the same kind of stream, so the difference between them
is the cost of the wire code alone. The server is another process: its CPU is
not counted.

Worker CPU is the thread's CPU time (user and system) over N exchanges, after a
warm-up. In each round both implementations run once, right after each other,
the order alternating, on a fresh connection each; the verdict uses the median
of the per-round differences (the machine's speed drifts by up to 2x within
seconds, a pair a second apart does not). With ``--instructions``, cachegrind
counts each implementation's instructions per exchange (two runs of different
lengths, subtracted: imports and set-up cancel out), which do not drift.

The rule (issue 17): keep the hand-written code only if h11 adds more than
1 µs of worker CPU per delivered event at 100 events per batch, that is more
than 100 µs per exchange.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from segment_core import Engine, EngineConfig, Request, build_message
from segment_runtimes._transport.streams import SyncStream, connect_sync
from segment_runtimes._transport.wire import CheckedHeaders, ParsedResponse, Wire

from . import h11_wire
from .workload import WRITE_KEY, make_calls

__all__ = ["main"]

EVENTS_PER_BATCH = 100
THRESHOLD_US = 100.0  # per exchange: 1 µs per event at 100 events per batch
TARGET = b"/v1/batch"
# A 200 from the tracking API, with the headers it sends.
REPLY = (
    b"HTTP/1.1 200 OK\r\n"
    b"Date: Tue, 24 Nov 2026 13:08:42 GMT\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 21\r\n"
    b"Connection: keep-alive\r\n"
    b"Vary: Origin\r\n"
    b"Access-Control-Allow-Origin: *\r\n"
    b"Access-Control-Allow-Credentials: true\r\n"
    b"\r\n"
    b'{\n  "success": true\n}'
)
IMPLS = ("ours", "h11")

# The server: reads each request by its Content-Length and answers REPLY, on one connection at a time.
_SERVER = r"""
import socket, sys
reply = %r
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            data = conn.recv(1 << 20)
            if not data:
                break
            buffer += data
        else:
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(buffer) < length:
                buffer += conn.recv(1 << 20)
            buffer = buffer[length:]
            conn.sendall(reply)
            continue
        break
    conn.close()
"""


def batch_request(port: int) -> Request:
    """The engine's request for a batch of 100 workload events to the server at ``port``."""
    rng = random.Random(7)
    engine = Engine(
        EngineConfig(write_key=WRITE_KEY, host=f"http://127.0.0.1:{port}", upload_size=EVENTS_PER_BATCH),
        random=rng,
    )
    wall = 1_795_000_000.0
    message_ids = iter([f"message-{index:04d}" for index in range(EVENTS_PER_BATCH)])
    for call in make_calls(EVENTS_PER_BATCH):
        built = build_message("track", wall=wall, new_message_id=lambda: next(message_ids), **call)
        engine.enqueue(built.data, now=0.0)
    engine.flush(now=0.0)
    engine.poll(now=0.0, wall=wall)
    requests = [output for output in engine.next_outputs() if isinstance(output, Request)]
    (request,) = requests
    assert request.message_count == EVENTS_PER_BATCH, request
    return request


Exchange = Callable[[], ParsedResponse]


def exchanger(impl: str, stream: SyncStream, request: Request, host: bytes) -> Exchange:
    """One exchange on ``stream`` with ``impl``'s wire: the loop of ``connections._exchange``."""
    checked = CheckedHeaders()
    wire = Wire() if impl == "ours" else h11_wire.Wire()

    def head() -> bytes:
        return wire.request_head(request, TARGET, host, checked.fields(request.headers))

    feed = wire.feed

    def exchange() -> ParsedResponse:
        stream.send(head(), request.body)
        with stream.operations.reading:
            while True:
                response = feed(stream.receive())
                if response is not None:
                    return response

    return exchange


def cpu_per_exchange(impl: str, port: int, request: Request, count: int, warmup: int) -> float:
    """Microseconds of this thread's CPU per exchange with ``impl``, over ``count`` after ``warmup``."""
    stream = connect_sync(("127.0.0.1", port), 5.0, None)
    try:
        exchange = exchanger(impl, stream, request, b"127.0.0.1:%d" % port)
        for _ in range(warmup):
            exchange()
        started = time.thread_time()
        for _ in range(count):
            response = exchange()
        elapsed = time.thread_time() - started
        assert (response.status, response.body, response.keep_alive) == (200, b'{\n  "success": true\n}', True)
        return elapsed / count * 1e6
    finally:
        stream.close()


def start_server() -> tuple[subprocess.Popen[bytes], int]:
    server = subprocess.Popen([sys.executable, "-c", _SERVER % REPLY], stdout=subprocess.PIPE)
    assert server.stdout is not None
    return server, int(server.stdout.readline())


def count_instructions(impl: str, count: int) -> int:
    """Instructions cachegrind counts for a run of ``count`` exchanges with ``impl`` (set-up included)."""
    command = [
        "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
        sys.executable, "-m", "benchmarks.wire_vs_h11", "--only", impl, "--count", str(count), "--rounds", "0",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    match = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    assert match is not None, result.stderr[-2000:]
    return int(match.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--count", type=int, default=2000, help="timed exchanges per run")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--instructions", action="store_true", help="also count instructions with cachegrind")
    parser.add_argument("--only", choices=IMPLS, help=argparse.SUPPRESS)  # one run, for cachegrind
    args = parser.parse_args(argv)

    server, port = start_server()
    try:
        request = batch_request(port)
        if args.only:
            exchange = exchanger(args.only, connect_sync(("127.0.0.1", port), 5.0, None), request, b"h")
            for _ in range(args.warmup + args.count):
                exchange()
            return 0
        print(f"exchange: {len(request.body):,} byte body ({EVENTS_PER_BATCH} events), {len(REPLY)} byte reply")
        runs: dict[str, list[float]] = {impl: [] for impl in IMPLS}
        for round_ in range(args.rounds):
            for impl in IMPLS if round_ % 2 == 0 else IMPLS[::-1]:
                runs[impl].append(cpu_per_exchange(impl, port, request, args.count, args.warmup))
            print(f"round {round_ + 1}: ours {runs['ours'][-1]:.1f} µs, h11 {runs['h11'][-1]:.1f} µs")
    finally:
        server.kill()
        server.wait()

    added = [theirs - ours for ours, theirs in zip(runs["ours"], runs["h11"], strict=True)]
    median_added = statistics.median(added)
    print(f"worker CPU per exchange, median of {args.rounds}: ours {statistics.median(runs['ours']):.1f} µs, "
          f"h11 {statistics.median(runs['h11']):.1f} µs")  # fmt: skip
    print(f"h11 adds {median_added:.1f} µs per exchange (range {min(added):.1f} to {max(added):.1f}), "
          f"{median_added / EVENTS_PER_BATCH:.2f} µs per event")  # fmt: skip
    if args.instructions:
        short, long = 200, 1200
        for impl in IMPLS:
            per = (count_instructions(impl, long) - count_instructions(impl, short)) / (long - short)
            print(f"instructions per exchange, {impl}: {per / 1000:.0f}k")
    verdict = "keep ours" if median_added > THRESHOLD_US else "switch to h11"
    print(f"rule: keep ours only if h11 adds more than {THRESHOLD_US:.0f} µs per exchange -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
