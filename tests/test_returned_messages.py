"""The message each call returns equals segment-analytics-python 2.4's, key for key and value for value.

Each call runs on our clients (the threaded ``Client`` with ``send=False``, whose
``track`` takes the C path where it is active, and the simulator's client) and on
2.4's ``Client(send=False)``, with separate copies of the same arguments. The
returned messages must have the same keys in the same order, and equal values of
the same types, except ``messageId`` and ``timestamp`` where the call gave none,
and ``context.library``. A table covers every call type with ids absent,
numeric and textual, dates, datetimes, Decimals, nested values, context and
integrations given or not; a hypothesis property draws the values.

Where we differ from 2.4 on purpose, ``test_where_we_differ_on_purpose`` shows
both behaviours, one row per difference with its reason, so that a difference
that disappears (or a new one) is noticed.
"""

from __future__ import annotations

import copy
import enum
import pickle
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from segment.analytics.client import Client as Reference

from segment_core import EngineConfig
from segment_core.testing import Simulator
from segment_runtimes.threaded import Client

IST = timezone(timedelta(hours=5, minutes=30))
U = uuid.UUID("12345678-1234-5678-1234-567812345678")


class Colour(enum.Enum):
    RED = "red"
    PAIR = (1, "x")


class Size(enum.IntEnum):
    LARGE = 3


class Text(str):
    pass


def reference_call(kind: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """What 2.4 returns (it writes context.library into the caller's dict: it gets its own copy)."""
    ok, message = getattr(Reference("write-key", send=False), kind)(**copy.deepcopy(arguments))
    assert ok
    returned: dict[str, Any] = message
    return returned


def threaded_call(kind: str, arguments: dict[str, Any]) -> dict[str, Any]:
    before = pickle.dumps(arguments)
    ok, message = getattr(Client("write-key", send=False), kind)(**arguments)
    assert ok
    assert pickle.dumps(arguments) == before, "the caller's arguments are never changed"
    returned: dict[str, Any] = message
    return returned


def simulated_call(kind: str, arguments: dict[str, Any]) -> dict[str, Any]:
    ok, message = getattr(Simulator(EngineConfig(write_key="write-key")).client, kind)(**copy.deepcopy(arguments))
    assert ok
    returned: dict[str, Any] = message
    return returned


OURS: list[Callable[[str, dict[str, Any]], dict[str, Any]]] = [threaded_call, simulated_call]


def assert_same_value(ours: Any, reference: Any, path: str) -> None:
    """Equal, of the same type, dicts in the same key order.

    2.4 keeps a str subclass, or an IntEnum or StrEnum member, as given; ours is the
    plain value (equal, and the same JSON). Those are the only types allowed to differ.
    """
    if isinstance(reference, enum.Enum) or (type(reference) is not type(ours) and isinstance(reference, str)):
        assert ours == reference, path
        assert type(ours) in (int, str), path
        return
    assert type(ours) is type(reference), f"{path}: {type(ours).__name__} != {type(reference).__name__}"
    if isinstance(reference, dict):
        assert list(ours) == list(reference), path
        for key in reference:
            assert_same_value(ours[key], reference[key], f"{path}.{key}")
    elif isinstance(reference, list):
        assert len(ours) == len(reference), path
        for index, (mine, theirs) in enumerate(zip(ours, reference, strict=True)):
            assert_same_value(mine, theirs, f"{path}[{index}]")
    else:
        assert ours == reference, path


def assert_same_message(ours: dict[str, Any], reference: dict[str, Any], arguments: dict[str, Any]) -> None:
    assert list(ours) == list(reference), "the same keys in the same order"
    for key in reference:
        if key == "messageId" and arguments.get("message_id") is None:
            assert isinstance(ours[key], str)
            uuid.UUID(ours[key])
        elif key == "timestamp" and arguments.get("timestamp") is None:
            assert isinstance(ours[key], str)
        elif key == "context":
            assert list(ours[key]) == list(reference[key]), "library where 2.4 puts it"
            assert ours[key]["library"]["name"] == "segment-sansio"
            assert_same_value(
                {k: v for k, v in ours[key].items() if k != "library"},
                {k: v for k, v in reference[key].items() if k != "library"},
                "context",
            )
        else:
            assert_same_value(ours[key], reference[key], key)


WHEN = datetime(2021, 3, 4, 5, 6, 7, 891011, tzinfo=timezone.utc)
VALUES: dict[str, Any] = {
    "text": "x",
    "subclassed": Text("t"),
    "int": 1,
    "big": 2**70,
    "float": 1.5,
    "true": True,
    "none": None,
    "date": date(2020, 1, 2),
    "naive": datetime(2020, 1, 2, 3, 4, 5),
    "utc": WHEN,
    "ist": datetime(2020, 1, 2, 3, 4, 5, tzinfo=IST),
    "decimal": Decimal("1.25"),
    "integral-decimal": Decimal("3"),
    "tuple": (1, "a", date(2020, 1, 3)),
    "set": {1},
    "list": [1, [Decimal("2.5"), {"at": WHEN}]],
    "enum": Colour.RED,
    "tuple-enum": Colour.PAIR,
    "int-enum": Size.LARGE,
    "nested": {"a": {"b": {"c": [None, 0.0, -1]}}},
}
PAYLOADS: dict[str, dict[str, Any] | None] = {
    "absent": None,
    "empty": {},
    "plain": {"revenue": 12.5, "currency": "USD", "items": [1, 2]},
    "rich": VALUES,
}
COMMON: dict[str, dict[str, Any]] = {
    "bare": {},
    "context": {"context": {"ip": "203.0.113.1", "page": {"path": "/", "at": WHEN}}},
    "context-library": {"context": {"library": "theirs", "ip": "1"}},
    "integrations": {"integrations": {"All": False, "Mixpanel": {"since": date(2020, 1, 1)}}},
    "timestamp": {"timestamp": datetime(2020, 1, 2, 3, 4, 5, 6789, tzinfo=IST)},
    "naive-old-timestamp": {"timestamp": datetime(2001, 1, 2, 3, 4, 5)},
    "message-id": {"message_id": "mine"},
    "numeric-message-id": {"message_id": 5},
    "uuid-message-id": {"message_id": U},
}
IDS: dict[str, dict[str, Any]] = {
    "user": {"user_id": "user-1"},
    "anonymous": {"anonymous_id": "anon-1"},
    "both": {"user_id": "user-1", "anonymous_id": "anon-1"},
    "numeric-user": {"user_id": 42},
    "float-user": {"user_id": 1.5},
    "decimal-user": {"user_id": Decimal("12")},
    "numeric-anonymous": {"anonymous_id": 7},
    "zero-user-with-anonymous": {"user_id": 0, "anonymous_id": "a"},
}


def calls() -> list[Any]:
    rows: list[Any] = []
    for ids_name, ids in IDS.items():
        for common_name, common in COMMON.items():
            for payload_name, payload in PAYLOADS.items():
                own = {} if payload is None else {"properties": payload}
                traits = {} if payload is None else {"traits": payload}
                per_kind = {
                    "track": {**ids, "event": "Order Completed", **own},
                    "identify": {**ids, **traits},
                    "group": {**ids, "group_id": "g-1", **traits},
                    "page": {**ids, **own},
                    "screen": {**ids, "name": "Home", **own},
                }
                for kind, arguments in per_kind.items():
                    rows.append(
                        pytest.param(
                            kind, {**arguments, **common}, id=f"{kind}-{ids_name}-{common_name}-{payload_name}"
                        )
                    )
    ids_only: list[tuple[str, str, dict[str, Any]]] = [
        ("page-named", "page", {"user_id": "u", "name": "N", "category": "C"})
    ]
    ids_only += [
        ("group-numeric-group-id", "group", {"user_id": "u", "group_id": 7}),
        ("group-zero-group-id", "group", {"user_id": "u", "group_id": 0}),
        ("group-float-group-id", "group", {"anonymous_id": "a", "group_id": 2.5}),
        ("group-decimal-group-id", "group", {"user_id": "u", "group_id": Decimal("12")}),
        ("alias", "alias", {"previous_id": "p", "user_id": "u"}),
        ("alias-numeric", "alias", {"previous_id": 5, "user_id": 6}),
        ("alias-context", "alias", {"previous_id": "p", "user_id": "u", "context": {"ip": "1"}}),
        ("screen-empty-name", "screen", {"user_id": "u", "name": ""}),
    ]
    rows += [pytest.param(kind, arguments, id=name) for name, kind, arguments in ids_only]
    return rows


@pytest.mark.parametrize("ours", OURS, ids=["threaded", "simulated"])
@pytest.mark.parametrize(("kind", "arguments"), calls())
def test_returned_messages_equal_the_reference_s(
    ours: Callable[[str, dict[str, Any]], dict[str, Any]], kind: str, arguments: dict[str, Any]
) -> None:
    assert_same_message(ours(kind, arguments), reference_call(kind, arguments), arguments)


# Values both clients clean alike: no NaN, no lone surrogates, nothing 2.4 drops or refuses.
atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=6),
    st.dates(),
    st.datetimes(timezones=st.sampled_from([None, timezone.utc, IST])),
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**20), max_value=10**20),
    st.sampled_from([Colour.RED, Colour.PAIR, Size.LARGE]),
)
values = st.recursive(
    atoms,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=4), children, max_size=3),
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(max_size=5), values, max_size=5)


@given(
    kind=st.sampled_from(["track", "identify", "group", "page", "screen"]),
    payload=payloads,
    context=st.none() | payloads,
    integrations=st.none() | payloads,
)
def test_any_values_are_returned_as_the_reference_returns_them(
    kind: str, payload: dict[str, Any], context: dict[str, Any] | None, integrations: dict[str, Any] | None
) -> None:
    arguments: dict[str, Any] = {"user_id": "u", "context": context, "integrations": integrations}
    if kind == "track":
        arguments.update(event="E", properties=payload)
    elif kind in ("identify", "group"):
        arguments.update(traits=payload, **({"group_id": "g"} if kind == "group" else {}))
    else:
        arguments["properties"] = payload
    assert_same_message(threaded_call(kind, arguments), reference_call(kind, arguments), arguments)


# --- where we differ on purpose ---------------------------------------------------------------------------


class Opaque:
    pass


def reference_outcome(kind: str, arguments: dict[str, Any]) -> dict[str, Any] | type[BaseException]:
    try:
        return reference_call(kind, arguments)
    except Exception as error:
        return type(error)


# (id, call, arguments, a key path, what ours returns there, what 2.4 returns there or raises, why)
DIFFERENCES: list[tuple[str, str, dict[str, Any], tuple[str, ...], object, object, str]] = [
    (
        "zero-user-id",
        "track",
        {"user_id": 0, "event": "E"},
        ("userId",),
        "0",
        AssertionError,
        "0 is a valid id; 2.4 tests `user_id or anonymous_id`",
    ),
    (
        "uuid-user-id",
        "identify",
        {"user_id": U},
        ("userId",),
        str(U),
        AssertionError,
        "UUIDs are ids (2.4 takes numbers and str only)",
    ),
    (
        "uuid-value",
        "track",
        {"user_id": "u", "event": "E", "properties": {"u": U, "n": 1}},
        ("properties",),
        {"u": str(U), "n": 1},
        {"n": 1},
        "a UUID is sent as its text; 2.4 drops the key with a warning",
    ),
    (
        "unknown-object-in-a-list",
        "track",
        {"user_id": "u", "event": "E", "properties": {"l": [1, Opaque()], "n": 1}},
        ("properties",),
        {"l": [1], "n": 1},
        {"n": 1},
        "one bad value costs only itself (warned); 2.4 drops the whole key that holds it",
    ),
    (
        "invalid-utf8-bytes",
        "track",
        {"user_id": "u", "event": "E", "properties": {"b": b"\xff", "n": 1}},
        ("properties",),
        {"n": 1},
        UnicodeDecodeError,
        "undecodable bytes are dropped with a warning; 2.4 raises from the call",
    ),
    (
        "nan",
        "track",
        {"user_id": "u", "event": "E", "properties": {"x": float("nan")}},
        ("properties", "x"),
        None,
        "nan",
        "NaN and infinities are not JSON: None (null); 2.4 keeps them and sends NaN",
    ),
    (
        "frozenset",
        "track",
        {"user_id": "u", "event": "E", "properties": {"f": frozenset({1})}},
        ("properties",),
        {"f": [1]},
        {},
        "a frozenset is a list like a set; 2.4 drops the key",
    ),
    (
        "non-str-key",
        "track",
        {"user_id": "u", "event": "E", "properties": {1: "one"}},
        ("properties",),
        {"1": "one"},
        {1: "one"},
        "keys are returned as sent (json.dumps stringifies them on 2.4's wire too)",
    ),
    (
        "empty-user-id",
        "track",
        {"user_id": "", "anonymous_id": "a", "event": "E"},
        ("userId",),
        None,
        "",
        "an empty string is no id: not sent, None; 2.4 sends and returns ''",
    ),
    (
        "empty-message-id",
        "identify",
        {"user_id": "u", "message_id": ""},
        ("messageId",),
        "generated",
        "",
        "an empty messageId is none: one is generated; 2.4 sends ''",
    ),
    (
        "bool-user-id",
        "identify",
        {"user_id": True},
        ("userId",),
        "ValidationError",
        "True",
        "a bool is never an identity; 2.4 sends 'True'",
    ),
    (
        "offset-with-seconds",
        "identify",
        {"user_id": "u", "timestamp": datetime(2020, 1, 2, 0, 9, 21, tzinfo=timezone(timedelta(seconds=561)))},
        ("timestamp",),
        "2020-01-02T00:00:00.000+00:00",
        "2020-01-02T00:09:21.000+00:09:21",
        "RFC 3339 offsets have no seconds: the same instant in UTC",
    ),
    (
        "lone-surrogate",
        "track",
        {"user_id": "u", "event": "E", "properties": {"s": "\ud800", "n": 1}},
        ("properties",),
        {"n": 1},
        {"s": "\ud800", "n": 1},
        "text that is not Unicode cannot be UTF-8 JSON: dropped with a warning",
    ),
]


def dig(message: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        message = message[key]
    return message


@pytest.mark.parametrize(
    ("kind", "arguments", "path", "ours", "theirs"),
    [pytest.param(*row[1:6], id=row[0]) for row in DIFFERENCES],
)
def test_where_we_differ_on_purpose(
    kind: str, arguments: dict[str, Any], path: tuple[str, ...], ours: object, theirs: object
) -> None:
    from segment_core import ValidationError

    reference = reference_outcome(kind, arguments)
    if isinstance(theirs, type):
        assert reference is theirs
    elif theirs == "nan":
        assert isinstance(reference, dict)
        assert dig(reference, path) != dig(reference, path)
    else:
        assert isinstance(reference, dict)
        assert dig(reference, path) == theirs
    if ours == "ValidationError":
        with pytest.raises(ValidationError):
            threaded_call(kind, arguments)
        return
    got = dig(threaded_call(kind, arguments), path)
    if ours == "generated":
        uuid.UUID(got)
    else:
        assert got == ours
