"""A loopback HTTP server that answers from a script of raw replies, for the edge tests.

Each request is read whole (head, then Content-Length bytes of body) and answered
with the next scripted reply, sent as given, byte for byte: a 500 whose JSON nests
2,000 deep, a 400 echoing the request's headers, a reply that is not HTTP at all,
or ``HANG_UP`` (the connection is closed without a reply). Once the script is
spent, every request gets a plain 200. The batches it answered 200 are kept, so a
test can check that delivery went on after whatever came before.
"""

from __future__ import annotations

import gzip
import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

__all__ = ["HANG_UP", "OK", "HostileServer", "hostile_server", "reply"]

HANG_UP: Final = b""
OK: Final = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"success":true}'

Replier = Callable[[bytes, bytes], bytes]  # (request head, request body) -> raw reply


def reply(status: int, body: bytes = b"", **headers: str) -> bytes:
    """A raw HTTP/1.1 reply with a correct Content-Length."""
    lines = [f"HTTP/1.1 {status} Status".encode()]
    lines += [f"{name.replace('_', '-')}: {value}".encode("latin-1") for name, value in headers.items()]
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class HostileServer:
    """The server's state: the script, and the messages of every batch it answered 200."""

    def __init__(self, script: list[bytes | Replier]) -> None:
        self.script = list(script)
        self.delivered: list[dict[str, Any]] = []
        self.requests = 0
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.url = ""

    def next_reply(self, head: bytes, body: bytes) -> bytes:
        with self.lock:
            self.requests += 1
            step = self.script.pop(0) if self.script else OK
        raw = step(head, body) if callable(step) else step
        if raw == OK:
            payload = gzip.decompress(body) if b"content-encoding: gzip" in head.lower() else body
            with self.lock:
                self.delivered.extend(json.loads(payload)["batch"])
                self.changed.notify_all()
        return raw

    def wait_for(self, count: int, timeout: float = 20.0) -> bool:
        """Wait until ``count`` messages were delivered (answered 200)."""
        with self.changed:
            return self.changed.wait_for(lambda: len(self.delivered) >= count, timeout)

    def delivered_ids(self) -> list[str]:
        with self.lock:
            return [str(message["messageId"]) for message in self.delivered]


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)
        buffered = b""
        while True:
            while b"\r\n\r\n" not in buffered:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffered += chunk
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffered) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffered += chunk
            body, buffered = buffered[:length], buffered[length:]
            raw = self.server.state.next_reply(head, body)
            if raw == HANG_UP:
                return
            sock.sendall(raw)
            if not raw.startswith(b"HTTP/1.1 "):
                return  # not HTTP: nothing more can follow on this connection


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: HostileServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@contextmanager
def hostile_server(script: list[bytes | Replier]) -> Iterator[HostileServer]:
    """A running server on 127.0.0.1 answering from ``script``; stopped on exit."""
    state = HostileServer(script)
    server = _Server(state)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
