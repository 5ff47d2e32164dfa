"""The collector's live event viewer: a feed of what happened, streamed as server-sent events.

Strategy: every request outcome the collector sees (a stored batch, a rejected request, an
injected fault) is appended to a :class:`Feed` on the event loop's thread, with the counters as
they stand right after it. The feed keeps only the latest outcomes (bounded by rows and bytes),
so a page opened late still shows the recent past. Each outcome is encoded to JSON once, the
first time a reader needs it, and message JSON is embedded as it arrived (``msgspec.Raw``), never
decoded again. A browser's ``GET /events`` becomes a :class:`FeedReader`, which the event loop
pulls from as the socket drains: a slow reader never makes the collector buffer more than a
chunk, and one that falls behind the oldest kept outcome is disconnected (its EventSource
reconnects and starts over from what is kept).

``GET /`` serves the page itself (``static/``: plain HTML, CSS and JavaScript, shipped in the
package, nothing fetched from elsewhere; a Content-Security-Policy of ``'self'`` says so).
Server-sent events: https://html.spec.whatwg.org/multipage/server-sent-events.html
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any, Final

import msgspec

from ._protocol import Action, HttpRequest, Reply, Stream
from ._store import Row, now_iso

__all__ = ["EVENTS_PATH", "MAX_FEED_BYTES", "MAX_FEED_ROWS", "Feed", "FeedReader", "viewer_action"]

EVENTS_PATH: Final = "/events"
# What the feed keeps: at most this many rows (a stored message, a rejection or a fault is one
# row each) and about this many bytes of message JSON. The page shows the same number of rows.
MAX_FEED_ROWS: Final = 5000
MAX_FEED_BYTES: Final = 16 * 1024 * 1024
# Accounted per row on top of its message JSON: the row's other fields and its frame.
_ROW_OVERHEAD: Final = 256
# Milliseconds an EventSource waits before reconnecting (the SSE "retry" field).
_RECONNECT_MS: Final = 1000
_KEEPALIVE: Final = b": keepalive\n\n"

# path -> (file in static/, content type)
_ASSETS: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/viewer.css": ("viewer.css", "text/css; charset=utf-8"),
    "/static/viewer.js": ("viewer.js", "text/javascript; charset=utf-8"),
}
_PAGE_HEADERS: Final = (
    ("cache-control", "no-cache"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    # Everything comes from this server: no CDN, no inline script, works offline.
    ("content-security-policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
)
_EVENT_STREAM_HEADERS: Final = (
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
)


class _Entry:
    """One outcome: its sequence number, size, and either its payload or its encoded frame."""

    __slots__ = ("frame", "payload", "rows", "seq", "size")

    def __init__(self, seq: int, payload: dict[str, Any], rows: int, size: int) -> None:
        self.seq = seq
        self.payload: dict[str, Any] | None = payload
        self.frame = b""
        self.rows = rows
        self.size = size

    def encoded(self) -> bytes:
        payload = self.payload
        if payload is not None:
            if payload["kind"] == "batch":
                payload = {**payload, "rows": [_row_payload(row) for row in payload["rows"]]}
            self.frame = _frame(payload)
            self.payload = None  # keep one form only
        return self.frame


def _frame(payload: Mapping[str, Any]) -> bytes:
    # msgspec escapes control characters, so the JSON is one line: one "data:" field.
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


def _row_payload(row: Row) -> dict[str, Any]:
    message_id, kind, user_id, anonymous_id, name, timestamp, _sent_at, received_at, raw_json, duplicate = row
    return {
        "messageId": message_id,
        "type": kind,
        "userId": user_id,
        "anonymousId": anonymous_id,
        "name": name,
        "timestamp": timestamp,
        "receivedAt": received_at,
        "duplicate": duplicate,
        "message": msgspec.Raw(raw_json.encode()),  # validated JSON, embedded as it arrived
    }


class Feed:
    """The latest request outcomes, in order, for the viewer. Loop thread only.

    Args:
        counters: returns the counters shown at the top of the page (received, unique,
            duplicates, rejected, faults), read right after each outcome.
        max_rows, max_bytes: what is kept; the oldest outcomes go first.
    """

    def __init__(
        self,
        counters: Callable[[], Mapping[str, int]],
        *,
        max_rows: int = MAX_FEED_ROWS,
        max_bytes: int = MAX_FEED_BYTES,
    ) -> None:
        self._counters = counters
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._entries: deque[_Entry] = deque()
        self._rows = 0
        self._bytes = 0
        self._next_seq = 0

    @property
    def first_seq(self) -> int:
        """The sequence number of the oldest outcome kept (``next_seq`` when none is)."""
        return self._entries[0].seq if self._entries else self._next_seq

    @property
    def next_seq(self) -> int:
        """The sequence number the next outcome will get."""
        return self._next_seq

    def record_batch(self, path: str, rows: Sequence[Row], fault: str | None = None) -> None:
        """A request whose messages were stored; ``fault``: "lose_reply" (no reply sent) or "latency"."""
        if not rows:
            return
        size = sum(len(row[8]) for row in rows) + _ROW_OVERHEAD * len(rows)
        payload = {"kind": "batch", "path": path, "at": rows[0][7], "fault": fault, "rows": rows}
        self._append(payload, len(rows), size)

    def record_rejected(self, method: str, path: str, status: int, code: str, reason: str, body_bytes: int) -> None:
        """A request answered with an error status (the reason is the reply's message)."""
        payload = {
            "kind": "rejected",
            "at": now_iso(),
            "method": method,
            "path": path,
            "status": status,
            "code": code,
            "reason": reason,
            "bytes": body_bytes,
        }
        self._append(payload, 1, _ROW_OVERHEAD)

    def record_fault(self, path: str, fault: str, note: str, status: int | None = None) -> None:
        """An injected fault: its kind, the status sent (if any) and what it did."""
        payload = {"kind": "fault", "at": now_iso(), "path": path, "fault": fault, "status": status, "note": note}
        self._append(payload, 1, _ROW_OVERHEAD)

    def _append(self, payload: dict[str, Any], rows: int, size: int) -> None:
        payload["counters"] = dict(self._counters())
        entry = _Entry(self._next_seq, payload, rows, size)
        self._next_seq += 1
        self._entries.append(entry)
        self._rows += rows
        self._bytes += size
        while len(self._entries) > 1 and (self._rows > self._max_rows or self._bytes > self._max_bytes):
            oldest = self._entries.popleft()
            self._rows -= oldest.rows
            self._bytes -= oldest.size

    def frames(self, seq: int, max_bytes: int) -> tuple[bytes, int]:
        """Encoded outcomes from ``seq`` on, about ``max_bytes`` at most; and the next ``seq``.

        Raises:
            LookupError: ``seq`` is older than every outcome kept.
        """
        first = self.first_seq
        if seq < first:
            raise LookupError(seq)
        out = bytearray()
        for entry in itertools.islice(self._entries, seq - first, None):
            if out and len(out) >= max_bytes:
                break
            out += entry.encoded()
            seq = entry.seq + 1
        return bytes(out), seq

    def hello(self) -> bytes:
        """The first frame of every stream: the page starts over, with the current counters."""
        payload = {"kind": "hello", "counters": dict(self._counters()), "maxRows": self._max_rows}
        return f"retry: {_RECONNECT_MS}\n".encode() + _frame(payload)

    def reader(self) -> FeedReader:
        """A new stream of this feed, starting with the oldest outcome kept."""
        return FeedReader(self)


class FeedReader:
    """One browser's place in the feed: the :class:`~._protocol.StreamSource` of ``GET /events``."""

    def __init__(self, feed: Feed) -> None:
        self._feed = feed
        self._seq: int | None = None  # None until the hello frame is sent

    def read(self, max_bytes: int) -> bytes | None:
        """The next frames (b"" if none is new), or None when this reader fell too far behind."""
        prefix = b""
        if self._seq is None:
            prefix = self._feed.hello()
            self._seq = self._feed.first_seq
        elif self._seq == self._feed.next_seq:
            return b""
        try:
            frames, self._seq = self._feed.frames(self._seq, max_bytes)
        except LookupError:
            return None
        return prefix + frames

    def close(self) -> None:
        """The connection closed: nothing to release, a reader holds only its place in the feed."""


@functools.cache
def _asset(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def viewer_action(request: HttpRequest, feed: Feed) -> Action | None:
    """The viewer's answer to ``request``, or None if it is not a viewer request (GET/HEAD only).

    ``GET /`` is the page, ``/static/*`` its files, ``GET /events`` the live stream.
    """
    if request.method not in ("GET", "HEAD"):
        return None
    if request.path == EVENTS_PATH:
        if request.method == "HEAD":
            return Reply(200, b"", _EVENT_STREAM_HEADERS)
        return Stream(feed.reader(), _EVENT_STREAM_HEADERS, keepalive=_KEEPALIVE)
    asset = _ASSETS.get(request.path)
    if asset is None:
        return None
    name, content_type = asset
    return Reply(200, _asset(name), (("content-type", content_type), *_PAGE_HEADERS))
