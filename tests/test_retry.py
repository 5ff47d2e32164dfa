"""The retry policy's pure functions: status classes, backoff, Retry-After, API errors.

Tables, one row per rule of the policy (segment_core/_retry_policy.py and DESIGN.md
"Wire facts"). The wall clock is always an argument, so HTTP-dates are built
from a fixed instant with the standard library's own formatter.
"""

from __future__ import annotations

from email.utils import formatdate

import msgspec
import pytest

from segment_core import APIError
from segment_core._redaction import Redactor
from segment_core._retry_policy import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    BACKOFF_JITTER,
    Verdict,
    api_error_from_response,
    backoff_delay,
    classify_status,
    parse_retry_after,
)
from segment_core.limits import MAX_RETRY_AFTER

# 2023-11-14T22:13:20Z, a whole second so HTTP-dates (whole seconds) land exactly.
WALL = 1_700_000_000.0

STATUS_TABLE = [
    # (status, verdict without OAuth, verdict with OAuth)
    (200, Verdict.DELIVERED, Verdict.DELIVERED),
    (201, Verdict.DELIVERED, Verdict.DELIVERED),
    (204, Verdict.DELIVERED, Verdict.DELIVERED),
    (299, Verdict.DELIVERED, Verdict.DELIVERED),
    (408, Verdict.RETRY, Verdict.RETRY),
    (410, Verdict.RETRY, Verdict.RETRY),
    (429, Verdict.RETRY, Verdict.RETRY),
    (460, Verdict.RETRY, Verdict.RETRY),
    (500, Verdict.RETRY, Verdict.RETRY),
    (502, Verdict.RETRY, Verdict.RETRY),
    (503, Verdict.RETRY, Verdict.RETRY),
    (504, Verdict.RETRY, Verdict.RETRY),
    (507, Verdict.RETRY, Verdict.RETRY),
    (599, Verdict.RETRY, Verdict.RETRY),
    (501, Verdict.FAIL, Verdict.FAIL),
    (505, Verdict.FAIL, Verdict.FAIL),
    # With OAuth these mean the token was refused: drop it, retry with a new one (the OAuth issue).
    (511, Verdict.FAIL, Verdict.REAUTHORIZE),
    (400, Verdict.FAIL, Verdict.REAUTHORIZE),
    (401, Verdict.FAIL, Verdict.REAUTHORIZE),
    (403, Verdict.FAIL, Verdict.REAUTHORIZE),
    # Other 4xx fail at once, with or without OAuth.
    (404, Verdict.FAIL, Verdict.FAIL),
    (409, Verdict.FAIL, Verdict.FAIL),
    (413, Verdict.FAIL, Verdict.FAIL),
    (422, Verdict.FAIL, Verdict.FAIL),
    (499, Verdict.FAIL, Verdict.FAIL),
    (300, Verdict.FAIL, Verdict.FAIL),
    (301, Verdict.FAIL, Verdict.FAIL),
    (302, Verdict.FAIL, Verdict.FAIL),
    (304, Verdict.FAIL, Verdict.FAIL),
    (307, Verdict.FAIL, Verdict.FAIL),
    (308, Verdict.FAIL, Verdict.FAIL),
    (100, Verdict.FAIL, Verdict.FAIL),
    (600, Verdict.FAIL, Verdict.FAIL),
]


@pytest.mark.parametrize(
    ("status", "plain", "oauth"), STATUS_TABLE, ids=[f"{row[0]}-{row[1].value}" for row in STATUS_TABLE]
)
def test_classify_status(status: int, plain: Verdict, oauth: Verdict) -> None:
    assert classify_status(status, oauth=False) is plain
    assert classify_status(status, oauth=True) is oauth


BACKOFF_TABLE = [
    # (retry number, smallest delay, largest delay)
    (1, 0.0, 0.0),
    (2, 0.5, 0.55),
    (3, 1.0, 1.1),
    (4, 2.0, 2.2),
    (5, 4.0, 4.4),
    (8, 32.0, 35.2),
    (9, 60.0, 60.0),  # 64 s is over the cap
    (10, 60.0, 60.0),
    (60, 60.0, 60.0),
    (10_000, 60.0, 60.0),
]


@pytest.mark.parametrize(("retry", "low", "high"), BACKOFF_TABLE, ids=[f"retry-{row[0]}" for row in BACKOFF_TABLE])
def test_backoff_delay_bounds(retry: int, low: float, high: float) -> None:
    assert backoff_delay(retry, 0.0) == pytest.approx(low)
    assert backoff_delay(retry, 0.999999) == pytest.approx(high, rel=1e-5)
    assert low <= backoff_delay(retry, 0.5) <= high


def test_backoff_jitter_is_linear_in_the_random_number() -> None:
    base = BACKOFF_BASE * 2.0 ** (4 - 2)
    assert backoff_delay(4, 0.25) == pytest.approx(base * (1 + 0.25 * BACKOFF_JITTER))
    assert backoff_delay(4, 0.25) < backoff_delay(4, 0.75)
    assert BACKOFF_CAP == 60.0


RETRY_AFTER_TABLE = [
    # (id, header value, expected delay or None)
    ("absent", None, None),
    ("empty", "", None),
    ("delta-seconds", "120", 120.0),
    ("delta-seconds-padded", "  7 ", 7.0),
    ("delta-one", "1", 1.0),
    ("http-date-gmt", formatdate(WALL + 120, usegmt=True), 120.0),
    ("http-date-minus-0000", formatdate(WALL + 90), 90.0),
    ("http-date-offset", "Tue, 14 Nov 2023 23:15:20 +0100", 120.0),
    ("http-date-rfc850", "Tuesday, 14-Nov-23 22:15:20 GMT", 120.0),
    ("http-date-asctime", "Tue Nov 14 22:15:20 2023", 120.0),
    ("invalid-word", "soon", None),
    ("invalid-date", "Tue, 99 Nov 2023 22:15:20 GMT", None),
    ("invalid-nan", "nan", None),
    ("zero", "0", None),
    ("negative", "-5", None),
    ("http-date-now", formatdate(WALL, usegmt=True), None),
    ("http-date-past", formatdate(WALL - 3600, usegmt=True), None),
    ("over-cap-seconds", "301", MAX_RETRY_AFTER),
    ("over-cap-huge", "86400", MAX_RETRY_AFTER),
    ("over-cap-date", formatdate(WALL + 7200, usegmt=True), MAX_RETRY_AFTER),
    ("at-cap", "300", MAX_RETRY_AFTER),
]


@pytest.mark.parametrize(
    ("value", "expected"), [row[1:] for row in RETRY_AFTER_TABLE], ids=[row[0] for row in RETRY_AFTER_TABLE]
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    delay = parse_retry_after(value, wall=WALL)
    if expected is None:
        assert delay is None
    else:
        assert delay == pytest.approx(expected)


def test_retry_after_dates_are_read_against_the_wall_clock_passed_in() -> None:
    header = formatdate(WALL + 120, usegmt=True)
    assert parse_retry_after(header, wall=WALL + 100) == pytest.approx(20.0)
    assert parse_retry_after(header, wall=WALL + 120.5) is None
    # The cap applies to dates too, measured from the wall clock given.
    assert parse_retry_after(header, wall=WALL - 1000) == MAX_RETRY_AFTER
    assert MAX_RETRY_AFTER == 300.0


API_ERROR_TABLE = [
    # (id, status, body, code, message)
    ("json-400", 400, b'{"code":"invalid_request","message":"bad batch"}', "invalid_request", "bad batch"),
    ("json-413", 413, b'{"code":"too_large","message":"body too big","extra":1}', "too_large", "body too big"),
    ("json-501", 501, b'{"code":"not_implemented","message":"nope"}', "not_implemented", "nope"),
    ("json-505", 505, b'{"code":"version","message":"http version"}', "version", "http version"),
    ("json-missing-fields", 404, b"{}", "unknown", ""),
    ("json-not-object", 400, b"[1,2]", "unknown", "[1,2]"),
    ("text-body", 404, b"Not Found", "unknown", "Not Found"),
    ("empty-body", 422, b"", "unknown", ""),
    ("invalid-utf8", 400, b"\xff\xfeoops", "unknown", "\ufffd\ufffdoops"),
]


@pytest.mark.parametrize(
    ("status", "body", "code", "message"), [row[1:] for row in API_ERROR_TABLE], ids=[row[0] for row in API_ERROR_TABLE]
)
def test_api_error_from_response(status: int, body: bytes, code: str, message: str) -> None:
    error = api_error_from_response(status, body, Redactor())
    assert isinstance(error, APIError)
    assert (error.status, error.code, error.message) == (status, code, message)
    assert str(status) in str(error)


@pytest.mark.parametrize("status", [300, 301, 302, 304, 307, 308])
def test_api_error_for_a_redirect_names_it(status: int) -> None:
    # Redirect bodies are HTML from a proxy, not the API: say what happened, as
    # segment-analytics-python 2.4 does (code "redirect").
    error = api_error_from_response(status, b"<html>Moved</html>", Redactor())
    assert (error.status, error.code) == (status, "redirect")
    assert error.message == "unexpected redirect; check the configured host"
    assert str(error) == f"[Segment] redirect: unexpected redirect; check the configured host ({status})"


# A token with characters no credential pattern expects: only knowing it cuts it.
ODD_TOKEN = "Bearer ab!cd$ef!gh"


@pytest.mark.parametrize("field", ["code", "message"])
def test_api_error_cuts_the_secret_of_this_request_from_both_fields(field: str) -> None:
    body = msgspec.json.encode({"code": "c", "message": "m", field: f"echo {ODD_TOKEN} echo"})
    error = api_error_from_response(401, body, Redactor(), also=(ODD_TOKEN,))
    assert getattr(error, field) == "echo [redacted] echo"
    assert "ab!cd" not in str(error)
    # Without it, the text is the server's: the redaction above is the request's secret, not a pattern.
    assert getattr(api_error_from_response(401, body, Redactor()), field) == f"echo {ODD_TOKEN} echo"


def test_api_error_message_is_kept_readable() -> None:
    long_message = "x" * 5000
    error = api_error_from_response(400, b'{"code":"c","message":"' + long_message.encode() + b'"}', Redactor())
    assert len(error.message) == 300
    assert error.message.endswith("...")
    assert long_message.startswith(error.message.removesuffix("..."))
    error = api_error_from_response(400, long_message.encode(), Redactor())
    assert len(error.message) == 300


NESTED_OBJECT = b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}"


@pytest.mark.parametrize(
    "body",
    [
        NESTED_OBJECT,
        b'{"code":' + b"[" * 5000,
        b"\xff\xfe{not json",
        b'{"code":"' + b"c" * 100_000 + b'","message":"m"}',
        b'{"code": 12, "message": {"nested": true}}',
        b"[" * 100_000,
    ],
    ids=["nested-2000", "unterminated-5000", "invalid-utf8", "huge-code", "wrong-types", "array-100000"],
)
@pytest.mark.parametrize("status", [400, 500, 503])
def test_any_error_body_becomes_an_api_error_judged_by_status(body: bytes, status: int) -> None:
    error = api_error_from_response(status, body, Redactor())
    assert error.status == status
    assert len(error.code) <= 60
    assert len(error.message) <= 300
    assert "\n" not in error.message
