"""Plugins: code of the user's that sees each message before it is encoded, and may change or drop it.

Two kinds, as analytics-node and analytics-swift have them:

- *before* plugins get each message (its wire form: a dict with camelCase keys,
  as it would be sent) after validation, and return it (changed or not), a new
  dict, or None to drop it. A dropped message makes the call return
  ``(False, msg)`` and is counted (``Stats.dropped``), never reported as a failure.
- *enrichment* plugins get the message and return fields to add (or None):
  nested dicts are merged, and what the message already has is kept.

Before plugins run first, then enrichment plugins, each kind in the order they
were added, in the caller's thread. The result is cleaned and encoded as any
message is, so the wire carries it and the 32 KB limit applies to it. A plugin
that raises, or returns what is not a message, is skipped for that message (its
changes undone) and reported with the exception; it never loses the message.

A plugin is any callable, or an object with ``__call__``: see :class:`Plugin`
and :class:`Enrichment`. :class:`Sampling` is a ready one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import msgspec

from ._errors import ConfigurationError, MessageTooLarge
from ._message_builder import BuiltMessage
from ._value_cleaning import clean
from .limits import MAX_MESSAGE_BYTES

__all__ = ["Enrichment", "Plugin", "PluginFailure", "PluginKind", "PluginOutcome", "PluginPipeline", "Sampling"]

PluginKind = Literal["before", "enrichment"]

_ENCODER = msgspec.json.Encoder()
_TYPES = frozenset({"track", "identify", "group", "alias", "page", "screen"})


class Plugin(Protocol):
    """A before plugin: ``plugin(message) -> message | None`` (None drops it). It may change ``message`` in place."""

    def __call__(self, message: dict[str, Any], /) -> dict[str, Any] | None:
        """The message to send (this one, changed or not, or another), or None to drop it."""
        ...


class Enrichment(Protocol):
    """An enrichment plugin: ``plugin(message) -> fields | None``; the fields are merged in, missing ones only."""

    def __call__(self, message: dict[str, Any], /) -> Mapping[str, Any] | None:
        """Fields to add to the message (nested dicts are merged), or None for none."""
        ...


class PluginFailure(msgspec.Struct, frozen=True, kw_only=True):
    """A plugin raised, or returned what is not a message; it was skipped for that message."""

    plugin: str
    kind: str
    error: BaseException


class PluginOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What the plugins made of a message: the message to send (None: dropped), and any failures."""

    built: BuiltMessage | None
    failures: tuple[PluginFailure, ...] = ()


class PluginPipeline:
    """The plugins of one client, in order. Adding is safe while calls run (the lists are replaced whole)."""

    __slots__ = ("_before", "_enrichment")

    def __init__(self) -> None:
        self._before: tuple[Plugin, ...] = ()
        self._enrichment: tuple[Enrichment, ...] = ()

    def __repr__(self) -> str:
        return f"PluginPipeline(before={len(self._before)}, enrichment={len(self._enrichment)})"

    def __bool__(self) -> bool:
        return bool(self._before or self._enrichment)

    def add(self, plugin: Plugin | Enrichment, kind: PluginKind = "before") -> None:
        """Add a plugin at the end of its kind.

        Raises:
            ConfigurationError: ``plugin`` is not callable, or ``kind`` is not "before" or "enrichment".
        """
        if not callable(plugin):
            raise ConfigurationError("a plugin must be callable as plugin(message)")
        if kind == "before":
            self._before = (*self._before, plugin)  # type: ignore[arg-type]
        elif kind == "enrichment":
            self._enrichment = (*self._enrichment, plugin)
        else:
            raise ConfigurationError('a plugin\'s kind must be "before" or "enrichment"')

    def remove(self, plugin: object) -> None:
        """Remove a plugin (every time it was added); unknown ones are ignored."""
        self._before = tuple(p for p in self._before if p is not plugin)
        self._enrichment = tuple(p for p in self._enrichment if p is not plugin)

    def run(self, built: BuiltMessage) -> PluginOutcome:
        """Run every plugin on a built message; the message to send, encoded again, or None if dropped.

        Raises:
            MessageTooLarge: what the plugins made is over 32 KB of JSON.
        """
        message: dict[str, Any] = msgspec.json.decode(built.data)
        failures: list[PluginFailure] = []
        for plugin in self._before:
            kept = _copy(message)
            try:
                result = plugin(message)
            except Exception as exc:  # the plugin's bug: skip it, keep the message
                failures.append(_failure(plugin, "before", exc))
                message = kept
                continue
            if result is None:
                return PluginOutcome(built=None, failures=tuple(failures))
            problem = _not_a_message(result)
            if problem is not None:
                failures.append(_failure(plugin, "before", ValueError(problem)))
                message = kept
                continue
            message = result
        for enrichment in self._enrichment:
            kept = _copy(message)
            try:
                fields = enrichment(message)
                if fields is not None:
                    if not isinstance(fields, Mapping):
                        raise TypeError(f"returned {type(fields).__name__}, not a mapping of fields or None")
                    _merge_missing(message, fields)
                problem = _not_a_message(message)
                if problem is not None:
                    raise ValueError(problem)
            except Exception as exc:
                failures.append(_failure(enrichment, "enrichment", exc))
                message = kept
        return PluginOutcome(built=_encoded(message, built.dropped), failures=tuple(failures))


def _failure(plugin: object, kind: str, error: BaseException) -> PluginFailure:
    return PluginFailure(plugin=getattr(plugin, "__name__", None) or type(plugin).__name__, kind=kind, error=error)


def _copy(value: Any) -> Any:
    """A copy of a decoded JSON value, deep enough that a plugin's changes in place can be undone."""
    if type(value) is dict:
        return {key: _copy(item) for key, item in value.items()}
    if type(value) is list:
        return [_copy(item) for item in value]
    return value


def _merge_missing(target: dict[str, Any], fields: Mapping[str, Any]) -> None:
    for key, value in fields.items():
        present = target.get(key)
        if isinstance(present, dict) and isinstance(value, Mapping):
            _merge_missing(present, value)
        elif key not in target or present is None:
            target[key] = value


def _not_a_message(value: object) -> str | None:
    """Why ``value`` cannot be sent as a message, or None."""
    if not isinstance(value, dict):
        return f"returned {type(value).__name__}, not a message dict or None"
    kind = value.get("type")
    if kind not in _TYPES:
        return "returned a message without a valid type"
    if not isinstance(value.get("messageId"), str) or not value["messageId"]:
        return "returned a message without a messageId"
    ids = [value.get(key) for key in (("userId", "previousId") if kind == "alias" else ("userId", "anonymousId"))]
    has = [isinstance(identity, str) and bool(identity) for identity in ids]
    if (kind == "alias" and not all(has)) or (kind != "alias" and not any(has)):
        return "returned a message without its ids"
    return None


def _encoded(message: dict[str, Any], dropped: tuple[str, ...]) -> BuiltMessage:
    cleaned, warnings = clean(message, "message", budget=MAX_MESSAGE_BYTES)
    data = _ENCODER.encode(cleaned)
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(len(data), MAX_MESSAGE_BYTES)
    return BuiltMessage(message=cleaned, data=bytes(data), dropped=dropped + warnings)


class Sampling:
    """A before plugin that keeps a fraction of messages, chosen by a stable hash of the user.

    The same user (``userId``, else ``anonymousId``) is always kept or always
    dropped, so a sampled user's journey stays whole. Alias messages are always
    kept (they join identities).

    Args:
        rate: the fraction to keep, from 0 (none) to 1 (all).
        salt: changes which users are kept (two samplers with different salts choose independently).

    Raises:
        ConfigurationError: ``rate`` is not a number from 0 to 1.
    """

    __slots__ = ("_rate", "_salt", "_threshold")

    def __init__(self, rate: float, *, salt: str = "") -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ConfigurationError("a sampling rate must be a number from 0 to 1")
        self._rate = float(rate)
        self._salt = salt.encode()
        self._threshold = int(self._rate * 2**64)

    def __repr__(self) -> str:
        return f"Sampling(rate={self._rate})"

    def keeps(self, user: str) -> bool:
        """Whether messages of ``user`` are kept."""
        digest = hashlib.blake2b(user.encode(), digest_size=8, key=self._salt[:64]).digest()
        return int.from_bytes(digest, "big") < self._threshold

    def __call__(self, message: dict[str, Any], /) -> dict[str, Any] | None:
        """The message if its user is sampled in, else None."""
        if message.get("type") == "alias":
            return message
        user = message.get("userId") or message.get("anonymousId") or message.get("messageId") or ""
        return message if self.keeps(str(user)) else None
