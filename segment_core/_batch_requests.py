"""Building the batch request: URL, headers and body, from already-encoded messages.

The body is ``{"batch":[m1,m2,...],"sentAt":"...","writeKey":"..."}``, made by
joining the bytes each message was encoded to when it was enqueued: nothing is
encoded twice. ``sentAt`` is stamped at each attempt, because the API uses it to
correct the sender's clock skew. Its length is fixed (UTC, milliseconds), so the
envelope's size is known up front and batches can be closed below the 500 KB
limit without building the body to measure it.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Sequence

import msgspec

from .limits import USER_AGENT

__all__ = [
    "BATCH_PATH",
    "SENT_AT_LENGTH",
    "BatchRequestBuilder",
    "basic_authorization",
    "normalize_host",
]

BATCH_PATH = "/v1/batch"
# len("2026-11-23T13:08:42.123+00:00"): sentAt is always UTC with milliseconds.
SENT_AT_LENGTH = 29
# gzip level 6 is zlib's default balance; mtime=0 keeps the body a pure function of its input.
_GZIP_LEVEL = 6


def normalize_host(host: str) -> str:
    """Strip one trailing slash, as segment-analytics-python does."""
    return host[:-1] if host.endswith("/") else host


def basic_authorization(write_key: str) -> str:
    """``Basic base64("<writeKey>:")``: the write key is the user name, the password is empty."""
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode("ascii")


class BatchRequestBuilder:
    """Knows one client's envelope, headers and URL; builds a body per attempt."""

    __slots__ = ("_base_headers", "_gzip", "_key_json", "_prefix", "envelope_bytes", "url")

    def __init__(self, *, host: str, write_key: str, gzip_body: bool) -> None:
        self.url = normalize_host(host) + BATCH_PATH
        self._gzip = gzip_body
        self._key_json = msgspec.json.encode(write_key)
        self._prefix = b'{"batch":['
        # Everything but the messages and the commas between them.
        self.envelope_bytes = len(self._prefix) + len(b'],"sentAt":"') + SENT_AT_LENGTH
        self.envelope_bytes += len(b'","writeKey":') + len(self._key_json) + len(b"}")
        headers = [("Content-Type", "application/json"), ("User-Agent", USER_AGENT)]
        if gzip_body:
            headers.append(("Content-Encoding", "gzip"))
        self._base_headers = tuple(headers)

    def __repr__(self) -> str:
        return f"BatchRequestBuilder(url={self.url!r}, gzip={self._gzip})"

    def body(self, messages: Sequence[bytes], sent_at: str) -> bytes:
        """The request body for these messages, gzipped if the client asked for it."""
        suffix = b"".join((b'],"sentAt":"', sent_at.encode("ascii"), b'","writeKey":', self._key_json, b"}"))
        if not messages:
            raw = self._prefix + suffix
        else:
            # One join copies the messages once: the envelope rides on the first and last message
            # (small copies) instead of wrapping an already joined batch (a second full copy).
            parts = list(messages)
            parts[0] = self._prefix + parts[0]
            parts[-1] += suffix
            raw = b",".join(parts)
        return gzip.compress(raw, _GZIP_LEVEL, mtime=0) if self._gzip else raw

    def headers(self, authorization: str, retry_count: int) -> tuple[tuple[str, str], ...]:
        """Headers for one attempt; ``X-Retry-Count`` on the n-th retry."""
        extra = [("Authorization", authorization)]
        if retry_count > 0:
            extra.append(("X-Retry-Count", str(retry_count)))
        return self._base_headers + tuple(extra)
