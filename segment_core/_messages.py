"""The six Segment message types as typed, immutable msgspec Structs.

Strategy: the Structs are the *typed form* of a message, not the hot path. A
caller may build one and hand it to ``build_from_struct`` instead of keyword
arguments, and tests and the collector decode wire JSON with
``msgspec.json.decode(data, type=Message)``. Field names are snake_case in
Python and camelCase on the wire (``rename="camel"``); ``type`` is the tag of
a tagged union. Construction does not validate (msgspec does not type-check
``__init__``): the builder validates a Struct exactly as it validates keyword
arguments, so both routes accept and reject the same values.

Wire shape (what the builder emits, and what decoding accepts): ``userId``,
``anonymousId``, ``name`` and ``category`` are omitted when absent;
``messageId``, ``timestamp``, ``context`` and ``integrations`` are always
present in a built message but optional here so that a caller can leave them
to the builder. Spec: https://segment.com/docs/connections/spec/common/
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import msgspec

__all__ = [
    "Alias",
    "Group",
    "Identify",
    "Message",
    "MessageType",
    "Page",
    "Screen",
    "Track",
]


class MessageType(str, enum.Enum):
    """The six message types; each value is the wire ``type`` tag."""

    TRACK = "track"
    IDENTIFY = "identify"
    GROUP = "group"
    ALIAS = "alias"
    PAGE = "page"
    SCREEN = "screen"


class _Common(msgspec.Struct, frozen=True, kw_only=True, rename="camel", tag_field="type"):
    """Fields every message type has (Segment's "common fields")."""

    user_id: str | None = None
    anonymous_id: str | None = None
    # Left to the builder when None: a generated UUID4-format id.
    message_id: str | None = None
    # Left to the builder when None: the wall-clock time of the call. On the
    # wire an ISO-8601 string with offset, decoded here as an aware datetime.
    timestamp: datetime | None = None
    context: dict[str, Any] = {}
    integrations: dict[str, Any] = {}


class Track(_Common, frozen=True, kw_only=True, tag="track"):
    """A user did something: https://segment.com/docs/connections/spec/track/"""

    event: str
    properties: dict[str, Any] = {}


class Identify(_Common, frozen=True, kw_only=True, tag="identify"):
    """Who the user is: https://segment.com/docs/connections/spec/identify/"""

    traits: dict[str, Any] = {}


class Group(_Common, frozen=True, kw_only=True, tag="group"):
    """The user belongs to a group: https://segment.com/docs/connections/spec/group/"""

    group_id: str
    traits: dict[str, Any] = {}


class Alias(_Common, frozen=True, kw_only=True, tag="alias"):
    """Two ids are the same user: https://segment.com/docs/connections/spec/alias/"""

    # Required for alias (segment-analytics-python requires it too).
    user_id: str
    previous_id: str


class Page(_Common, frozen=True, kw_only=True, tag="page"):
    """A web page view: https://segment.com/docs/connections/spec/page/"""

    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] = {}


class Screen(_Common, frozen=True, kw_only=True, tag="screen"):
    """A mobile screen view: https://segment.com/docs/connections/spec/screen/"""

    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] = {}


Message = Track | Identify | Group | Alias | Page | Screen
