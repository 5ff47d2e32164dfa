"""Helpers for the side-by-side tests against segment-analytics-python 2.4 (``test_parity_2_4*.py``).

A :class:`Call` is one client call, written once and replayed on both clients, each time with a
fresh deep copy of its arguments (2.4 writes ``context.library`` into the caller's dict). A
:class:`Divergence` records a difference we keep on purpose and still checks our side: ours must
equal what 2.4 returns for a *twin* call, or raise a given class.

:func:`differences` compares two messages strictly (a bool is not an int, ``3.0`` is not ``3``, a
date is not its ISO string, ``-0.0`` is not ``0.0``). :class:`Gap` names the differences issue 16
is closing; a row that declares gaps is an ``xfail(strict=True, raises=KnownGap)``, and
:func:`check_gaps` raises :class:`KnownGap` only when the row differs in exactly the declared ways,
so an xfail row cannot hide a new, unrelated difference, and a fixed gap turns the row into an
XPASS (or, if another gap remains, a failure naming the gap to delete from the table).
"""

from __future__ import annotations

import copy
import enum
import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

import pytest
from segment.analytics import Client as ReferenceClient

from segment_core import ValidationError

__all__ = [
    "MISSING",
    "NAIVE_NOW",
    "Call",
    "Difference",
    "Divergence",
    "Gap",
    "KnownGap",
    "alias",
    "check_gaps",
    "differences",
    "gap_marks",
    "hide_known_gaps",
    "group",
    "identify",
    "page",
    "screen",
    "track",
]


class _Marker(enum.Enum):
    MISSING = "<missing>"
    NAIVE_NOW = "<datetime.now() at call time>"


MISSING = _Marker.MISSING
# A timestamp argument replaced by one naive datetime.now(), taken when the row runs and given to
# both clients: 2.4 reads a naive time within 5 s of local now as local time, so it cannot be
# taken when the table is built.
NAIVE_NOW = _Marker.NAIVE_NOW


@dataclass(frozen=True)
class Call:
    """One call of the Client API: method name, positional and keyword arguments."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def arguments(self) -> dict[str, Any]:
        """The arguments by parameter name, as 2.4's signature binds them."""
        bound = inspect.signature(getattr(ReferenceClient, self.method)).bind(None, *self.args, **self.kwargs)
        return {name: value for name, value in bound.arguments.items() if name != "self"}

    def given(self, name: str) -> bool:
        """True if the call passes ``name`` with a value other than None."""
        return self.arguments().get(name) is not None

    def with_message_id(self, message_id: str) -> Call:
        """This call with ``message_id`` set (by keyword)."""
        arguments = self.arguments()
        arguments["message_id"] = message_id
        return Call(self.method, (), arguments)

    def run(self, client: Any, now: datetime | None = None) -> tuple[bool, dict[str, Any]]:
        """Call ``client`` with fresh copies of the arguments; NAIVE_NOW becomes ``now``."""
        args, kwargs = copy.deepcopy((self.args, self.kwargs))
        if kwargs.get("timestamp") is NAIVE_NOW:
            assert now is not None, "a NAIVE_NOW row needs the time it runs at"
            kwargs["timestamp"] = now
        result: tuple[bool, dict[str, Any]] = getattr(client, self.method)(*args, **kwargs)
        return result


def track(*args: Any, **kwargs: Any) -> Call:
    """``client.track(*args, **kwargs)``."""
    return Call("track", args, kwargs)


def identify(*args: Any, **kwargs: Any) -> Call:
    """``client.identify(*args, **kwargs)``."""
    return Call("identify", args, kwargs)


def group(*args: Any, **kwargs: Any) -> Call:
    """``client.group(*args, **kwargs)``."""
    return Call("group", args, kwargs)


def alias(*args: Any, **kwargs: Any) -> Call:
    """``client.alias(*args, **kwargs)``."""
    return Call("alias", args, kwargs)


def page(*args: Any, **kwargs: Any) -> Call:
    """``client.page(*args, **kwargs)``."""
    return Call("page", args, kwargs)


def screen(*args: Any, **kwargs: Any) -> Call:
    """``client.screen(*args, **kwargs)``."""
    return Call("screen", args, kwargs)


@dataclass(frozen=True)
class Divergence:
    """A difference from 2.4 that we keep, with its reason (a README migration-table row).

    Attributes:
        reason: one line: what we do, what 2.4 does, why.
        twin: 2.4 given this call returns (and sends) what ours returns for the row's call.
        ours_raises: instead of a twin: ours raises this class where 2.4 returns.
        reference_raises: 2.4 raises this class for the row's own call (checked).
        wire_only: the returned message equals 2.4's; only the JSON sent differs (as the twin's).
    """

    reason: str
    twin: Call | None = None
    ours_raises: type[Exception] | None = None
    reference_raises: type[Exception] | None = None
    wire_only: bool = False

    def __post_init__(self) -> None:
        assert (self.twin is None) != (self.ours_raises is None), "a twin call or an exception, not both"


class Gap(enum.Enum):
    """How a returned message still differs from 2.4's on main; each is being fixed under issue 16."""

    NONE_KEYS = "returned message leaves out keys whose value is None; 2.4 keeps anonymousId/userId/name/category=None"
    JSON_VALUES = "returned message holds JSON-ready text for dates and datetimes; 2.4 returns the date objects"
    FALSY_REJECTED = (
        "a falsy argument of the wrong type ([] or '' for a dict, 0 for name/category) raises ValidationError;"
        " 2.4 takes it as given (empty) and returns"
    )


# Gaps that also stop the message from reaching the wire (the call raises).
WIRE_GAPS = frozenset({Gap.FALSY_REJECTED})


class KnownGap(AssertionError):
    """A row differs from 2.4 in exactly the gaps its xfail mark names."""


def hide_known_gaps(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    """For ``__tracebackhide__``: leave a KnownGap's frames out of its report.

    pytest formats a report for every xfail, reading and parsing the source of each frame
    shown; for the ~150 expected failures here that was most of the run time. The exception's
    message says everything a KnownGap has to say; any other failure keeps its full traceback.
    """
    return excinfo.errisinstance(KnownGap)


def gap_marks(gaps: Iterable[Gap]) -> list[pytest.MarkDecorator]:
    """``xfail(strict=True, raises=KnownGap)`` naming ``gaps``, or no mark."""
    names = sorted(gap.name for gap in gaps)
    if not names:
        return []
    reason = "; ".join(Gap[name].value for name in names)
    return [pytest.mark.xfail(strict=True, raises=KnownGap, reason=reason)]


class Difference(NamedTuple):
    """One place where two messages differ: ``MISSING`` marks a key one side lacks."""

    path: str
    reference: Any
    ours: Any

    def __str__(self) -> str:
        return f"{self.path}: 2.4 {self.reference!r}, ours {self.ours!r}"


def _kind(value: Any) -> type:
    """The JSON-relevant type: enum members of int/str count as int/str, as 2.4 returns them."""
    for kind in (bool, int, float, str, datetime, date):
        if isinstance(value, kind):
            return kind
    return type(value)


def _same_scalar(reference: Any, ours: Any) -> bool:
    kind = _kind(reference)
    if kind is not _kind(ours):
        return False
    if kind is float:
        return repr(float(reference)) == repr(float(ours))  # NaN equals NaN, -0.0 is not 0.0
    if kind is datetime:
        return bool(reference == ours and reference.utcoffset() == ours.utcoffset())
    return bool(reference == ours)


def differences(reference: Any, ours: Any, path: str = "msg") -> list[Difference]:
    """Every place where ``ours`` differs from ``reference``, strictly typed, dict keys as they are."""
    if isinstance(reference, dict) and isinstance(ours, dict):
        found: list[Difference] = []
        for key in [*reference, *(k for k in ours if k not in reference)]:
            where = f"{path}.{key}"
            if key not in ours:
                found.append(Difference(where, reference[key], MISSING))
            elif key not in reference:
                found.append(Difference(where, MISSING, ours[key]))
            else:
                found.extend(differences(reference[key], ours[key], where))
        return found
    if isinstance(reference, list) and isinstance(ours, list) and len(reference) == len(ours):
        return [
            d
            for index, pair in enumerate(zip(reference, ours, strict=True))
            for d in differences(*pair, f"{path}[{index}]")
        ]
    if isinstance(reference, dict | list) or isinstance(ours, dict | list):
        return [] if type(reference) is type(ours) and reference == ours else [Difference(path, reference, ours)]
    return [] if _same_scalar(reference, ours) else [Difference(path, reference, ours)]


def _gap_of(difference: Difference) -> Gap | None:
    if difference.ours is MISSING and difference.reference is None:
        return Gap.NONE_KEYS
    reference = difference.reference
    if isinstance(reference, date) and isinstance(difference.ours, str) and difference.ours == reference.isoformat():
        return Gap.JSON_VALUES
    return None


def check_gaps(declared: frozenset[Gap], found: list[Difference], call: Call, raised: Exception | None) -> None:
    """Pass if ours matched; raise KnownGap if it differs in exactly the ``declared`` gaps.

    Args:
        declared: the gaps the row's table entry names.
        found: the differences between the messages (empty if ours raised).
        call: the call ours was given, to tell a rejected falsy argument from other errors.
        raised: what ours raised where 2.4 returned, or None.

    Raises:
        KnownGap: the row fails in exactly the declared ways (the xfail mark expects this).
        AssertionError: anything else: an unexplained difference or a stale table entry.
    """
    __tracebackhide__ = hide_known_gaps
    if raised is not None:
        # No message to compare: only the rejection is checked (the row's other gaps, if any,
        # are checked once the rejection is fixed).
        field_name = getattr(raised, "field", None)
        arguments = call.arguments()
        if not (isinstance(raised, ValidationError) and field_name in arguments and not arguments[field_name]):
            raise AssertionError(f"2.4 returned a message, ours raised {raised!r}") from raised
        assert Gap.FALSY_REJECTED in declared, f"undeclared gap FALSY_REJECTED: {raised!r}"
        raise KnownGap(f"FALSY_REJECTED: {raised!r}") from None
    unexplained = [d for d in found if _gap_of(d) is None]
    gaps = {gap for d in found if (gap := _gap_of(d)) is not None}
    assert not unexplained, "differs from 2.4:\n  " + "\n  ".join(map(str, unexplained))
    assert gaps <= declared, f"undeclared gap(s) {sorted(g.name for g in gaps - declared)}: " + "; ".join(
        map(str, found)
    )
    if gaps:
        assert gaps == declared, f"gap(s) {sorted(g.name for g in declared - gaps)} fixed: delete from the row"
        raise KnownGap("; ".join(sorted(g.name for g in gaps)) + ": " + "; ".join(map(str, found)))
