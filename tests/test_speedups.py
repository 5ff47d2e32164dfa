"""The C fast paths (segment_core/_speedups.c) against the Python rules they stand in for.

``clean_plain`` either gives up (NOT_PLAIN) or returns exactly what the Python
cleaner returns, with no warnings: both forms (wire and returned), copies that
never alias the caller's containers, and the same budget left; it gives up
exactly where the Python cleaner finds the budget spent. The Python cleaner is
called through ``clean_field_in_python`` here, which never takes the fast path,
so the two really are compared.

``build_track`` either gives up or returns exactly what ``build_message("track", ...)``
returns, bytes included; ``uuid4_text`` is ``str(uuid.UUID(int=..., version=4))``.

Every test here is about the C objects: where the C path is inactive (not built,
or ``SEGMENT_SANSIO_PURE=1``) they skip with one reason (tests/c_path.py), and
the Python halves of the comparisons run on their own in the other test modules.
"""

from __future__ import annotations

import copy
import enum
import gc
import os
import random
import uuid
import weakref
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segment_core import MessageTooLarge, ValidationError
from segment_core import _call_api as _calls
from segment_core import _value_cleaning as _clean
from segment_core._message_builder import (
    BuiltMessage,
    _format_timestamp,
    _message_id_from_bits,
    _message_ids,
    _TrackWire,
    build_message,
)
from segment_core._native import speedups
from segment_core.limits import MAX_MESSAGE_BYTES
from segment_runtimes.threaded import Client

from .c_path import c_module, requires_c

BUDGET = MAX_MESSAGE_BYTES

# Where the C path is inactive every test is skipped; these names only need to exist.
NOT_PLAIN: object = object() if speedups is None else speedups.NOT_PLAIN


def clean_plain(value: object, budget: int = BUDGET) -> Any:
    return c_module().clean_plain(value, budget)


def build_track(*arguments: object) -> Any:
    return c_module().build_track(*arguments)


def message_ids(random_bytes: Any) -> Any:
    return c_module().message_ids(random_bytes)


def timestamp_text(wall: float) -> str:
    text: str = c_module().timestamp_text(wall)
    return text


def uuid4_text(bits: int) -> str:
    text: str = c_module().uuid4_text(bits)
    return text


# The C message id source and its Python twin (the Python one is tested in every run).
MAKERS = [pytest.param(message_ids, id="c", marks=requires_c), pytest.param(_message_ids, id="python")]

UTC = timezone.utc


def python_rules(value: dict[Any, Any], budget: int = BUDGET) -> tuple[Any, list[str]]:
    """(wire, returned, budget left) by the Python rules, and their warnings."""
    warnings: list[str] = []
    return _clean.clean_field_in_python(value, "p", warnings, budget), warnings


def containers(value: Any) -> Iterator[int]:
    if isinstance(value, dict):
        yield id(value)
        for item in value.values():
            yield from containers(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        yield id(value)
        for item in value:
            yield from containers(item)


def same(a: Any, b: Any) -> bool:
    """Equal, and equal as JSON too: ``True == 1`` and ``1 == 1.0`` are not the same value here."""
    return bool(a == b) and msgspec.json.encode(a) == msgspec.json.encode(b)


plain_atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities included: both make them None
    st.text(max_size=8),
    st.datetimes(timezones=st.sampled_from([None, UTC])),
    st.dates(),
)
plain_values = st.recursive(
    plain_atoms,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=30,
)
plain_dicts = st.dictionaries(st.text(max_size=6), plain_values, max_size=6)


class Colour(enum.Enum):
    RED = "red"


class Text(str):
    pass


# Each has its own rule in _clean.py, so the C path must hand it over.
odd_values = st.one_of(
    st.builds(Decimal, st.integers()),
    st.binary(max_size=4),
    st.just(Colour.RED),
    st.builds(Text, st.text(max_size=3)),
    st.frozensets(st.integers(), max_size=3),
    st.datetimes(timezones=st.just(timezone(timedelta(hours=2)))),
    st.timedeltas(),
)
mixed_values = st.recursive(
    st.one_of(plain_atoms, odd_values),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), children, max_size=4),
    ),
    max_leaves=20,
)


@requires_c
@given(plain_dicts)
def test_plain_values_take_the_fast_path_with_the_python_result(value: dict[str, Any]) -> None:
    before = copy.deepcopy(value)
    fast = clean_plain(value)
    assert fast is not NOT_PLAIN
    expected, warnings = python_rules(value)
    assert warnings == []
    wire, returned, left = fast
    assert same(wire, expected[0])
    assert same(returned, expected[1])
    assert left == expected[2], "the same charges"
    assert same(value, before), "the caller's value is never changed"
    for form in (wire, returned):
        assert not set(containers(form)) & set(containers(value)), "the copy never shares a container"
    # The two forms are one object unless a date or datetime sits inside.
    assert (wire is returned) == (msgspec.json.encode(wire) == msgspec.json.encode(returned) and wire == returned)


@requires_c
@given(st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), mixed_values, max_size=6))
def test_anything_else_is_handed_over_or_cleaned_as_python_does(value: dict[Any, Any]) -> None:
    fast = clean_plain(value)
    if fast is NOT_PLAIN:
        return
    expected, warnings = python_rules(value)
    assert warnings == []
    assert same(fast[0], expected[0])
    assert same(fast[1], expected[1])
    assert fast[2] == expected[2]


@requires_c
def test_what_the_fast_path_hands_over() -> None:
    shared: list[Any] = []
    for _ in range(40):  # 2**40 paths through 40 lists: only a budget stops the walk
        shared = [shared, shared]
    circular: dict[str, Any] = {}
    circular["self"] = circular
    deep: Any = 1
    for _ in range(60):
        deep = [deep]
    for value in [
        {1: "int key"},
        {"a": b"bytes"},
        {"a": [Decimal("1.5")]},
        {"a": {"b": Colour.RED}},
        {"a": datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=1)))},
        {"a": shared},
        circular,
        {"a": deep},
    ]:
        assert clean_plain(value) is NOT_PLAIN, value
    assert clean_plain([1]) is NOT_PLAIN
    assert clean_plain({"a": {1, 2}}) == ({"a": [1, 2]}, {"a": [1, 2]}, BUDGET - 5 - 4)


@requires_c
def test_the_builder_takes_the_fast_path(monkeypatch: Any) -> None:
    calls: list[object] = []

    def counting(value: object, budget: int) -> Any:
        calls.append(value)
        return clean_plain(value, budget)

    monkeypatch.setattr(_clean, "_clean_plain", counting)
    properties = {"when": datetime(2026, 11, 23, 13, 8, 42, 123000, tzinfo=UTC), "n": [1, 2.5, None]}
    wire, returned, left = _clean.clean_field(properties, "properties", [], 100)
    assert calls == [properties]
    assert wire == {"when": "2026-11-23T13:08:42.123000+00:00", "n": [1, 2.5, None]}
    assert returned == properties
    assert returned["when"] is properties["when"]
    assert left == 100 - 2 * 5 - 3 * 2


@requires_c
def test_dates_and_datetimes_are_written_as_isoformat_writes_them() -> None:
    values = {
        "naive": datetime(2020, 1, 2, 3, 4, 5),
        "micro": datetime(2020, 1, 2, 3, 4, 5, 1),
        "utc": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        "first": datetime(1, 1, 1),
        "date": date(33, 2, 3),
    }
    wire, returned, _ = clean_plain(values)
    assert wire == {key: value.isoformat() for key, value in values.items()}
    assert returned == values
    assert all(returned[key] is values[key] for key in values), "the caller's objects, as 2.4 returns them"


# --- messageIds -----------------------------------------------------------------------------------


@requires_c
@given(st.integers())
def test_uuid4_text_is_the_uuid_module_s_text(bits: int) -> None:
    expected = str(uuid.UUID(int=bits & (2**128 - 1), version=4))
    assert uuid4_text(bits) == expected == _message_id_from_bits(bits)


def expected_ids(seed: int, count: int, per_draw: int) -> list[str]:
    """The model: ids are 16-byte slices of random_bytes(per_draw) draws, a draw's tail unused."""
    source = random.Random(seed)
    ids: list[str] = []
    while len(ids) < count:
        drawn = source.randbytes(per_draw)
        ids += [_message_id_from_bits(int.from_bytes(drawn[i : i + 16], "big")) for i in range(0, per_draw - 15, 16)]
    return ids[:count]


@pytest.mark.parametrize("make", MAKERS)
@given(seed=st.integers(min_value=0, max_value=2**64), count=st.integers(min_value=1, max_value=600))
def test_message_ids_are_16_byte_slices_of_bulk_draws(make: Any, seed: int, count: int) -> None:
    draws: list[int] = []

    def random_bytes(n: int) -> bytes:
        draws.append(n)
        return source.randbytes(n)

    source = random.Random(seed)
    new_id = make(random_bytes)
    assert draws == []  # nothing is drawn until an id is asked for
    assert [new_id() for _ in range(count)] == expected_ids(seed, count, 4096)
    assert draws == [4096] * (1 + (count - 1) // 256)


@pytest.mark.parametrize("make", MAKERS)
def test_a_short_draw_is_used_up_to_its_last_whole_id(make: Any) -> None:
    source = random.Random(3)
    new_id = make(lambda n: source.randbytes(40))  # two ids, then 8 bytes left over
    assert [new_id() for _ in range(5)] == expected_ids(3, 5, 40)
    source = random.Random(4)
    new_id = make(lambda n: source.randbytes(16))  # exactly one id a draw
    assert [new_id() for _ in range(3)] == expected_ids(4, 3, 16)


@pytest.mark.parametrize("make", MAKERS)
def test_message_ids_refuse_what_is_not_random_bytes(make: Any) -> None:
    for wrong in (b"", b"x" * 15, bytearray(4096), "x" * 4096):
        with pytest.raises(TypeError, match=r"^random_bytes\(n\) must return at least 16 bytes$"):
            make(lambda n, wrong=wrong: wrong)()

    def broken(n: int) -> bytes:
        raise OSError(f"no {n} bytes")

    with pytest.raises(OSError, match="no 4096 bytes"):
        make(broken)()


@requires_c
def test_the_c_message_id_source_takes_no_arguments() -> None:
    with pytest.raises(TypeError, match="callable"):
        message_ids(b"not callable")
    source: Any = message_ids(os.urandom)
    with pytest.raises(TypeError, match="no arguments"):
        source(1)
    with pytest.raises(TypeError, match="no arguments"):
        source(n=1)


@requires_c
def test_a_message_id_source_in_a_cycle_is_collected() -> None:
    class Holder:
        source: Any = None

    def make_cycle() -> weakref.finalize[Any, Any]:
        holder = Holder()

        def random_bytes(n: int) -> bytes:
            return bytes(n) if holder else b""  # holder -> source -> random_bytes -> holder

        holder.source = message_ids(random_bytes)
        return weakref.finalize(holder, lambda: None)

    marker = make_cycle()
    gc.collect()
    assert not marker.alive


@requires_c
def test_clients_stamp_ids_from_the_c_source() -> None:
    client = Client("key", send=False)
    assert type(client._new_message_id) is type(message_ids(os.urandom))
    ids = {client.track("u", "e")[1]["messageId"] for _ in range(100)}
    assert len(ids) == 100
    assert all(uuid.UUID(text).version == 4 for text in ids)


# --- timestamps -----------------------------------------------------------------------------------


@requires_c
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-62135596800.0, max_value=253402300799.0))
def test_timestamp_text_is_the_python_rules(wall: float) -> None:
    assert timestamp_text(wall) == _format_timestamp(wall)
    assert timestamp_text(wall) == _format_timestamp(wall), "again, from the cached second"


@requires_c
@pytest.mark.parametrize(
    "wall",
    [
        1_795_000_000.0,
        1_795_000_000.9994999,  # rounds down to .999
        1_795_000_000.9999996,  # rounds up into the next second
        1_795_000_001.0004996,
        -0.0005,  # before the epoch
        -62135596800.0,  # 0001-01-01T00:00:00
        253402300799.999,  # the last millisecond of 9999
        1795000000,  # an int
    ],
)
def test_timestamp_text_edges(wall: float) -> None:
    for _ in range(2):
        assert timestamp_text(wall) == _format_timestamp(wall)


@requires_c
@pytest.mark.parametrize("wall", [float("nan"), float("inf"), -62135596801.0, 253402300800.0])
def test_timestamp_text_raises_as_python_does(wall: float) -> None:
    with pytest.raises((ValueError, OverflowError)) as python_error:
        _format_timestamp(wall)
    with pytest.raises(python_error.type):
        timestamp_text(wall)


# --- the track call ----------------------------------------------------------------------------------

WALL = 1_795_000_000.123
ids = st.one_of(
    st.none(), st.text(max_size=5), st.integers(-5, 5), st.uuids(), st.booleans(), st.builds(Text, st.text())
)
dict_arguments = st.one_of(st.none(), plain_dicts, st.dictionaries(st.text(max_size=4), mixed_values, max_size=3))


def fast_track(**arguments: Any) -> object:
    return build_track(
        arguments.get("user_id"),
        arguments.get("event"),
        arguments.get("properties"),
        arguments.get("context"),
        arguments.get("anonymous_id"),
        arguments.get("integrations"),
        arguments.get("message_id"),
        WALL,
        lambda: "generated-id",
    )


def python_track(**arguments: Any) -> BuiltMessage:
    return build_message("track", wall=WALL, new_message_id=lambda: "generated-id", **arguments)


@requires_c
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "user_id": ids,
            "anonymous_id": ids,
            "event": st.one_of(st.text(max_size=6), st.none(), st.integers(), st.builds(Text, st.text())),
            "properties": dict_arguments,
            "context": dict_arguments,
            "integrations": dict_arguments,
            "message_id": ids,
        },
    )
)
def test_build_track_is_build_message_or_hands_over(arguments: dict[str, Any]) -> None:
    before = copy.deepcopy(arguments)
    fast = fast_track(**arguments)
    try:
        expected = python_track(**arguments)
    except (ValidationError, MessageTooLarge):
        assert fast is NOT_PLAIN, "every error is build_message's to raise"
        return
    if fast is NOT_PLAIN:
        return
    assert isinstance(fast, BuiltMessage)
    assert fast.data == expected.data, "byte for byte the same JSON"
    assert same(fast.message, expected.message)
    assert fast.dropped == expected.dropped == ()
    assert same(arguments, before), "the caller's arguments are never changed"


@requires_c
def test_plain_track_calls_take_the_fast_path() -> None:
    arguments: dict[str, Any] = {
        "user_id": "user-1",
        "event": "Order Completed",
        "properties": {"revenue": 12.5, "when": datetime(2026, 1, 2, tzinfo=UTC), "tags": ("a", "b")},
        "context": {"ip": "203.0.113.9", "library": "replaced"},
    }
    for extra in ({}, {"anonymous_id": "anon"}, {"message_id": "given"}, {"integrations": {"All": False}}):
        fast = fast_track(**arguments, **extra)
        assert isinstance(fast, BuiltMessage), extra
        assert fast == python_track(**arguments, **extra)


@requires_c
@pytest.mark.parametrize(
    "arguments",
    [
        {"user_id": 42, "event": "e"},  # numbers and UUIDs are stringified by the Python rules
        {"user_id": "", "anonymous_id": "a", "event": "e"},  # an empty id counts as missing
        {"user_id": "u", "event": "e", "message_id": ""},
        {"user_id": "u", "event": Text("e")},
        {"user_id": "u", "event": "e", "properties": {"d": Decimal("1.5")}},
        {"user_id": "u", "event": "e", "properties": {"bad": "\ud800"}},  # scrubbed, with a warning
        {"user_id": "u", "event": "e", "properties": {"big": "x" * 40_000}},  # MessageTooLarge
        {"user_id": "u", "event": None},  # ValidationError
        {"event": "e"},  # ValidationError
    ],
)
def test_what_build_track_hands_over(arguments: dict[str, Any]) -> None:
    assert fast_track(**arguments) is NOT_PLAIN


@requires_c
def test_clients_use_the_fast_path_and_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client("write-key", send=False)
    built: list[str] = []
    original = build_message

    def recording(kind: str, **arguments: Any) -> BuiltMessage:
        built.append(kind)
        return original(kind, **arguments)

    monkeypatch.setattr(_calls, "build_message", recording)
    ok, msg = client.track("user-1", "Plain", {"n": 1})
    assert ok
    assert built == []
    ok, msg = client.track("user-1", "Timed", {"n": 1}, timestamp=datetime(2026, 1, 2, tzinfo=UTC))
    assert ok
    assert built == ["track"]
    assert msg["timestamp"] == "2026-01-02T00:00:00.000+00:00"


# --- module state -----------------------------------------------------------------------------------


def fresh_copy_of_the_extension() -> Any:
    """A second module object from the same shared library: multi-phase init gives it its own state."""
    import importlib.util

    loaded = c_module().__spec__
    assert loaded is not None
    spec = importlib.util.spec_from_file_location("segment_core._speedups", loaded.origin)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@requires_c
def test_each_module_object_has_its_own_state() -> None:
    first = c_module()
    second = fresh_copy_of_the_extension()
    assert second is not first
    assert second.NOT_PLAIN is not first.NOT_PLAIN
    assert second.Intake is not first.Intake
    with pytest.raises(RuntimeError, match="configure"):  # the copy is not configured yet
        second.build_track("u", "e", None, None, None, None, "id", WALL, lambda: "x")
    encoder = msgspec.json.Encoder()
    second.configure(encoder, BuiltMessage, _TrackWire, "other-library", "9.9", 400, _format_timestamp)
    built = second.build_track("u", "e", None, None, None, None, "id", WALL, lambda: "x")
    assert built.message["context"]["library"] == {"name": "other-library", "version": "9.9"}
    assert second.build_track("u", "e", {"pad": "x" * 400}, None, None, None, "id", WALL, lambda: "x") is (
        second.NOT_PLAIN
    ), "its own limit of 400 bytes"
    # The first module's settings are untouched.
    ours = first.build_track("u", "e", None, None, None, None, "id", WALL, lambda: "x")
    assert ours.message["context"]["library"]["name"] != "other-library"
    assert first.clean_plain({"a": second.NOT_PLAIN}, BUDGET) is first.NOT_PLAIN


@requires_c
def test_the_c_types_are_final_and_ids_are_not_made_directly() -> None:
    speedups = c_module()
    with pytest.raises(TypeError):
        type("Sub", (speedups.Intake,), {})
    with pytest.raises(TypeError):
        type(speedups.message_ids(os.urandom))()
    with pytest.raises(TypeError):
        speedups.Intake.add = None


# --- the budget ---------------------------------------------------------------------------------------


@st.composite
def shared_plain_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Plain values whose containers may appear many times over (a DAG)."""
    nodes: list[Any] = []
    for _ in range(draw(st.integers(1, 20))):
        items: list[Any] = []
        for _ in range(draw(st.integers(0, 4))):
            shared = bool(nodes) and draw(st.booleans())
            items.append(nodes[draw(st.integers(0, len(nodes) - 1))] if shared else draw(plain_atoms))
        kind = draw(st.sampled_from(["list", "tuple", "dict"]))
        if kind == "list":
            nodes.append(items)
        else:
            nodes.append(tuple(items) if kind == "tuple" else {str(i): v for i, v in enumerate(items)})
    return {"root": nodes[-1]}


@requires_c
@given(value=st.one_of(plain_dicts, shared_plain_dicts()), budget=st.integers(0, 3000))
def test_c_and_python_spend_the_same_budget_and_stop_at_the_same_point(value: dict[str, Any], budget: int) -> None:
    fast = clean_plain(value, budget)
    try:
        expected, _ = python_rules(value, budget)
    except MessageTooLarge:
        assert fast is NOT_PLAIN, "over budget: the C path hands over, the Python rules raise"
        return
    assert fast is not NOT_PLAIN
    assert same(fast[0], expected[0])
    assert same(fast[1], expected[1])
    assert fast[2] == expected[2] >= 0


@requires_c
def test_shared_sub_objects_stop_the_c_walk_within_the_budget() -> None:
    shared: list[Any] = []
    for _ in range(60):  # 2**60 paths: without a budget this would never end
        shared = [shared, shared]
    assert clean_plain({"a": shared}) is NOT_PLAIN
    assert build_track("u", "e", {"a": shared}, None, None, None, None, WALL, lambda: "id") is NOT_PLAIN
