"""Building messages (segment_core/_message_builder.py) and their typed form (_messages.py).

Tables of calls: every validation rule of every type, each row checked against
segment-analytics-python 2.4 as well, so that where we differ from it we differ
on purpose (``DIVERGES_FROM_REFERENCE`` says why). Then stamping, encoding,
the size limit, the Structs and the helpers, one behaviour per test.
"""

from __future__ import annotations

import ast
import json
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

import segment_core._message_builder as build_module
from segment_core._errors import MessageTooLarge, ValidationError
from segment_core._message_builder import (
    MAX_DROPPED_WARNINGS,
    BuiltMessage,
    build_from_struct,
    build_message,
    format_timestamp,
    message_id_from_bits,
)
from segment_core._messages import Alias, Group, Identify, Message, MessageType, Page, Screen, Track
from segment_core.limits import LIBRARY_NAME, LIBRARY_VERSION, MAX_MESSAGE_BYTES

# 2026-09-21T14:13:20.123Z
WALL = 1_790_000_000.123
WALL_TEXT = "2026-09-21T14:13:20.123+00:00"
GENERATED_ID = "generated-id"
U = uuid.UUID("12345678-1234-5678-1234-567812345678")
IST = timezone(timedelta(hours=5, minutes=30))
LIBRARY = {"name": LIBRARY_NAME, "version": LIBRARY_VERSION}


class Opaque:
    def __repr__(self) -> str:
        return "Opaque(secret=hunter2)"


def new_id() -> str:
    return GENERATED_ID


def build(type_: str, **kwargs: Any) -> BuiltMessage:
    return build_message(type_, wall=WALL, new_message_id=new_id, **kwargs)


def strict_loads(data: bytes) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(data, parse_constant=refuse)


def wire(built: BuiltMessage) -> dict[str, Any]:
    """The message as sent."""
    sent: dict[str, Any] = strict_loads(built.data)
    return sent


def as_json(value: object) -> Any:
    """A returned value as JSON writes it: datetimes and dates as isoformat() text."""
    return json.loads(json.dumps(value, default=lambda v: v.isoformat()))


def assert_returned_shows_what_was_sent(built: BuiltMessage) -> None:
    """Every key sent is in the returned message with the same value as JSON; the rest are None."""
    sent, returned = wire(built), built.message
    assert {key for key, value in returned.items() if value is not None} == set(sent)
    for key, value in sent.items():
        if key in ("groupId", "previousId") and not isinstance(returned[key], str):
            assert isinstance(returned[key], (int, float)), "a number given stays a number, as 2.4 returns it"
            continue
        assert as_json(returned[key]) == value, key


# --- validation -------------------------------------------------------------

VALID: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    # id, type, arguments, expected subset of the message
    ("track-user-id", "track", {"user_id": "u", "event": "E"}, {"userId": "u", "event": "E", "properties": {}}),
    ("track-anonymous-id", "track", {"anonymous_id": "a", "event": "E"}, {"anonymousId": "a"}),
    # Any falsy dict argument is an empty dict, as segment-analytics-python reads `properties or {}`.
    ("track-properties-empty-list", "track", {"user_id": "u", "event": "E", "properties": []}, {"properties": {}}),
    ("identify-traits-empty-str", "identify", {"user_id": "u", "traits": ""}, {"traits": {}}),
    ("page-name-zero", "page", {"user_id": "u", "name": 0}, {"properties": {}}),
    (
        "track-both-ids",
        "track",
        {"user_id": "u", "anonymous_id": "a", "event": "E"},
        {"userId": "u", "anonymousId": "a"},
    ),
    ("track-zero-id", "track", {"user_id": 0, "event": "E"}, {"userId": "0"}),
    ("track-zero-anonymous-id", "track", {"anonymous_id": 0, "event": "E"}, {"anonymousId": "0"}),
    ("track-zero-float-id", "track", {"anonymous_id": 0.0, "event": "E"}, {"anonymousId": "0.0"}),
    ("track-int-id", "track", {"user_id": 42, "event": "E"}, {"userId": "42"}),
    ("track-big-int-id", "track", {"user_id": 2**70, "event": "E"}, {"userId": str(2**70)}),
    ("track-float-id", "track", {"user_id": 1.5, "event": "E"}, {"userId": "1.5"}),
    ("track-decimal-id", "track", {"user_id": Decimal("12"), "event": "E"}, {"userId": "12"}),
    ("track-uuid-id", "track", {"user_id": U, "event": "E"}, {"userId": str(U)}),
    ("track-uuid-anonymous-id", "track", {"anonymous_id": U, "event": "E"}, {"anonymousId": str(U)}),
    (
        "track-empty-user-id-is-absent",
        "track",
        {"user_id": "", "anonymous_id": "a", "event": "E"},
        {"anonymousId": "a"},
    ),
    ("track-empty-event", "track", {"user_id": "u", "event": ""}, {"event": ""}),
    (
        "track-properties",
        "track",
        {"user_id": "u", "event": "E", "properties": {"a": 1, "b": [1, 2]}},
        {"properties": {"a": 1, "b": [1, 2]}},
    ),
    ("track-properties-none", "track", {"user_id": "u", "event": "E", "properties": None}, {"properties": {}}),
    ("identify", "identify", {"user_id": "u"}, {"userId": "u", "traits": {}}),
    ("identify-traits", "identify", {"anonymous_id": "a", "traits": {"email": "e"}}, {"traits": {"email": "e"}}),
    ("group", "group", {"user_id": "u", "group_id": "g"}, {"groupId": "g", "traits": {}}),
    ("group-zero-group-id", "group", {"user_id": "u", "group_id": 0}, {"groupId": "0"}),
    ("group-uuid-group-id", "group", {"user_id": "u", "group_id": U}, {"groupId": str(U)}),
    ("group-traits", "group", {"user_id": "u", "group_id": 7, "traits": {"n": 1}}, {"traits": {"n": 1}}),
    ("alias", "alias", {"previous_id": "p", "user_id": "u"}, {"previousId": "p", "userId": "u"}),
    ("alias-zero-ids", "alias", {"previous_id": 0, "user_id": 0}, {"previousId": "0", "userId": "0"}),
    (
        "alias-with-anonymous-id",
        "alias",
        {"previous_id": "p", "user_id": "u", "anonymous_id": "a"},
        {"anonymousId": "a"},
    ),
    ("page", "page", {"user_id": "u"}, {"properties": {}}),
    ("page-name-category", "page", {"user_id": "u", "name": "N", "category": "C"}, {"name": "N", "category": "C"}),
    ("page-empty-name", "page", {"user_id": "u", "name": ""}, {"name": ""}),
    ("page-properties", "page", {"user_id": "u", "properties": {"url": "x"}}, {"properties": {"url": "x"}}),
    ("screen", "screen", {"anonymous_id": "a", "name": "Home"}, {"name": "Home", "properties": {}}),
    ("screen-category", "screen", {"user_id": "u", "category": "C"}, {"category": "C"}),
    (
        "context",
        "track",
        {"user_id": "u", "event": "E", "context": {"ip": "1"}},
        {"context": {"ip": "1", "library": LIBRARY}},
    ),
    (
        "integrations",
        "track",
        {"user_id": "u", "event": "E", "integrations": {"All": False}},
        {"integrations": {"All": False}},
    ),
    ("message-id", "identify", {"user_id": "u", "message_id": "m"}, {"messageId": "m"}),
    ("message-id-int", "identify", {"user_id": "u", "message_id": 5}, {"messageId": "5"}),
    ("message-id-uuid", "identify", {"user_id": "u", "message_id": U}, {"messageId": str(U)}),
    (
        "timestamp",
        "identify",
        {"user_id": "u", "timestamp": datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc)},
        {"timestamp": "2020-01-02T03:04:05.000+00:00"},
    ),
]

INVALID: list[tuple[str, str, dict[str, Any], str]] = [
    # id, type, arguments, the field ValidationError names
    ("type-unknown", "bogus", {"user_id": "u"}, "type"),
    ("type-case", "Track", {"user_id": "u", "event": "E"}, "type"),
    ("track-no-ids", "track", {"event": "E"}, "user_id or anonymous_id"),
    ("track-empty-ids", "track", {"user_id": "", "anonymous_id": "", "event": "E"}, "user_id or anonymous_id"),
    ("track-empty-user-id-only", "track", {"user_id": "", "event": "E"}, "user_id or anonymous_id"),
    ("track-list-user-id", "track", {"user_id": ["u"], "event": "E"}, "user_id"),
    ("track-dict-anonymous-id", "track", {"user_id": "u", "anonymous_id": {}, "event": "E"}, "anonymous_id"),
    ("track-bool-user-id", "track", {"user_id": True, "event": "E"}, "user_id"),
    ("track-bool-anonymous-id", "track", {"anonymous_id": False, "user_id": "u", "event": "E"}, "anonymous_id"),
    ("track-nan-user-id", "track", {"user_id": float("nan"), "event": "E"}, "user_id"),
    ("track-inf-user-id", "track", {"user_id": float("inf"), "event": "E"}, "user_id"),
    ("track-decimal-nan-user-id", "track", {"user_id": Decimal("NaN"), "event": "E"}, "user_id"),
    ("track-bytes-user-id", "track", {"user_id": b"u", "event": "E"}, "user_id"),
    ("track-no-event", "track", {"user_id": "u"}, "event"),
    ("track-int-event", "track", {"user_id": "u", "event": 5}, "event"),
    ("track-properties-list", "track", {"user_id": "u", "event": "E", "properties": [1]}, "properties"),
    ("track-properties-str", "track", {"user_id": "u", "event": "E", "properties": "a=1"}, "properties"),
    ("track-traits-given", "track", {"user_id": "u", "event": "E", "traits": {}}, "traits"),
    ("track-name-given", "track", {"user_id": "u", "event": "E", "name": "N"}, "name"),
    ("identify-no-ids", "identify", {"traits": {}}, "user_id or anonymous_id"),
    ("identify-traits-str", "identify", {"user_id": "u", "traits": "x"}, "traits"),
    ("identify-event-given", "identify", {"user_id": "u", "event": "E"}, "event"),
    ("identify-properties-given", "identify", {"user_id": "u", "properties": {}}, "properties"),
    ("group-no-group-id", "group", {"user_id": "u"}, "group_id"),
    ("group-empty-group-id", "group", {"user_id": "u", "group_id": ""}, "group_id"),
    ("group-bool-group-id", "group", {"user_id": "u", "group_id": True}, "group_id"),
    ("group-list-group-id", "group", {"user_id": "u", "group_id": ["g"]}, "group_id"),
    ("group-no-ids", "group", {"group_id": "g"}, "user_id or anonymous_id"),
    ("group-traits-list", "group", {"user_id": "u", "group_id": "g", "traits": [1]}, "traits"),
    ("alias-no-previous-id", "alias", {"user_id": "u"}, "previous_id"),
    ("alias-empty-previous-id", "alias", {"user_id": "u", "previous_id": ""}, "previous_id"),
    ("alias-dict-previous-id", "alias", {"user_id": "u", "previous_id": {}}, "previous_id"),
    ("alias-no-user-id", "alias", {"previous_id": "p"}, "user_id"),
    ("alias-anonymous-id-only", "alias", {"previous_id": "p", "anonymous_id": "a"}, "user_id"),
    ("alias-empty-user-id", "alias", {"previous_id": "p", "user_id": ""}, "user_id"),
    ("alias-traits-given", "alias", {"previous_id": "p", "user_id": "u", "traits": {}}, "traits"),
    ("page-no-ids", "page", {"name": "N"}, "user_id or anonymous_id"),
    ("page-int-name", "page", {"user_id": "u", "name": 5}, "name"),
    ("page-int-category", "page", {"user_id": "u", "category": 5}, "category"),
    ("page-event-given", "page", {"user_id": "u", "event": "E"}, "event"),
    ("page-properties-list", "page", {"user_id": "u", "properties": [1]}, "properties"),
    ("screen-list-name", "screen", {"user_id": "u", "name": ["N"]}, "name"),
    ("screen-group-id-given", "screen", {"user_id": "u", "group_id": "g"}, "group_id"),
    ("context-list", "track", {"user_id": "u", "event": "E", "context": [1]}, "context"),
    ("integrations-str", "identify", {"user_id": "u", "integrations": "x"}, "integrations"),
    ("timestamp-str", "identify", {"user_id": "u", "timestamp": "2020-01-01T00:00:00Z"}, "timestamp"),
    ("timestamp-date", "identify", {"user_id": "u", "timestamp": date(2020, 1, 1)}, "timestamp"),
    ("timestamp-epoch-number", "identify", {"user_id": "u", "timestamp": 1_700_000_000}, "timestamp"),
    ("message-id-list", "identify", {"user_id": "u", "message_id": ["m"]}, "message_id"),
    ("message-id-bool", "identify", {"user_id": "u", "message_id": True}, "message_id"),
]

# Rows where segment-analytics-python 2.4 decides otherwise, and why we do not follow it.
DIVERGES_FROM_REFERENCE = {
    "track-zero-id": "0 is a valid id (the reference tests `user_id or anonymous_id`)",
    "track-uuid-id": "UUIDs are ids (the reference accepts only numbers.Number and str)",
    "track-uuid-anonymous-id": "UUIDs are ids",
    "group-uuid-group-id": "UUIDs are ids",
    "alias-with-anonymous-id": "anonymousId is a common field of every message type",
    "track-empty-ids": "an empty string is never an id (the reference accepts '' or '', a str)",
    "track-dict-anonymous-id": "every id given is checked (the reference checks the first truthy one only)",
    "track-bool-user-id": "a bool is never an identity (the reference sends 'True')",
    "track-bool-anonymous-id": "a bool is never an identity (the reference treats False as absent)",
    "track-nan-user-id": "'nan' is not an id",
    "track-inf-user-id": "'inf' is not an id",
    "track-decimal-nan-user-id": "'NaN' is not an id",
    "group-empty-group-id": "an empty string is no id, for every id field",
    "group-bool-group-id": "a bool is never an identity",
    "alias-empty-previous-id": "an empty string is no id, for every id field",
    "alias-empty-user-id": "an empty string is no id, for every id field",
    "message-id-list": "a messageId is an id (the reference sends str() of anything)",
    "message-id-bool": "a messageId is an id (the reference sends 'True')",
}


def _valid_params() -> list[Any]:
    return [pytest.param(type_, kwargs, expected, id=id_) for id_, type_, kwargs, expected in VALID]


def _invalid_params() -> list[Any]:
    return [pytest.param(type_, kwargs, field, id=id_) for id_, type_, kwargs, field in INVALID]


@pytest.mark.parametrize(("type_", "kwargs", "expected"), _valid_params())
def test_valid_calls(type_: str, kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    built = build(type_, **kwargs)
    sent = wire(built)
    for key, value in expected.items():
        assert sent[key] == value, key
    assert sent["type"] == built.message["type"] == type_
    assert_returned_shows_what_was_sent(built)
    decoded = msgspec.json.decode(built.data, type=Message)
    assert decoded.__struct_config__.tag == type_


@pytest.mark.parametrize(("type_", "kwargs", "field"), _invalid_params())
def test_invalid_calls(type_: str, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        build(type_, **kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field} must be ")


def _reference_accepts(type_: str, kwargs: dict[str, Any]) -> bool:
    from segment.analytics.client import Client  # the reference, a test dependency

    client = Client(write_key="test", send=False)
    try:
        getattr(client, type_)(**kwargs)
    except (AssertionError, TypeError):
        return False
    return True


REFERENCE_ROWS = [
    pytest.param(type_, kwargs, True, id=id_) for id_, type_, kwargs, _ in VALID if not id_.startswith("type-")
] + [pytest.param(type_, kwargs, False, id=id_) for id_, type_, kwargs, _ in INVALID if not id_.startswith("type-")]


@pytest.mark.parametrize(("type_", "kwargs", "we_accept"), REFERENCE_ROWS)
def test_validation_agrees_with_the_reference_client(
    request: pytest.FixtureRequest, type_: str, kwargs: dict[str, Any], we_accept: bool
) -> None:
    row_id = request.node.callspec.id
    reference_accepts = _reference_accepts(type_, kwargs)
    if row_id in DIVERGES_FROM_REFERENCE:
        assert reference_accepts != we_accept, f"no longer a divergence: {row_id}"
    else:
        assert reference_accepts == we_accept


def test_every_divergence_names_a_row() -> None:
    ids = {row[0] for row in VALID} | {row[0] for row in INVALID}
    assert set(DIVERGES_FROM_REFERENCE) <= ids


def test_validation_errors_are_assertion_and_value_errors() -> None:
    with pytest.raises(AssertionError):
        build("track", event="E")
    with pytest.raises(ValueError):
        build("track", event="E")


def test_validation_errors_never_include_the_value() -> None:
    with pytest.raises(ValidationError) as info:
        build("track", user_id=["hunter2"], event="E")
    assert "hunter2" not in str(info.value)
    assert info.value.got_type == "list"


def test_a_message_type_member_is_a_type() -> None:
    built = build(MessageType.GROUP, user_id="u", group_id="g")
    assert built.message["type"] == "group"
    assert type(built.message["type"]) is str


@pytest.mark.parametrize("bad", [None, 5, ["track"]], ids=repr)
def test_a_type_that_is_not_a_str_is_refused(bad: Any) -> None:
    with pytest.raises(ValidationError) as info:
        build(bad, user_id="u", event="E")
    assert info.value.field == "type"


def test_a_validation_error_spends_no_message_id() -> None:
    calls: list[int] = []

    def counting() -> str:
        calls.append(1)
        return "x"

    with pytest.raises(ValidationError):
        build_message("track", wall=WALL, new_message_id=counting, user_id="u")
    assert calls == []


# --- wire shape ---------------------------------------------------------------

WIRE_KEYS = [
    ("track", {"user_id": "u", "event": "E"}, {"event", "properties"}),
    ("identify", {"user_id": "u"}, {"traits"}),
    ("group", {"user_id": "u", "group_id": "g"}, {"groupId", "traits"}),
    ("alias", {"user_id": "u", "previous_id": "p"}, {"previousId"}),
    ("page", {"user_id": "u"}, {"properties"}),
    ("screen", {"user_id": "u"}, {"properties"}),
]


@pytest.mark.parametrize(("type_", "kwargs", "own_keys"), WIRE_KEYS, ids=[row[0] for row in WIRE_KEYS])
def test_keys_on_the_wire(type_: str, kwargs: dict[str, Any], own_keys: set[str]) -> None:
    common = {"type", "messageId", "timestamp", "userId", "context", "integrations"}
    assert set(wire(build(type_, **kwargs))) == common | own_keys


def test_absent_ids_and_names_are_omitted_on_the_wire_and_none_in_the_returned_message() -> None:
    built = build("page", anonymous_id="a")
    message = wire(built)
    assert "userId" not in message
    assert "name" not in message
    assert "category" not in message
    assert None not in message.values()
    assert built.message["userId"] is built.message["name"] is built.message["category"] is None
    built = build("track", user_id="u", event="E")
    assert "anonymousId" not in wire(built)
    assert built.message["anonymousId"] is None


# --- stamping -----------------------------------------------------------------


def test_a_message_id_is_generated_once_when_none_is_given() -> None:
    ids = iter(["first", "second"])
    built = build_message("track", wall=WALL, new_message_id=lambda: next(ids), user_id="u", event="E")
    assert built.message["messageId"] == "first"
    assert next(ids) == "second"


@pytest.mark.parametrize(
    ("given", "expected"),
    [("mine", "mine"), (7, "7"), (U, str(U)), ("", GENERATED_ID), (None, GENERATED_ID)],
    ids=["str", "int", "uuid", "empty-str", "none"],
)
def test_the_callers_message_id_wins(given: object, expected: str) -> None:
    def refuse() -> str:
        if given not in ("", None):
            raise AssertionError("new_message_id called although the caller gave one")
        return GENERATED_ID

    built = build_message("identify", wall=WALL, new_message_id=refuse, user_id="u", message_id=given)
    assert built.message["messageId"] == expected


def test_the_timestamp_defaults_to_wall() -> None:
    assert build("identify", user_id="u").message["timestamp"] == WALL_TEXT


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc), "2020-01-02T03:04:05.678+00:00"),
        (datetime(2020, 1, 2, 3, 4, 5, tzinfo=IST), "2020-01-02T03:04:05.000+05:30"),
        (datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone(-timedelta(hours=8))), "2020-01-02T03:04:05.000-08:00"),
        # RFC 3339 offsets have no seconds: the same instant in UTC.
        (datetime(2020, 1, 2, 0, 9, 21, tzinfo=timezone(timedelta(seconds=561))), "2020-01-02T00:00:00.000+00:00"),
        # A naive datetime far from "now" is guessed to be UTC.
        (datetime(2020, 1, 2, 3, 4, 5, 999999), "2020-01-02T03:04:05.999+00:00"),
    ],
    ids=["utc", "ist", "minus-8", "offset-with-seconds", "naive-old"],
)
def test_the_callers_timestamp_wins(given: datetime, expected: str) -> None:
    built = build("identify", user_id="u", timestamp=given)
    assert built.message["timestamp"] == expected
    decoded = msgspec.json.decode(built.data, type=Identify)
    assert decoded.timestamp is not None
    assert abs(decoded.timestamp - given.replace(tzinfo=given.tzinfo or timezone.utc)) < timedelta(milliseconds=1)


IST_SECONDS = 19_800  # +05:30, no DST: local and UTC differ


@pytest.mark.parametrize(
    ("seconds_before_now", "expected_offset"),
    [
        (0.0, "+05:30"),
        (1.0, "+05:30"),
        (4.9, "+05:30"),
        (5.0, "+00:00"),
        (60.0, "+00:00"),
        (86_400.0, "+00:00"),
        (-3_600.0, "+05:30"),  # in the future: made with now() plus something
    ],
    ids=["now", "1s-ago", "4.9s-ago", "5s-ago", "1min-ago", "1day-ago", "1h-ahead"],
)
def test_naive_timestamps_are_guessed_as_the_reference_does(seconds_before_now: float, expected_offset: str) -> None:
    local_now = datetime(1970, 1, 1) + timedelta(seconds=WALL + IST_SECONDS)
    naive = local_now - timedelta(seconds=seconds_before_now)
    built = build("identify", user_id="u", timestamp=naive, local_utc_offset=lambda wall: IST_SECONDS)
    # The wall-clock digits are kept; only the offset is guessed.
    assert built.message["timestamp"] == naive.isoformat(timespec="milliseconds") + expected_offset


def test_without_an_offset_source_local_time_is_utc() -> None:
    naive_now = datetime(1970, 1, 1) + timedelta(seconds=WALL)
    assert build("identify", user_id="u", timestamp=naive_now).message["timestamp"] == WALL_TEXT


def test_the_offset_is_asked_for_only_to_read_a_naive_timestamp() -> None:
    asked: list[float] = []

    def offset(wall: float) -> float:
        asked.append(wall)
        return IST_SECONDS

    for timestamp in (None, datetime(2020, 1, 2, tzinfo=timezone.utc), datetime(2020, 1, 2, tzinfo=IST)):
        build("track", user_id="u", event="E", timestamp=timestamp, local_utc_offset=offset)
    assert asked == []
    build("track", user_id="u", event="E", timestamp=datetime(2020, 1, 2), local_utc_offset=offset)
    assert asked == [WALL], "an old naive timestamp: only now's offset, to see that it is not local"


def test_a_local_timestamp_takes_the_offset_in_force_at_its_time() -> None:
    """Across a DST change an hour from now, a timestamp two hours ahead has the later offset."""
    change = WALL + 3_600

    def new_york(instant: float) -> float:
        return -4 * 3600 if instant >= change else -5 * 3600

    local_now = datetime(1970, 1, 1) + timedelta(seconds=WALL - 5 * 3600)
    later = local_now + timedelta(hours=2)
    built = build("identify", user_id="u", timestamp=later, local_utc_offset=new_york)
    assert built.message["timestamp"] == later.isoformat(timespec="milliseconds") + "-04:00"
    soon = local_now + timedelta(minutes=30)
    built = build("identify", user_id="u", timestamp=soon, local_utc_offset=new_york)
    assert built.message["timestamp"] == soon.isoformat(timespec="milliseconds") + "-05:00"


@pytest.mark.parametrize("error", [OverflowError, OSError, ValueError])
def test_an_instant_the_host_cannot_place_is_read_as_utc(error: type[Exception]) -> None:
    def no_local_time(wall: float) -> float:
        raise error("out of range")

    naive_now = datetime(1970, 1, 1) + timedelta(seconds=WALL)
    built = build("identify", user_id="u", timestamp=naive_now, local_utc_offset=no_local_time)
    assert built.message["timestamp"] == WALL_TEXT


def test_a_local_timestamp_at_an_instant_the_host_cannot_place_is_read_as_utc() -> None:
    def offset(instant: float) -> float:
        if instant > WALL + 3_600:
            raise OverflowError("out of range")
        return IST_SECONDS

    later = datetime(1970, 1, 1) + timedelta(seconds=WALL + IST_SECONDS + 7_200)
    built = build("identify", user_id="u", timestamp=later, local_utc_offset=offset)
    assert built.message["timestamp"] == later.isoformat(timespec="milliseconds") + "+00:00"


@pytest.mark.parametrize("wrong", [86_400, -86_400, 1e12])
def test_an_offset_source_that_gives_no_offset_is_a_bug_not_a_guess(wrong: float) -> None:
    naive_now = datetime(1970, 1, 1) + timedelta(seconds=WALL)
    with pytest.raises(ValueError, match="not a UTC offset") as info:
        build("identify", user_id="u", timestamp=naive_now, local_utc_offset=lambda wall: wrong)
    assert not isinstance(info.value, ValidationError)


def test_a_tzinfo_without_an_offset_counts_as_naive() -> None:
    class NoOffset(tzinfo):
        def tzname(self, dt: datetime | None) -> str:
            return "NoOffset"

        def dst(self, dt: datetime | None) -> None:
            return None

        def utcoffset(self, dt: datetime | None) -> None:
            return None

    old = datetime(2020, 1, 2, 3, 4, 5, tzinfo=NoOffset())
    assert build("identify", user_id="u", timestamp=old).message["timestamp"] == "2020-01-02T03:04:05.000+00:00"


def test_a_broken_tzinfo_is_a_validation_error() -> None:
    class Broken(tzinfo):
        def tzname(self, dt: datetime | None) -> str:
            return "Broken"

        def dst(self, dt: datetime | None) -> None:
            return None

        def utcoffset(self, dt: datetime | None) -> timedelta:
            raise RuntimeError("boom")

    with pytest.raises(ValidationError) as info:
        build("identify", user_id="u", timestamp=datetime(2020, 1, 2, tzinfo=Broken()))
    assert info.value.field == "timestamp"
    assert str(info.value) == "timestamp must be a datetime whose tzinfo works, got datetime"


def test_the_context_is_copied_cleaned_and_gains_the_library() -> None:
    context = {
        "ip": "203.0.113.7",
        "page": {"path": "/", "tags": ["a", ("b", "c")]},
        "library": {"name": "theirs"},
        "when": date(2020, 1, 1),
    }
    snapshot = json.dumps(context, default=str)
    built = build("track", user_id="u", event="E", context=context)
    assert json.dumps(context, default=str) == snapshot  # not mutated, deep
    assert context["library"] == {"name": "theirs"}
    out = built.message["context"]
    assert out["library"] == LIBRARY
    assert out["page"] == {"path": "/", "tags": ["a", ["b", "c"]]}
    assert out["page"] is not context["page"]
    assert out["page"]["tags"] is not context["page"]["tags"]  # type: ignore[index]
    assert out["when"] == date(2020, 1, 1), "the returned message keeps the date, as 2.4's does"
    assert wire(built)["context"]["when"] == "2020-01-01"
    assert wire(built)["context"]["library"] == LIBRARY


def test_the_library_is_added_to_an_absent_context_and_never_shared() -> None:
    first = build("track", user_id="u", event="E")
    first.message["context"]["library"]["name"] = "mutated by the caller"
    second = build("track", user_id="u", event="E")
    assert second.message["context"] == {"library": LIBRARY}


def test_integrations_default_to_an_empty_object_and_are_copied() -> None:
    assert build("identify", user_id="u").message["integrations"] == {}
    integrations = {"All": False, "Mixpanel": {"id": 1}}
    message = build("identify", user_id="u", integrations=integrations).message
    assert message["integrations"] == integrations
    assert message["integrations"]["Mixpanel"] is not integrations["Mixpanel"]


def test_properties_and_traits_are_never_mutated() -> None:
    properties: dict[Any, Any] = {"a": {"b": [1, {"c": float("nan")}]}, 1: Opaque(), "s": {1, 2}}
    snapshot = repr(properties)
    built = build("track", user_id="u", event="E", properties=properties)
    assert repr(properties) == snapshot
    assert built.message["properties"] == {"a": {"b": [1, {"c": None}]}, "s": [1, 2]}
    assert built.dropped == ("properties.1: unsupported type Opaque",)


# --- encoding -----------------------------------------------------------------


def test_the_data_is_the_message_as_strict_json() -> None:
    properties = {
        "n": float("nan"),
        "big": 10**40,
        "d": Decimal("2.50"),
        "i": Decimal("3"),
        "u": U,
        "t": ("x",),
        "b": b"\xff",
        "when": datetime(2020, 1, 2, tzinfo=timezone.utc),
    }
    built = build("track", user_id="u", event="E", properties=properties)
    assert wire(built)["properties"] == {
        "n": None,
        "big": 10**40,
        "d": 2.5,
        "i": 3,
        "u": str(U),
        "t": ["x"],
        "when": "2020-01-02T00:00:00+00:00",
    }
    assert b'"i":3,' in built.data
    returned = built.message["properties"]
    assert returned == {**wire(built)["properties"], "i": 3.0, "when": properties["when"]}
    assert type(returned["i"]) is float, "2.4 returns float(Decimal)"
    assert returned["when"] is properties["when"]
    assert built.dropped == ("properties.b: invalid UTF-8 in bytes",)
    assert b"NaN" not in built.data


def test_big_ints_are_preserved_exactly() -> None:
    big = 2**200 + 1
    built = build("track", user_id="u", event="E", properties={"big": big, "neg": -big})
    assert strict_loads(built.data)["properties"] == {"big": big, "neg": -big}


def test_exactly_one_encode_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    encodes: list[object] = []
    real = build_module._ENCODER

    class Counting:
        def encode(self, obj: object) -> bytes:
            encodes.append(obj)
            return real.encode(obj)

    monkeypatch.setattr(build_module, "_ENCODER", Counting())
    built = build("track", user_id="u", event="E", properties={"a": 1, "when": datetime(2020, 1, 1)})
    assert len(encodes) == 1
    assert real.encode(encodes[0]) == built.data


def test_lone_surrogates_in_values_are_dropped_with_a_warning() -> None:
    properties = {"bad": "x\ud800", "ok": "é", "when": date(2020, 1, 1)}
    built = build("track", user_id="u", event="E", properties=properties, context={"k": ["\udfff"]})
    assert built.message["properties"] == {"ok": "é", "when": date(2020, 1, 1)}
    assert built.message["context"] == {"k": [], "library": LIBRARY}
    assert wire(built)["properties"] == {"ok": "é", "when": "2020-01-01"}
    assert built.dropped == (
        "properties.bad: str is not valid Unicode (lone surrogates)",
        "context.k[0]: str is not valid Unicode (lone surrogates)",
    )
    assert_returned_shows_what_was_sent(built)


@pytest.mark.parametrize("field", ["user_id", "anonymous_id", "event", "message_id"])
def test_lone_surrogates_in_ids_and_names_are_validation_errors(field: str) -> None:
    kwargs: dict[str, Any] = {"user_id": "u", "event": "E", field: "x\ud800"}
    with pytest.raises(ValidationError) as info:
        build("track", **kwargs)
    assert info.value.field == field


def test_ints_too_long_to_print_are_dropped_with_a_warning() -> None:
    import sys

    if not hasattr(sys, "get_int_max_str_digits"):
        pytest.skip("this Python has no limit on int to str conversion")
    huge = 10 ** (sys.get_int_max_str_digits() + 1)
    built = build("track", user_id="u", event="E", properties={"huge": huge, "ok": 1})
    assert built.message["properties"] == {"ok": 1}
    assert built.dropped == ("properties.huge: int too large for JSON",)


def test_warnings_are_capped() -> None:
    built = build("track", user_id="u", event="E", properties={"many": [Opaque() for _ in range(100)]})
    assert len(built.dropped) == MAX_DROPPED_WARNINGS + 1
    assert built.dropped[-1] == f"... and {100 - MAX_DROPPED_WARNINGS} more values dropped"
    at_cap = [Opaque() for _ in range(MAX_DROPPED_WARNINGS)]
    built = build("track", user_id="u", event="E", properties={"many": at_cap})
    assert built.dropped == tuple(f"properties.many[{i}]: unsupported type Opaque" for i in range(MAX_DROPPED_WARNINGS))


def _padded(pad: int) -> Callable[[], BuiltMessage]:
    return lambda: build("track", user_id="u", event="E", properties={"pad": "x" * pad})


def test_a_message_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not() -> None:
    overhead = len(_padded(0)().data)
    at_limit = _padded(MAX_MESSAGE_BYTES - overhead)()
    assert len(at_limit.data) == MAX_MESSAGE_BYTES
    with pytest.raises(MessageTooLarge) as info:
        _padded(MAX_MESSAGE_BYTES - overhead + 1)()
    assert info.value.size == MAX_MESSAGE_BYTES + 1
    assert info.value.limit == MAX_MESSAGE_BYTES


def test_message_too_large_is_every_error_the_reference_callers_catch() -> None:
    with pytest.raises(MessageTooLarge) as info:
        build("identify", user_id="u", traits={"blob": "x" * 40_000})
    error = info.value
    assert isinstance(error, RuntimeError)
    assert isinstance(error, AssertionError)
    assert isinstance(error, ValidationError)
    assert isinstance(error, ValueError)
    assert error.size > MAX_MESSAGE_BYTES
    assert "xxxx" not in str(error)


# --- the typed form -------------------------------------------------------------

STRUCTS: list[tuple[str, Message, dict[str, Any]]] = [
    (
        "track",
        Track(user_id="u", event="E", properties={"a": 1}, context={"ip": "1"}, integrations={"All": True}),
        {"user_id": "u", "event": "E", "properties": {"a": 1}, "context": {"ip": "1"}, "integrations": {"All": True}},
    ),
    ("identify", Identify(anonymous_id="a", traits={"t": 1}), {"anonymous_id": "a", "traits": {"t": 1}}),
    ("group", Group(user_id="u", group_id="g", traits={}), {"user_id": "u", "group_id": "g"}),
    ("alias", Alias(user_id="u", previous_id="p"), {"user_id": "u", "previous_id": "p"}),
    ("page", Page(user_id="u", name="N", category="C"), {"user_id": "u", "name": "N", "category": "C"}),
    ("screen", Screen(user_id="u", name="N"), {"user_id": "u", "name": "N"}),
    (
        "track-stamped",
        Track(
            user_id="u",
            event="E",
            message_id="m",
            timestamp=datetime(2020, 1, 1, tzinfo=timezone.utc),
        ),
        {"user_id": "u", "event": "E", "message_id": "m", "timestamp": datetime(2020, 1, 1, tzinfo=timezone.utc)},
    ),
]


@pytest.mark.parametrize(("struct", "kwargs"), [pytest.param(s, k, id=i) for i, s, k in STRUCTS])
def test_a_struct_builds_as_its_keyword_arguments_do(struct: Message, kwargs: dict[str, Any]) -> None:
    from_struct = build_from_struct(struct, wall=WALL, new_message_id=new_id)
    type_ = struct.__struct_config__.tag
    assert isinstance(type_, str)
    assert from_struct == build(type_, **kwargs)


@pytest.mark.parametrize("struct", [pytest.param(s, id=i) for i, s, _ in STRUCTS])
def test_built_messages_decode_to_their_struct_and_rebuild_identically(struct: Message) -> None:
    built = build_from_struct(struct, wall=WALL, new_message_id=new_id)
    decoded = msgspec.json.decode(built.data, type=Message)
    assert type(decoded) is type(struct)
    assert decoded.message_id == built.message["messageId"]
    assert decoded.context["library"] == LIBRARY
    assert build_from_struct(decoded, wall=WALL + 100, new_message_id=new_id) == built


def test_struct_fields_are_camel_case_on_the_wire() -> None:
    data = msgspec.json.encode(Group(user_id="u", anonymous_id="a", group_id="g", message_id="m"))
    assert set(json.loads(data)) == {
        "type",
        "userId",
        "anonymousId",
        "messageId",
        "timestamp",
        "context",
        "integrations",
        "groupId",
        "traits",
    }


@pytest.mark.parametrize(
    ("struct", "field"),
    [
        (Track(user_id="u", event=5), "event"),  # type: ignore[arg-type]
        (Track(event="E"), "user_id or anonymous_id"),
        (Alias(user_id="", previous_id="p"), "user_id"),
        (Group(user_id="u", group_id=""), "group_id"),
        (Identify(user_id="u", traits=[1]), "traits"),  # type: ignore[arg-type]
        (Page(user_id="u", name=3), "name"),  # type: ignore[arg-type]
    ],
    ids=[
        "track-int-event",
        "track-no-ids",
        "alias-empty-user-id",
        "group-empty-group-id",
        "traits-list",
        "page-int-name",
    ],
)
def test_a_struct_is_validated_as_keyword_arguments_are(struct: Message, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        build_from_struct(struct, wall=WALL, new_message_id=new_id)
    assert info.value.field == field


def test_build_from_struct_refuses_other_values() -> None:
    with pytest.raises(ValidationError) as info:
        build_from_struct({"type": "track"}, wall=WALL, new_message_id=new_id)  # type: ignore[arg-type]
    assert info.value.field == "message"
    assert str(info.value) == "message must be a Track, Identify, Group, Alias, Page or Screen, got dict"


def test_a_struct_reads_a_naive_timestamp_with_the_offset_given() -> None:
    local_now = datetime(1970, 1, 1) + timedelta(seconds=WALL + IST_SECONDS)
    built = build_from_struct(
        Identify(user_id="u", timestamp=local_now),
        wall=WALL,
        new_message_id=new_id,
        local_utc_offset=lambda wall: IST_SECONDS,
    )
    assert built.message["timestamp"] == local_now.isoformat(timespec="milliseconds") + "+05:30"


def test_a_struct_subclass_builds_as_its_base() -> None:
    class MyTrack(Track, frozen=True, kw_only=True):
        extra: int = 0

    built = build_from_struct(MyTrack(user_id="u", event="E", extra=3), wall=WALL, new_message_id=new_id)
    assert built.message["type"] == "track"
    assert "extra" not in built.message


def test_the_union_rejects_a_message_without_its_required_fields() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"type":"alias","userId":"u"}', type=Message)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"type":"unknown","userId":"u"}', type=Message)


def test_message_type_names_every_struct() -> None:
    tags = {cls.__struct_config__.tag for cls in (Track, Identify, Group, Alias, Page, Screen)}
    assert tags == {member.value for member in MessageType}


# --- helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "bits",
    [0, 1, 2**128 - 1, 2**127, 0x0123456789ABCDEF0123456789ABCDEF, 2**130 + 5, -1],
    ids=["zero", "one", "all-ones", "top-bit", "pattern", "over-128-bits", "negative"],
)
def test_message_id_from_bits_is_a_uuid4(bits: int) -> None:
    text = message_id_from_bits(bits)
    expected = uuid.UUID(int=bits & (2**128 - 1), version=4)
    assert text == str(expected)
    assert uuid.UUID(text).version == 4


@pytest.mark.parametrize(
    ("wall", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000+00:00"),
        (WALL, WALL_TEXT),
        (1.9999, "1970-01-01T00:00:01.999+00:00"),
        (-0.5, "1969-12-31T23:59:59.500+00:00"),
        (253_402_300_799.5, "9999-12-31T23:59:59.500+00:00"),
        # The float nearest 1790000000.123 is a little below it: rounded to the microsecond first, as datetime does.
        (1_790_000_000.123, "2026-09-21T14:13:20.123+00:00"),
        (1_700_000_000, "2023-11-14T22:13:20.000+00:00"),
    ],
    ids=["epoch", "wall", "truncates", "before-epoch", "year-9999", "float-below-its-decimal", "int"],
)
def test_format_timestamp(wall: float, expected: str) -> None:
    assert format_timestamp(wall) == expected


def test_format_timestamp_is_right_when_seconds_alternate() -> None:
    # The one-second memo must never serve another second's text.
    for wall in [10.5, 11.5, 10.25, 10.75, 11.0, 5000.001]:
        expected = datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds")
        assert format_timestamp(wall) == expected


@pytest.mark.parametrize("wall", [float("nan"), float("inf"), 1e20])
def test_format_timestamp_refuses_impossible_times(wall: float) -> None:
    with pytest.raises((ValueError, OverflowError)):
        format_timestamp(wall)


MODULES = ["_messages.py", "_value_cleaning.py", "_message_builder.py"]
IMPURE_MODULES = {"time", "random", "logging", "socket", "threading", "os", "secrets", "asyncio", "trio", "httpx"}
IMPURE_CALLS = {"now", "utcnow", "today", "uuid1", "uuid4", "urandom", "getrandbits", "perf_counter", "monotonic"}


@pytest.mark.parametrize("module", MODULES)
def test_the_message_modules_are_pure(module: str) -> None:
    source = (Path(build_module.__file__).parent / module).read_text()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not {alias.name.split(".")[0] for alias in node.names} & IMPURE_MODULES
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            assert (node.module or "").split(".")[0] not in IMPURE_MODULES
        elif isinstance(node, ast.Attribute):
            assert node.attr not in IMPURE_CALLS, f"{module}: .{node.attr}"


# --- cost bounded by the message limit; subclasses read as 2.4 reads them -----------------------------


def test_shared_sub_objects_stop_the_build_within_the_message_limit() -> None:
    """22 levels of a = [a, a] is 4M lists written out: it used to cost 10 s and 791 MB before MessageTooLarge."""
    import tracemalloc

    shared: list[Any] = []
    for _ in range(22):
        shared = [shared, shared]
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooLarge):
            build("track", user_id="u", event="E", properties={"a": shared})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


class HidingDict(dict[str, Any]):
    """What items() gives (2.4 reads that) differs from its storage (dict(d) and the encoder read that)."""

    def items(self) -> Any:
        return [("shown", 1), ("when", date(2020, 1, 2))]


@pytest.mark.parametrize("where", ["top", "nested"])
def test_dict_subclasses_are_cleaned_through_items_never_raising_from_the_encoder(where: str) -> None:
    hiding = HidingDict(stored=Opaque(), other={1, 2})
    properties: Any = hiding if where == "top" else {"d": hiding}
    built = build("track", user_id="u", event="E", properties=properties)
    expected = {"shown": 1, "when": "2020-01-02"}
    assert wire(built)["properties"] == (expected if where == "top" else {"d": expected})
    shown = {"shown": 1, "when": date(2020, 1, 2)}
    assert built.message["properties"] == (shown if where == "top" else {"d": shown})
    assert built.dropped == ()


# --- what each refusal says, in full ---------------------------------------------------------------

ID = "a non-empty string, a number or a UUID"
FAR_FUTURE_WEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(seconds=-61)))

ERRORS: list[tuple[str, Any, dict[str, Any], str]] = [
    # id, type, arguments, str(ValidationError): the field, what it must be, the type it got (never the value)
    ("type", "bogus", {"user_id": "u"}, "type must be one of track, identify, group, alias, page, screen, got str"),
    ("no-ids", "track", {"event": "E"}, f"user_id or anonymous_id must be {ID}, got NoneType"),
    ("bool-id", "track", {"user_id": True, "event": "E"}, f"user_id must be {ID} (not a bool), got bool"),
    (
        "nan-id",
        "track",
        {"anonymous_id": float("nan"), "event": "E"},
        "anonymous_id must be a finite number, got float",
    ),
    (
        "infinite-decimal-id",
        "group",
        {"user_id": "u", "group_id": Decimal("Infinity")},
        "group_id must be a finite number, got Decimal",
    ),
    (
        "unprintable-int-id",
        "track",
        {"user_id": 10**5000, "event": "E"},
        f"user_id must be {ID} of printable size, got int",
    ),
    ("list-id", "identify", {"user_id": "u", "message_id": ["m"]}, f"message_id must be {ID}, got list"),
    ("empty-group-id", "group", {"user_id": "u", "group_id": ""}, f"group_id must be {ID}, got str"),
    ("no-previous-id", "alias", {"user_id": "u"}, f"previous_id must be {ID}, got NoneType"),
    ("alias-no-user-id", "alias", {"previous_id": "p", "anonymous_id": "a"}, f"user_id must be {ID}, got NoneType"),
    ("empty-previous-id", "alias", {"user_id": "u", "previous_id": ""}, f"previous_id must be {ID}, got str"),
    ("alias-empty-user-id", "alias", {"previous_id": "p", "user_id": ""}, f"user_id must be {ID}, got str"),
    ("event", "track", {"user_id": "u", "event": 5}, "event must be a string, got int"),
    ("properties", "page", {"user_id": "u", "properties": [1]}, "properties must be a dict, got list"),
    ("name", "screen", {"user_id": "u", "name": ["N"]}, "name must be a string, got list"),
    ("category", "page", {"user_id": "u", "category": 5}, "category must be a string, got int"),
    ("timestamp", "identify", {"user_id": "u", "timestamp": "2020"}, "timestamp must be a datetime, got str"),
    (
        "timestamp-beyond-utc",
        "identify",
        {"user_id": "u", "timestamp": FAR_FUTURE_WEST},
        "timestamp must be a datetime that can be expressed in UTC, got datetime",
    ),
    (
        "lone-surrogate",
        "track",
        {"user_id": "u", "event": "x\ud800"},
        "event must be valid Unicode text (no lone surrogates), got str",
    ),
]


@pytest.mark.parametrize(("type_", "kwargs", "text"), [pytest.param(*row[1:], id=row[0]) for row in ERRORS])
def test_what_a_refusal_says(type_: Any, kwargs: dict[str, Any], text: str) -> None:
    with pytest.raises(ValidationError) as info:
        build(type_, **kwargs)
    assert str(info.value) == text


OWN_FIELDS = {
    "track": {"event", "properties"},
    "identify": {"traits"},
    "group": {"group_id", "traits"},
    "alias": {"previous_id"},
    "page": {"name", "category", "properties"},
    "screen": {"name", "category", "properties"},
}
REQUIRED = {"track": {"event": "E"}, "group": {"group_id": "g"}, "alias": {"previous_id": "p"}}
PER_TYPE_FIELDS = ("event", "properties", "traits", "group_id", "previous_id", "name", "category")


@pytest.mark.parametrize(
    ("type_", "field"), [(t, f) for t, own in OWN_FIELDS.items() for f in PER_TYPE_FIELDS if f not in own]
)
@pytest.mark.parametrize("value", ["x", 0], ids=["given", "falsy"])
def test_each_field_of_another_type_is_refused_alone(type_: str, field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        build(type_, user_id="u", **REQUIRED.get(type_, {}), **{field: value})
    kind = type(value).__name__
    assert str(info.value) == f"{field} must be None for a {type_} message (not one of its fields), got {kind}"


class Count(int):
    pass


class Ratio(float):
    pass


@pytest.mark.parametrize(
    ("given", "returned"),
    [("g", "g"), (7, 7), (Count(7), 7), (1.5, 1.5), (Ratio(2.5), 2.5), (Decimal("12"), 12.0), (U, str(U))],
    ids=repr,
)
def test_a_group_or_previous_id_is_returned_as_2_4_returns_it(given: object, returned: object) -> None:
    group = build("group", user_id="u", group_id=given).message["groupId"]
    previous = build("alias", user_id="u", previous_id=given).message["previousId"]
    assert group == previous == returned
    assert type(group) is type(previous) is type(returned)


def test_a_caller_short_of_stack_gets_a_validation_error() -> None:
    # The cleaner recurses per level; if the caller has little stack left, that is a bad argument, not a crash.
    value: Any = {"leaf": Opaque()}
    for _ in range(60):
        value = {"d": value}
    depth = len(traceback.extract_stack())
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 60)
    try:
        with pytest.raises(ValidationError) as info:
            build("track", user_id="u", event="E", properties=value)
    finally:
        sys.setrecursionlimit(limit)
    assert str(info.value) == "properties must be a dict nested at most 64 levels, got dict"


# segment-analytics-python 2.4's returned message: its keys, in its order.
RETURNED_KEYS = {
    "track": [
        "integrations",
        "anonymousId",
        "properties",
        "timestamp",
        "context",
        "userId",
        "type",
        "event",
        "messageId",
    ],
    "identify": ["integrations", "anonymousId", "timestamp", "context", "type", "userId", "traits", "messageId"],
    "group": [
        "integrations",
        "anonymousId",
        "timestamp",
        "groupId",
        "context",
        "userId",
        "traits",
        "type",
        "messageId",
    ],
    "alias": ["integrations", "previousId", "timestamp", "context", "userId", "type", "messageId", "anonymousId"],
    "page": [
        "integrations",
        "anonymousId",
        "properties",
        "timestamp",
        "category",
        "context",
        "userId",
        "type",
        "name",
        "messageId",
    ],
}
RETURNED_KEYS["screen"] = RETURNED_KEYS["page"]


@pytest.mark.parametrize("type_", list(RETURNED_KEYS))
def test_the_returned_message_has_2_4s_keys_in_its_order(type_: str) -> None:
    kwargs = {"user_id": "u", "anonymous_id": "a", **REQUIRED.get(type_, {})}
    returned = build(type_, **kwargs).message
    assert list(returned) == RETURNED_KEYS[type_]
    assert (returned["userId"], returned["anonymousId"], returned["type"]) == ("u", "a", type_)


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="TZ in the environment needs time.tzset (POSIX)")
def test_an_offset_with_seconds_is_sent_as_utc_whatever_the_host_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never the host's local time: the core reads no zone (here in-process, for the mutation run to see it).
    given = datetime(2020, 1, 2, 0, 9, 21, tzinfo=timezone(timedelta(seconds=561)))
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert build("identify", user_id="u", timestamp=given).message["timestamp"] == "2020-01-02T00:00:00.000+00:00"
    finally:
        monkeypatch.undo()
        time.tzset()
