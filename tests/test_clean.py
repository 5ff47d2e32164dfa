"""Cleaning of values (segment_core/_value_cleaning.py), one table row per rule.

Each row is (value, expected cleaned value, expected warnings). A warning is
compared in full, so a change to its wording or path is a visible change.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import enum
import itertools
import json
import sys
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segment_core import _value_cleaning
from segment_core._errors import MessageTooLarge
from segment_core._value_cleaning import (
    DICT_ENTRY_BYTES,
    LIST_ITEM_BYTES,
    MAX_DEPTH,
    MAX_INT_DIGITS,
    clean,
    clean_field,
    clean_field_in_python,
    scrub,
)
from segment_core.limits import MAX_MESSAGE_BYTES

UTC = timezone.utc
IST = timezone(timedelta(hours=5, minutes=30))
U = uuid.UUID("12345678-1234-5678-1234-567812345678")


def clean_dict(value: dict[Any, Any], path: str, warnings: list[str]) -> dict[str, Any]:
    """The wire form of a dict argument, as the builder gets it."""
    wire, _, _ = clean_field(value, path, warnings, MAX_MESSAGE_BYTES)
    return wire


def _params(cases: list[tuple[str, Any, Any, Any]]) -> list[Any]:
    return [pytest.param(*case[1:], id=case[0]) for case in cases]


class Color(enum.Enum):
    RED = "red"
    PAIR = (1, 2)


class Size(enum.IntEnum):
    LARGE = 3


class Opaque:
    """An object with no JSON form; its repr holds a 'secret' that must never reach a warning."""

    def __repr__(self) -> str:
        return "Opaque(secret=hunter2)"


class Odd(enum.Enum):
    X = Opaque()


class Text(str):
    pass


class Count(int):
    pass


class Ratio(float):
    pass


@dataclasses.dataclass
class Point:
    x: int
    y: object = None


class Item(msgspec.Struct, rename="camel"):
    item_id: str
    unit_price: Decimal


CLEAN_CASES: list[tuple[str, object, object, tuple[str, ...]]] = [
    # id, value, cleaned, warnings
    ("str", "a", "a", ()),
    ("int", 7, 7, ()),
    ("big-int", 10**100, 10**100, ()),
    ("negative-big-int", -(2**200), -(2**200), ()),
    ("bool", True, True, ()),
    ("none", None, None, ()),
    ("float", 1.5, 1.5, ()),
    ("negative-zero", -0.0, -0.0, ()),
    ("nan", float("nan"), None, ()),
    ("inf", float("inf"), None, ()),
    ("minus-inf", float("-inf"), None, ()),
    ("datetime-utc", datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), "2020-01-02T03:04:05+00:00", ()),
    (
        "datetime-utc-micro",
        datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "2020-01-02T03:04:05.000006+00:00",
        (),
    ),
    ("datetime-naive", datetime(2020, 1, 2, 3, 4, 5, 120000), "2020-01-02T03:04:05.120000", ()),
    ("datetime-offset", datetime(2020, 1, 2, 3, 4, 5, tzinfo=IST), "2020-01-02T03:04:05+05:30", ()),
    ("datetime-year-1", datetime(1, 1, 1), "0001-01-01T00:00:00", ()),
    ("date", date(2020, 1, 2), "2020-01-02", ()),
    ("decimal-fraction", Decimal("1.50"), 1.5, ()),
    ("decimal-integral", Decimal("10"), 10, ()),
    ("decimal-integral-with-zeros", Decimal("10.000"), 10, ()),
    ("decimal-exponent", Decimal("1E+30"), 10**30, ()),
    ("decimal-negative-zero", Decimal("-0"), 0, ()),
    ("decimal-nan", Decimal("NaN"), None, ()),
    ("decimal-snan", Decimal("sNaN"), None, ()),
    ("decimal-inf", Decimal("Infinity"), None, ()),
    ("decimal-minus-inf", Decimal("-Infinity"), None, ()),
    ("decimal-overflows-float", Decimal("1" * 400 + ".5"), None, ()),
    ("decimal-too-large", Decimal(f"1E+{MAX_INT_DIGITS}"), None, ("p: Decimal too large for JSON",)),
    ("uuid", U, str(U), ()),
    ("enum", Color.RED, "red", ()),
    ("enum-tuple-value", Color.PAIR, [1, 2], ()),
    ("int-enum", Size.LARGE, 3, ()),
    ("str-subclass", Text("t"), "t", ()),
    ("int-subclass", Count(4), 4, ()),
    ("float-subclass", Ratio(1.5), 1.5, ()),
    ("float-subclass-nan", Ratio("nan"), None, ()),
    ("float-subclass-inf", Ratio("-inf"), None, ()),
    ("tuple", (1, "a"), [1, "a"], ()),
    ("list", [1, [2, (3,)]], [1, [2, [3]]], ()),
    ("set", {1}, [1], ()),
    ("frozenset", frozenset({"a"}), ["a"], ()),
    ("list-of-nan", [float("nan"), 1.0], [None, 1.0], ()),
    ("bytes", b"caf\xc3\xa9", "café", ()),
    ("bytearray", bytearray(b"ok"), "ok", ()),
    ("bytes-invalid-utf8", b"\xff\xfe", None, ("p: invalid UTF-8 in bytes",)),
    ("bytes-invalid-in-list", [b"\xff", b"ok"], ["ok"], ("p[0]: invalid UTF-8 in bytes",)),
    ("dataclass", Point(1, 2), {"x": 1, "y": 2}, ()),
    ("dataclass-nested", Point(1, Point(2)), {"x": 1, "y": {"x": 2, "y": None}}, ()),
    ("dataclass-bad-field", Point(1, Opaque()), {"x": 1}, ("p.y: unsupported type Opaque",)),
    ("struct", Item(item_id="i", unit_price=Decimal("2.5")), {"itemId": "i", "unitPrice": 2.5}, ()),
    ("unknown", Opaque(), None, ("p: unsupported type Opaque",)),
    ("unknown-in-list", [1, Opaque(), 2], [1, 2], ("p[1]: unsupported type Opaque",)),
    ("unknown-in-dict", {"a": 1, "b": Opaque()}, {"a": 1}, ("p.b: unsupported type Opaque",)),
    ("enum-unknown-value", Odd.X, None, ("p: unsupported type Opaque",)),
    ("dataclass-class-is-unknown", Point, None, ("p: unsupported type type",)),
    ("complex-is-unknown", 1j, None, ("p: unsupported type complex",)),
    ("memoryview-is-unknown", memoryview(b"x"), None, ("p: unsupported type memoryview",)),
    ("time-delta-is-unknown", timedelta(1), None, ("p: unsupported type timedelta",)),
    (
        "flat-dict",
        {"a": 1, "b": "x", "c": None, "d": 1.5, "e": True},
        {"a": 1, "b": "x", "c": None, "d": 1.5, "e": True},
        (),
    ),
    ("dict-nan", {"a": float("nan")}, {"a": None}, ()),
    ("dict-nan-under-an-int-key", {1: float("nan"), 2: 2.5}, {"1": None, "2": 2.5}, ()),
    ("dict-nested", {"a": {"b": {"c": (1,)}}}, {"a": {"b": {"c": [1]}}}, ()),
]


@pytest.mark.parametrize(("value", "expected", "warnings"), _params(CLEAN_CASES))
def test_clean(value: object, expected: object, warnings: tuple[str, ...]) -> None:
    cleaned, got_warnings = clean(value, "p")
    assert cleaned == expected
    assert type(cleaned) is type(expected)
    assert got_warnings == warnings
    # Whatever survives is JSON as it is, with no need for a default hook.
    assert json.loads(json.dumps(cleaned, allow_nan=False)) == cleaned


KEY_CASES: list[tuple[str, dict[Any, Any], dict[str, Any], tuple[str, ...]]] = [
    ("str", {"a": 1}, {"a": 1}, ()),
    ("int", {1: "a"}, {"1": "a"}, ()),
    ("big-int", {10**30: 1}, {str(10**30): 1}, ()),
    ("float", {1.5: "a"}, {"1.5": "a"}, ()),
    ("float-nan", {float("nan"): 1}, {"NaN": 1}, ()),
    ("float-inf", {float("inf"): 1, float("-inf"): 2}, {"Infinity": 1, "-Infinity": 2}, ()),
    ("bool", {True: 1, False: 2}, {"true": 1, "false": 2}, ()),
    ("enum", {Color.RED: 1, Size.LARGE: 2}, {"red": 1, "3": 2}, ()),
    ("uuid", {U: 1}, {str(U): 1}, ()),
    ("str-subclass", {Text("k"): 1}, {"k": 1}, ()),
    ("float-values", {1: 1.5, 3: -0.0}, {"1": 1.5, "3": -0.0}, ()),
    ("none-dropped", {None: 1, "a": 2}, {"a": 2}, ("p: unsupported key type NoneType",)),
    ("tuple-dropped", {(1, 2): 1}, {}, ("p: unsupported key type tuple",)),
    ("object-dropped", {Opaque(): 1}, {}, ("p: unsupported key type Opaque",)),
    ("enum-of-tuple-dropped", {Color.PAIR: 1}, {}, ("p: unsupported key type Color",)),
    (
        "duplicate-after-stringify",
        {1: "int", "1": "str"},
        {"1": "str"},
        (),
    ),
    (
        "duplicate-str-after-int",
        {"1": "str", 1: "int"},
        {"1": "int"},
        ("p.1: duplicate key after stringifying; last value kept",),
    ),
]


@pytest.mark.parametrize(("value", "expected", "warnings"), _params(KEY_CASES))
def test_dict_keys(value: dict[Any, Any], expected: dict[str, Any], warnings: tuple[str, ...]) -> None:
    cleaned, got_warnings = clean(value, "p")
    assert cleaned == expected
    assert all(type(k) is str for k in cleaned)
    assert got_warnings == warnings
    # Keys are written as json.dumps writes them (what segment-analytics-python sent).
    if not warnings and len(value) == len(expected) and all(type(k) in (str, int, float, bool) for k in value):
        assert json.loads(json.dumps(value)) == cleaned


def test_a_dict_key_that_is_too_long_an_int_is_dropped() -> None:
    if not hasattr(sys, "get_int_max_str_digits"):
        pytest.skip("this Python has no limit on int to str conversion")
    cleaned, warnings = clean({10 ** (sys.get_int_max_str_digits() + 1): 1, "a": 2}, "p")
    assert cleaned == {"a": 2}
    assert warnings == ("p: int key too large for JSON",)


def test_warnings_never_include_the_value() -> None:
    value = {"token": Opaque(), "raw": b"\xffhunter2", "nested": [Opaque()], Opaque(): "hunter2"}
    cleaned, warnings = clean(value, "properties")
    assert cleaned == {"nested": []}
    assert len(warnings) == 4
    for warning in warnings:
        assert "hunter2" not in warning
        assert warning.startswith("properties")


def test_long_keys_are_cut_in_warning_paths() -> None:
    key = "k" * 1000
    _, warnings = clean({key: Opaque()}, "p")
    assert warnings == (f"p.{'k' * 40}...: unsupported type Opaque",)
    _, warnings = clean({"k" * 40: Opaque()}, "p")
    assert warnings == (f"p.{'k' * 40}: unsupported type Opaque",)


def test_a_value_with_no_path_is_named_value_in_warnings() -> None:
    assert clean(Opaque()) == (None, ("value: unsupported type Opaque",))


def test_paths_name_nested_positions() -> None:
    value = {"a": [{"b": Opaque()}, (1, {"c": [b"\xff"]})]}
    _, warnings = clean(value, "traits")
    assert warnings == (
        "traits.a[0].b: unsupported type Opaque",
        "traits.a[1][1].c[0]: invalid UTF-8 in bytes",
    )


def test_the_input_is_never_mutated_nor_aliased() -> None:
    inner = {"x": [1, 2], "when": date(2020, 1, 1)}
    value: dict[Any, Any] = {"inner": inner, "flat": {"a": 1}, "list": [1, 2], 3: "int key", "bad": Opaque()}
    before = copy.deepcopy(value)
    before["bad"] = value["bad"]  # an Opaque has no equality, keep the same one
    warnings: list[str] = []
    cleaned = clean_dict(value, "p", warnings)
    assert value == before
    assert cleaned is not value
    assert cleaned["inner"] is not inner
    assert cleaned["inner"]["x"] is not inner["x"]
    assert cleaned["flat"] is not value["flat"]
    assert cleaned["list"] is not value["list"]
    cleaned["inner"]["x"].append(3)
    assert inner["x"] == [1, 2]


def test_a_clean_dict_is_copied_not_returned() -> None:
    value = {"a": 1, "b": "x"}
    cleaned = clean_dict(value, "p", [])
    assert cleaned == value
    assert cleaned is not value
    assert type(cleaned) is dict


def test_dict_subclasses_become_plain_dicts() -> None:
    from collections import OrderedDict, defaultdict

    d: defaultdict[str, int] = defaultdict(int, {"a": 1})
    assert type(clean_dict(d, "p", [])) is dict
    cleaned, _ = clean(OrderedDict([("b", [OrderedDict(c=1)])]))
    assert cleaned == {"b": [{"c": 1}]}
    assert type(cleaned["b"][0]) is dict


def test_a_circular_reference_is_dropped_not_followed() -> None:
    d: dict[str, Any] = {"a": 1}
    d["self"] = d
    loop: list[Any] = [1]
    loop.append(loop)
    d["loop"] = loop
    cleaned, warnings = clean(d, "p")
    assert cleaned == {"a": 1, "loop": [1]}
    assert warnings == ("p.self: circular reference", "p.loop[1]: circular reference")


def test_a_circular_dataclass_is_dropped() -> None:
    p = Point(1)
    p.y = p
    cleaned, warnings = clean(p, "p")
    assert cleaned == {"x": 1}
    assert warnings == ("p.y: circular reference",)


def test_shared_but_not_circular_values_are_kept() -> None:
    shared = {"k": [1, Opaque()]}
    cleaned, warnings = clean({"a": shared, "b": shared}, "p")
    assert cleaned == {"a": {"k": [1]}, "b": {"k": [1]}}
    assert warnings == ("p.a.k[1]: unsupported type Opaque", "p.b.k[1]: unsupported type Opaque")


@pytest.mark.parametrize("container", ["dict", "list", "mixed"])
def test_very_deep_nesting_is_cut_with_a_warning(container: str) -> None:
    value: Any = {"leaf": Opaque()}  # an odd leaf forces the slow path at every level
    for i in range(5 * sys.getrecursionlimit()):
        as_dict = container == "dict" or (container == "mixed" and i % 2 == 1)
        value = {"d": value} if as_dict else [value]
    cleaned, warnings = clean(value, "p")
    assert len(warnings) == 1
    assert warnings[0].endswith(f": nested deeper than {MAX_DEPTH} levels")
    depth = 0  # containers kept: levels 0 to MAX_DEPTH - 1, the last one emptied
    while isinstance(cleaned, (dict, list)):
        depth += 1
        if not cleaned:
            break
        cleaned = cleaned["d"] if isinstance(cleaned, dict) else cleaned[0]
    assert depth == MAX_DEPTH


def test_nesting_up_to_the_limit_is_kept() -> None:
    value: Any = [Opaque(), 1]
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    cleaned, warnings = clean(value, "p")
    assert len(warnings) == 1
    assert warnings[0].endswith("unsupported type Opaque")
    for _ in range(MAX_DEPTH - 1):
        cleaned = cleaned[0]
    assert cleaned == [1]


def test_a_datetime_with_a_broken_tzinfo_is_dropped() -> None:
    class Broken(timezone.__base__):  # type: ignore[name-defined,misc]
        def utcoffset(self, dt: object) -> timedelta:
            raise RuntimeError("boom")

    cleaned, warnings = clean({"a": datetime(2020, 1, 1, tzinfo=Broken()), "b": 1}, "p")
    assert cleaned == {"b": 1}
    assert warnings == ("p.a: datetime could not be formatted",)


def test_a_dataclass_with_an_unset_field_is_dropped() -> None:
    @dataclasses.dataclass
    class Late:
        x: int = dataclasses.field(init=False)

    cleaned, warnings = clean({"a": Late(), "b": 1}, "p")
    assert cleaned == {"b": 1}
    assert warnings == ("p.a: Late fields could not be read",)


def test_unset_struct_fields_are_left_out() -> None:
    class Patch(msgspec.Struct):
        a: int | msgspec.UnsetType = msgspec.UNSET
        b: int = 0

    assert clean(Patch(b=2)) == ({"b": 2}, ())


@pytest.mark.parametrize(
    "dt",
    [
        datetime(2020, 1, 2, 3, 4, 5),
        datetime(2020, 1, 2, 3, 4, 5, 1),
        datetime(2020, 1, 2, 3, 4, 5, 999999),
        datetime(999, 12, 31, 23, 59, 59),
        datetime(9999, 12, 31, 23, 59, 59, 999999),
        datetime(2020, 1, 2, 3, 4, 5, fold=1),
        datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2020, 1, 2, 3, 4, 5, 10, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2020, 1, 2, tzinfo=timezone(timedelta(seconds=561))),
        datetime(2020, 1, 2, tzinfo=timezone(-timedelta(hours=23, minutes=59))),
    ],
    ids=repr,
)
def test_datetimes_are_written_as_isoformat_writes_them(dt: datetime) -> None:
    assert clean(dt) == (dt.isoformat(), ())


SCRUB_CASES: list[tuple[str, object, object, tuple[str, ...]]] = [
    ("clean-value", {"a": [1, "b", None]}, {"a": [1, "b", None]}, ()),
    ("lone-surrogate", {"a": "x\ud800", "b": 1}, {"b": 1}, ("p.a: str is not valid Unicode (lone surrogates)",)),
    ("surrogate-in-list", ["\udfff", "ok"], ["ok"], ("p[0]: str is not valid Unicode (lone surrogates)",)),
    ("surrogate-key", {"\ud800": 1, "b": 2}, {"b": 2}, ("p: key is not valid Unicode (lone surrogates)",)),
    ("non-ascii-is-fine", {"é": "ü"}, {"é": "ü"}, ()),
]


@pytest.mark.parametrize(("value", "expected", "warnings"), _params(SCRUB_CASES))
def test_scrub(value: object, expected: object, warnings: tuple[str, ...]) -> None:
    got: list[str] = []
    assert scrub(value, "p", got) == expected
    assert tuple(got) == warnings
    msgspec.json.encode(expected)


def test_scrub_drops_ints_too_long_to_print() -> None:
    if not hasattr(sys, "get_int_max_str_digits"):
        pytest.skip("this Python has no limit on int to str conversion")
    big = 10 ** (sys.get_int_max_str_digits() + 1)
    got: list[str] = []
    assert scrub({"a": big, "b": [big, 10**50]}, "p", got) == {"b": [10**50]}
    assert got == ["p.a: int too large for JSON", "p.b[0]: int too large for JSON"]


def test_scrub_of_a_dropped_top_level_value_is_none() -> None:
    got: list[str] = []
    assert scrub("\ud800", "name", got) is None
    assert got == ["name: str is not valid Unicode (lone surrogates)"]


def test_clean_dict_appends_to_the_given_warnings() -> None:
    warnings = ["earlier"]
    assert clean_dict({"a": Opaque(), "b": 1}, "context", warnings) == {"b": 1}
    assert warnings == ["earlier", "context.a: unsupported type Opaque"]


def test_a_non_str_key_after_cleaned_values_warns_once() -> None:
    # The str-keyed fast path patches values in place; a later int key makes it
    # start again, and the warnings of the first attempt must not be doubled.
    value = {"a": 1, "b": [Opaque()], "c": float("inf"), 1: Opaque(), "d": {"e": b"\xff"}}
    cleaned, warnings = clean(value, "p")
    assert cleaned == {"a": 1, "b": [], "c": None, "d": {}}
    assert warnings == (
        "p.b[0]: unsupported type Opaque",
        "p.1: unsupported type Opaque",
        "p.d.e: invalid UTF-8 in bytes",
    )
    assert list(cleaned) == ["a", "b", "c", "d"]


def test_key_order_is_kept() -> None:
    value = {"z": 1, "y": [1, Opaque()], "x": float("nan"), "w": Opaque(), "v": 2}
    cleaned, _ = clean(value, "p")
    assert list(cleaned) == ["z", "y", "x", "v"]
    cleaned, _ = clean({"z": 1, 2: "two", "a": 3}, "p")
    assert list(cleaned) == ["z", "2", "a"]


# --- cost bounded by the message limit -------------------------------------------------------------


def shared_lists(levels: int) -> list[Any]:
    """``a = [a, a]``, ``levels`` deep: a few objects, 2**levels paths through them."""
    value: list[Any] = []
    for _ in range(levels):
        value = [value, value]
    return value


class CallCounter:
    """Counts calls of the cleaner's Python functions while active (sys.setprofile): its work, deterministically."""

    def __init__(self) -> None:
        self.calls = 0

    def __enter__(self) -> CallCounter:
        cleaner = _value_cleaning.__file__

        def profile(frame: Any, event: str, arg: object) -> None:
            if event == "call" and frame.f_code.co_filename == cleaner:
                self.calls += 1

        sys.setprofile(profile)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)


def test_shared_sub_objects_are_charged_each_time_and_stop_the_walk() -> None:
    """Written out, 22 levels of a = [a, a] is 4M lists: cleaning used to take 10 s and 791 MB."""
    with CallCounter() as work, pytest.raises(MessageTooLarge) as info:
        clean({"a": shared_lists(22)}, "p")
    assert info.value.limit == MAX_MESSAGE_BYTES
    assert info.value.size > MAX_MESSAGE_BYTES
    assert work.calls < 3 * MAX_MESSAGE_BYTES // LIST_ITEM_BYTES


def test_a_container_too_big_for_the_budget_is_not_even_scanned() -> None:
    with CallCounter() as work, pytest.raises(MessageTooLarge):
        clean({"many": [Opaque()] * 1_000_000}, "p")
    assert work.calls < 10


def test_shared_values_that_fit_are_kept() -> None:
    cleaned, warnings = clean({"a": shared_lists(8)}, "p")
    assert warnings == ()
    assert json.dumps(cleaned, separators=(",", ":")).count("[]") == 2**8


@st.composite
def shared_values(draw: st.DrawFn) -> Any:
    """A value built from nodes that may each appear many times (a DAG): small to hold, big to write out."""
    atoms = st.one_of(st.integers(), st.text(max_size=3), st.none(), st.floats(), st.builds(Opaque))
    nodes: list[Any] = []
    for _ in range(draw(st.integers(1, 30))):
        items: list[Any] = []
        for _ in range(draw(st.integers(0, 4))):
            shared = bool(nodes) and draw(st.booleans())
            items.append(nodes[draw(st.integers(0, len(nodes) - 1))] if shared else draw(atoms))
        kind = draw(st.sampled_from(["list", "tuple", "dict"]))
        nodes.append(items if kind == "list" else tuple(items) if kind == "tuple" else dict(enumerate(items)))
    return nodes[-1]


def tree_size(value: Any, seen: dict[int, int] | None = None) -> int:
    """How many values the value holds written out (every path counted), capped at 10**12."""
    seen = {} if seen is None else seen
    if not isinstance(value, (list, tuple, dict)):
        return 1
    if id(value) not in seen:
        children = value.values() if isinstance(value, dict) else value
        seen[id(value)] = min(10**12, 1 + sum(tree_size(child, seen) for child in children))
    return seen[id(value)]


@given(value=shared_values(), budget=st.integers(0, 4000))
def test_cleaning_costs_at_most_the_smaller_of_the_input_written_out_and_the_budget(value: Any, budget: int) -> None:
    with CallCounter() as work, contextlib.suppress(MessageTooLarge):
        clean(value, "p", budget=budget)
    # Each value visited is at most a few calls (a container, its charge, an odd value's rule).
    assert work.calls <= 4 * min(tree_size(value), budget // LIST_ITEM_BYTES + 1) + 4


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=4), children, max_size=5)
    ),
    max_leaves=40,
)


@given(value=st.dictionaries(st.text(max_size=4), json_values, max_size=6))
def test_the_charge_never_exceeds_the_json_so_a_message_that_fits_is_never_refused(value: dict[str, Any]) -> None:
    warnings: list[str] = []
    wire, _, left = clean_field(value, "p", warnings, MAX_MESSAGE_BYTES)
    assert warnings == []
    assert MAX_MESSAGE_BYTES - left <= len(msgspec.json.encode(wire))


# --- subclasses are read as 2.4 reads them ---------------------------------------------------------


class Hiding(dict[str, Any]):
    """Its items() say one thing; its storage (what dict(d) and the encoder read) holds another."""

    def items(self) -> Any:
        return [("shown", 1), ("when", date(2020, 1, 2))]


class Counted(list[Any]):
    def __iter__(self) -> Any:
        yield from ("iterated", b"bytes")


class Point2(tuple[int, int]):
    pass


def test_dict_subclasses_are_read_through_items() -> None:
    hiding = Hiding(stored=Opaque())
    cleaned, warnings = clean({"d": hiding}, "p")
    assert cleaned == {"d": {"shown": 1, "when": "2020-01-02"}}
    assert warnings == ()


def test_list_and_tuple_subclasses_are_read_through_iteration() -> None:
    from collections import namedtuple

    pair = namedtuple("pair", "x y")
    cleaned, warnings = clean({"l": Counted([Opaque()]), "t": pair(1, Opaque()), "p": Point2((1, 2))}, "p")
    assert cleaned == {"l": ["iterated", "bytes"], "t": [1], "p": [1, 2]}
    assert warnings == ("p.t[1]: unsupported type Opaque",)


def test_a_subclass_that_cannot_be_read_is_dropped_with_a_warning() -> None:
    class Broken(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("hunter2")

    class NotPairs(dict[str, Any]):
        def items(self) -> Any:
            return [1, 2]

    class BrokenList(list[Any]):
        def __iter__(self) -> Any:
            raise RuntimeError("hunter2")

    cleaned, warnings = clean({"a": Broken(), "b": NotPairs(), "c": 1, "d": BrokenList([1])}, "p")
    assert cleaned == {"c": 1}
    assert warnings == (
        "p.a: Broken could not be read",
        "p.b: NotPairs could not be read",
        "p.d: BrokenList could not be read",
    )


def test_a_subclass_that_never_ends_is_read_only_as_far_as_the_budget() -> None:
    class Endless(list[Any]):
        def __iter__(self) -> Any:
            return itertools.count()

    with pytest.raises(MessageTooLarge):
        clean({"a": Endless()}, "p")


def test_a_dict_subclass_holding_itself_is_a_circular_reference() -> None:
    class Node(dict[str, Any]):
        pass

    node = Node(a=1)
    node["self"] = node
    cleaned, warnings = clean({"n": node}, "p")
    assert cleaned == {"n": {"a": 1}}
    assert warnings == ("p.n.self: circular reference",)


def test_a_list_subclass_holding_itself_is_a_circular_reference() -> None:
    class Ring(list[Any]):
        pass

    ring = Ring([1])
    ring.append(ring)
    cleaned, warnings = clean({"r": ring}, "p")
    assert cleaned == {"r": [1]}
    assert warnings == ("p.r[1]: circular reference",)


def test_shared_and_nested_subclass_and_dataclass_values_are_kept_each_time() -> None:
    # Each is marked as being cleaned only while it is: reached again later, or holding
    # another of its kind, it is no circular reference.
    from collections import namedtuple

    pair = namedtuple("pair", "x y")
    nested = pair(pair(1, 2), 3)

    class Node(dict[str, Any]):
        pass

    node = Node(a=Node(b=1))
    point = Point(1, Point(2))
    cleaned, warnings = clean({"a": [nested, node, point], "b": [nested, node, point]}, "p")
    once = [[[1, 2], 3], {"a": {"b": 1}}, {"x": 1, "y": {"x": 2, "y": None}}]
    assert cleaned == {"a": once, "b": once}
    assert warnings == ()


class Pulls:
    """An endless source of values that counts how many were taken from it (at most 10,000)."""

    def __init__(self) -> None:
        self.taken = 0

    def values(self) -> Any:
        for i in range(10_000):
            self.taken += 1
            yield i


def test_a_dict_subclass_is_read_only_as_far_as_the_budget() -> None:
    pulls = Pulls()

    class EndlessItems(dict[str, Any]):
        def items(self) -> Any:
            return ((f"k{i}", i) for i in pulls.values())

    budget = 50
    with pytest.raises(MessageTooLarge):
        clean(EndlessItems(), "p", budget=budget)
    # One entry past what fits is enough to know it does not.
    assert pulls.taken <= budget // DICT_ENTRY_BYTES + 1


def test_a_list_subclass_is_read_only_as_far_as_the_budget() -> None:
    pulls = Pulls()

    class EndlessIter(list[Any]):
        def __iter__(self) -> Any:
            return pulls.values()

    budget = 50
    with pytest.raises(MessageTooLarge):
        clean(EndlessIter(), "p", budget=budget)
    assert pulls.taken <= budget // LIST_ITEM_BYTES + 1


def test_subclasses_that_fit_the_budget_exactly_are_read_whole() -> None:
    class Node(dict[str, Any]):
        pass

    class Row(list[Any]):
        pass

    budget = 50
    mapping = Node({f"k{i}": i for i in range(budget // DICT_ENTRY_BYTES)})
    assert clean(mapping, "p", budget=budget) == (dict(mapping), ())
    row = Row(range(budget // LIST_ITEM_BYTES))
    assert clean(row, "p", budget=budget) == (list(row), ())


@pytest.mark.parametrize("container", [list, tuple, set, frozenset])
def test_an_exact_container_too_big_is_charged_whole_without_reading_it(container: type[Any]) -> None:
    # len() of an exact list, tuple or set is its size; only a subclass must be read to know it.
    count = 100_000
    with pytest.raises(MessageTooLarge) as info:
        clean(container(range(count)), "p", budget=100)
    assert info.value.size == LIST_ITEM_BYTES * count
    assert info.value.limit == 100


def test_a_date_that_cannot_be_formatted_is_dropped_with_a_warning() -> None:
    class BadDate(date):
        def isoformat(self) -> str:
            raise RuntimeError("hunter2")

    cleaned, warnings = clean({"a": BadDate(2020, 1, 2), "b": 1}, "p")
    assert cleaned == {"b": 1}
    assert warnings == ("p.a: BadDate could not be formatted",)


# --- how deep values may nest, exactly ------------------------------------------------------------


def in_lists(value: Any, levels: int) -> Any:
    """``value`` inside ``levels`` single-item lists."""
    for _ in range(levels):
        value = [value]
    return value


class Holder(enum.Enum):
    """An Enum whose value is a container that is not plain (its NaN must be rewritten)."""

    PAIR = ("a", float("nan"))


def deep_warning(levels: int) -> str:
    return "p" + "[0]" * levels + f": nested deeper than {MAX_DEPTH} levels"


# (value at level `levels` of lists, cleaned, whether it is kept). The outer list is level 0; a
# container is a level, and so is an Enum or a dataclass (its value or fields are one level down).
# A container of plain values is kept even at level MAX_DEPTH: it holds nothing deeper.
DEPTH_CASES: list[tuple[str, Any, int, Any, bool]] = [
    ("plain-list-at-max", [1, "a", None, 1.5], MAX_DEPTH, [1, "a", None, 1.5], True),
    ("plain-dict-at-max", {"a": 1, "b": -0.0}, MAX_DEPTH, {"a": 1, "b": -0.0}, True),
    ("list-with-nan-below-max", [float("nan")], MAX_DEPTH - 1, [None], True),
    ("list-with-nan-at-max", [float("nan")], MAX_DEPTH, None, False),
    ("enum-of-atom-below-max", Color.RED, MAX_DEPTH - 1, "red", True),
    ("enum-of-atom-at-max", Color.RED, MAX_DEPTH, None, False),
    ("enum-of-container-two-below-max", Holder.PAIR, MAX_DEPTH - 2, ["a", None], True),
    ("enum-of-container-below-max", Holder.PAIR, MAX_DEPTH - 1, None, False),
    ("plain-dataclass-below-max", Point(1, 2), MAX_DEPTH - 1, {"x": 1, "y": 2}, True),
    ("plain-dataclass-at-max", Point(1, 2), MAX_DEPTH, None, False),
    ("dataclass-with-nan-two-below-max", Point(1, float("nan")), MAX_DEPTH - 2, {"x": 1, "y": None}, True),
    ("dataclass-with-nan-below-max", Point(1, float("nan")), MAX_DEPTH - 1, None, False),
]


@pytest.mark.parametrize(("value", "level", "expected", "kept"), [pytest.param(*c[1:], id=c[0]) for c in DEPTH_CASES])
def test_the_depth_limit_is_exact(value: Any, level: int, expected: Any, kept: bool) -> None:
    cleaned, warnings = clean(in_lists(value, level), "p")
    if kept:
        assert cleaned == in_lists(expected, level)
        assert warnings == ()
    else:
        assert cleaned == in_lists([], level - 1)
        assert warnings == (deep_warning(level),)


@pytest.mark.parametrize("field", [clean_field, clean_field_in_python])
@pytest.mark.parametrize("leaf", [[1, "a"], {"a": 1.5}], ids=["list", "dict"])
def test_a_dict_argument_keeps_the_same_depth_on_both_paths(field: Any, leaf: Any) -> None:
    # The argument is level 0: a plain leaf at level MAX_DEPTH is kept, one level deeper it is not.
    # The date makes the Python path build the returned form in a second walk, with the same limit.
    when = date(2020, 1, 2)
    warnings: list[str] = []
    wire, returned, _ = field({"when": when, "x": in_lists(leaf, MAX_DEPTH - 1)}, "p", warnings, MAX_MESSAGE_BYTES)
    assert wire == {"when": "2020-01-02", "x": in_lists(leaf, MAX_DEPTH - 1)}
    assert returned == {"when": when, "x": in_lists(leaf, MAX_DEPTH - 1)}
    assert warnings == []
    wire, returned, _ = field({"when": when, "x": in_lists(leaf, MAX_DEPTH)}, "p", warnings, MAX_MESSAGE_BYTES)
    assert wire == {"when": "2020-01-02", "x": in_lists([], MAX_DEPTH - 2)}
    assert returned == {"when": when, "x": in_lists([], MAX_DEPTH - 2)}
    assert warnings == ["p.x" + "[0]" * (MAX_DEPTH - 1) + f": nested deeper than {MAX_DEPTH} levels"]


# --- a dict argument's two forms --------------------------------------------------------------------


@pytest.mark.parametrize("field", [clean_field, clean_field_in_python])
def test_the_two_forms_are_one_object_unless_they_differ(field: Any) -> None:
    wire, returned, _ = field({"a": [1, Opaque()], "b": float("nan")}, "p", [], MAX_MESSAGE_BYTES)
    assert wire == {"a": [1], "b": None}
    assert returned is wire


@pytest.mark.parametrize("field", [clean_field, clean_field_in_python])
def test_an_integral_decimal_is_an_int_on_the_wire_and_a_float_in_the_returned_form(field: Any) -> None:
    wire, returned, _ = field({"d": Decimal("3"), "e": Decimal("1.5")}, "p", [], MAX_MESSAGE_BYTES)
    assert wire == {"d": 3, "e": 1.5}
    assert type(wire["d"]) is int
    assert returned == {"d": 3.0, "e": 1.5}
    assert type(returned["d"]) is float


@pytest.mark.parametrize("field", [clean_field, clean_field_in_python])
def test_a_dict_argument_that_cannot_be_read_is_an_empty_dict(field: Any) -> None:
    class Broken(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("hunter2")

    warnings: list[str] = []
    wire, returned, left = field(Broken(a=1), "traits", warnings, 1000)
    assert (wire, returned, left) == ({}, {}, 1000)
    assert warnings == ["traits: Broken could not be read"]


def test_a_dict_argument_that_cannot_be_read_a_second_time_returns_an_empty_dict() -> None:
    # The returned form is a second walk: a value that fails it shows nothing, never a marker.
    class Once(dict[str, Any]):
        reads = 0

        def items(self) -> Any:
            self.reads += 1
            if self.reads > 1:
                raise RuntimeError("hunter2")
            return [("when", date(2020, 1, 2))]

    wire, returned, _ = clean_field_in_python(Once(), "p", [], MAX_MESSAGE_BYTES)
    assert wire == {"when": "2020-01-02"}
    assert returned == {}


def test_the_budget_error_names_the_whole_message_limit() -> None:
    # clean_field's budget is what is left of the message's; the error is about the message.
    with pytest.raises(MessageTooLarge) as info:
        clean_field_in_python({"a": [0] * 100}, "p", [], 50)
    assert info.value.limit == MAX_MESSAGE_BYTES
    assert info.value.size == MAX_MESSAGE_BYTES - 50 + DICT_ENTRY_BYTES + 100 * LIST_ITEM_BYTES


def test_the_returned_form_keeps_to_the_same_budget_even_if_a_value_grows() -> None:
    # A subclass may iterate differently each time; the second walk is bounded all the same.
    pulls = Pulls()

    class Growing(list[Any]):
        iterations = 0

        def __iter__(self) -> Any:
            self.iterations += 1
            if self.iterations == 1:
                return iter([date(2020, 1, 2)])
            return itertools.chain([date(2020, 1, 2)], pulls.values())

    with pytest.raises(MessageTooLarge) as info:
        clean_field_in_python({"g": Growing()}, "p", [], 100)
    assert info.value.limit == MAX_MESSAGE_BYTES
    assert pulls.taken < 100
