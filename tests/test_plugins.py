"""Plugins, call context and counters on the simulator: values in, values out, no sockets.

The simulator's client has the real call API, so these are the rules every runtime
follows (tests/test_plugins_runtimes.py runs the same features on real sockets).
"""

from __future__ import annotations

import asyncio
import threading
from datetime import date
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from segment_core import BuiltMessage, CallMethods, ConfigurationError, EngineConfig, MessageTooLarge, call_context
from segment_core.plugins import Sampling
from segment_core.testing import Simulator


def simulator(**options: Any) -> Simulator:
    return Simulator(EngineConfig(write_key="k", **options), seed=3)


def delivered(sim: Simulator) -> list[dict[str, Any]]:
    assert sim.client.flush()
    return sim.delivered_messages()


def test_a_before_plugin_changes_what_is_sent_and_what_is_returned() -> None:
    sim = simulator()

    def redact_email(message: dict[str, Any]) -> dict[str, Any]:
        message["properties"].pop("email", None)
        message["properties"]["redacted"] = True
        return message

    sim.client.add_plugin(redact_email)
    ok, returned = sim.client.track("user-1", "Signed Up", {"email": "a@b.c", "plan": "pro"})
    assert ok
    assert returned["properties"] == {"plan": "pro", "redacted": True}
    (sent,) = delivered(sim)
    assert sent["properties"] == {"plan": "pro", "redacted": True}


def test_a_dropped_message_returns_false_and_is_counted_not_failed() -> None:
    sim = simulator()
    sim.client.add_plugin(lambda message: None if message["event"] == "Noise" else message)
    queued, returned = sim.client.track("user-1", "Noise")
    assert queued is False
    assert (returned["event"], returned["userId"]) == ("Noise", "user-1"), "the call still returns its message"
    assert sim.client.track("user-1", "Signal")[0] is True
    assert [message["event"] for message in delivered(sim)] == ["Signal"]
    stats = sim.engine.stats()
    assert (stats.dropped, stats.enqueued, stats.failed) == (1, 1, {})
    assert sim.trace.failed == {}


def test_plugins_run_before_then_enrichment_each_in_order() -> None:
    sim = simulator()
    seen: list[str] = []

    def named(name: str, kind: str) -> Any:
        def plugin(message: dict[str, Any]) -> Any:
            seen.append(name)
            return message if kind == "before" else {"context": {"order": [*message["context"].get("order", []), name]}}

        return plugin

    sim.client.add_plugin(named("enrich-1", "enrichment"), kind="enrichment")
    sim.client.add_plugin(named("before-1", "before"))
    sim.client.add_plugin(named("enrich-2", "enrichment"), kind="enrichment")
    sim.client.add_plugin(named("before-2", "before"))
    sim.client.track("user-1", "E")
    assert seen == ["before-1", "before-2", "enrich-1", "enrich-2"]
    # Enrichment adds what is missing only: the first one's order stays.
    assert delivered(sim)[0]["context"]["order"] == ["enrich-1"]


def test_enrichment_adds_missing_fields_and_keeps_what_the_message_has() -> None:
    sim = simulator()
    sim.client.add_plugin(
        lambda message: {"userId": "other", "context": {"app": {"name": "shop"}, "ip": "9.9.9.9"}}, kind="enrichment"
    )
    sim.client.track("user-1", "E", context={"ip": "1.2.3.4"})
    (sent,) = delivered(sim)
    assert sent["userId"] == "user-1"
    assert sent["context"]["ip"] == "1.2.3.4"
    assert sent["context"]["app"] == {"name": "shop"}


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda m: 1 / 0, id="raises"),
        pytest.param(lambda m: "not a message", id="returns-a-str"),
        pytest.param(lambda m: {**m, "type": "purchase"}, id="unknown-type"),
        pytest.param(lambda m: {k: v for k, v in m.items() if k != "userId"}, id="drops-the-id"),
        pytest.param(lambda m: m.update(properties={"half": "done"}) or 1 / 0, id="changes-then-raises"),
    ],
)
def test_a_failing_plugin_is_skipped_its_changes_undone_and_the_message_goes_on(bad: Any) -> None:
    sim = simulator()
    sim.client.add_plugin(bad)
    sim.client.add_plugin(lambda message: {**message, "properties": {**message["properties"], "after": 1}})
    ok, _ = sim.client.track("user-1", "E", {"before": 1})
    assert ok
    (sent,) = delivered(sim)
    assert sent["properties"] == {"before": 1, "after": 1}
    (failure,) = sim.trace.plugin_failures
    assert failure.kind == "before"
    assert isinstance(failure.error, Exception)


def test_plugin_values_are_cleaned_and_the_size_limit_applies() -> None:
    sim = simulator()

    def odd_values(message: dict[str, Any]) -> dict[str, Any]:
        return {**message, "properties": {"at": date(2026, 1, 2), "n": {1, 2}}}

    sim.client.add_plugin(odd_values)
    sim.client.track("user-1", "E")
    assert delivered(sim)[0]["properties"] == {"at": "2026-01-02", "n": [1, 2]}
    sim.client.remove_plugin(odd_values)
    sim.client.add_plugin(lambda m: {**m, "properties": {"blob": "x" * 40_000}})
    with pytest.raises(MessageTooLarge):
        sim.client.track("user-1", "E")


def test_removing_the_last_plugin_restores_the_fast_path() -> None:
    sim = simulator()

    def plugin(message: dict[str, Any]) -> dict[str, Any]:
        return message

    def has_plugins() -> bool:
        return sim.client._plugins is not None

    sim.client.add_plugin(plugin)
    assert has_plugins()
    sim.client.remove_plugin(plugin)
    assert not has_plugins()
    with pytest.raises(ConfigurationError):
        sim.client.add_plugin("not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        sim.client.add_plugin(plugin, kind="after")  # type: ignore[arg-type]


def test_sampling_keeps_users_whole_and_about_the_rate() -> None:
    sampling = Sampling(0.25, salt="s")
    kept = [user for user in (f"user-{n}" for n in range(4000)) if sampling.keeps(user)]
    assert 800 < len(kept) < 1200
    sim = simulator()
    sim.client.add_plugin(sampling)
    for user in ("user-1", "user-2", "user-3", "user-4") * 3:
        sim.client.track(user, "E")
    sim.client.alias("anon", "user-1")
    sent = delivered(sim)
    users = {m["userId"] for m in sent if m["type"] == "track"}
    assert all(sampling.keeps(user) for user in users)
    assert sum(m["type"] == "track" for m in sent) == 3 * len(users)
    assert [m["type"] for m in sent].count("alias") == 1
    with pytest.raises(ConfigurationError):
        Sampling(1.5)


@given(rate=st.floats(0, 1), users=st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=20))
def test_sampling_is_stable(rate: float, users: list[str]) -> None:
    first, second = Sampling(rate), Sampling(rate)
    assert [first.keeps(u) for u in users] == [second.keeps(u) for u in users]
    if rate == 0:
        assert not any(first.keeps(u) for u in users)
    if rate == 1:
        assert all(first.keeps(u) for u in users)


# Call context --------------------------------------------------------------------------------


def test_call_context_fills_ids_traits_and_context_and_calls_win() -> None:
    sim = simulator()
    client = sim.client
    with call_context(user_id="scoped", traits={"plan": "pro"}, context={"ip": "1.1.1.1", "app": {"v": 1}}):
        client.track(event="Scoped")
        client.track("explicit", "Explicit", context={"ip": "2.2.2.2"})
        client.identify(traits={"seats": 3})
        with call_context(context={"app": {"build": 7}}, integrations={"All": False}):
            client.page(name="Nested")
    client.track("after", "Outside")
    by_event = {m.get("event") or m.get("name") or m["type"]: m for m in delivered(sim)}
    scoped = by_event["Scoped"]
    assert scoped["userId"] == "scoped"
    assert scoped["context"]["traits"] == {"plan": "pro"}
    assert scoped["context"]["ip"] == "1.1.1.1"
    explicit = by_event["Explicit"]
    assert (explicit["userId"], explicit["context"]["ip"]) == ("explicit", "2.2.2.2")
    assert "traits" not in explicit["context"], "the scope's user's traits are not another user's"
    assert by_event["identify"]["traits"] == {"plan": "pro", "seats": 3}
    nested = by_event["Nested"]
    assert nested["context"]["app"] == {"v": 1, "build": 7}
    assert nested["integrations"] == {"All": False}
    outside = by_event["Outside"]
    assert "traits" not in outside["context"]
    assert "ip" not in outside["context"]


def test_call_context_is_per_thread_and_per_task() -> None:
    sim = simulator()
    seen: dict[str, str] = {}
    lock = threading.Lock()

    def in_thread(name: str) -> None:
        with call_context(user_id=name):
            _ok, message = sim.client.track(event="E")
            with lock:
                seen[name] = message["userId"]

    threads = [threading.Thread(target=in_thread, args=(f"thread-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {f"thread-{n}": f"thread-{n}" for n in range(4)}

    async def task(name: str) -> str:
        with call_context(user_id=name):
            await asyncio.sleep(0)
            return str(sim.client.track(event="E")[1]["userId"])

    async def asyncio_main() -> list[str]:
        return list(await asyncio.gather(task("a"), task("b")))

    assert asyncio.run(asyncio_main()) == ["a", "b"]

    results: dict[str, str] = {}

    async def trio_task(name: str) -> None:
        with call_context(user_id=name):
            await trio.sleep(0)
            results[name] = str(sim.client.track(event="E")[1]["userId"])

    async def trio_main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio_task, "x")
            nursery.start_soon(trio_task, "y")

    trio.run(trio_main)
    assert results == {"x": "x", "y": "y"}


def test_a_client_that_does_not_count_drops_returns_false_and_the_message() -> None:
    # CallMethods' own _dropped, for a client built on it that keeps no counters.
    class Minimal(CallMethods):
        def __init__(self) -> None:
            self.submitted: list[BuiltMessage] = []
            self._new_message_id = lambda: "m"

        def _wall(self) -> float:
            return 1_790_000_000.0

        def _local_utc_offset(self, wall: float) -> float:
            return 0.0

        def _submit(self, built: BuiltMessage) -> tuple[bool, dict[str, Any]]:
            self.submitted.append(built)
            return True, built.message

    client = Minimal()
    client.add_plugin(lambda message: None)
    queued, returned = client.track("user-1", "Noise")
    assert queued is False
    assert (returned["event"], returned["messageId"]) == ("Noise", "m")
    assert client.submitted == []
