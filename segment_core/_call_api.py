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

from ._message_builder import NOT_PLAIN, BuiltMessage, build_message, build_plain_track

__all__ = ["CallMethods"]


class CallMethods:
    """identify/track/alias/group/page/screen with segment-analytics-python 2.4's signatures.

    Each returns ``(success, msg)``: ``msg`` is the message as sent; ``success``
    is False when the message was not queued (a full queue: never raised, never
    blocking). Bad arguments raise ``ValidationError`` (an AssertionError, as before).
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
        return self._submit(
            build_message(
                "identify",
                wall=self._wall(),
                new_message_id=self._new_message_id,
                local_utc_offset=self._local_utc_offset,
                user_id=user_id,
                traits=traits,
                context=context,
                timestamp=timestamp,
                anonymous_id=anonymous_id,
                integrations=integrations,
                message_id=message_id,
            )
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
        if build_plain_track is not None and timestamp is None:
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
        return self._submit(
            build_message(
                "track",
                wall=self._wall(),
                new_message_id=self._new_message_id,
                local_utc_offset=self._local_utc_offset,
                user_id=user_id,
                event=event,
                properties=properties,
                context=context,
                timestamp=timestamp,
                anonymous_id=anonymous_id,
                integrations=integrations,
                message_id=message_id,
            )
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
        return self._submit(
            build_message(
                "alias",
                wall=self._wall(),
                new_message_id=self._new_message_id,
                local_utc_offset=self._local_utc_offset,
                previous_id=previous_id,
                user_id=user_id,
                context=context,
                timestamp=timestamp,
                integrations=integrations,
                message_id=message_id,
            )
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
        return self._submit(
            build_message(
                "group",
                wall=self._wall(),
                new_message_id=self._new_message_id,
                local_utc_offset=self._local_utc_offset,
                user_id=user_id,
                group_id=group_id,
                traits=traits,
                context=context,
                timestamp=timestamp,
                anonymous_id=anonymous_id,
                integrations=integrations,
                message_id=message_id,
            )
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
        return self._submit(
            build_message(
                "page",
                wall=self._wall(),
                new_message_id=self._new_message_id,
                local_utc_offset=self._local_utc_offset,
                user_id=user_id,
                category=category,
                name=name,
                properties=properties,
                context=context,
                timestamp=timestamp,
                anonymous_id=anonymous_id,
                integrations=integrations,
                message_id=message_id,
            )
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
        return self._submit(
            build_message(
                "screen",
                wall=self._wall(),
                new_message_id=self._new_message_id,
                local_utc_offset=self._local_utc_offset,
                user_id=user_id,
                category=category,
                name=name,
                properties=properties,
                context=context,
                timestamp=timestamp,
                anonymous_id=anonymous_id,
                integrations=integrations,
                message_id=message_id,
            )
        )
