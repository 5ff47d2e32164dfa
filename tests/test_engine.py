"""The engine's response handling: what each status, Retry-After and transport failure does.

Table-driven: one message, one request, one outcome, then what the engine does
next. The wall clock is passed in (``Driver.wall``), so HTTP-date Retry-After
values are exact.
"""

from __future__ import annotations

from email.utils import formatdate

import pytest

from segment_core import (
    APIError,
    RateLimitExceeded,
    RetriesExhausted,
    ShutdownDeadline,
    TransportError,
    TransportFailure,
    TransportFailureKind,
)
from segment_core.limits import MAX_RETRY_AFTER

from .test_engine_support import WRITE_KEY, Driver, FakeOAuth, FixedRandom, batch_of, header

ERROR_BODY = b'{"code":"some_code","message":"what went wrong"}'

DELIVERED = [200, 201, 202, 204, 299]
RETRIED = [408, 410, 429, 460, 500, 502, 503, 504, 507, 599]
FAILED = [501, 505, 400, 401, 403, 404, 413, 422, 499]
REDIRECTS = [300, 301, 302, 304, 307, 308]


@pytest.mark.parametrize("status", DELIVERED, ids=lambda s: f"{s}")
def test_2xx_delivers(status: int) -> None:
    driver = Driver()
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, status)
    assert driver.delivered == {seq: driver.data[seq]}
    assert not driver.failed
    assert driver.engine.pending == 0
    assert driver.poll(driver.now + 3600) == []
    stats = driver.engine.stats()
    assert (stats.delivered, stats.retries, stats.requests) == (1, 0, 1)


@pytest.mark.parametrize("status", RETRIED, ids=lambda s: f"{s}")
def test_retryable_status_retries_at_once_then_succeeds(status: int) -> None:
    driver = Driver()
    (seq,) = driver.add(1)
    (first,) = driver.flush()
    assert driver.respond(first, status, body=ERROR_BODY) == []
    assert not driver.delivered
    assert not driver.failed
    # The first counted retry is immediate.
    assert driver.engine.next_deadline() == driver.now
    (retry,) = driver.poll()
    assert batch_of(retry)["batch"] == batch_of(first)["batch"]
    assert header(retry, "X-Retry-Count") == "1"
    assert retry.retry_count == 1
    driver.respond(retry)
    assert list(driver.delivered) == [seq]
    stats = driver.engine.stats()
    assert (stats.retries, stats.requests, stats.rate_limit_waits) == (1, 2, 0)


@pytest.mark.parametrize("status", FAILED, ids=lambda s: f"{s}")
def test_fatal_status_fails_at_once_with_the_api_error(status: int) -> None:
    driver = Driver()
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, status, body=ERROR_BODY)
    error = driver.failed[seq]
    assert isinstance(error, APIError)
    assert (error.status, error.code, error.message) == (status, "some_code", "what went wrong")
    assert driver.poll(driver.now + 3600) == []
    assert driver.engine.pending == 0
    stats = driver.engine.stats()
    assert (stats.failed, stats.retries, stats.requests) == ({"APIError": 1}, 0, 1)


@pytest.mark.parametrize("status", REDIRECTS, ids=lambda s: f"{s}")
def test_redirect_fails_at_once(status: int) -> None:
    driver = Driver()
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, status, headers={"location": "https://elsewhere.example/"}, body=b"<html/>")
    error = driver.failed[seq]
    assert isinstance(error, APIError)
    assert (error.status, error.code) == (status, "redirect")
    assert driver.poll(driver.now + 3600) == []


@pytest.mark.parametrize("status", RETRIED, ids=lambda s: f"{s}")
def test_retryable_status_with_retry_after_pauses_instead(status: int) -> None:
    driver = Driver()
    driver.add(1)
    (first,) = driver.flush()
    driver.respond(first, status, headers={"retry-after": "7"}, body=ERROR_BODY)
    assert driver.engine.next_deadline() == pytest.approx(7.0)
    assert driver.poll(6.999) == []
    (retry,) = driver.poll(7.0)
    assert header(retry, "X-Retry-Count") == "1"
    stats = driver.engine.stats()
    assert (stats.retries, stats.rate_limit_waits) == (0, 1)


@pytest.mark.parametrize("status", [400, 404, 501], ids=lambda s: f"{s}")
def test_retry_after_on_a_fatal_status_is_ignored(status: int) -> None:
    driver = Driver()
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, status, headers={"retry-after": "5"}, body=ERROR_BODY)
    assert isinstance(driver.failed[seq], APIError)
    assert driver.engine.stats().rate_limit_waits == 0


@pytest.mark.parametrize("kind", list(TransportFailureKind), ids=lambda k: k.value)
def test_transport_failures_are_counted_retries(kind: TransportFailureKind) -> None:
    driver = Driver(max_retries=2)
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    for attempt in range(3):
        assert header(request, "X-Retry-Count") == (str(attempt) if attempt else None)
        driver.fail(request, kind)
        if attempt < 2:
            (request,) = driver.poll(max(driver.now, driver.engine.next_deadline() or 0.0))
    error = driver.failed[seq]
    assert isinstance(error, RetriesExhausted)
    assert error.attempts == 3
    assert isinstance(error.last_error, TransportError)
    assert error.last_error.kind == kind.value
    assert error.status is None
    assert driver.engine.stats().retries == 2


def test_a_transport_failure_carries_its_kind_and_detail() -> None:
    driver = Driver()
    driver.add(1)
    (request,) = driver.flush()
    failure = TransportFailure(kind=TransportFailureKind.CONNECT, detail="connection refused (127.0.0.1:8080)")
    driver.engine.receive_failure(request.id, failure, now=driver.now, wall=driver.wall)
    driver.drain()
    (retrying,) = driver.retrying
    error = retrying.error
    assert isinstance(error, TransportError)
    assert (error.kind, error.detail) == ("connect", "connection refused (127.0.0.1:8080)")
    assert str(error) == "connection refused (127.0.0.1:8080)"
    assert driver.engine.last_error is error


class OddTokenOAuth(FakeOAuth):
    """A bearer token with characters no credential pattern expects: only knowing it cuts it."""

    def authorization(self, *, now: float) -> str | None:
        return "Bearer ab!cd$ef!gh"


def test_a_transport_failure_detail_loses_the_write_key_and_the_request_s_authorization() -> None:
    driver = Driver(authorizer=OddTokenOAuth(), oauth=True)
    driver.add(1)
    (request,) = driver.flush()
    detail = f"proxy echoed {WRITE_KEY} and Bearer ab!cd$ef!gh back"
    failure = TransportFailure(kind=TransportFailureKind.RESET, detail=detail)
    driver.engine.receive_failure(request.id, failure, now=driver.now, wall=driver.wall)
    driver.drain()
    (retrying,) = driver.retrying
    assert isinstance(retrying.error, TransportError)
    assert retrying.error.detail == "proxy echoed [redacted] and [redacted] back"


def test_an_api_error_loses_the_request_s_authorization() -> None:
    driver = Driver(authorizer=OddTokenOAuth(), oauth=True)
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, 404, body=b'{"code":"c","message":"token was Bearer ab!cd$ef!gh"}')
    error = driver.failed[seq]
    assert isinstance(error, APIError)
    assert error.message == "token was [redacted]"


# 511 means "network authentication required": with OAuth, the token; without, nothing to fix.


def test_511_fails_at_once_without_oauth() -> None:
    driver = Driver()
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, 511, body=ERROR_BODY)
    error = driver.failed[seq]
    assert isinstance(error, APIError)
    assert error.status == 511


def test_511_with_oauth_drops_the_token_and_retries() -> None:
    oauth = FakeOAuth()
    driver = Driver(authorizer=oauth, oauth=True)
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    assert header(request, "Authorization") == "Bearer token-1"
    driver.respond(request, 511, body=ERROR_BODY)
    assert oauth.invalidations == 1
    assert not driver.failed
    (retry,) = driver.poll()
    assert header(retry, "Authorization") == "Bearer token-2"
    assert header(retry, "X-Retry-Count") == "1"
    driver.respond(retry)
    assert list(driver.delivered) == [seq]
    assert driver.engine.stats().retries == 1


@pytest.mark.parametrize("status", [400, 401, 403], ids=lambda s: f"{s}")
def test_oauth_refusals_drop_the_token_and_retry_with_a_new_one(status: int) -> None:
    # The OAuth issue: a 400/401/403/511 from the batch endpoint invalidates the token
    # and the batch retries with a new one (counted, so a truly bad batch still ends).
    oauth = FakeOAuth()
    driver = Driver(authorizer=oauth, oauth=True, max_retries=1)
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, status, body=ERROR_BODY)
    assert oauth.invalidations == 1
    assert not driver.failed
    (retry,) = driver.poll()
    assert header(retry, "Authorization") == "Bearer token-2"
    driver.respond(retry, status, body=ERROR_BODY)
    error = driver.failed[seq]
    assert isinstance(error, RetriesExhausted)
    assert isinstance(error.last_error, APIError)
    assert (error.last_error.status, error.last_error.code) == (status, "some_code")


@pytest.mark.parametrize("status", [404, 413, 500, 200], ids=lambda s: f"{s}")
def test_other_statuses_keep_the_oauth_token(status: int) -> None:
    oauth = FakeOAuth()
    driver = Driver(authorizer=oauth, oauth=True)
    driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, status, body=ERROR_BODY)
    assert oauth.invalidations == 0


# Retry-After, each form, with the wall clock passed in -------------------------------------


RETRY_AFTER_FORMS = [
    # (id, header value given the wall clock at the response, expected pause or None for a counted retry)
    ("delta-seconds", lambda wall: "30", 30.0),
    ("http-date", lambda wall: formatdate(wall + 45, usegmt=True), 45.0),
    ("http-date-minus-0000", lambda wall: formatdate(wall + 20), 20.0),
    ("invalid", lambda wall: "in a while", None),
    ("zero", lambda wall: "0", None),
    ("negative", lambda wall: "-3", None),
    ("past-date", lambda wall: formatdate(wall - 60, usegmt=True), None),
    ("over-cap-seconds", lambda wall: "100000", MAX_RETRY_AFTER),
    ("over-cap-date", lambda wall: formatdate(wall + 3 * 3600, usegmt=True), MAX_RETRY_AFTER),
]


@pytest.mark.parametrize(
    ("make_value", "pause"), [row[1:] for row in RETRY_AFTER_FORMS], ids=[row[0] for row in RETRY_AFTER_FORMS]
)
@pytest.mark.parametrize("start", [0.0, 1234.0], ids=["t0", "t1234"])
def test_retry_after_forms(make_value: object, pause: float | None, start: float) -> None:
    assert callable(make_value)
    driver = Driver()
    driver.at(start)
    driver.add(1)
    (request,) = driver.flush()
    answered_at = start + 2.0  # the wall clock moves with the monotonic one
    driver.at(answered_at)
    driver.respond(request, 429, headers={"retry-after": make_value(driver.wall)}, body=ERROR_BODY)
    stats = driver.engine.stats()
    if pause is None:
        # Not a usable Retry-After: a counted retry, the first immediate.
        assert (stats.retries, stats.rate_limit_waits) == (1, 0)
        assert len(driver.poll()) == 1
    else:
        assert (stats.retries, stats.rate_limit_waits) == (0, 1)
        assert driver.engine.next_deadline() == pytest.approx(answered_at + pause)
        assert driver.poll(answered_at + pause - 0.001) == []
        assert len(driver.poll(answered_at + pause)) == 1


# Backoff -------------------------------------------------------------------------------------


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999], ids=["no-jitter", "half-jitter", "full-jitter"])
def test_backoff_schedule(jitter: float) -> None:
    driver = Driver(rng=FixedRandom(jitter), max_retries=12)
    driver.add(1)
    (request,) = driver.flush()
    for retry in range(1, 13):
        failed_at = driver.now
        driver.respond(request, 503)
        base = 0.0 if retry == 1 else 0.5 * 2 ** (retry - 2)
        expected = min(base * (1 + 0.1 * jitter), 60.0)
        deadline = driver.engine.next_deadline()
        assert deadline == pytest.approx(failed_at + expected), f"retry {retry}"
        if expected:
            assert driver.poll(failed_at + expected * 0.999) == [], f"retry {retry} sent early"
        (request,) = driver.poll(deadline)
        assert header(request, "X-Retry-Count") == str(retry)
    driver.respond(request, 200)
    assert len(driver.delivered) == 1
    assert driver.engine.stats().retries == 12


@pytest.mark.parametrize("max_retries", [0, 1, 3], ids=lambda n: f"max_retries={n}")
def test_max_retries_then_retries_exhausted(max_retries: int) -> None:
    driver = Driver(max_retries=max_retries)
    (seq,) = driver.add(1)
    driver.flush()
    attempts = 0
    while not driver.failed:
        (request,) = driver.unanswered.values()
        attempts += 1
        driver.respond(request, 500, body=ERROR_BODY)
        if not driver.failed:
            driver.poll(max(driver.now, driver.engine.next_deadline() or 0.0))
    assert attempts == max_retries + 1
    error = driver.failed[seq]
    assert isinstance(error, RetriesExhausted)
    assert error.attempts == attempts
    assert error.status == 500
    assert isinstance(error.last_error, APIError)
    assert error.last_error.code == "some_code"
    stats = driver.engine.stats()
    assert (stats.retries, stats.requests, stats.failed) == (max_retries, attempts, {"RetriesExhausted": 1})


def test_max_total_backoff_duration_ends_the_episode() -> None:
    driver = Driver(rng=FixedRandom(0.0), max_retries=100, max_total_backoff_duration=5.0)
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    driver.at(10.0)  # the first failure starts the clock, whenever the request was sent
    first_failure = driver.now
    times = []
    while not driver.failed:
        times.append(driver.now)
        driver.respond(request, 503)
        if not driver.failed:
            (request,) = driver.poll(driver.engine.next_deadline())
    # Failures at +0, +0, +0.5, +1.5, +3.5 are retried; the one at +7.5 is past 5 s: no new retry.
    assert times == pytest.approx([first_failure + t for t in (0.0, 0.0, 0.5, 1.5, 3.5, 7.5)])
    error = driver.failed[seq]
    assert isinstance(error, RetriesExhausted)
    assert driver.engine.stats().retries == 5


def test_a_new_batch_starts_a_new_backoff_episode() -> None:
    driver = Driver(rng=FixedRandom(0.0), max_retries=1)
    driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, 503)
    (request,) = driver.poll()
    driver.respond(request, 200)
    driver.add(1)
    (request,) = driver.flush()
    assert header(request, "X-Retry-Count") is None
    driver.respond(request, 503)
    (retry,) = driver.poll()  # immediate again: the episode is the batch's
    assert header(retry, "X-Retry-Count") == "1"


# Retry-After pauses the whole pipeline -----------------------------------------------------


def test_retry_after_pauses_everything_and_keeps_order() -> None:
    driver = Driver(upload_size=2, max_in_flight=1)
    first_seqs = driver.add(2)
    (request,) = driver.flush()
    driver.respond(request, 429, headers={"retry-after": "30"})
    later = driver.add(5)
    driver.engine.flush(now=driver.now)
    for t in (0.0, 1.0, 15.0, 29.99):
        assert driver.poll(t) == [], f"a request at {t} during the pause"
    (resent,) = driver.poll(30.0)
    assert [m["messageId"] for m in batch_of(resent)["batch"]] == ["m0", "m1"]
    driver.run_until_settled()
    assert driver.delivery_order == first_seqs + later
    stats = driver.engine.stats()
    assert (stats.rate_limit_waits, stats.retries) == (1, 0)


def test_retry_after_is_not_a_counted_retry() -> None:
    driver = Driver(max_retries=0)
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    for _ in range(3):
        driver.respond(request, 429, headers={"retry-after": "1"})
        (request,) = driver.poll(driver.now + 1)
    driver.respond(request, 200)
    assert list(driver.delivered) == [seq]
    stats = driver.engine.stats()
    assert (stats.retries, stats.rate_limit_waits, stats.requests) == (0, 3, 4)
    assert header(request, "X-Retry-Count") == "3"


def test_retry_after_holds_batches_already_in_flight_and_new_ones() -> None:
    driver = Driver(upload_size=1, max_in_flight=3)
    driver.add(3)
    a, b, c = driver.flush()
    driver.respond(a, 503, headers={"retry-after": "20"})
    driver.at(1.0)
    driver.respond(b)  # in flight before the pause: its answer still counts
    driver.add(2)
    driver.engine.flush(now=driver.now)
    assert driver.poll(19.0) == []
    driver.respond(c, 500)  # a counted retry of c, but not while paused
    assert driver.poll(19.5) == []
    resumed = driver.poll(20.0)
    assert resumed, "nothing sent when the pause ended"
    assert batch_of(resumed[0])["batch"][0]["messageId"] == "m0"


def test_a_shorter_retry_after_does_not_cut_a_longer_pause_short() -> None:
    driver = Driver(upload_size=1, max_in_flight=2)
    driver.add(2)
    a, b = driver.flush()
    driver.respond(a, 429, headers={"retry-after": "100"})
    driver.at(1.0)
    driver.respond(b, 429, headers={"retry-after": "10"})
    assert driver.engine.next_deadline() == pytest.approx(100.0)
    for t in (11.0, 50.0, 99.9):
        assert driver.poll(t) == [], f"a request at {t}, inside the 100 s pause"
    assert len(driver.poll(100.0)) == 2


def test_a_pause_is_a_failed_attempt_that_names_its_cause() -> None:
    driver = Driver()
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, 429, headers={"retry-after": "10"}, body=ERROR_BODY)
    cause = driver.engine.last_error
    assert isinstance(cause, APIError)
    assert (cause.status, cause.code) == (429, "some_code")
    (retrying,) = driver.retrying
    assert (retrying.paused, retrying.error) == (True, cause)
    # Closed during the pause: the deadline's error says what the last attempt met.
    driver.close(1.0)
    driver.poll(1.0)
    error = driver.failed[seq]
    assert isinstance(error, ShutdownDeadline)
    assert error.last_error is cause


def test_a_pause_may_use_the_whole_rate_limit_budget_but_no_more() -> None:
    driver = Driver(max_rate_limit_duration=20.0)
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, 429, headers={"retry-after": "20"}, body=ERROR_BODY)  # exactly the budget
    assert not driver.failed
    (request,) = driver.poll(20.0)
    driver.respond(request, 429, headers={"retry-after": "1"}, body=ERROR_BODY)  # 21 s: one over
    error = driver.failed[seq]
    assert isinstance(error, RateLimitExceeded)
    assert (error.waited, error.limit) == (21.0, 20.0)
    assert isinstance(error.last_error, APIError)
    assert error.last_error.status == 429
    assert error.__cause__ is error.last_error


def test_rate_limit_budget_then_rate_limit_exceeded() -> None:
    driver = Driver(max_rate_limit_duration=25.0)
    (seq,) = driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, 429, headers={"retry-after": "10"})  # waits until 10 of 25
    (request,) = driver.poll(10.0)
    driver.respond(request, 429, headers={"retry-after": "10"})  # until 20 of 25
    (request,) = driver.poll(20.0)
    driver.respond(request, 429, headers={"retry-after": "10"})  # 30 > 25: give up now
    error = driver.failed[seq]
    assert isinstance(error, RateLimitExceeded)
    assert error.limit == 25.0
    assert error.waited == pytest.approx(30.0)
    stats = driver.engine.stats()
    assert (stats.rate_limit_waits, stats.failed) == (2, {"RateLimitExceeded": 1})
    # The next batch is not held by the spent episode.
    driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, 429, headers={"retry-after": "10"})
    assert not driver.engine.stats().failed.get("RateLimitExceeded", 0) > 1
    assert len(driver.poll(30.0)) == 1


def test_a_success_ends_the_rate_limit_episode() -> None:
    driver = Driver(max_rate_limit_duration=15.0)
    driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, 429, headers={"retry-after": "10"})
    (request,) = driver.poll(10.0)
    driver.respond(request, 200)
    driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, 429, headers={"retry-after": "10"})  # a fresh budget of 15
    assert not driver.failed
    (request,) = driver.poll(20.0)
    driver.respond(request)
    assert len(driver.delivered) == 2
