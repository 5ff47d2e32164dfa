"""Properties of building messages from arbitrary values (hypothesis).

Whatever a caller passes, building either raises ValidationError (or its
subclass MessageTooLarge) or returns bytes that a strict JSON parser accepts,
that fit the per-message limit and decode to a typed Message, and a returned
message that shows exactly what was sent (in segment-analytics-python 2.4's
form: datetimes kept, Decimals as floats, absent ids as None); the caller's
values are left as they were.

Example counts come from the hypothesis profile (HYPOTHESIS_PROFILE); the
strategies are kept small so that the ``ci`` profile runs in seconds.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import pickle
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from segment_core._errors import ValidationError
from segment_core._message_builder import (
    BuiltMessage,
    build_from_struct,
    build_message,
    format_timestamp,
    message_id_from_bits,
)
from segment_core._messages import Alias, Group, Identify, Message, Page, Screen, Track
from segment_core._value_cleaning import clean
from segment_core.limits import MAX_MESSAGE_BYTES

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")


class Color(enum.Enum):
    RED = "red"
    ONE = 1
    PAIR = (1, "x")


@dataclasses.dataclass
class Point:
    x: object
    y: object = None


class Opaque:
    """No JSON form: always dropped."""


def new_id() -> str:
    return "generated-id"


def build_or_error(type_: str, **kwargs: Any) -> BuiltMessage | ValidationError:
    """The built message, or the ValidationError (MessageTooLarge included) it raised: nothing else may escape."""
    try:
        return build_message(type_, **kwargs)
    except ValidationError as error:
        return error


def strict_loads(data: bytes) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(data, parse_constant=refuse)


def shows(returned: Any, sent: Any, path: str = "message") -> None:
    """The returned value shows the sent one: equal, up to 2.4's forms (a date for its text, a float for a number)."""
    if isinstance(returned, dict):
        assert isinstance(sent, dict), path
        assert list(returned) == list(sent), path
        for key, value in returned.items():
            shows(value, sent[key], f"{path}.{key}")
    elif isinstance(returned, list):
        assert isinstance(sent, list), path
        assert len(returned) == len(sent), path
        for index, (value, sent_value) in enumerate(zip(returned, sent, strict=True)):
            shows(value, sent_value, f"{path}[{index}]")
    elif isinstance(returned, (datetime, date)):
        assert returned.isoformat() == sent, path
    elif type(returned) is float and type(sent) is int:  # a Decimal: float(d) returned, the exact number sent
        assert returned == float(sent), path
    else:
        assert returned == sent, path
        assert type(returned) is type(sent), path


def assert_returned_shows_what_was_sent(built: BuiltMessage) -> None:
    sent = strict_loads(built.data)
    returned = built.message
    assert {key for key, value in returned.items() if value is not None} == set(sent)
    shows({key: returned[key] for key in sent}, sent)


offsets = st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59))
timezones = st.none() | st.just(timezone.utc) | st.builds(timezone, offsets)
datetimes = st.datetimes(timezones=timezones)


def _too_long_to_print() -> int:
    """An int longer than Python's default int-to-str limit (made here: its repr would fail)."""
    return 10**5000


hashables = st.one_of(
    st.text(max_size=3),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.binary(max_size=3),
    st.uuids(),
    st.sampled_from(Color),
    st.dates(),
    st.builds(Opaque),
)
scalars = st.one_of(
    hashables,
    st.sampled_from(["\ud800", "a\udfff", "é", 2**64, -(2**100)]),
    st.builds(_too_long_to_print),
    st.decimals(),
    datetimes,
)
keys = st.one_of(
    st.text(max_size=3),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.uuids(),
    st.sampled_from(Color),
    st.tuples(st.integers()),
    st.builds(Opaque),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.sets(hashables, max_size=3),
        st.frozensets(hashables, max_size=3),
        st.dictionaries(keys, children, max_size=3),
        st.builds(Point, children, children),
    )


values = st.recursive(scalars, _containers, max_leaves=8)
dicts = st.dictionaries(keys, values, max_size=4)
message_types = st.sampled_from(["track", "identify", "group", "alias", "page", "screen"])
walls = st.floats(min_value=0, max_value=2**33)


def _kwargs(type_: str, payload: dict[Any, Any], context: Any, integrations: Any, timestamp: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"user_id": "u", "context": context, "integrations": integrations, "timestamp": timestamp}
    if type_ == "track":
        kwargs.update(event="E", properties=payload)
    elif type_ in ("identify", "group"):
        kwargs["traits"] = payload
        if type_ == "group":
            kwargs["group_id"] = "g"
    elif type_ == "alias":
        kwargs["previous_id"] = "p"
    else:
        kwargs.update(name="N", properties=payload)
    return kwargs


_STRUCTS: dict[str, type[Message]] = {
    "track": Track,
    "identify": Identify,
    "group": Group,
    "alias": Alias,
    "page": Page,
    "screen": Screen,
}


@given(
    type_=message_types,
    payload=dicts,
    context=st.none() | dicts,
    integrations=st.none() | dicts,
    timestamp=st.none() | datetimes,
    wall=walls,
)
def test_any_values_build_to_strict_json_or_a_validation_error(
    type_: str, payload: dict[Any, Any], context: Any, integrations: Any, timestamp: Any, wall: float
) -> None:
    snapshot = pickle.dumps((payload, context, integrations, timestamp))
    kwargs = _kwargs(type_, payload, context, integrations, timestamp)
    built = build_or_error(type_, wall=wall, new_message_id=new_id, **kwargs)
    assert pickle.dumps((payload, context, integrations, timestamp)) == snapshot, "the caller's values changed"
    if isinstance(built, ValidationError):  # MessageTooLarge included; a timestamp that leaves years 1-9999
        assert built.field in ("message", "timestamp")
        return
    assert isinstance(built.data, bytes)
    assert len(built.data) <= MAX_MESSAGE_BYTES
    assert_returned_shows_what_was_sent(built)
    decoded = msgspec.json.decode(built.data, type=Message)
    assert type(decoded) is _STRUCTS[type_]
    assert TIMESTAMP.fullmatch(built.message["timestamp"])
    assert all(isinstance(warning, str) for warning in built.dropped)
    # What was sent is already clean: cleaning it again changes nothing.
    sent = strict_loads(built.data)
    assert clean(sent) == (sent, ())
    # The typed form builds the same message.
    struct = _STRUCTS[type_](**{k: v for k, v in kwargs.items() if v is not None})
    assert build_from_struct(struct, wall=wall, new_message_id=new_id) == built


ids = st.one_of(
    st.text(max_size=4),
    st.sampled_from(["\ud800", ""]),
    st.integers(),
    st.floats(),
    st.decimals(),
    st.uuids(),
    st.booleans(),
    st.none(),
    st.binary(max_size=2),
    st.builds(Opaque),
)


@given(user_id=ids, anonymous_id=ids, message_id=ids)
def test_any_ids_are_refused_or_sent_as_non_empty_strings(user_id: Any, anonymous_id: Any, message_id: Any) -> None:
    built = build_or_error(
        "track",
        wall=1.7e9,
        new_message_id=new_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        message_id=message_id,
        event="E",
    )
    if isinstance(built, ValidationError):
        assert built.field in ("user_id", "anonymous_id", "message_id", "user_id or anonymous_id")
        return
    message = strict_loads(built.data)
    assert_returned_shows_what_was_sent(built)
    assert "userId" in message or "anonymousId" in message
    for key, given_id in (("userId", user_id), ("anonymousId", anonymous_id), ("messageId", message_id)):
        if key in message:
            assert isinstance(message[key], str)
            assert message[key]
            if key != "messageId" or given_id not in (None, ""):
                assert message[key] == str(given_id)


@given(timestamp=datetimes, wall=walls)
def test_any_timestamp_is_sent_with_an_offset_and_milliseconds(timestamp: datetime, wall: float) -> None:
    built = build_or_error("identify", wall=wall, new_message_id=new_id, user_id="u", timestamp=timestamp)
    if isinstance(built, ValidationError):  # only where the instant leaves years 1-9999 in UTC
        assert built.field == "timestamp"
        return
    text = built.message["timestamp"]
    assert TIMESTAMP.fullmatch(text)
    sent = msgspec.json.decode(built.data, type=Identify).timestamp
    assert sent is not None
    if timestamp.tzinfo is not None:
        assert timedelta(0) <= timestamp - sent < timedelta(milliseconds=1)
    else:  # guessed as local time or UTC: the wall-clock digits are kept
        assert text.startswith(timestamp.isoformat(timespec="milliseconds"))


@given(wall=st.floats(min_value=-62_135_596_800, max_value=253_402_300_799.998))
def test_format_timestamp_is_what_datetime_writes(wall: float) -> None:
    text = format_timestamp(wall)
    assert TIMESTAMP.fullmatch(text)
    assert text == datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds")


@given(bits=st.integers(min_value=0, max_value=2**128 - 1))
def test_message_ids_are_uuid4_strings(bits: int) -> None:
    assert message_id_from_bits(bits) == str(uuid.UUID(int=bits, version=4))
