"""Side by side with segment-analytics-python 2.4: the messages a call returns and sends.

Strategy: one table, ROWS, of calls (one row per case: call type, ids, values, context,
integrations, timestamps, message ids). Each row runs on 2.4's ``Client`` and ours with
``send=False`` and the returned ``(success, msg)`` are compared key for key; then every row is
sent by both clients to two loopback collectors and the stored JSON is compared message by
message, matched by an explicit messageId. Left out of both sides: ``messageId`` and
``timestamp`` when the call gives none (their shape is checked) and ``context.library``
(checked to name each client).

A row that differs on purpose carries a :class:`~tests.parity.Divergence` with its reason; a row
that differs today because a fix under issue 16 has not landed declares its :class:`~tests.parity.Gap`
and is a strict xfail (see ``tests/parity.py``).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Any

import pytest
from segment.analytics import Client as ReferenceClient

from segment_core import ValidationError
from segment_core.limits import LIBRARY_NAME, LIBRARY_VERSION
from segment_runtimes.collector import Collector
from segment_runtimes.threaded import Client

from .parity import (
    NAIVE_NOW,
    WIRE_GAPS,
    Call,
    Divergence,
    Gap,
    alias,
    check_gaps,
    differences,
    gap_marks,
    group,
    hide_known_gaps,
    identify,
    page,
    screen,
    track,
)

WRITE_KEY = "parity-write-key"
UUID_A = uuid.UUID("6f1c2a4e-8d3b-4f5a-9c7e-0b1d2e3f4a5b")
UUID_B = uuid.UUID("0a9b8c7d-6e5f-4a3b-8c1d-2e3f4a5b6c7d")
AT_UTC = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
AT_PLUS_0530 = datetime(2024, 5, 6, 12, 38, 9, 987654, tzinfo=timezone(timedelta(hours=5, minutes=30)))
AT_MINUS_08 = datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-8)))
AT_NAIVE_OLD = datetime(2020, 1, 2, 3, 4, 5, 678000)  # long before now: 2.4 reads it as UTC
AT_SECONDS_OFFSET = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=timezone(timedelta(hours=1, seconds=30)))


class Color(Enum):
    RED = "red"


class Size(IntEnum):
    LARGE = 3


class Rank(Enum):
    FIRST = 1


@dataclass
class Plan:
    name: str
    seats: int


# Differences we keep, one line each (the README migration table's rows).
ZERO_ID = "a user_id of 0 is a valid id, sent as '0'; 2.4 raises unless an anonymous_id is also given"
UUID_ID = "a UUID id is sent as its string; 2.4 raises AssertionError (not a str or number)"
BOOL_ID = "a bool id raises ValidationError (a bool is never an identity); 2.4 sends 'True'"
EMPTY_ID = "an empty-string id counts as absent (alone it raises ValidationError); 2.4 sends '' as the id"
NUMERIC_REF_ID = "a numeric groupId/previousId is sent as a string, as the spec types it; 2.4 sends the number"
UUID_VALUE = "a UUID value is sent as its string; 2.4 drops the key with a warning"
FROZENSET = "a frozenset becomes a list, like a set; 2.4 drops the key with a warning"
DATACLASS = "a dataclass instance becomes an object; 2.4 drops the key with a warning"
OBJECT_IN_LIST = "an unsupported value in a list drops only itself (with a warning); 2.4 drops the whole list"
NON_FINITE = "NaN and infinities become null; 2.4 sends NaN/Infinity, which is not valid JSON"
FALSY_NAME = "a falsy name or category that is not a str (0, []) is no name; 2.4 returns and sends it as given"
INTEGRAL_DECIMAL = "an integral Decimal is sent as an exact integer (3); 2.4 sends a float (3.0)"
NON_STR_KEYS = "non-str dict keys are returned as the strings JSON sends; 2.4 returns them unchanged (same wire)"
NONE_KEY = "an entry under a None key is dropped with a warning; 2.4 sends it under the key 'null'"
INVALID_BYTES = "bytes that are not UTF-8 drop their key with a warning; 2.4 raises UnicodeDecodeError from the call"
SECONDS_OFFSET = "a timestamp whose UTC offset has seconds is sent in UTC (RFC 3339 has none); 2.4 sends +01:00:30"
# On the wire only, for every row (the returned message keeps None values as 2.4's does).
NULL_TOP_LEVEL = "top-level keys whose value is None are left out of the JSON; 2.4 sends them as null"

NONE_KEYS, JSON_VALUES, FALSY_REJECTED = Gap.NONE_KEYS, Gap.JSON_VALUES, Gap.FALSY_REJECTED


@dataclass(frozen=True)
class Row:
    """One case: a call, the gaps it shows today, and a kept divergence if any."""

    id: str
    call: Call
    gaps: frozenset[Gap]
    divergence: Divergence | None
    off_wire: str | None  # why this row is not sent, if it is not


# Gaps since closed: the rows that named them now pass (the marks would be XPASS).
CLOSED_GAPS = frozenset({Gap.NONE_KEYS, Gap.JSON_VALUES, Gap.FALSY_REJECTED})


def row(
    id_: str,
    call: Call,
    *gaps: Gap,
    diverges: Divergence | None = None,
    off_wire: str | None = None,
) -> Row:
    return Row(id_, call, frozenset(gaps) - CLOSED_GAPS, diverges, off_wire)


def twin(reason: str, call: Call, reference_raises: type[Exception] | None = None) -> Divergence:
    """Ours returns for the row's call what 2.4 returns for ``call``."""
    return Divergence(reason, twin=call, reference_raises=reference_raises)


def wire_twin(reason: str, call: Call) -> Divergence:
    """Ours returns what 2.4 returns for the row's call, and sends what 2.4 sends for ``call``."""
    return Divergence(reason, twin=call, wire_only=True)


VALUES = {"s": "héllo ✓ 😀", "i": 42, "f": 1.5, "t": True, "n": None, "l": [1, "a"], "d": {"k": "v"}}

ROWS = [
    # ids
    row("track-user-id", track("user-1", "Signed Up"), NONE_KEYS),
    row("track-anonymous-id", track(event="Signed Up", anonymous_id="anon-1"), NONE_KEYS),
    row("track-both-ids", track("user-1", "Signed Up", anonymous_id="anon-1")),
    row("track-user-id-int", track(42, "Signed Up"), NONE_KEYS),
    row("track-user-id-negative", track(-7, "Signed Up"), NONE_KEYS),
    row("track-user-id-float", track(4.5, "Signed Up"), NONE_KEYS),
    row("track-user-id-big-int", track(2**70, "Signed Up"), NONE_KEYS),
    row("track-anonymous-id-int", track(event="Signed Up", anonymous_id=99), NONE_KEYS),
    row(
        "track-user-id-zero",
        track(0, "Signed Up"),
        NONE_KEYS,
        diverges=twin(ZERO_ID, track("0", "Signed Up"), AssertionError),
    ),
    row("track-anonymous-id-zero", track(event="Signed Up", anonymous_id=0), NONE_KEYS),  # 2.4: None or 0 -> 0
    row(
        "track-user-id-uuid",
        track(UUID_A, "Signed Up"),
        NONE_KEYS,
        diverges=twin(UUID_ID, track(str(UUID_A), "Signed Up"), AssertionError),
    ),
    row(
        "identify-anonymous-id-uuid",
        identify(anonymous_id=UUID_B),
        NONE_KEYS,
        diverges=twin(UUID_ID, identify(anonymous_id=str(UUID_B)), AssertionError),
    ),
    row("identify-user-id-bool", identify(True), diverges=Divergence(BOOL_ID, ours_raises=ValidationError)),
    row(
        "track-user-id-empty-with-anonymous-id",
        track("", "Signed Up", anonymous_id="anon-1"),
        NONE_KEYS,
        diverges=twin(EMPTY_ID, track(None, "Signed Up", anonymous_id="anon-1")),
    ),
    row(
        "track-ids-all-empty",
        track("", "Signed Up", anonymous_id=""),
        diverges=Divergence(EMPTY_ID, ours_raises=ValidationError),
    ),
    # message ids
    row("track-message-id-str", track("user-1", "E", message_id="msg-explicit"), NONE_KEYS),
    row("track-message-id-int", track("user-1", "E", message_id=12345), NONE_KEYS),
    row("track-message-id-zero", track("user-1", "E", message_id=0), NONE_KEYS),
    row("track-message-id-uuid", track("user-1", "E", message_id=UUID_A), NONE_KEYS),
    # properties: given or not, empty or not, and every kind of value
    row("track-properties-none", track("user-1", "E", None), NONE_KEYS),
    row("track-properties-empty", track("user-1", "E", {}), NONE_KEYS),
    row("track-properties-plain", track("user-1", "E", VALUES), NONE_KEYS),
    row("track-properties-list-empty", track("user-1", "E", []), NONE_KEYS, FALSY_REJECTED),
    row("track-properties-str-empty", track("user-1", "E", ""), NONE_KEYS, FALSY_REJECTED),
    row("track-value-date", track("user-1", "E", {"born": date(1981, 2, 2)}), NONE_KEYS, JSON_VALUES),
    row("track-value-datetime-utc", track("user-1", "E", {"at": AT_UTC}), NONE_KEYS, JSON_VALUES),
    row("track-value-datetime-offset", track("user-1", "E", {"at": AT_PLUS_0530}), NONE_KEYS, JSON_VALUES),
    row("track-value-datetime-naive", track("user-1", "E", {"at": AT_NAIVE_OLD}), NONE_KEYS, JSON_VALUES),
    row(
        "track-value-dates-in-list",
        track("user-1", "E", {"days": (date(2020, 1, 1), AT_UTC)}),
        NONE_KEYS,
        JSON_VALUES,
    ),
    row("track-value-decimal", track("user-1", "E", {"price": Decimal("19.99")}), NONE_KEYS),
    row(
        "track-value-decimal-integral",
        track("user-1", "E", {"n": Decimal("3")}),
        NONE_KEYS,
        diverges=wire_twin(INTEGRAL_DECIMAL, track("user-1", "E", {"n": 3})),
    ),
    row("track-value-enum-str", track("user-1", "E", {"color": Color.RED}), NONE_KEYS),
    row("track-value-enum-int", track("user-1", "E", {"rank": Rank.FIRST}), NONE_KEYS),
    row("track-value-int-enum", track("user-1", "E", {"size": Size.LARGE}), NONE_KEYS),
    row("track-value-tuple", track("user-1", "E", {"pair": (1, "a")}), NONE_KEYS),
    row("track-value-set", track("user-1", "E", {"tags": {"only"}}), NONE_KEYS),
    row(
        "track-value-frozenset",
        track("user-1", "E", {"tags": frozenset({"only"})}),
        NONE_KEYS,
        diverges=twin(FROZENSET, track("user-1", "E", {"tags": ["only"]})),
    ),
    row(
        "track-value-nested",
        track("user-1", "E", {"a": {"b": [1, {"c": [True, None, 2.5]}], "e": {}}, "l": [[], [[1]]]}),
        NONE_KEYS,
    ),
    row("track-value-bools", track("user-1", "E", {"yes": True, "no": False}), NONE_KEYS),
    row(
        "track-value-floats",
        track("user-1", "E", {"half": 0.5, "neg_zero": -0.0, "big": 1e300, "tiny": 5e-324, "whole": 2.0}),
        NONE_KEYS,
    ),
    row("track-value-ints", track("user-1", "E", {"zero": 0, "neg": -1, "u64": 2**64 - 1, "big": 2**70}), NONE_KEYS),
    row("track-value-bytes", track("user-1", "E", {"raw": b"abc"}), NONE_KEYS),
    row(
        "track-value-bytes-invalid",
        track("user-1", "E", {"raw": b"\xff", "k": 1}),
        NONE_KEYS,
        diverges=twin(INVALID_BYTES, track("user-1", "E", {"k": 1}), UnicodeDecodeError),
    ),
    row(
        "track-value-uuid",
        track("user-1", "E", {"id": UUID_A}),
        NONE_KEYS,
        diverges=twin(UUID_VALUE, track("user-1", "E", {"id": str(UUID_A)})),
    ),
    row("track-value-unknown-object", track("user-1", "E", {"o": object(), "k": 1}), NONE_KEYS),
    row(
        "track-value-unknown-object-in-list",
        track("user-1", "E", {"l": [1, object()], "k": 1}),
        NONE_KEYS,
        diverges=twin(OBJECT_IN_LIST, track("user-1", "E", {"l": [1], "k": 1})),
    ),
    row(
        "track-value-dataclass",
        track("user-1", "E", {"plan": Plan("pro", 3)}),
        NONE_KEYS,
        diverges=twin(DATACLASS, track("user-1", "E", {"plan": {"name": "pro", "seats": 3}})),
    ),
    row(
        "track-value-nan-inf",
        track("user-1", "E", {"nan": math.nan, "inf": -math.inf, "k": 1}),
        NONE_KEYS,
        diverges=twin(NON_FINITE, track("user-1", "E", {"nan": None, "inf": None, "k": 1})),
    ),
    row(
        "track-value-non-str-keys",
        track("user-1", "E", {1: "int", 2.5: "float", False: "bool"}),
        NONE_KEYS,
        diverges=twin(NON_STR_KEYS, track("user-1", "E", {"1": "int", "2.5": "float", "false": "bool"})),
    ),
    row(
        "track-value-none-key",
        track("user-1", "E", {None: "x", "k": 1}),
        NONE_KEYS,
        diverges=twin(NONE_KEY, track("user-1", "E", {"k": 1})),
    ),
    # context and integrations
    row("track-context-empty", track("user-1", "E", context={}), NONE_KEYS),
    row("track-context-given", track("user-1", "E", context={"ip": "203.0.113.9", "locale": "fr-FR"}), NONE_KEYS),
    row(
        "track-context-values",
        track("user-1", "E", context={"traits": {"since": date(2019, 4, 1), "tier": Color.RED}}),
        NONE_KEYS,
        JSON_VALUES,
    ),
    row("track-context-own-library", track("user-1", "E", context={"library": {"name": "mine"}}), NONE_KEYS),
    row("track-context-list-empty", track("user-1", "E", context=[]), NONE_KEYS, FALSY_REJECTED),
    row("track-integrations-empty", track("user-1", "E", integrations={}), NONE_KEYS),
    row("track-integrations-given", track("user-1", "E", integrations={"All": False, "Mixpanel": True}), NONE_KEYS),
    row("track-integrations-list-empty", track("user-1", "E", integrations=[]), NONE_KEYS, FALSY_REJECTED),
    # timestamps
    row("track-timestamp-utc", track("user-1", "E", timestamp=AT_UTC), NONE_KEYS),
    row("track-timestamp-offset-plus", track("user-1", "E", timestamp=AT_PLUS_0530), NONE_KEYS),
    row("track-timestamp-offset-minus", track("user-1", "E", timestamp=AT_MINUS_08), NONE_KEYS),
    row("track-timestamp-naive-old", track("user-1", "E", timestamp=AT_NAIVE_OLD), NONE_KEYS),
    row("track-timestamp-naive-now", track("user-1", "E", timestamp=NAIVE_NOW), NONE_KEYS),
    row(
        "track-timestamp-offset-seconds",
        track("user-1", "E", timestamp=AT_SECONDS_OFFSET),
        NONE_KEYS,
        diverges=twin(SECONDS_OFFSET, track("user-1", "E", timestamp=AT_SECONDS_OFFSET.astimezone(timezone.utc))),
    ),
    # track's event
    row(
        "track-event-empty",
        track("user-1", ""),
        NONE_KEYS,
        off_wire="the collector, like Segment's API, rejects a track with an empty event",
    ),
    row(
        "track-everything",
        track(
            "user-1",
            "Order Completed",
            {"total": Decimal("10.50"), "items": ("a", "b"), "at": AT_UTC},
            {"ip": "203.0.113.9"},
            AT_MINUS_08,
            "anon-1",
            {"All": True},
            "msg-everything",
        ),
        JSON_VALUES,
    ),
    # identify
    row("identify-user-id", identify("user-1"), NONE_KEYS),
    row("identify-anonymous-id", identify(anonymous_id="anon-1"), NONE_KEYS),
    row("identify-traits", identify("user-1", {"email": "a@example.com", "age": 30, **VALUES}), NONE_KEYS),
    row(
        "identify-traits-dates",
        identify("user-1", {"since": date(2019, 4, 1), "seen": AT_PLUS_0530}),
        NONE_KEYS,
        JSON_VALUES,
    ),
    row("identify-traits-empty", identify("user-1", {}), NONE_KEYS),
    row("identify-traits-list-empty", identify("user-1", []), NONE_KEYS, FALSY_REJECTED),
    row(
        "identify-everything",
        identify("user-1", {"plan": "pro"}, {"ip": "203.0.113.9"}, AT_UTC, "anon-1", {"All": False}, "msg-identify"),
    ),
    # group
    row("group-basic", group("user-1", "group-1", {"name": "Acme"}), NONE_KEYS),
    row("group-anonymous-id", group(anonymous_id="anon-1", group_id="group-1"), NONE_KEYS),
    row(
        "group-id-int",
        group("user-1", 7),
        NONE_KEYS,
        diverges=wire_twin(NUMERIC_REF_ID, group("user-1", "7")),
    ),
    row(
        "group-id-zero",
        group("user-1", 0),
        NONE_KEYS,
        diverges=wire_twin(NUMERIC_REF_ID, group("user-1", "0")),
    ),
    row(
        "group-id-uuid",
        group("user-1", UUID_B),
        NONE_KEYS,
        diverges=twin(UUID_ID, group("user-1", str(UUID_B)), AssertionError),
    ),
    row("group-traits-dates", group("user-1", "group-1", {"founded": date(1999, 9, 9)}), NONE_KEYS, JSON_VALUES),
    # alias (2.4 returns anonymousId=None here too)
    row("alias-basic", alias("anon-1", "user-1"), NONE_KEYS),
    row("alias-ids-int", alias(5, 6), NONE_KEYS, diverges=wire_twin(NUMERIC_REF_ID, alias("5", 6))),
    row("alias-ids-zero", alias(0, 0), NONE_KEYS, diverges=wire_twin(NUMERIC_REF_ID, alias("0", 0))),
    row(
        "alias-previous-id-uuid",
        alias(UUID_A, "user-1"),
        NONE_KEYS,
        diverges=twin(UUID_ID, alias(str(UUID_A), "user-1"), AssertionError),
    ),
    row(
        "alias-everything",
        alias("anon-1", "user-1", {"ip": "203.0.113.9"}, AT_UTC, {"All": True}, "msg-alias"),
        NONE_KEYS,
    ),
    # page and screen: name and category given or not
    row("page-name-and-category", page("user-1", "Docs", "Install", {"path": "/install"}), NONE_KEYS),
    row("page-name-only", page("user-1", name="Home"), NONE_KEYS),
    row("page-category-only", page("user-1", category="Docs"), NONE_KEYS),
    row("page-neither", page("user-1"), NONE_KEYS),
    row("page-name-empty", page("user-1", name=""), NONE_KEYS),
    row("page-name-zero", page("user-1", name=0), diverges=twin(FALSY_NAME, page("user-1"))),
    row("page-category-zero", page("user-1", category=0), diverges=twin(FALSY_NAME, page("user-1"))),
    row("page-properties-dates", page("user-1", name="Home", properties={"at": AT_UTC}), NONE_KEYS, JSON_VALUES),
    row("page-anonymous-id", page(anonymous_id="anon-1", name="Home"), NONE_KEYS),
    row("screen-name-and-category", screen("user-1", "Onboarding", "Welcome", {"step": 1}), NONE_KEYS),
    row("screen-name-only", screen("user-1", name="Settings"), NONE_KEYS),
    row("screen-neither", screen(anonymous_id="anon-1"), NONE_KEYS),
    row("screen-properties-str-empty", screen("user-1", name="Home", properties=""), NONE_KEYS, FALSY_REJECTED),
    row(
        "screen-everything",
        screen("user-1", "Cat", "Name", {"n": Decimal("0.1")}, {"os": {"name": "iOS"}}, AT_UTC, "anon-1", None, 7),
    ),
]


def returned_params(rows: Iterable[Row]) -> list[Any]:
    return [pytest.param(case, id=case.id, marks=gap_marks(case.gaps)) for case in rows]


def wire_params(rows: Iterable[Row]) -> list[Any]:
    return [
        pytest.param(case, id=case.id, marks=gap_marks(case.gaps & WIRE_GAPS))
        for case in rows
        if case.off_wire is None and not (case.divergence and case.divergence.ours_raises)
    ]


@pytest.fixture(scope="module")
def reference() -> Any:
    return ReferenceClient(WRITE_KEY, send=False)


@pytest.fixture(scope="module")
def ours() -> Iterator[Client]:
    client = Client(WRITE_KEY, send=False)
    yield client
    client.shutdown()


def test_row_ids_are_unique() -> None:
    assert len({case.id for case in ROWS}) == len(ROWS)


TIMESTAMP_SHAPE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


def comparable(message: dict[str, Any], call: Call, library: dict[str, str]) -> dict[str, Any]:
    """``message`` less the fields that must differ, after checking their shape."""
    message = {**message, "context": dict(message["context"])}
    assert message["context"].pop("library") == library
    if not call.given("message_id"):
        uuid.UUID(message.pop("messageId"))  # a fresh UUID4 string on both sides
    if not call.given("timestamp"):
        assert TIMESTAMP_SHAPE.fullmatch(message.pop("timestamp")), "UTC now, milliseconds"
    return message


REFERENCE_LIBRARY = {"name": "analytics-python", "version": "2.4.0"}
OUR_LIBRARY = {"name": LIBRARY_NAME, "version": LIBRARY_VERSION}


@pytest.mark.parametrize("case", returned_params(ROWS))
def test_returned_message_equals_2_4(case: Row, reference: Any, ours: Client) -> None:
    __tracebackhide__ = hide_known_gaps
    now = datetime.now()
    divergence = case.divergence
    reference_call = case.call
    if divergence is not None and not divergence.wire_only:
        if divergence.reference_raises is not None:
            with pytest.raises(divergence.reference_raises):
                case.call.run(reference, now)
        if divergence.ours_raises is not None:
            assert case.call.run(reference, now)[0]
            with pytest.raises(divergence.ours_raises):
                case.call.run(ours, now)
            return
        assert divergence.twin is not None
        reference_call = divergence.twin
    reference_ok, reference_message = reference_call.run(reference, now)
    assert reference_ok
    try:
        ours_ok, ours_message = case.call.run(ours, now)
    except ValidationError as exc:
        check_gaps(case.gaps, [], case.call, exc)
        return
    assert ours_ok
    found = differences(
        comparable(reference_message, reference_call, REFERENCE_LIBRARY),
        comparable(ours_message, case.call, OUR_LIBRARY),
    )
    check_gaps(case.gaps, found, case.call, None)


def test_caller_context_is_left_as_given(reference: Any, ours: Client) -> None:
    """Divergence: ours never writes into the caller's dicts; 2.4 adds ``library`` to the context passed."""
    reference_context: dict[str, Any] = {"ip": "203.0.113.9"}
    reference.track("user-1", "E", context=reference_context)
    assert reference_context["library"] == REFERENCE_LIBRARY
    our_context: dict[str, Any] = {"ip": "203.0.113.9"}
    properties: dict[str, Any] = {"at": AT_UTC, "tags": {"a"}}
    ours.track("user-1", "E", properties, context=our_context)
    assert our_context == {"ip": "203.0.113.9"}
    assert properties == {"at": AT_UTC, "tags": {"a"}}


# --- the wire -----------------------------------------------------------------------------


@dataclass
class WireRun:
    """What both clients sent for each wire row: stored JSON by messageId, and what ours raised."""

    reference: dict[str, dict[str, Any]]
    ours: dict[str, dict[str, Any]]
    ours_raised: dict[str, Exception]
    ours_errors: list[Exception]


def wire_calls(case: Row) -> tuple[Call, Call]:
    """(2.4's call, our call) for a row, both with one explicit messageId."""
    ours_call = case.call
    if not case.call.given("message_id"):
        ours_call = case.call.with_message_id(f"wire-{case.id}")
    message_id = ours_call.arguments()["message_id"]
    reference_call = case.divergence.twin if case.divergence and case.divergence.twin else case.call
    return reference_call.with_message_id(message_id), ours_call


@pytest.fixture(scope="module")
def wire() -> Iterator[WireRun]:
    """Every wire row sent by 2.4 (sync_mode: one request per call) and by ours, each to its own collector."""
    rows = [param.values[0] for param in wire_params(ROWS)]
    errors: list[Exception] = []
    with Collector() as reference_collector, Collector() as ours_collector:
        reference = ReferenceClient(WRITE_KEY, host=reference_collector.url, sync_mode=True)
        ours = Client(WRITE_KEY, host=ours_collector.url, on_error=lambda exc, batch: errors.append(exc))
        raised: dict[str, Exception] = {}
        for case in rows:
            reference_call, ours_call = wire_calls(case)
            now = datetime.now()
            assert reference_call.run(reference, now)[0]
            try:
                assert ours_call.run(ours, now)[0]
            except ValidationError as exc:
                raised[case.id] = exc
        assert ours.flush(timeout=10)
        ours.shutdown()
        assert reference_collector.wait_for(len(rows), timeout=10)
        assert ours_collector.wait_for(len(rows) - len(raised), timeout=10)
        yield WireRun(
            {m.message_id: m.json for m in reference_collector.messages()},
            {m.message_id: m.json for m in ours_collector.messages()},
            raised,
            errors,
        )


def wire_comparable(message: dict[str, Any], call: Call, library: dict[str, str]) -> dict[str, Any]:
    message = {key: value for key, value in message.items() if key not in ("sentAt", "writeKey")}
    return comparable(message, call, library)


@pytest.mark.parametrize("case", wire_params(ROWS))
def test_wire_json_equals_2_4(case: Row, wire: WireRun) -> None:
    __tracebackhide__ = hide_known_gaps
    reference_call, ours_call = wire_calls(case)
    message_id = str(ours_call.arguments()["message_id"])
    if case.id in wire.ours_raised:
        check_gaps(case.gaps & WIRE_GAPS, [], ours_call, wire.ours_raised[case.id])
    assert not wire.ours_errors
    assert message_id in wire.ours, f"ours did not deliver {message_id}"
    ours_message = wire.ours[message_id]
    assert None not in ours_message.values(), NULL_TOP_LEVEL
    reference_message = {k: v for k, v in wire.reference[message_id].items() if v is not None}  # NULL_TOP_LEVEL
    found = differences(
        wire_comparable(reference_message, reference_call, REFERENCE_LIBRARY),
        wire_comparable(ours_message, ours_call, OUR_LIBRARY),
    )
    assert not found, "differs from 2.4 on the wire:\n  " + "\n  ".join(map(str, found))
