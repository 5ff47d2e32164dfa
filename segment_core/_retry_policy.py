"""Retry policy: which outcomes retry, how long to wait, and when to give up.

Pure decision functions; the engine applies them. The rules are segment-analytics-python
2.4's (``consumer.py``), which follow Segment's guidance
(https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/#errors-and-retries):

- Success: any 2xx.
- Retry: transport failures, 408, 410, 429, 460, every 5xx but 501 and 505; with
  OAuth, 400/401/403/511 drop the token and retry with a new one (counted).
- Anything else (other 4xx, 3xx, 501, 505) fails the batch at once.
- Counted retries: the first is immediate, then 0.5 s x 2^(k-2) plus up to 10%
  jitter, capped at 60 s, at most ``max_retries`` of them, and no new retry once
  ``max_total_backoff_duration`` has passed since the batch first failed.
- A retryable status with a positive Retry-After (seconds or HTTP-date, capped at
  300 s) pauses the whole pipeline instead, uncounted, bounded by
  ``max_rate_limit_duration`` per episode.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from datetime import timezone
from email.utils import parsedate_to_datetime

import msgspec

from ._errors import APIError
from ._redaction import Redactor
from .limits import MAX_RETRY_AFTER

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "BACKOFF_JITTER",
    "OAUTH_INVALIDATING_STATUSES",
    "Verdict",
    "api_error_from_response",
    "backoff_delay",
    "classify_status",
    "http_date_seconds",
    "parse_retry_after",
]

# First counted delay after the immediate retry, doubling each time (segment-analytics-python 2.4).
BACKOFF_BASE = 0.5
BACKOFF_CAP = 60.0
# Jitter adds up to this fraction of the base delay.
BACKOFF_JITTER = 0.1

# delta-seconds (RFC 9110 section 10.2.3) are digits; a fraction is tolerated.
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# An error body is shown as text from its start: a reply of megabytes is not decoded whole.
_MAX_SCANNED_BODY = 64 * 1024
# A code is an identifier ("invalid_request"); anything longer is not one.
_MAX_CODE = 60

_RETRYABLE_4XX = frozenset({408, 410, 429, 460})
_FATAL_5XX = frozenset({501, 505})
# With OAuth on, these from the batch endpoint mean the token may have been refused: drop it
# and retry the batch with a new one (a counted retry, so a batch the API truly rejects still
# ends). segment-analytics-python 2.4 fails 400/401/403 instead; the OAuth issue asks for the retry.
OAUTH_INVALIDATING_STATUSES = frozenset({400, 401, 403, 511})


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REAUTHORIZE = "reauthorize"  # OAuth token refused: invalidate it, then a counted retry
    FAIL = "fail"


def classify_status(status: int, *, oauth: bool) -> Verdict:
    """Decide what a batch response's status means.

    Args:
        status: the HTTP status.
        oauth: whether requests carry an OAuth bearer token.
    """
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in OAUTH_INVALIDATING_STATUSES:
        return Verdict.REAUTHORIZE if oauth else Verdict.FAIL
    if 400 <= status < 500:
        return Verdict.RETRY if status in _RETRYABLE_4XX else Verdict.FAIL
    if 500 <= status < 600:
        return Verdict.FAIL if status in _FATAL_5XX else Verdict.RETRY
    return Verdict.FAIL


def backoff_delay(retry_number: int, unit_random: float) -> float:
    """The wait before counted retry ``retry_number`` (1-based).

    Args:
        retry_number: 1 for the first retry, which is immediate.
        unit_random: a number in [0, 1) from the engine's random source.

    Returns:
        Seconds: 0 for the first retry, then 0.5 s x 2^(k-2) plus up to 10% jitter, at most 60 s.
    """
    if retry_number <= 1:
        return 0.0
    base = BACKOFF_BASE * 2.0 ** min(retry_number - 2, 16)
    return min(base + unit_random * BACKOFF_JITTER * base, BACKOFF_CAP)


def parse_retry_after(value: str | None, *, wall: float) -> float | None:
    """Seconds to wait from a Retry-After header, or None if absent, invalid or not in the future.

    Accepts delta-seconds or an HTTP-date (RFC 9110 section 10.2.3), capped at
    MAX_RETRY_AFTER. Delta-seconds are digits (a decimal fraction is read too, as
    test servers send it); anything else that is not a date ("1e400", "inf", "-5")
    is no Retry-After, and the batch takes a counted retry instead. A date
    without a zone (RFC 5322 "-0000") is read as UTC.
    """
    if not value:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        delay = float(text)  # a 400-digit number is inf here: capped below
    else:
        when = http_date_seconds(text)
        if when is None:
            return None
        delay = when - wall
    if not delay > 0:
        return None
    return min(delay, MAX_RETRY_AFTER)


def http_date_seconds(value: str) -> float | None:
    """Epoch seconds of an HTTP-date (RFC 9110 section 5.6.7), or None if it is not one.

    A date without a zone (RFC 5322 "-0000") is read as UTC.
    """
    try:
        when = parsedate_to_datetime(value.strip())
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):  # whatever a server wrote
        return None


class _ErrorBody(msgspec.Struct):
    code: str = "unknown"
    message: str = ""


_error_decoder = msgspec.json.Decoder(_ErrorBody)


def api_error_from_response(
    status: int, body: bytes, redactor: Redactor, *, also: Iterable[str | None] = ()
) -> APIError:
    """Build the APIError a failed batch reports: code and message from the JSON body if it has them.

    Total over what a server sends: a body that is not the API's error JSON (any
    nesting, any bytes) is shown as text; every text shown is redacted.

    Args:
        status: the reply's status.
        body: the reply's body.
        redactor: cuts secrets from the server's text.
        also: secrets known only for this request (the token it carried).
    """
    if 300 <= status < 400:
        return APIError(status, "redirect", "unexpected redirect; check the configured host")
    try:
        parsed = _error_decoder.decode(body)
        code, message = parsed.code, parsed.message
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, MemoryError):
        code, message = "unknown", body[:_MAX_SCANNED_BODY].decode("utf-8", "replace")
    return APIError(status, redactor.redact(code, also=also, max_length=_MAX_CODE), redactor.redact(message, also=also))
