"""The six calls with segment-analytics-python 2.4's signatures, shared by every client.

A client subclasses :class:`CallMethods` and supplies the wall clock, the
host's UTC offset (to read naive timestamps), an id source and
``_submit(built)``; the runtimes' clients and the simulator's client all do,
so their call signatures cannot drift apart. Each call builds its
message with one direct ``build_message`` call: this is the caller's hot path,
and an intermediate dict of fields plus ``**`` expansion costs a visible share
of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._call_context import current_scope
from ._message_builder import NOT_PLAIN, BuiltMessage, build_message, build_plain_track
from ._plugins import Enrichment, Plugin, PluginFailure, PluginKind, PluginPipeline

__all__ = ["CallMethods"]


class CallMethods:
    """identify/track/alias/group/page/screen with segment-analytics-python 2.4's signatures.

    Each returns ``(success, msg)``: ``msg`` is the message as 2.4 returns it (its
    keys in its order, None where an id or name is absent, datetimes and dates as
    given, Decimals as floats) with our messageId and timestamp; ``success`` is
    False when the message was not queued (a full queue: never raised, never
    blocking). Bad arguments raise ``ValidationError`` (an AssertionError, as
    before); a message over 32 KB of JSON raises ``MessageTooLarge``.

    Common arguments, all optional (Segment's spec:
    https://segment.com/docs/connections/spec/common/):

    - ``user_id``, ``anonymous_id``: str, number or UUID; at least one is required
      (numbers and UUIDs are sent as text; an empty string counts as absent).
    - ``context``, ``integrations``: dicts, copied and cleaned, never mutated;
      ``context.library`` names this client.
    - ``timestamp``: a datetime, default the time of the call; a naive one is read
      as 2.4 reads it (local time if within 5 s of now or later, else UTC).
    - ``message_id``: for deduplication; default a random UUID4.

    Values that JSON cannot carry are converted (datetime, Decimal, UUID, Enum,
    bytes, sets...) or dropped with a warning; see ``segment_core._value_cleaning``.
    """

    def _wall(self) -> float:
        """The wall-clock time, seconds since the epoch."""
        raise NotImplementedError

    def _local_utc_offset(self, wall: float) -> float:
        """The host's UTC offset at epoch time ``wall``, seconds east; asked only for a naive timestamp."""
        raise NotImplementedError

    # A fresh messageId for a call that gave none: a method, or a callable set per instance.
    _new_message_id: Callable[[], str]

    def _submit(self, built: BuiltMessage) -> tuple[bool, dict[str, Any]]:
        """Queue a built message; ``(queued, message)``."""
        raise NotImplementedError

    def _dropped(self, message: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """A plugin dropped this message: count it; ``(False, message)``."""
        return False, message

    def _plugins_failed(self, failures: tuple[PluginFailure, ...]) -> None:
        """Plugins raised, or returned what is not a message, and were skipped: say so."""

    # None until a plugin is added: the calls' fast path asks only this.
    _plugins: PluginPipeline | None = None

    def add_plugin(self, plugin: Plugin | Enrichment, *, kind: PluginKind = "before") -> None:
        """Add a plugin: it sees every message of later calls (see ``segment_core`` plugins).

        Args:
            plugin: a callable, ``plugin(message)``: a before plugin returns the message (or
                another, or None to drop it); an enrichment plugin returns fields to add.
            kind: ``"before"`` (the default) or ``"enrichment"``.

        Raises:
            ConfigurationError: ``plugin`` is not callable, or ``kind`` is unknown.
        """
        pipeline = self._plugins if self._plugins is not None else PluginPipeline()
        pipeline.add(plugin, kind)
        self._plugins = pipeline

    def remove_plugin(self, plugin: object) -> None:
        """Remove a plugin added before; the calls take their fast path again once none is left."""
        pipeline = self._plugins
        if pipeline is not None:
            pipeline.remove(plugin)
            if not pipeline:
                self._plugins = None

    def _call(self, kind: str, fields: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Build one call's message, with the call context and the plugins if any, and submit it."""
        scope = current_scope()
        if scope is not None:
            fields = scope.apply(kind, fields)
        built = build_message(
            kind,
            wall=self._wall(),
            new_message_id=self._new_message_id,
            local_utc_offset=self._local_utc_offset,
            **fields,
        )
        pipeline = self._plugins
        if pipeline is None:
            return self._submit(built)
        outcome = pipeline.run(built)
        if outcome.failures:
            self._plugins_failed(outcome.failures)
        if outcome.built is None:
            return self._dropped(built.message)
        return self._submit(outcome.built)

    def identify(
        self,
        user_id: Any = None,
        traits: Any = None,
        context: Any = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Any = None,
        message_id: Any = None,
    ) -> tuple[bool, dict[str, Any]]:
        """Record who the user is and what they are like.

        Args:
            traits: dict of the user's traits (name, email, plan...), default {}.
            user_id, anonymous_id, context, timestamp, integrations, message_id: see the class.

        Returns:
            ``(success, msg)``.
        """
        return self._call(
            "identify",
            {
                "user_id": user_id,
                "traits": traits,
                "context": context,
                "timestamp": timestamp,
                "anonymous_id": anonymous_id,
                "integrations": integrations,
                "message_id": message_id,
            },
        )

    def track(
        self,
        user_id: Any = None,
        event: Any = None,
        properties: Any = None,
        context: Any = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Any = None,
        message_id: Any = None,
    ) -> tuple[bool, dict[str, Any]]:
        """Record an action the user performed.

        Args:
            event: str, the action's name ("Order Completed"); required.
            properties: dict of the action's properties, default {}.
            user_id, anonymous_id, context, timestamp, integrations, message_id: see the class.

        Returns:
            ``(success, msg)``.
        """
        if build_plain_track is not None and timestamp is None and self._plugins is None and current_scope() is None:
            # The call services make most, in C when its arguments are plain (see _speedups.c);
            # anything else, and every error, is build_message's.
            built = build_plain_track(
                user_id,
                event,
                properties,
                context,
                anonymous_id,
                integrations,
                message_id,
                self._wall(),
                self._new_message_id,
            )
            if built is not NOT_PLAIN:
                return self._submit(built)
        return self._call(
            "track",
            {
                "user_id": user_id,
                "event": event,
                "properties": properties,
                "context": context,
                "timestamp": timestamp,
                "anonymous_id": anonymous_id,
                "integrations": integrations,
                "message_id": message_id,
            },
        )

    def alias(
        self,
        previous_id: Any = None,
        user_id: Any = None,
        context: Any = None,
        timestamp: Any = None,
        integrations: Any = None,
        message_id: Any = None,
    ) -> tuple[bool, dict[str, Any]]:
        """Merge two identities: ``previous_id`` becomes ``user_id``.

        Args:
            previous_id: the id the user had (str, number or UUID); required.
            user_id: the id they have now; required.
            context, timestamp, integrations, message_id: see the class.

        Returns:
            ``(success, msg)``.
        """
        return self._call(
            "alias",
            {
                "previous_id": previous_id,
                "user_id": user_id,
                "context": context,
                "timestamp": timestamp,
                "integrations": integrations,
                "message_id": message_id,
            },
        )

    def group(
        self,
        user_id: Any = None,
        group_id: Any = None,
        traits: Any = None,
        context: Any = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Any = None,
        message_id: Any = None,
    ) -> tuple[bool, dict[str, Any]]:
        """Associate the user with a group (an account, a company...).

        Args:
            group_id: the group's id (str, number or UUID); required.
            traits: dict of the group's traits, default {}.
            user_id, anonymous_id, context, timestamp, integrations, message_id: see the class.

        Returns:
            ``(success, msg)``.
        """
        return self._call(
            "group",
            {
                "user_id": user_id,
                "group_id": group_id,
                "traits": traits,
                "context": context,
                "timestamp": timestamp,
                "anonymous_id": anonymous_id,
                "integrations": integrations,
                "message_id": message_id,
            },
        )

    def page(
        self,
        user_id: Any = None,
        category: Any = None,
        name: Any = None,
        properties: Any = None,
        context: Any = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Any = None,
        message_id: Any = None,
    ) -> tuple[bool, dict[str, Any]]:
        """Record a page view on a website.

        Args:
            category: str, the page's category, or None.
            name: str, the page's name, or None.
            properties: dict of the page's properties (url, title...), default {}.
            user_id, anonymous_id, context, timestamp, integrations, message_id: see the class.

        Returns:
            ``(success, msg)``.
        """
        return self._call(
            "page",
            {
                "user_id": user_id,
                "category": category,
                "name": name,
                "properties": properties,
                "context": context,
                "timestamp": timestamp,
                "anonymous_id": anonymous_id,
                "integrations": integrations,
                "message_id": message_id,
            },
        )

    def screen(
        self,
        user_id: Any = None,
        category: Any = None,
        name: Any = None,
        properties: Any = None,
        context: Any = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Any = None,
        message_id: Any = None,
    ) -> tuple[bool, dict[str, Any]]:
        """Record a screen view in a mobile app.

        Args:
            category: str, the screen's category, or None.
            name: str, the screen's name, or None.
            properties: dict of the screen's properties, default {}.
            user_id, anonymous_id, context, timestamp, integrations, message_id: see the class.

        Returns:
            ``(success, msg)``.
        """
        return self._call(
            "screen",
            {
                "user_id": user_id,
                "category": category,
                "name": name,
                "properties": properties,
                "context": context,
                "timestamp": timestamp,
                "anonymous_id": anonymous_id,
                "integrations": integrations,
                "message_id": message_id,
            },
        )
