"""Batching: batch size and byte limits, when a batch is due, the request's body and headers,
queue bounds and when ``enqueue`` asks the runtime to wake."""

from __future__ import annotations

import base64
import gzip
import uuid
from datetime import datetime

import msgspec
import pytest

from segment_core import Engine, EngineConfig, Enqueued, MessageTooLarge, QueueFull, Track
from segment_core._errors import ClientClosed
from segment_core.limits import LIBRARY_NAME, LIBRARY_VERSION, MAX_BATCH_BYTES, MAX_MESSAGE_BYTES

from .test_engine_support import WALL0, WRITE_KEY, Driver, batch_of, envelope_bytes, header, message

BUDGET = MAX_BATCH_BYTES - envelope_bytes()  # bytes left for messages and the commas between them


def sizes_filling(count: int, total: int) -> list[int]:
    """``count`` message sizes whose bytes plus commas are exactly ``total``."""
    payload = total - (count - 1)
    sizes = [payload // count] * count
    sizes[-1] += payload - sum(sizes)
    return sizes


def ids(request_batch: list[dict[str, object]]) -> list[object]:
    return [m["messageId"] for m in request_batch]


# Batch size ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("upload_size", "count"), [(1, 3), (3, 7), (5, 5), (100, 250)])
def test_batches_hold_at_most_upload_size_messages_in_order(upload_size: int, count: int) -> None:
    driver = Driver(upload_size=upload_size, max_in_flight=1000)
    driver.add(count)
    requests = driver.flush()
    counts = [len(batch_of(r)["batch"]) for r in requests]
    assert counts == [upload_size] * (count // upload_size) + ([count % upload_size] if count % upload_size else [])
    assert [r.message_count for r in requests] == counts
    sent = [m for r in requests for m in batch_of(r)["batch"]]
    assert sent == [msgspec.json.decode(driver.data[seq]) for seq in range(count)]


@pytest.mark.parametrize(
    ("overshoot", "first_batch"),
    [(0, 16), (1, 15)],
    ids=["exactly-500000-bytes", "one-byte-over-closes-before"],
)
@pytest.mark.parametrize("gzip_body", [False, True], ids=["plain", "gzip"])
def test_request_body_is_at_most_max_batch_bytes_without_overshoot(
    overshoot: int, first_batch: int, gzip_body: bool
) -> None:
    driver = Driver(upload_size=100, max_in_flight=10, gzip=gzip_body)
    sizes = sizes_filling(16, BUDGET)
    sizes[-1] += overshoot
    for size in [*sizes, 1000, 1000]:
        driver.add(1, size)
    requests = driver.flush()
    assert [r.message_count for r in requests] == [first_batch, 18 - first_batch]
    bodies = [gzip.decompress(r.body) if gzip_body else r.body for r in requests]
    assert all(len(body) <= MAX_BATCH_BYTES for body in bodies)
    if overshoot:
        # Closed before the message that would have crossed the limit, not after it.
        assert len(bodies[0]) + 1 + sizes[-1] > MAX_BATCH_BYTES
    else:
        assert len(bodies[0]) == MAX_BATCH_BYTES


def test_many_large_messages_split_on_bytes() -> None:
    driver = Driver(upload_size=100, max_in_flight=100, max_queue_bytes=10_000_000)
    driver.add(90, 32_000)
    requests = driver.flush()
    assert sum(r.message_count for r in requests) == 90
    for request in requests:
        assert len(request.body) <= MAX_BATCH_BYTES
    for request in requests[:-1]:
        assert len(request.body) + 1 + 32_000 > MAX_BATCH_BYTES, "a batch closed early"


# When a batch is due -------------------------------------------------------------------------


def test_a_batch_is_due_when_its_oldest_message_is_upload_interval_old() -> None:
    driver = Driver(upload_size=10, upload_interval=10.0)
    driver.add(1)
    assert driver.engine.next_deadline() == pytest.approx(10.0)
    driver.at(4.0).add(2)
    assert driver.engine.next_deadline() == pytest.approx(10.0)
    assert driver.poll(9.999) == []
    (request,) = driver.poll(10.0)
    assert request.message_count == 3


def test_a_batch_is_due_at_once_when_full_by_count() -> None:
    driver = Driver(upload_size=3, upload_interval=10.0)
    driver.add(2)
    assert driver.poll(1.0) == []
    driver.add(1)
    deadline = driver.engine.next_deadline()
    assert deadline is not None
    assert deadline <= driver.now
    (request,) = driver.poll()
    assert request.message_count == 3


def test_a_batch_is_due_at_once_when_full_by_bytes() -> None:
    # Sixteen messages whose bytes fit the budget but whose commas do not: the
    # first fifteen are a full batch the moment the sixteenth arrives.
    driver = Driver(upload_size=100, upload_interval=10.0)
    sizes = sizes_filling(16, BUDGET + 8)
    assert sum(sizes) < BUDGET
    results = [driver.enqueue(message(i, size)) for i, size in enumerate(sizes)]
    assert results[-1] is Enqueued.WAKE
    deadline = driver.engine.next_deadline()
    assert deadline is not None
    assert deadline <= driver.now
    requests = driver.poll()
    assert [r.message_count for r in requests] == [15]


def test_the_next_batch_is_timed_from_its_own_oldest_message() -> None:
    driver = Driver(upload_size=3, upload_interval=10.0)
    driver.add(1)
    driver.at(5.0).add(3)
    (request,) = driver.poll()
    assert request.message_count == 3
    driver.respond(request)
    assert driver.engine.next_deadline() == pytest.approx(15.0)
    assert driver.poll(14.9) == []
    assert len(driver.poll(15.0)) == 1


def test_flush_makes_everything_queued_due_now() -> None:
    driver = Driver(upload_size=3, upload_interval=100.0, max_in_flight=10)
    driver.add(7)
    requests = driver.flush()
    assert [r.message_count for r in requests] == [3, 3, 1]
    # Messages after the flush wait for their own interval.
    driver.at(1.0).add(1)
    assert driver.poll() == []
    assert driver.engine.next_deadline() == pytest.approx(101.0)


def test_close_makes_everything_queued_due_now() -> None:
    driver = Driver(upload_size=3, upload_interval=100.0, max_in_flight=10)
    driver.add(4)
    requests = driver.close(timeout=10.0)
    assert [r.message_count for r in requests] == [3, 1]


# Body and headers ----------------------------------------------------------------------------


def test_body_is_the_documented_json_with_sent_at_at_each_attempt() -> None:
    driver = Driver()
    driver.at(1.5).add(2)
    (request,) = driver.flush()
    body = batch_of(request)
    assert set(body) == {"batch", "sentAt", "writeKey"}
    assert body["writeKey"] == WRITE_KEY
    assert body["batch"] == [msgspec.json.decode(driver.data[0]), msgspec.json.decode(driver.data[1])]
    sent_at = datetime.fromisoformat(body["sentAt"])
    assert sent_at.utcoffset() is not None
    assert sent_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert body["sentAt"].endswith("+00:00") or body["sentAt"].endswith("Z")
    assert len(body["sentAt"].split(".")[1].split("+")[0].rstrip("Z")) == 3, "milliseconds"
    assert sent_at.timestamp() == pytest.approx(WALL0 + 1.5, abs=0.001)
    driver.respond(request, 503)
    (retry,) = driver.poll(4.25)
    retry_body = batch_of(retry)
    assert retry_body["batch"] == body["batch"]
    assert datetime.fromisoformat(retry_body["sentAt"]).timestamp() == pytest.approx(WALL0 + 4.25, abs=0.001)


def test_gzip_body_decompresses_to_the_same_json() -> None:
    plain, zipped = Driver(), Driver(gzip=True)
    for driver in (plain, zipped):
        driver.at(2.0).add(5, 300)
    (plain_request,) = plain.flush()
    (zipped_request,) = zipped.flush()
    assert header(zipped_request, "Content-Encoding") == "gzip"
    assert header(plain_request, "Content-Encoding") is None
    assert gzip.decompress(zipped_request.body) == plain_request.body
    assert len(zipped_request.body) < len(plain_request.body)


@pytest.mark.parametrize("gzip_body", [False, True], ids=["plain", "gzip"])
def test_headers_on_first_attempt_and_retries(gzip_body: bool) -> None:
    driver = Driver(gzip=gzip_body)
    driver.add(1)
    (request,) = driver.flush()
    assert request.method == "POST"
    assert request.url == "https://api.segment.io/v1/batch"
    expected = {
        "Content-Type": "application/json",
        "User-Agent": f"{LIBRARY_NAME}/{LIBRARY_VERSION}",
        "Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
    }
    if gzip_body:
        expected["Content-Encoding"] = "gzip"
    assert dict(request.headers) == expected
    for retry in (1, 2, 3):
        driver.respond(request, 500)
        (request,) = driver.poll(driver.engine.next_deadline())
        assert dict(request.headers) == {**expected, "X-Retry-Count": str(retry)}


# Queue bounds --------------------------------------------------------------------------------


def test_max_queue_size_rejects_without_evicting() -> None:
    driver = Driver(max_queue_size=3, upload_interval=10.0, upload_size=10)
    kept = driver.add(3)
    rejected = driver.enqueue(message(99))
    assert isinstance(rejected, QueueFull)
    assert "max_queue_size" in str(rejected)
    stats = driver.engine.stats()
    assert (stats.enqueued, stats.rejected, stats.queue_depth) == (3, 1, 3)
    driver.flush()
    driver.run_until_settled()
    assert sorted(driver.delivered) == kept
    assert b'"m99"' not in b"".join(driver.delivered.values())


def test_messages_in_a_batch_leave_room_in_the_queue() -> None:
    driver = Driver(max_queue_size=2, upload_size=2)
    driver.add(2)
    assert len(driver.poll()) == 1
    assert driver.engine.stats().queue_depth == 0
    driver.add(2)  # accepted while the first batch is still in flight
    assert isinstance(driver.enqueue(message(50)), QueueFull)
    assert driver.engine.stats().in_flight_messages == 2


def test_max_queue_bytes_rejects_without_evicting() -> None:
    limit = 2 * 32_768
    driver = Driver(max_queue_bytes=limit, upload_interval=10.0, upload_size=10)
    driver.add(3, 20_000)  # 60,000 bytes
    too_big = driver.enqueue(message(90, 6_000))  # 66,000 > 65,536
    assert isinstance(too_big, QueueFull)
    assert "max_queue_bytes" in str(too_big)
    assert isinstance(driver.enqueue(message(91, limit - 60_000)), Enqueued), "exactly at the limit is accepted"
    assert isinstance(driver.enqueue(message(92)), QueueFull)
    stats = driver.engine.stats()
    assert (stats.enqueued, stats.rejected, stats.queue_bytes) == (4, 2, limit)
    driver.flush()
    driver.run_until_settled()
    assert len(driver.delivered) == 4


def test_enqueue_after_close_is_refused() -> None:
    driver = Driver()
    driver.add(1)
    driver.close(timeout=5.0)
    refused = driver.enqueue(message(7))
    assert isinstance(refused, ClientClosed)
    stats = driver.engine.stats()
    assert (stats.enqueued, stats.rejected) == (1, 1)
    assert driver.engine.last_seq == 0


# WAKE: the queue was empty, or a batch is now full -------------------------------------------


def test_wake_when_the_queue_was_empty_or_a_batch_is_full_by_count() -> None:
    driver = Driver(upload_size=3, upload_interval=10.0)
    results = [driver.enqueue(message(i)) for i in range(7)]
    wake, quiet = Enqueued.WAKE, Enqueued.QUIET
    assert results == [wake, quiet, wake, quiet, quiet, wake, quiet]


def test_wake_again_once_the_queue_has_emptied() -> None:
    driver = Driver(upload_size=3, upload_interval=10.0)
    assert driver.enqueue(message(0)) is Enqueued.WAKE
    assert driver.enqueue(message(1)) is Enqueued.QUIET
    driver.flush()
    assert driver.engine.stats().queue_depth == 0
    assert driver.enqueue(message(2)) is Enqueued.WAKE


def test_wake_when_a_batch_is_full_by_bytes_and_only_then() -> None:
    driver = Driver(upload_size=100, upload_interval=10.0, max_queue_bytes=10_000_000)
    results = [driver.enqueue(message(i, 31_000)) for i in range(40)]
    # 16 messages of 31,000 bytes fit in a request; the 17th and 33rd each close a batch.
    woken = [i for i, result in enumerate(results) if result is Enqueued.WAKE]
    assert woken == [0, 16, 32]


# The 32 KB limit holds at the engine too ----------------------------------------------------


@pytest.mark.parametrize("size", [32_769, 40_000, 600_000], ids=["one-byte-over", "40kb", "over-a-request"])
def test_enqueue_refuses_a_message_over_32kb(size: int) -> None:
    # Over 32 KB the API refuses the whole batch (a 400), and over a request's
    # budget no batch could ever hold it: refuse it at once, as build_message does.
    driver = Driver(max_queue_bytes=10_000_000)
    driver.add(1)
    with pytest.raises(MessageTooLarge) as raised:
        driver.engine.enqueue(message(1, size), now=driver.now)
    assert (raised.value.size, raised.value.limit) == (size, MAX_MESSAGE_BYTES)
    stats = driver.engine.stats()
    assert (stats.enqueued, stats.queue_depth) == (1, 1)
    assert isinstance(driver.enqueue(message(2, MAX_MESSAGE_BYTES)), Enqueued)
    requests = driver.flush()
    assert [r.message_count for r in requests] == [2]


class RecordingRandom:
    """A RandomSource that answers ``bits`` and records how many bits each draw asked for."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.draws: list[int] = []

    def random(self) -> float:
        return 0.0

    def getrandbits(self, k: int, /) -> int:
        self.draws.append(k)
        return self.bits


def test_a_generated_message_id_is_one_128_bit_draw_written_as_a_uuid4() -> None:
    # One draw per id keeps a seeded run's ids the same from release to release.
    bits = 0x0123456789ABCDEF0123456789ABCDEF
    rng = RecordingRandom(bits)
    engine = Engine(EngineConfig(write_key=WRITE_KEY), random=rng)
    built, result = engine.enqueue_message(Track(user_id="u", event="E"), now=0.0, wall=WALL0)
    assert isinstance(result, Enqueued)
    assert rng.draws == [128]
    assert built.message["messageId"] == str(uuid.UUID(int=bits, version=4))
