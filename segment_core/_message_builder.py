"""Validation, stamping and encoding: a call's arguments in, one encoded message out.

Strategy: this runs in the caller's thread on every call, so it does the least
work that yields a final message. Arguments are validated first, with the
rules of segment-analytics-python 2.4 (``require(..., ID_TYPES)``) and a few
fixes (``0`` and UUIDs are valid ids; bools are not; an empty string is no
id). Then the dicts are cleaned into new dicts (see ``_value_cleaning``), the
message is stamped (messageId, timestamp, ``context.library``) and encoded
exactly once by a module-level msgspec encoder; the size check is ``len()`` of
those bytes. The rare values the encoder refuses (lone surrogates, ints too
long to print) cost a second encode only when they occur.

Wire shape (``segment_core._messages`` decodes it): ``type``, ``messageId``,
``timestamp`` (ISO-8601, milliseconds, with offset), ``userId`` and
``anonymousId`` when given, the per-type fields, ``context`` and
``integrations`` (always objects). Keys whose value would be None are omitted.
Spec: https://segment.com/docs/connections/spec/common/

Returned shape (``BuiltMessage.message``, what the six calls return): the
message segment-analytics-python 2.4 returns for the same call, its keys in
its order with None where an id or name is absent, and its values: datetimes
and dates as the caller's objects, Decimals as floats, a numeric groupId or
previousId as the number. It shows what was sent (the same values dropped);
it is never the caller's dict, and never encoded.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from ._errors import MessageTooLarge, ValidationError
from ._messages import Alias, Group, Identify, Message, Page, Screen, Track
from ._native import speedups
from ._value_cleaning import MAX_DEPTH, clean_field, scrub
from .limits import LIBRARY_NAME, LIBRARY_VERSION, MAX_MESSAGE_BYTES

__all__ = [
    "MAX_DROPPED_WARNINGS",
    "BuiltMessage",
    "LocalUtcOffset",
    "build_from_struct",
    "build_message",
    "format_timestamp",
    "message_id_from_bits",
    "message_ids",
]

_ENCODER = msgspec.json.Encoder()

# At most this many cleaning warnings per message (then one "... and N more"):
# a list of 10,000 odd objects must not become 10,000 log lines.
MAX_DROPPED_WARNINGS = 20

_TYPES: dict[str, str] = {name: name for name in ("track", "identify", "group", "alias", "page", "screen")}
_TYPES_EXPECTED = "one of " + ", ".join(_TYPES)
_ID_EXPECTED = "a non-empty string, a number or a UUID"
_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1)  # naive UTC, for formatting without reading any timezone
# A naive timestamp this close to local "now" (or in its future) was made with
# the local clock at call time: segment-analytics-python 2.4 utils.guess_timezone uses 5 s.
_LOCAL_GUESS_WINDOW = timedelta(seconds=5)
_ONE_MINUTE = timedelta(minutes=1)
_ONE_DAY = timedelta(days=1)

# The host's UTC offset, in seconds east of UTC, at an instant given in seconds since the
# epoch: what ``time.localtime(instant).tm_gmtoff`` says. The runtime supplies it, and the
# builder calls it only for a naive ``timestamp`` argument; the core never reads the zone.
LocalUtcOffset = Callable[[float], float]

# UUID version 4 / RFC 4122 variant bits (RFC 9562 section 5.4), as uuid.UUID(version=4) sets them.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


class BuiltMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A validated, cleaned, stamped and encoded message."""

    # What the calls return as ``msg``: segment-analytics-python 2.4's message (see the module's strategy).
    message: dict[str, Any]
    # Its JSON: exactly the bytes that go into a batch.
    data: bytes
    # Cleaning warnings ("properties.when: unsupported type Foo"), for the runtime to log.
    dropped: tuple[str, ...]


class _TrackWire(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A plain track call's wire message for the C path: build_message's keys in its order, absent ids omitted.

    Encodes to exactly the bytes of the dict build_message encodes; cheaper to make and encode in C.
    """

    type: str
    event: str
    properties: dict[str, Any]
    messageId: str  # the wire's names
    timestamp: str
    userId: str | None = None
    anonymousId: str | None = None
    context: dict[str, Any]
    integrations: dict[str, Any]


def _message_id_from_bits(bits: int) -> str:
    """Format 128 random bits as a UUID4 string (``str(uuid.UUID(int=bits, version=4))``, faster).

    Args:
        bits: random bits, e.g. ``rng.getrandbits(128)``; only the low 128 are used.

    Returns:
        A lower-case ``8-4-4-4-12`` hex UUID with version 4 and the RFC 4122 variant.
    """
    h = ((bits & _UUID4_CLEAR) | _UUID4_SET).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_ID_BYTES_PER_DRAW = 4096


def _message_ids(random_bytes: Callable[[int], bytes]) -> Callable[[], str]:
    """A messageId source: each call formats the next 16 bytes of ``random_bytes(4096)`` as a UUID4.

    Bytes are drawn in bulk, since a draw from the OS costs a system call. Thread-safe without a
    lock: ``next()`` on a count is one C step, so no two calls take the same slice of a draw.
    """
    current = [(b"", itertools.count())]

    def new_message_id() -> str:
        drawn, slices = current[0]
        start = next(slices) * 16
        if start + 16 > len(drawn):
            drawn = random_bytes(_ID_BYTES_PER_DRAW)
            if type(drawn) is not bytes or len(drawn) < 16:
                raise TypeError("random_bytes(n) must return at least 16 bytes")
            current[0] = (drawn, itertools.count(1))
            start = 0
        return _message_id_from_bits(int.from_bytes(drawn[start : start + 16], "big"))

    return new_message_id


# ".000+00:00" ... ".999+00:00": a lookup is cheaper than formatting the milliseconds.
_MS_SUFFIXES = tuple(f".{ms:03d}+00:00" for ms in range(1000))
# The last second formatted and its text: calls come many to a second, in order.
# A memo of a pure function, replaced as one tuple so threads never see it torn.
_last_second: list[tuple[int, str]] = [(0, "1970-01-01T00:00:00")]


def _format_timestamp(wall: float) -> str:
    """Format a wall-clock time as ISO-8601 UTC with milliseconds: ``2026-11-23T13:08:42.123+00:00``.

    The same text as ``datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds")``
    (sub-millisecond digits truncated), in a fraction of the time.

    Args:
        wall: seconds since the Unix epoch.

    Returns:
        The timestamp text (also used for ``sentAt``).

    Raises:
        ValueError: ``wall`` is NaN. OverflowError: infinite, or outside years 1-9999.
    """
    # As datetime.fromtimestamp(): round to the microsecond (half to even), then
    # truncate to the millisecond. wall - second is exact in floating point.
    second = math.floor(wall)
    us = round((wall - second) * 1e6)
    if us >= 1_000_000:
        second += 1
        us -= 1_000_000
    ms = us // 1000
    cached = _last_second[0]
    if cached[0] != second:
        cached = (second, (_EPOCH + timedelta(seconds=second)).isoformat())
        _last_second[0] = cached
    return cached[1] + _MS_SUFFIXES[ms]


# The common track call, the messageId text and the timestamp in C when the extension is
# there (see _speedups.c): the same results, or NOT_PLAIN to leave the call to build_message.
NOT_PLAIN: object
# Returns a BuiltMessage or NOT_PLAIN (Any: the hot path pays for no isinstance to narrow it).
build_plain_track: Callable[..., Any] | None
message_id_from_bits: Callable[[int], str]
message_ids: Callable[[Callable[[int], bytes]], Callable[[], str]]
format_timestamp: Callable[[float], str]
if speedups is None:  # no C extension, or SEGMENT_SANSIO_PURE: the Python code does every call
    build_plain_track = None
    NOT_PLAIN = object()
    message_id_from_bits = _message_id_from_bits
    message_ids = _message_ids
    format_timestamp = _format_timestamp
else:
    build_plain_track = speedups.build_track
    NOT_PLAIN = speedups.NOT_PLAIN
    message_id_from_bits = speedups.uuid4_text
    message_ids = speedups.message_ids
    format_timestamp = speedups.timestamp_text
    speedups.configure(
        _ENCODER, BuiltMessage, _TrackWire, LIBRARY_NAME, LIBRARY_VERSION, MAX_MESSAGE_BYTES, _format_timestamp
    )


def _utc_offset_at(local_utc_offset: LocalUtcOffset, instant: float) -> timedelta | None:
    """The host's UTC offset at ``instant`` in whole seconds; None where the host has no local time for it."""
    try:
        seconds = local_utc_offset(instant)
    except (OverflowError, OSError, ValueError):  # outside the platform's time_t range
        return None
    offset = timedelta(seconds=round(seconds))
    if not -_ONE_DAY < offset < _ONE_DAY:
        raise ValueError(f"local_utc_offset returned {seconds!r}, not a UTC offset in seconds")
    return offset


def _guess_zone(naive: datetime, wall: float, local_utc_offset: LocalUtcOffset | None) -> timezone:
    """The zone of a naive timestamp, as segment-analytics-python 2.4's ``utils.guess_timezone`` guesses it.

    Local time if it is less than 5 s before the host's local "now" (or after it): the
    caller took it from the local clock just before the call. Otherwise UTC. Local now is ``wall`` at the
    host's offset, which the runtime passes in (``local_utc_offset``); without it, local
    time is UTC. The offset of a local timestamp is the one in force at that time (it may
    differ from now's across a DST change), found as ``astimezone()`` finds it.
    """
    if local_utc_offset is None:
        return _UTC
    now_offset = _utc_offset_at(local_utc_offset, wall)
    if now_offset is None or _EPOCH + timedelta(seconds=wall) + now_offset - naive >= _LOCAL_GUESS_WINDOW:
        return _UTC
    then_offset = _utc_offset_at(local_utc_offset, (naive - _EPOCH - now_offset).total_seconds())
    return _UTC if then_offset is None else timezone(then_offset)


def _format_datetime(dt: datetime, wall: float, local_utc_offset: LocalUtcOffset | None) -> str:
    """The caller's timestamp as ISO-8601 with offset and milliseconds (naive ones: see ``_guess_zone``)."""
    try:
        offset = dt.utcoffset()
    except Exception as exc:  # a broken tzinfo
        raise ValidationError("timestamp", "a datetime whose tzinfo works", dt) from exc
    if offset is None:
        naive = dt.replace(tzinfo=None)
        zone = _guess_zone(naive, wall, local_utc_offset)
        dt, offset = naive.replace(tzinfo=zone), zone.utcoffset(None)
    try:
        if offset % _ONE_MINUTE:
            # RFC 3339 offsets have no seconds; the same instant in UTC does.
            dt = dt.astimezone(_UTC)
        return dt.isoformat(timespec="milliseconds")
    except (OverflowError, ValueError) as exc:
        raise ValidationError("timestamp", "a datetime that can be expressed in UTC", dt) from exc


def _id(field: str, value: object) -> str | None:
    """An id as str (None if absent). Numbers and UUIDs are stringified; bools are refused."""
    if value is None:
        return None
    if isinstance(value, str):
        return str.__str__(value) or None
    if isinstance(value, bool):
        # A bool is never an identity; segment-analytics-python would send "True".
        raise ValidationError(field, _ID_EXPECTED + " (not a bool)", value)
    if isinstance(value, (numbers.Number, UUID)):
        if (isinstance(value, float) and value - value != 0.0) or (
            isinstance(value, Decimal) and not value.is_finite()
        ):
            raise ValidationError(field, "a finite number", value)
        try:
            return str(value)
        except ValueError as exc:  # an int longer than sys.get_int_max_str_digits()
            raise ValidationError(field, _ID_EXPECTED + " of printable size", value) from exc
    raise ValidationError(field, _ID_EXPECTED, value)


def _dict(field: str, value: object, warnings: list[str], budget: int) -> tuple[dict[str, Any], dict[Any, Any], int]:
    """A dict argument's wire form, returned form (the same object unless they differ) and the budget left.

    Any falsy value ([], "", 0) is an empty dict, as segment-analytics-python 2.4 reads ``x or {}``.
    """
    if isinstance(value, dict):
        try:
            return clean_field(value, field, warnings, budget)
        except RecursionError as exc:  # the caller's own stack was already nearly exhausted
            raise ValidationError(field, f"a dict nested at most {MAX_DEPTH} levels", value) from exc
    if not value:
        return {}, {}, budget
    raise ValidationError(field, "a dict", value)


def _returned_id(value: object, text: str) -> object:
    """A groupId or previousId as 2.4 returns it: a number stays a number (a Decimal a float)."""
    if type(value) is int or type(value) is float:
        return value
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Decimal):
        return float(value)
    return text


def _optional_str(field: str, value: object) -> str | None:
    """A name or category: a str, or None; another falsy value (0, []) is no value, as 2.4 skips its check."""
    if isinstance(value, str):
        return str.__str__(value)
    if not value:
        return None
    raise ValidationError(field, "a string", value)


def _not_accepted(kind: str, **given: object) -> None:
    for field, value in given.items():
        if value is not None:
            raise ValidationError(field, f"None for a {kind} message (not one of its fields)", value)


def build_message(
    type: str,
    *,
    wall: float,
    new_message_id: Callable[[], str],
    local_utc_offset: LocalUtcOffset | None = None,
    user_id: object = None,
    anonymous_id: object = None,
    event: object = None,
    properties: object = None,
    traits: object = None,
    group_id: object = None,
    previous_id: object = None,
    name: object = None,
    category: object = None,
    context: object = None,
    timestamp: object = None,
    integrations: object = None,
    message_id: object = None,
) -> BuiltMessage:
    """Validate, clean, stamp and encode one message.

    Args:
        type: "track", "identify", "group", "alias", "page" or "screen" (or a MessageType).
        wall: the wall-clock time of the call, seconds since the epoch.
        new_message_id: makes a messageId when the caller gave none.
        local_utc_offset: the host's UTC offset in seconds at a given epoch time (for a
            runtime, ``time.localtime(t).tm_gmtoff``), asked only to read a naive
            ``timestamp``; None: local time is UTC.
        user_id, anonymous_id: str, number or UUID; one is required (alias: user_id).
        event: track only, str, required.
        properties: track/page/screen, dict or None.
        traits: identify/group, dict or None.
        group_id: group only, an id, required.
        previous_id: alias only, an id, required.
        name, category: page/screen only, str or None.
        context, integrations: dict or None; context gains ``library``.
        timestamp: a datetime (naive ones are guessed as 2.4 does, see ``_guess_zone``) or None for ``wall``.
        message_id: an id, for deduplication; None (or "") to generate one.

    Returns:
        The message as the call returns it (2.4's form), its JSON bytes and the cleaning warnings.

    Raises:
        ValidationError: a missing or ill-typed argument, or one the type does not take.
        MessageTooLarge: the JSON is over MAX_MESSAGE_BYTES (or, for values whose cleaning
            would cost more, their JSON is at least that: see ``_value_cleaning``).
    """
    kind = _TYPES.get(type) if isinstance(type, str) else None
    if kind is None:
        raise ValidationError("type", _TYPES_EXPECTED, type)
    warnings: list[str] = []
    budget = MAX_MESSAGE_BYTES  # what the dict arguments may still take (see _value_cleaning)
    msg: dict[str, Any] = {"type": kind}
    # The common cases skip a call: a plain non-empty str user_id (``__class__``,
    # since ``type`` is an argument here), and arguments left as None (the
    # ``_not_accepted`` checks run only when one of theirs is given).
    if user_id.__class__ is str and user_id:
        uid: str | None = user_id
    else:
        uid = None if user_id is None else _id("user_id", user_id)
    aid = None if anonymous_id is None else _id("anonymous_id", anonymous_id)
    if kind == "alias":
        if event is not None or properties is not None or traits is not None or group_id is not None:
            _not_accepted(kind, event=event, properties=properties, traits=traits, group_id=group_id)
        if name is not None or category is not None:
            _not_accepted(kind, name=name, category=category)
        prev = _id("previous_id", previous_id)
        if prev is None:
            raise ValidationError("previous_id", _ID_EXPECTED, previous_id)
        if uid is None:
            raise ValidationError("user_id", _ID_EXPECTED, user_id)
        msg["previousId"] = prev
    elif uid is None and aid is None:
        raise ValidationError("user_id or anonymous_id", _ID_EXPECTED, None)

    # Each per-type dict: its wire form, and its returned form (the same object unless they differ).
    own: dict[str, Any]
    own_returned: dict[Any, Any]
    if kind == "track":
        if traits is not None or group_id is not None or previous_id is not None:
            _not_accepted(kind, traits=traits, group_id=group_id, previous_id=previous_id)
        if name is not None or category is not None:
            _not_accepted(kind, name=name, category=category)
        if not isinstance(event, str):
            raise ValidationError("event", "a string", event)
        if properties is None:
            own = own_returned = {}
        else:
            own, own_returned, budget = _dict("properties", properties, warnings, budget)
        event = event if event.__class__ is str else str.__str__(event)
        msg["event"] = event
        msg["properties"] = own
    elif kind == "identify":
        if event is not None or properties is not None or group_id is not None or previous_id is not None:
            _not_accepted(kind, event=event, properties=properties, group_id=group_id, previous_id=previous_id)
        if name is not None or category is not None:
            _not_accepted(kind, name=name, category=category)
        if traits is None:
            own = own_returned = {}
        else:
            own, own_returned, budget = _dict("traits", traits, warnings, budget)
        msg["traits"] = own
    elif kind == "group":
        if event is not None or properties is not None or previous_id is not None:
            _not_accepted(kind, event=event, properties=properties, previous_id=previous_id)
        if name is not None or category is not None:
            _not_accepted(kind, name=name, category=category)
        gid = _id("group_id", group_id)
        if gid is None:
            raise ValidationError("group_id", _ID_EXPECTED, group_id)
        if traits is None:
            own = own_returned = {}
        else:
            own, own_returned, budget = _dict("traits", traits, warnings, budget)
        msg["groupId"] = gid
        msg["traits"] = own
    elif kind != "alias":  # page, screen
        if event is not None or traits is not None or group_id is not None or previous_id is not None:
            _not_accepted(kind, event=event, traits=traits, group_id=group_id, previous_id=previous_id)
        page_name = _optional_str("name", name)
        page_category = _optional_str("category", category)
        if properties is None:
            own = own_returned = {}
        else:
            own, own_returned, budget = _dict("properties", properties, warnings, budget)
        if page_name is not None:
            msg["name"] = page_name
        if page_category is not None:
            msg["category"] = page_category
        msg["properties"] = own

    if timestamp is None:
        ts = format_timestamp(wall)
    elif isinstance(timestamp, datetime):
        ts = _format_datetime(timestamp, wall, local_utc_offset)
    else:
        raise ValidationError("timestamp", "a datetime", timestamp)
    ctx: dict[str, Any]
    ctx_returned: dict[Any, Any]
    integ: dict[str, Any]
    integ_returned: dict[Any, Any]
    if context is None:
        ctx = ctx_returned = {}
    else:
        ctx, ctx_returned, budget = _dict("context", context, warnings, budget)
    if integrations is None:
        integ = integ_returned = {}
    else:
        integ, integ_returned, budget = _dict("integrations", integrations, warnings, budget)
    mid = None if message_id is None else _id("message_id", message_id)

    # Stamp. A fresh library dict each time: the caller may mutate the returned message.
    ctx["library"] = ctx_returned["library"] = {"name": LIBRARY_NAME, "version": LIBRARY_VERSION}
    msg["messageId"] = mid = new_message_id() if mid is None else mid
    msg["timestamp"] = ts
    if uid is not None:
        msg["userId"] = uid
    if aid is not None:
        msg["anonymousId"] = aid
    msg["context"] = ctx
    msg["integrations"] = integ

    try:
        encoded = _ENCODER.encode(msg)
    except ValueError:  # lone surrogates in a str, or an int too long to print
        scrubbed = _scrub_message(msg, warnings)
        encoded = _ENCODER.encode(msg)
        # The returned message shows what was sent: the same values dropped (warned once).
        integ_returned = _scrubbed_returned(integ_returned, scrubbed)
        ctx_returned = _scrubbed_returned(ctx_returned, scrubbed)
        if kind != "alias":
            own_returned = _scrubbed_returned(own_returned, scrubbed)
    # msgspec's bytes keep the buffer it grew while encoding (about 1.3x the JSON).
    # A message is held for as long as delivery takes, so keep an exact-size copy.
    data = bytes(memoryview(encoded))
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(len(data), MAX_MESSAGE_BYTES)
    if len(warnings) > MAX_DROPPED_WARNINGS:
        more = len(warnings) - MAX_DROPPED_WARNINGS
        warnings[MAX_DROPPED_WARNINGS:] = [f"... and {more} more values dropped"]

    # What the call returns: segment-analytics-python 2.4's msg, its keys in its order, None
    # where absent (see _returned_id and _value_cleaning for the values).
    returned: dict[str, Any]
    if kind == "track":
        returned = {
            "integrations": integ_returned,
            "anonymousId": aid,
            "properties": own_returned,
            "timestamp": ts,
            "context": ctx_returned,
            "userId": uid,
            "type": kind,
            "event": event,
            "messageId": mid,
        }
    elif kind == "identify":
        returned = {
            "integrations": integ_returned,
            "anonymousId": aid,
            "timestamp": ts,
            "context": ctx_returned,
            "type": kind,
            "userId": uid,
            "traits": own_returned,
            "messageId": mid,
        }
    elif kind == "group":
        returned = {
            "integrations": integ_returned,
            "anonymousId": aid,
            "timestamp": ts,
            "groupId": _returned_id(group_id, msg["groupId"]),
            "context": ctx_returned,
            "userId": uid,
            "traits": own_returned,
            "type": kind,
            "messageId": mid,
        }
    elif kind == "alias":
        returned = {
            "integrations": integ_returned,
            "previousId": _returned_id(previous_id, msg["previousId"]),
            "timestamp": ts,
            "context": ctx_returned,
            "userId": uid,
            "type": kind,
            "messageId": mid,
            "anonymousId": aid,
        }
    else:  # page, screen
        returned = {
            "integrations": integ_returned,
            "anonymousId": aid,
            "properties": own_returned,
            "timestamp": ts,
            "category": msg.get("category"),
            "context": ctx_returned,
            "userId": uid,
            "type": kind,
            "name": msg.get("name"),
            "messageId": mid,
        }
    return BuiltMessage(message=returned, data=data, dropped=tuple(warnings))


# Wire key -> argument name, for the string fields a caller gives directly.
_STR_FIELDS = {
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "messageId": "message_id",
    "event": "event",
    "groupId": "group_id",
    "previousId": "previous_id",
    "name": "name",
    "category": "category",
}
_DICT_FIELDS = ("properties", "traits", "context", "integrations")


def _scrub_message(msg: dict[str, Any], warnings: list[str]) -> dict[int, dict[Any, Any]]:
    """Drop what the encoder refused, in place: invalid ids and names are the caller's error.

    Returns:
        The scrubbed form of each dict field, by the id of its unscrubbed form: where a
        field's returned form is its wire form, the returned message takes the same.
    """
    for key, field in _STR_FIELDS.items():
        value = msg.get(key)
        if isinstance(value, str) and scrub(value, field, []) is None:
            raise ValidationError(field, "valid Unicode text (no lone surrogates)", value)
    scrubbed: dict[int, dict[Any, Any]] = {}
    for key in _DICT_FIELDS:
        if key in msg:
            scrubbed[id(msg[key])] = msg[key] = scrub(msg[key], key, warnings)
    return scrubbed


def _scrubbed_returned(returned: dict[Any, Any], scrubbed: dict[int, dict[Any, Any]]) -> dict[Any, Any]:
    """A field's returned form without what scrubbing dropped from its wire form."""
    done = scrubbed.get(id(returned))
    if done is not None:  # the returned form was the wire form
        return done
    cleaned: dict[Any, Any] = scrub(returned, "", [])
    return cleaned


_STRUCT_KINDS: tuple[tuple[type[Message], str], ...] = (
    (Track, "track"),
    (Identify, "identify"),
    (Group, "group"),
    (Alias, "alias"),
    (Page, "page"),
    (Screen, "screen"),
)


def build_from_struct(
    message: Message,
    *,
    wall: float,
    new_message_id: Callable[[], str],
    local_utc_offset: LocalUtcOffset | None = None,
) -> BuiltMessage:
    """Build from a typed message, with exactly the rules of :func:`build_message`.

    Args:
        message: a Track, Identify, Group, Alias, Page or Screen.
        wall, new_message_id, local_utc_offset: as for :func:`build_message`.

    Returns:
        As :func:`build_message`.

    Raises:
        ValidationError, MessageTooLarge: as :func:`build_message`.
    """
    kind = next((k for cls, k in _STRUCT_KINDS if isinstance(message, cls)), None)
    if kind is None:
        raise ValidationError("message", "a Track, Identify, Group, Alias, Page or Screen", message)
    return build_message(
        kind,
        wall=wall,
        new_message_id=new_message_id,
        local_utc_offset=local_utc_offset,
        user_id=message.user_id,
        anonymous_id=message.anonymous_id,
        event=getattr(message, "event", None),
        properties=getattr(message, "properties", None),
        traits=getattr(message, "traits", None),
        group_id=getattr(message, "group_id", None),
        previous_id=getattr(message, "previous_id", None),
        name=getattr(message, "name", None),
        category=getattr(message, "category", None),
        context=message.context,
        timestamp=message.timestamp,
        integrations=message.integrations,
        message_id=message.message_id,
    )
