"""The six calls with segment-analytics-python 2.4's signatures, shared by every client.

A client subclasses :class:`CallMethods` and supplies ``_enqueue(type, fields)``;
the runtimes' clients and the simulator's client all do, so their call
signatures cannot drift apart.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CallMethods"]


class CallMethods:
    """identify/track/alias/group/page/screen with segment-analytics-python 2.4's signatures.

    Each returns ``(success, msg)``: ``msg`` is the message as sent; ``success``
    is False when the queue is full (never raised, never blocking). Bad
    arguments raise ``ValidationError`` (an AssertionError, as before).
    """

    def _enqueue(self, type_: str, fields: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
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
        return self._enqueue(
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
        return self._enqueue(
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
        return self._enqueue(
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
        return self._enqueue(
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
        return self._enqueue("page", _page_fields(locals()))

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
        return self._enqueue("screen", _page_fields(locals()))


_PAGE_FIELDS = (
    "user_id",
    "category",
    "name",
    "properties",
    "context",
    "timestamp",
    "anonymous_id",
    "integrations",
    "message_id",
)


def _page_fields(arguments: dict[str, Any]) -> dict[str, Any]:
    return {name: arguments[name] for name in _PAGE_FIELDS}
