"""The simulator's client: the real call signatures, the real engine, a virtual clock."""

from __future__ import annotations

import inspect
import random
from datetime import datetime, timedelta, timezone

import pytest

from segment_core import EngineConfig, RetriesExhausted, ValidationError, build_message
from segment_core.testing import Drop, Reply, ScriptedServer, SimulatedClient, Simulator, VirtualClock, rate_limited
from segment_runtimes.threaded import Client


def test_signatures_are_the_real_clients() -> None:
    for name in ("identify", "track", "alias", "group", "page", "screen"):
        assert inspect.signature(getattr(SimulatedClient, name)) == inspect.signature(getattr(Client, name))


def test_readme_example_retries_through_errors_pauses_and_lost_replies() -> None:
    server = ScriptedServer([Reply(status=503), rate_limited(30), Drop(processed=True)])
    sim = Simulator(EngineConfig(write_key="test"), server, seed=1)
    sim.call("track", user_id="user-1", event="Signed Up")
    trace = sim.run()
    assert trace.delivered_count == 1
    assert len(server.received_message_ids()) == 2
    # The pause the server asked for was honoured on the virtual clock.
    assert sim.clock.now >= 30


def test_instrumentation_under_test_uses_the_simulated_client() -> None:
    def checkout(analytics: SimulatedClient, user: str, total: float) -> None:
        """Code under test: what a service would do with a real client."""
        analytics.identify(user, {"plan": "pro"})
        analytics.track(user, "Order Completed", {"revenue": total})

    sim = Simulator(EngineConfig(write_key="test"), ScriptedServer([Reply(status=500)] * 2), seed=7)
    checkout(sim.client, "user-9", 12.5)
    assert sim.client.flush()
    delivered = sim.delivered_messages()
    assert [(m["type"], m.get("event")) for m in delivered] == [("identify", None), ("track", "Order Completed")]
    assert delivered[1]["properties"] == {"revenue": 12.5}
    with pytest.raises(ValidationError):
        sim.client.track("user-9", None)


def test_flush_reports_failure_when_retries_run_out() -> None:
    config = EngineConfig(write_key="test", max_retries=2)
    sim = Simulator(config, ScriptedServer(then=Reply(status=503)), seed=2)
    ok, _ = sim.client.track("user", "Doomed")
    assert ok
    assert not sim.client.flush()
    (error,) = sim.trace.failed.values()
    assert isinstance(error, RetriesExhausted)
    assert error.attempts == 3


def test_same_seed_same_ids_and_trace() -> None:
    def run(seed: int) -> tuple[list[str], list[object]]:
        sim = Simulator(EngineConfig(write_key="test"), ScriptedServer([Reply(status=500), Reply()]), seed=seed)
        ids = [sim.client.track("user", "E", {"n": n})[1]["messageId"] for n in range(3)]
        sim.client.flush()
        return ids, list(sim.trace.events)

    assert run(5) == run(5)
    assert run(5)[0] != run(6)[0]


def test_engine_takes_typed_messages() -> None:
    from segment_core import Engine, Enqueued, MessageTooLarge, Track

    engine = Engine(EngineConfig(write_key="test"), random=random.Random(4))
    built, result = engine.enqueue_message(Track(user_id="u", event="Typed", properties={"n": 1}), now=0.0, wall=1e9)
    assert result is Enqueued.WAKE
    assert built.message["event"] == "Typed"
    assert built.message["timestamp"].startswith("2001-09-09T01:46:40.000")
    assert engine.last_seq == 0
    with pytest.raises(ValidationError):
        engine.enqueue_message(Track(user_id="u", event=None), now=0.0, wall=1e9)  # type: ignore[arg-type]
    with pytest.raises(MessageTooLarge):
        engine.enqueue_message(Track(user_id="u", event="Big", properties={"x": "y" * 40_000}), now=0.0, wall=1e9)
    assert engine.last_seq == 0


# Each call's arguments in segment-analytics-python 2.4's order, a distinct value for each.
CALL_ARGS: dict[str, tuple[object, ...]] = {
    "identify": ("u", {"t": 1}, {"c": 1}, None, "a", {"i": True}, "m"),
    "track": ("u", "E", {"p": 1}, {"c": 1}, None, "a", {"i": True}, "m"),
    "alias": ("prev", "u", {"c": 1}, None, {"i": True}, "m"),
    "group": ("u", "g", {"t": 1}, {"c": 1}, None, "a", {"i": True}, "m"),
    "page": ("u", "cat", "n", {"p": 1}, {"c": 1}, None, "a", {"i": True}, "m"),
    "screen": ("u", "cat", "n", {"p": 1}, {"c": 1}, None, "a", {"i": True}, "m"),
}
WALL = 1_790_000_000.123
OFFSET = -5 * 3600


@pytest.mark.parametrize("kind", list(CALL_ARGS))
@pytest.mark.parametrize(
    "timestamp",
    [None, datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc), datetime(1970, 1, 1) + timedelta(seconds=WALL + OFFSET)],
    ids=["none", "aware", "naive-local-now"],
)
def test_each_call_passes_every_argument_to_the_message(kind: str, timestamp: datetime | None) -> None:
    names = list(inspect.signature(getattr(SimulatedClient, kind)).parameters)[1:]
    args = tuple(
        timestamp if name == "timestamp" else value for name, value in zip(names, CALL_ARGS[kind], strict=True)
    )
    sim = Simulator(EngineConfig(write_key="test"), clock=VirtualClock(wall=WALL, utc_offset=OFFSET), seed=1)
    queued, returned = getattr(sim.client, kind)(*args)
    # The same arguments by name, built directly with the same clock and the host's offset.
    expected = build_message(
        kind,
        wall=WALL,
        new_message_id=lambda: "unused",
        local_utc_offset=lambda t: OFFSET,
        **dict(zip(names, args, strict=True)),
    )
    assert queued
    assert returned == expected.message
    assert returned["messageId"] == "m"
    if timestamp is not None and timestamp.tzinfo is None:
        assert returned["timestamp"].endswith("-05:00"), "a naive local time is read with the host's offset"
    assert sim.client.flush()
    assert [m["messageId"] for m in sim.delivered_messages()] == ["m"]
