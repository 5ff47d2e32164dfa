"""close(deadline), reset_after_fork() and the Stats counters."""

from __future__ import annotations

from collections import Counter

import pytest

from segment_core import APIError, EngineState, Enqueued, RetriesExhausted, ShutdownDeadline
from segment_core._errors import ClientClosed

from .test_engine_support import Driver, FixedRandom, message


def state_of(driver: Driver) -> EngineState:
    return driver.engine.state


# close(deadline) -----------------------------------------------------------------------------


def test_close_with_nothing_queued_is_closed_at_once() -> None:
    driver = Driver()
    driver.close(timeout=10.0)
    assert driver.engine.state is EngineState.CLOSED
    assert driver.engine.next_deadline() is None
    assert isinstance(driver.enqueue(message(1)), ClientClosed)


def test_close_delivers_everything_queued_before_the_deadline() -> None:
    driver = Driver(upload_size=2, upload_interval=60.0)
    seqs = driver.add(5)
    driver.close(timeout=10.0)
    assert state_of(driver) is EngineState.CLOSING
    driver.run_until_settled()
    assert driver.delivery_order == seqs
    assert not driver.failed
    assert driver.engine.state is EngineState.CLOSED
    assert driver.engine.next_deadline() is None
    assert driver.now < 10.0


def test_at_the_deadline_everything_undelivered_fails_once() -> None:
    driver = Driver(upload_size=2, max_in_flight=1)
    delivered = driver.add(2)
    (first,) = driver.flush()
    driver.respond(first)
    rest = driver.add(5)
    (in_flight,) = driver.close(timeout=10.0)  # one batch out, the server never answers
    assert driver.engine.next_deadline() == pytest.approx(10.0), "the runtime must wake at the deadline"
    assert driver.poll(9.99) == []
    assert not driver.failed
    driver.poll(10.0)
    assert sorted(driver.failed) == rest
    assert all(isinstance(error, ShutdownDeadline) for error in driver.failed.values())
    assert sorted(driver.delivered) == delivered
    assert driver.engine.pending == 0
    assert driver.engine.state is EngineState.CLOSED
    assert driver.engine.next_deadline() is None
    # The answer to the abandoned request comes too late, and changes nothing.
    driver.respond(in_flight)
    assert sorted(driver.delivered) == delivered
    driver.poll(100.0)
    stats = driver.engine.stats()
    assert (stats.delivered, stats.failed) == (2, {"ShutdownDeadline": 5})
    assert (stats.queue_depth, stats.queue_bytes, stats.in_flight_messages) == (0, 0, 0)


def test_close_keeps_retrying_until_the_deadline() -> None:
    driver = Driver(rng=FixedRandom(0.0), max_retries=10)
    (seq,) = driver.add(1)
    (request,) = driver.close(timeout=5.0)
    sent_at = [driver.now]
    while not driver.failed:
        driver.respond(request, 503)
        deadline = driver.engine.next_deadline()
        assert deadline is not None
        requests = driver.poll(deadline)
        if requests:
            (request,) = requests
            sent_at.append(driver.now)
    # Attempts at 0, 0 (immediate retry), 0.5, 1.5, 3.5; the next would be at 7.5.
    assert sent_at == pytest.approx([0.0, 0.0, 0.5, 1.5, 3.5])
    assert driver.now == pytest.approx(5.0)
    assert isinstance(driver.failed[seq], ShutdownDeadline)


def test_close_deadline_cuts_a_rate_limit_pause() -> None:
    driver = Driver()
    (seq,) = driver.add(1)
    (request,) = driver.close(timeout=5.0)
    driver.respond(request, 429, headers={"retry-after": "60"})
    assert driver.engine.next_deadline() == pytest.approx(5.0)
    assert driver.poll(4.0) == []
    driver.poll(5.0)
    assert isinstance(driver.failed[seq], ShutdownDeadline)


def test_a_fatal_answer_while_closing_is_reported_as_such() -> None:
    driver = Driver()
    (seq,) = driver.add(1)
    (request,) = driver.close(timeout=5.0)
    driver.respond(request, 400, body=b'{"code":"bad","message":"no"}')
    assert isinstance(driver.failed[seq], APIError)
    assert driver.engine.state is EngineState.CLOSED
    driver.poll(10.0)
    assert len(driver.failed) == 1


def test_closing_again_keeps_the_earlier_deadline() -> None:
    driver = Driver()
    driver.add(1)
    assert len(driver.close(timeout=10.0)) == 1
    driver.engine.close(now=driver.now, deadline=100.0)
    assert driver.engine.next_deadline() == pytest.approx(10.0)
    driver.engine.close(now=driver.now, deadline=3.0)
    assert driver.engine.next_deadline() == pytest.approx(3.0)
    driver.poll(3.0)
    assert len(driver.failed) == 1


def test_close_with_a_deadline_already_passed_fails_without_sending() -> None:
    driver = Driver(upload_interval=100.0)
    seqs = driver.add(3)
    driver.engine.close(now=driver.now, deadline=driver.now)
    assert driver.poll() == []
    assert sorted(driver.failed) == seqs


# reset_after_fork() --------------------------------------------------------------------------


def test_reset_after_fork_forgets_everything_and_reports_nothing() -> None:
    driver = Driver(upload_size=2, max_in_flight=2, upload_interval=60.0)
    driver.add(5)
    a, b = driver.flush()
    driver.respond(b, 503)  # b waits for its retry; a is in flight; one message is queued
    last_parent_seq = driver.engine.last_seq
    driver.engine.reset_after_fork()
    assert driver.engine.next_outputs() == []
    assert driver.engine.pending == 0
    assert driver.engine.next_deadline() is None
    stats = driver.engine.stats()
    assert (stats.queue_depth, stats.queue_bytes, stats.in_flight_messages) == (0, 0, 0)
    # The parent's request is not the child's: its answer is ignored.
    driver.respond(a)
    assert driver.poll(1000.0) == []
    assert not driver.delivered
    assert not driver.failed
    # The child works normally from here.
    assert driver.enqueue(message(100)) is Enqueued.WAKE
    assert driver.engine.last_seq == last_parent_seq + 1
    (request,) = driver.flush()
    assert request.id not in (a.id, b.id)
    driver.respond(request)
    assert list(driver.delivered) == [last_parent_seq + 1]


def test_reset_after_fork_drops_a_rate_limit_pause() -> None:
    driver = Driver()
    driver.add(1)
    (request,) = driver.flush()
    driver.respond(request, 429, headers={"retry-after": "300"})
    driver.engine.reset_after_fork()
    driver.add(1)
    assert len(driver.flush()) == 1


# Stats ---------------------------------------------------------------------------------------


def test_stats_count_what_happened() -> None:
    driver = Driver(upload_size=2, max_in_flight=2, max_queue_size=4, max_retries=1, upload_interval=60.0)
    sizes = [100, 200, 300, 400]
    for i, size in enumerate(sizes):
        assert isinstance(driver.enqueue(message(i, size)), Enqueued)
    assert not isinstance(driver.enqueue(message(9)), Enqueued)
    stats = driver.engine.stats()
    assert (stats.enqueued, stats.rejected, stats.queue_depth, stats.queue_bytes) == (4, 1, 4, sum(sizes))
    assert (stats.requests, stats.in_flight_messages) == (0, 0)

    a, b = driver.poll()  # two full batches
    stats = driver.engine.stats()
    assert (stats.queue_depth, stats.queue_bytes, stats.in_flight_messages, stats.requests) == (0, 0, 4, 2)

    driver.respond(a, 500)  # counted retry
    assert driver.engine.stats().in_flight_messages == 2
    driver.respond(b, 429, headers={"retry-after": "2"})  # rate-limit wait
    assert driver.poll(1.9) == []  # the pause holds a's retry too
    a_retry, b_again = driver.poll(2.0)
    assert (a_retry.retry_count, b_again.retry_count) == (1, 1)
    driver.respond(a_retry, 500)  # max_retries=1: exhausted
    driver.respond(b_again, 200)
    driver.add(1)
    (c,) = driver.flush()
    driver.respond(c, 404)

    stats = driver.engine.stats()
    failed = Counter(type(error).__name__ for error in driver.failed.values())
    assert stats.failed == dict(failed) == {"RetriesExhausted": 2, "APIError": 1}
    assert stats.delivered == len(driver.delivered) == 2
    assert stats.enqueued == len(driver.data) == 5
    assert stats.requests == len(driver.sent) == 5
    assert (stats.retries, stats.rate_limit_waits, stats.rejected) == (1, 1, 1)
    assert (stats.queue_depth, stats.queue_bytes, stats.in_flight_messages) == (0, 0, 0)
    assert isinstance(driver.failed[0], RetriesExhausted)


# A spool (durable=True) and waits ---------------------------------------------------------------


def test_a_durable_close_keeps_what_is_undelivered_with_its_last_cause() -> None:
    driver = Driver(durable=True, upload_size=1, max_in_flight=1)
    retried, queued = driver.add(2)
    (request,) = driver.flush()
    driver.respond(request, 500, body=b'{"code":"busy","message":"try later"}')
    cause = driver.engine.last_error
    assert isinstance(cause, APIError)
    driver.engine.close(now=driver.now, deadline=driver.now, waiter=3)
    driver.poll()
    # Kept for the next process, not failed: each with the last failed attempt to deliver it.
    assert driver.kept == {retried: cause, queued: cause}
    assert not driver.failed
    assert driver.waits == {3: False}
    stats = driver.engine.stats()
    assert (stats.kept, stats.failed, stats.pending) == (2, {}, 0)
    assert driver.engine.state is EngineState.CLOSED


def test_a_durable_close_before_any_failure_keeps_messages_without_a_cause() -> None:
    driver = Driver(durable=True)
    (seq,) = driver.add(1)
    driver.close(timeout=0.0)
    assert driver.kept == {seq: None}
    assert driver.engine.stats().kept == 1


def test_a_cancelled_wait_settles_nothing() -> None:
    driver = Driver()
    driver.add(1)
    driver.engine.flush(now=driver.now, waiter=1)
    driver.engine.flush(now=driver.now, waiter=2)
    driver.engine.cancel_wait(1)
    driver.engine.cancel_wait(99)  # unknown or already settled: nothing to forget
    driver.run_until_settled()
    assert driver.waits == {2: True}


def test_the_deadline_error_says_whether_the_request_was_in_flight() -> None:
    driver = Driver(upload_size=1, max_in_flight=1)
    flying, queued = driver.add(2)
    (request,) = driver.close(timeout=5.0)  # the server never answers
    driver.poll(5.0)
    in_flight, never_sent = driver.failed[flying], driver.failed[queued]
    assert isinstance(in_flight, ShutdownDeadline)
    assert isinstance(never_sent, ShutdownDeadline)
    assert (in_flight.in_flight, in_flight.last_error) == (True, None)
    assert str(in_flight) == "shutdown deadline passed while the request was in flight (no reply yet)"
    assert (never_sent.in_flight, never_sent.last_error) == (False, None)
    assert str(never_sent) == "shutdown deadline passed before delivery (no attempt had failed)"
    assert request.message_count == 1


def test_at_the_deadline_each_failure_names_the_last_cause() -> None:
    driver = Driver(upload_size=1, max_in_flight=2)
    retried, flying, queued = driver.add(3)
    first, second = driver.flush()
    driver.respond(first, 503, body=b'{"code":"busy","message":"try later"}')
    cause = driver.engine.last_error
    assert isinstance(cause, APIError)
    driver.engine.close(now=driver.now, deadline=driver.now)
    driver.poll()
    errors = [driver.failed[seq] for seq in (retried, flying, queued)]
    deadline_errors = [error for error in errors if isinstance(error, ShutdownDeadline)]
    assert deadline_errors == errors
    # The retried batch's own cause; for the others, the pipeline's last failed attempt.
    assert [error.last_error for error in deadline_errors] == [cause, cause, cause]
    assert [error.in_flight for error in deadline_errors] == [False, False, False]
    assert all(error.__cause__ is cause for error in errors)
    assert second.message_count == 1


def test_close_settles_its_own_wait() -> None:
    driver = Driver()
    driver.add(1)
    driver.engine.close(now=driver.now, deadline=driver.now + 10.0, waiter=41)
    driver.run_until_settled()
    assert driver.waits == {41: True}


def test_at_the_deadline_each_batch_keeps_its_own_cause() -> None:
    driver = Driver(upload_size=1, max_in_flight=2)
    first_seq, second_seq = driver.add(2)
    first, second = driver.flush()
    driver.respond(first, 503, body=b'{"code":"busy","message":"try later"}')
    own_cause = driver.engine.last_error
    driver.fail(second)  # the pipeline's last error is now the second batch's
    assert driver.engine.last_error is not own_cause
    driver.engine.close(now=driver.now, deadline=driver.now)
    driver.poll()
    errors = [driver.failed[seq] for seq in (first_seq, second_seq)]
    deadline_errors = [error for error in errors if isinstance(error, ShutdownDeadline)]
    assert deadline_errors == errors
    assert deadline_errors[0].last_error is own_cause
    assert deadline_errors[1].last_error is driver.engine.last_error


def test_a_later_failure_does_not_spoil_an_earlier_wait() -> None:
    driver = Driver(upload_size=1, max_in_flight=2)
    (covered,) = driver.add(1)
    driver.engine.flush(now=driver.now, waiter=1)  # covers the first message only
    (later,) = driver.add(1)
    first, second = driver.flush()
    driver.respond(second, 400, body=b'{"code":"bad","message":"no"}')  # the later message fails first
    assert later in driver.failed
    assert driver.waits == {}
    driver.respond(first)
    assert covered in driver.delivered
    assert driver.waits == {1: True}
