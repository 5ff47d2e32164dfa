"""``call_context``: ids, traits and context fields for every call made inside a block.

A web request handler sets who the user is once, and every call it makes
carries it::

    with call_context(user_id=request.user.id, context={"ip": request.remote_addr}):
        client.track(event="Order Completed", properties={...})

It lives in a ``contextvars.ContextVar``, so it follows the code that runs
inside the block, whatever runs it: a thread (each thread has its own), an
asyncio task or a trio task (each task starts with a copy of its parent's).
Scopes nest: an inner one merges into the outer one (its values win, dicts are
merged). A call's own arguments always win over the scope: a given ``user_id``
is kept, and a given ``context`` or ``traits`` dict is merged over the scope's.
Traits go to ``traits`` for identify and group calls, and to ``context.traits``
(as Segment's spec says) for the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import msgspec

__all__ = ["CallScope", "call_context", "current_scope"]


class CallScope(msgspec.Struct, frozen=True, kw_only=True):
    """What a ``call_context`` block sets; ``current_scope()`` is the innermost, merged with the outer ones."""

    user_id: Any = None
    anonymous_id: Any = None
    traits: Mapping[str, Any] = {}
    context: Mapping[str, Any] = {}
    integrations: Mapping[str, Any] = {}

    def inside(self, outer: CallScope | None) -> CallScope:
        """This scope within ``outer``: its values win, its dicts are merged over the outer ones."""
        if outer is None:
            return self
        return CallScope(
            user_id=self.user_id if self.user_id is not None else outer.user_id,
            anonymous_id=self.anonymous_id if self.anonymous_id is not None else outer.anonymous_id,
            traits=_merged(outer.traits, self.traits),
            context=_merged(outer.context, self.context),
            integrations=_merged(outer.integrations, self.integrations),
        )

    def apply(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        """A call's arguments with the scope filled in (the call's own values win).

        A call naming another user than the scope's gets none of the scope's traits
        or anonymous id: they describe the scope's user.
        """
        given = fields.get("user_id")
        traits = self.traits
        other_user = given is not None and self.user_id is not None and str(given) != str(self.user_id)
        if self.user_id is not None and given is None:
            fields["user_id"] = self.user_id
        if other_user:
            traits = {}
        elif self.anonymous_id is not None and kind != "alias" and fields.get("anonymous_id") is None:
            fields["anonymous_id"] = self.anonymous_id
        context = self.context
        if traits:
            if kind in ("identify", "group"):
                fields["traits"] = _merged(traits, _mapping(fields.get("traits")))
            else:
                context = _merged(context, {"traits": dict(traits)})
        if context:
            fields["context"] = _merged(context, _mapping(fields.get("context")))
        if self.integrations:
            fields["integrations"] = _merged(self.integrations, _mapping(fields.get("integrations")))
        return fields


_SCOPE: ContextVar[CallScope | None] = ContextVar("segment_call_scope", default=None)

current_scope = _SCOPE.get
"""The call scope in force here, or None (the calls' fast path)."""


@contextmanager
def call_context(
    *,
    user_id: Any = None,
    anonymous_id: Any = None,
    traits: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    integrations: Mapping[str, Any] | None = None,
) -> Iterator[CallScope]:
    """Set ids, traits and context fields for every call made inside the block (see the module docstring).

    Args:
        user_id, anonymous_id: the ids calls get when they give none.
        traits: the user's traits: merged into identify/group traits, and into ``context.traits`` otherwise.
        context: fields merged into each call's ``context``.
        integrations: fields merged into each call's ``integrations``.

    Yields:
        The scope in force inside the block (merged with any outer one).
    """
    scope = CallScope(
        user_id=user_id,
        anonymous_id=anonymous_id,
        traits=dict(traits or {}),
        context=dict(context or {}),
        integrations=dict(integrations or {}),
    ).inside(_SCOPE.get())
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _merged(under: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``under`` with ``over`` on top: nested mappings merged, ``over``'s values winning."""
    result = dict(under)
    for key, value in over.items():
        below = result.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            result[key] = _merged(below, value)
        else:
            result[key] = value
    return result
