"""The cleaner's C fast path (segment_core/_speedups.c) against its Python rules.

``clean_plain`` either gives up (NOT_PLAIN) or returns exactly what the Python
cleaner returns, with no warnings: a copy that never aliases the caller's
containers. The Python cleaner is called through ``_clean_dict`` here, which
never takes the fast path, so the two really are compared.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from segment_core import _clean
from segment_core._speedups import NOT_PLAIN, clean_plain

UTC = timezone.utc


def python_rules(value: dict[Any, Any]) -> tuple[Any, list[str]]:
    warnings: list[str] = []
    return _clean._clean_dict(value, "p", warnings, None, 0), warnings


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


@given(plain_dicts)
def test_plain_values_take_the_fast_path_with_the_python_result(value: dict[str, Any]) -> None:
    before = copy.deepcopy(value)
    fast = clean_plain(value)
    assert fast is not NOT_PLAIN
    expected, warnings = python_rules(value)
    assert warnings == []
    assert same(fast, expected)
    assert same(value, before), "the caller's value is never changed"
    assert not set(containers(fast)) & set(containers(value)), "the copy never shares a container"


@given(st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), mixed_values, max_size=6))
def test_anything_else_is_handed_over_or_cleaned_as_python_does(value: dict[Any, Any]) -> None:
    fast = clean_plain(value)
    if fast is NOT_PLAIN:
        return
    expected, warnings = python_rules(value)
    assert warnings == []
    assert same(fast, expected)


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
    assert clean_plain({"a": {1, 2}}) == {"a": [1, 2]}


def test_the_builder_takes_the_fast_path(monkeypatch: Any) -> None:
    calls: list[object] = []

    def counting(value: object) -> Any:
        calls.append(value)
        return clean_plain(value)

    monkeypatch.setattr(_clean, "_clean_plain", counting)
    properties = {"when": datetime(2026, 11, 23, 13, 8, 42, 123000, tzinfo=UTC), "n": [1, 2.5, None]}
    cleaned = _clean.clean_dict(properties, "properties", [])
    assert calls == [properties]
    assert cleaned == {"when": "2026-11-23T13:08:42.123000+00:00", "n": [1, 2.5, None]}


def test_dates_and_datetimes_are_written_as_isoformat_writes_them() -> None:
    values = {
        "naive": datetime(2020, 1, 2, 3, 4, 5),
        "micro": datetime(2020, 1, 2, 3, 4, 5, 1),
        "utc": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        "first": datetime(1, 1, 1),
        "date": date(33, 2, 3),
    }
    assert clean_plain(values) == {key: value.isoformat() for key, value in values.items()}
