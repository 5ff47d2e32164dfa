"""The collector under abuse, over real sockets: memory, descriptors, and bodies of any shape.

- A client that pipelines requests and never reads the replies: the collector stops reading it,
  so what it holds for that connection stays bounded, and it serves others meanwhile.
- At the file-descriptor limit (a subprocess with a low RLIMIT_NOFILE): no busy loop and no log
  flood while accept() fails, and accepting resumes once descriptors are free.
- Every body gets a status and a Segment-shaped answer, never a dropped connection or a logged
  traceback: nesting at and around the interpreter's recursion limit, invalid UTF-8, JSON that is
  not an object, bad gzip, and (a hypothesis property) arbitrary bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segment_runtimes.collector import Collector, Faults

from .test_collector import assert_still_serves, basic, batch, client, message, post_head

REPO = Path(__file__).resolve().parent.parent

# --- a client that never reads ---------------------------------------------------------------


def test_a_client_that_never_reads_replies_cannot_grow_the_collector() -> None:
    """Pipelining 50 MB without reading a reply: the sender stalls; the collector holds < 1 MiB."""
    body = json.dumps(batch()).encode()  # an empty batch: accepted, stores nothing
    request = post_head("/v1/batch", len(body)) + body
    block = request * (65536 // len(request))
    goal = 50 * 1024 * 1024
    sent = 0
    with Collector() as collector, socket.socket() as hog:
        # A small receive buffer, so that the unread replies fill it soon.
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        hog.connect(("127.0.0.1", collector.port))
        hog.settimeout(1.0)  # a second without progress: the collector has stopped reading us
        with contextlib.suppress(TimeoutError):
            while sent < goal:
                hog.sendall(block)
                sent += len(block)
        assert sent < goal, "the collector read everything a client that never reads sent"
        assert_still_serves(collector)  # another client is served while the hog is stuck
        peak = collector.stats.peak_connection_bytes
        assert 0 < peak < 1024 * 1024, peak
    assert collector.stats.requests > 1  # the hog was served until its buffers filled


def test_a_pending_delayed_reply_stops_reading_its_connection() -> None:
    """While a latency fault holds a reply, what the client pipelines stays in the kernel."""
    body = json.dumps(batch(message(properties={"p": "x" * 4000}))).encode()
    request = post_head("/v1/batch", len(body)) + body
    faults = Faults(rate=1.0, kinds=["latency"], latency=1.0)
    with Collector(faults=faults) as collector, socket.create_connection(("127.0.0.1", collector.port)) as sock:
        sock.settimeout(0.5)
        with contextlib.suppress(TimeoutError):
            sock.sendall(request * 250)  # about 1 MB behind the delayed request
        sock.settimeout(5.0)
        first = sock.recv(4096)  # the delayed reply: a reading collector had 1 s to buffer it all
        assert first.startswith(b"HTTP/1.1 200 ")
        assert collector.stats.peak_connection_bytes < 256 * 1024, collector.stats.peak_connection_bytes


# --- the file-descriptor limit ---------------------------------------------------------------

_AT_THE_LIMIT = """
import logging, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
from segment_runtimes.collector import Collector, Faults
with Collector(read_timeout=120) as collector:
    print(collector.port, flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
def test_at_the_descriptor_limit_the_collector_backs_off_then_recovers() -> None:
    limit = 64
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_AT_THE_LIMIT.format(limit=limit))],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients: list[socket.socket] = []
    try:
        assert child.stdout is not None
        assert child.stderr is not None
        port = int(child.stdout.readline())
        logged: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_lines, args=(child.stderr, logged), daemon=True).start()
        # More connections than the child has descriptors; the rest wait in the listen backlog.
        for _ in range(limit + 40):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5.0))
        first = logged.get(timeout=10.0)
        assert "Too many open files" in first, first
        window = 2.0
        cpu_before = _cpu_seconds(child.pid)
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=window)  # the child must not exit; its CPU is measured meanwhile
        cpu = _cpu_seconds(child.pid) - cpu_before
        assert cpu < 0.25 * window, f"{cpu:.2f} s of CPU in {window} s at the descriptor limit"
        lines_in_window = logged.qsize()
        assert lines_in_window <= 1, [logged.get() for _ in range(min(lines_in_window, 5))]
        for sock in clients:
            sock.close()
        clients.clear()
        # Descriptors come back as the collector sees those closes; then it accepts again.
        with client(headers=basic()) as session:
            response = session.post(f"http://127.0.0.1:{port}/v1/batch", json=batch(message()), timeout=10.0)
        assert response.status_code == 200
    finally:
        for sock in clients:
            sock.close()
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


# --- bodies of every shape -------------------------------------------------------------------


class _Errors(logging.Handler):
    """Collects the collector's ERROR records (a traceback in the log is a failure here)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def errors_logged() -> Iterator[_Errors]:
    handler = _Errors()
    logger = logging.getLogger("segment_runtimes.collector")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _nested(depth: int, open_: bytes = b"[", close: bytes = b"]", inner: bytes = b"") -> bytes:
    return open_ * depth + inner + close * depth


def nested_bodies(depth: int) -> dict[str, tuple[str, bytes]]:
    """Bodies nesting ``depth`` levels somewhere, for both kinds of endpoint."""
    deep_list = _nested(depth)
    deep_object = _nested(depth, b'{"a":', b"}", b"1")
    single = b'{"userId":"u","event":"E","properties":%s}'  # no type: the path gives it
    in_batch = b'{"batch":[{"type":"track","userId":"u","event":"E","properties":%s}]}'
    return {
        "track, list properties": ("/v1/track", single % deep_list),
        "track, object properties": ("/v1/track", single % deep_object),
        "track, with writeKey": ("/v1/track", b'{"writeKey":"k","userId":"u","event":"E","p":%s}' % deep_list),
        "track, the body itself": ("/v1/track", deep_list),
        "batch, list properties": ("/v1/batch", in_batch % deep_list),
        "batch, object properties": ("/v1/batch", in_batch % deep_object),
        "batch, the batch itself": ("/v1/batch", b'{"batch":%s}' % deep_list),
        "batch, the body itself": ("/v1/batch", deep_object),
    }


def assert_segment_shaped(response: httpx.Response) -> None:
    body = response.json()
    if response.status_code == 200:
        assert body == {"success": True}
    else:
        assert body["success"] is False
        assert body["code"]
        assert body["message"]


def test_nesting_around_the_recursion_limit_always_gets_a_status() -> None:
    """Every depth from 900 to 1100, then far deeper: 200 while decodable, else 400, never a drop."""
    depths = [*range(900, 1101), 2000, 5000, 50_000]
    statuses: dict[str, set[int]] = {}
    with errors_logged() as errors, Collector() as collector, client(headers=basic()) as session:
        for depth in depths:
            for name, (path, body) in nested_bodies(depth).items():
                response = session.post(f"{collector.url}{path}", content=body)
                assert response.status_code in (200, 400), (name, depth, response.status_code)
                assert_segment_shaped(response)
                if response.status_code == 400:
                    assert response.json()["code"] in ("invalid_json", "invalid_request", "invalid_message")
                statuses.setdefault(name, set()).add(response.status_code)
        assert collector.stats.connections == 1  # one keep-alive connection, never dropped
        assert_still_serves(collector)
    assert not errors.records, [record.getMessage() for record in errors.records]
    # Both outcomes happened: the sweep crossed the depth where decoding stops.
    assert statuses["batch, list properties"] == {200, 400}


UNDECODABLE = {
    "invalid UTF-8": (b'{"userId":"u","event":"\xff\xfe"}', None, 400, "invalid_json"),
    "a lone surrogate escape": (b'{"userId":"u","event":"\\ud800"}', None, 400, "invalid_json"),
    "a JSON list": (b"[1, 2, 3]", None, 400, "invalid_request"),
    "a JSON string": (b'"track"', None, 400, "invalid_request"),
    "null": (b"null", None, 400, "invalid_request"),
    "empty": (b"", None, 400, "invalid_json"),
    "trailing garbage": (b'{"userId":"u","event":"E"} x', None, 400, "invalid_json"),
    "invalid gzip": (b"\x1f\x8b\x08\x00garbage", "gzip", 400, "invalid_gzip"),
    "gzip of garbage": (gzip.compress(b"\xff\x00not json"), "gzip", 400, "invalid_json"),
    "gzip bomb": (gzip.compress(b" " * 10_000_000), "gzip", 413, "request_too_large"),
    "gzip of deep nesting": (gzip.compress(_nested(200_000)), "gzip", 400, "invalid_json"),
}


@pytest.mark.parametrize("case", UNDECODABLE.values(), ids=UNDECODABLE.keys())
@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
def test_undecodable_bodies_get_a_segment_shaped_error(
    collector: Collector, path: str, case: tuple[bytes, str | None, int, str | None]
) -> None:
    body, encoding, status, code = case
    headers = {**basic(), **({"Content-Encoding": encoding} if encoding else {})}
    with errors_logged() as errors, client() as session:
        response = session.post(f"{collector.url}{path}", content=body, headers=headers)
    assert response.status_code == status
    assert_segment_shaped(response)
    if code is not None:
        assert response.json()["code"] == code
    assert not errors.records


def _json_values(depth_budget: int) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
        max_leaves=depth_budget,
    )


def _messageish() -> st.SearchStrategy[bytes]:
    """JSON that is close to a message or a batch, so that validation runs, not just parsing."""
    fields = st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["track", "identify", "page", "nope", 3]),
            "userId": st.text(max_size=4) | st.integers(),
            "anonymousId": st.text(max_size=4),
            "event": st.text(max_size=6) | st.none(),
            "messageId": st.text(max_size=6) | st.integers(),
            "writeKey": st.text(max_size=4),
            "properties": _json_values(10),
        },
    )
    batch_body = st.builds(lambda messages: {"batch": messages}, st.lists(fields | _json_values(4), max_size=3))
    return st.one_of(fields, batch_body, _json_values(8)).map(lambda value: json.dumps(value).encode())


bodies = st.one_of(
    st.binary(max_size=512),
    _messageish(),
    st.builds(
        lambda depth, kind: _nested(depth, *kind),
        st.integers(0, 3000),
        st.sampled_from(
            [
                (b"[", b"]"),
                (b'{"a":', b"}", b"1"),
                (b'{"batch":[', b"]}"),
            ]
        ),
    ),
    _messageish().map(lambda raw: raw[: len(raw) // 2]),  # truncated
)


def test_any_body_gets_a_status_never_a_dropped_connection() -> None:
    """Property: for arbitrary bytes, on any endpoint, gzip'd or not, the answer is a status."""
    with errors_logged() as errors, Collector() as collector, client(headers=basic()) as session:

        @settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(
            body=bodies,
            path=st.sampled_from(["/v1/batch", "/v1/track", "/v1/identify", "/v1/alias"]),
            gzipped=st.booleans(),
        )
        def check(body: bytes, path: str, gzipped: bool) -> None:
            headers = {"Content-Encoding": "gzip"} if gzipped else {}
            payload = gzip.compress(body) if gzipped else body
            response = session.post(f"{collector.url}{path}", content=payload, headers=headers)
            assert response.status_code in (200, 400, 413), response.status_code
            assert_segment_shaped(response)

        check()
        assert collector.stats.connections == 1  # never dropped: one keep-alive connection throughout
    assert not errors.records, [record.getMessage() for record in errors.records]


# --- optional imports ------------------------------------------------------------------------


def test_the_collector_loads_no_crypto_unless_it_plays_an_oauth_server() -> None:
    code = """
        import sys
        import segment_runtimes.collector as collector
        with collector.Collector() as running:
            pass
        loaded = sorted(m for m in ("jwt", "cryptography") if m in sys.modules)
        print(",".join(loaded) or "none")
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"


def test_peak_connection_bytes_counts_what_a_connection_holds(collector: Collector) -> None:
    """The introspection itself: a 300 KB body shows up in the peak, so the bounds above mean something."""
    body = json.dumps(batch(message("big", properties={"p": "x" * 30_000}))).encode() + b" " * 270_000
    before = time.monotonic()
    with client(headers=basic()) as session:
        assert session.post(f"{collector.url}/v1/batch", content=body).status_code == 200
    assert time.monotonic() - before < 5.0
    assert collector.stats.peak_connection_bytes >= 128 * 1024
