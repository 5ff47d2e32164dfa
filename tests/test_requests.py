"""Building the batch request: URL, headers, the body's envelope and its size arithmetic."""

from __future__ import annotations

import base64
import gzip
import re
from datetime import datetime, timezone

import msgspec
import pytest

from segment_core._batch_requests import SENT_AT_LENGTH, BatchRequestBuilder, basic_authorization, normalize_host
from segment_core._message_builder import format_timestamp
from segment_core.limits import DEFAULT_HOST, EU_HOST, LIBRARY_NAME, LIBRARY_VERSION

SENT_AT = "2023-11-14T22:13:20.123+00:00"
MESSAGES = [b'{"messageId":"a","n":1}', b'{"messageId":"b","s":"\\u00e9"}', b'{"messageId":"c"}']


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (DEFAULT_HOST, "https://api.segment.io/v1/batch"),
        (DEFAULT_HOST + "/", "https://api.segment.io/v1/batch"),
        (EU_HOST, "https://events.eu1.segmentapis.com/v1/batch"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1/batch"),
    ],
    ids=["default", "trailing-slash", "eu", "loopback"],
)
def test_url(host: str, url: str) -> None:
    assert BatchRequestBuilder(host=host, write_key="k", gzip_body=False).url == url
    assert normalize_host(host) + "/v1/batch" == url


@pytest.mark.parametrize("write_key", ["k", "wk_123", 'quote"and\\slash', "ünïcødé", "x" * 200])
def test_body_is_the_documented_json(write_key: str) -> None:
    builder = BatchRequestBuilder(host=DEFAULT_HOST, write_key=write_key, gzip_body=False)
    body = builder.body(MESSAGES, SENT_AT)
    decoded = msgspec.json.decode(body)
    assert decoded == {
        "batch": [msgspec.json.decode(m) for m in MESSAGES],
        "sentAt": SENT_AT,
        "writeKey": write_key,
    }


@pytest.mark.parametrize("write_key", ["k", 'quote"and\\slash', "ünïcødé", "x" * 200])
@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_envelope_bytes_is_the_exact_overhead(write_key: str, count: int) -> None:
    # Body size = envelope + messages + one comma between each pair: what batching relies on.
    builder = BatchRequestBuilder(host=DEFAULT_HOST, write_key=write_key, gzip_body=False)
    messages = MESSAGES[:count]
    body = builder.body(messages, SENT_AT)
    assert len(body) == builder.envelope_bytes + sum(map(len, messages)) + max(count - 1, 0)


def test_gzip_body_decompresses_to_the_same_json() -> None:
    plain = BatchRequestBuilder(host=DEFAULT_HOST, write_key="k", gzip_body=False)
    zipped = BatchRequestBuilder(host=DEFAULT_HOST, write_key="k", gzip_body=True)
    body = zipped.body(MESSAGES, SENT_AT)
    assert body[:2] == b"\x1f\x8b"
    assert gzip.decompress(body) == plain.body(MESSAGES, SENT_AT)
    # mtime=0: the same input gives the same bytes.
    assert zipped.body(MESSAGES, SENT_AT) == body


@pytest.mark.parametrize("gzip_body", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("retry_count", [0, 1, 7])
def test_headers(gzip_body: bool, retry_count: int) -> None:
    builder = BatchRequestBuilder(host=DEFAULT_HOST, write_key="wk", gzip_body=gzip_body)
    auth = basic_authorization("wk")
    headers = dict(builder.headers(auth, retry_count))
    assert len(headers) == len(builder.headers(auth, retry_count)), "a header appears twice"
    expected = {
        "Content-Type": "application/json",
        "User-Agent": f"{LIBRARY_NAME}/{LIBRARY_VERSION}",
        "Authorization": auth,
    }
    if gzip_body:
        expected["Content-Encoding"] = "gzip"
    if retry_count:
        expected["X-Retry-Count"] = str(retry_count)
    assert headers == expected


@pytest.mark.parametrize("write_key", ["wk", "ünïcødé", "a:b"])
def test_basic_authorization_is_the_write_key_as_user_name(write_key: str) -> None:
    scheme, _, credentials = basic_authorization(write_key).partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == write_key + ":"


SENT_AT_PATTERN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


@pytest.mark.parametrize("wall", [0.0, 1_700_000_000.0, 1_700_000_000.1239, 1_700_000_000.9999, 4_102_444_799.5])
def test_sent_at_is_utc_with_milliseconds_and_fixed_length(wall: float) -> None:
    text = format_timestamp(wall)  # sentAt's format
    assert SENT_AT_PATTERN.match(text), text
    assert len(text) == SENT_AT_LENGTH
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() == timezone.utc.utcoffset(None)
    assert abs(parsed.timestamp() - wall) < 0.001
