"""Recursive cleaning of user values into what JSON can carry, and into what a call returns.

Strategy: cleaning always builds new containers (the caller's dicts and lists
are never mutated, and the message never aliases them), and is cheap where
values are already JSON: a container whose items are all ``str``/``int``/
``bool``/``None``/finite ``float`` under ``str`` keys is scanned with one
``type(v) in _ATOMS`` test per item and copied in C (``dict(d)``/``list(s)``).
A str-keyed dict with some other values is also copied in C, then patched from
its first such value on; only dicts with non-str keys are rebuilt entry by
entry. Values that are not JSON as they are follow these rules, exactly:

- datetime/date -> ``isoformat()`` (as segment-analytics-python serialises them)
- Decimal -> int if integral else float; non-finite -> None
- UUID -> str; Enum -> its value, cleaned
- set/frozenset/tuple/list -> list; dict -> dict
- bytes/bytearray -> UTF-8 text; invalid UTF-8 -> dropped with a warning
- dataclass instances and msgspec Structs -> dicts (Struct fields under their
  encoded names), cleaned recursively
- float NaN/+-inf -> None; str/int/bool/None unchanged (subclasses -> base type)
- dict keys end up str: str kept; int/float/bool/Enum/UUID stringified as
  ``json.dumps`` would; other keys -> entry dropped with a warning
- subclasses of dict are read through ``items()``, of list/tuple/set through
  iteration, as segment-analytics-python 2.4 reads them (never their storage)
- anything else -> the key (or list element) dropped with a warning

One bad value only costs itself. Warnings are data (never logged here): short
strings naming the path and the type, never the value. Containers nested deeper
than :data:`MAX_DEPTH` and circular references are dropped with a warning.

The message a call returns (segment-analytics-python 2.4's ``msg``) shows the
same values with two differences, as 2.4's own ``clean()`` leaves them:
datetimes and dates stay the caller's objects, and a Decimal is a float. So a
field is cleaned into two forms, the wire form and the returned one; they are
the same object unless such a value sits inside, and then a second walk (or,
in C, the same walk) builds the returned form.

Cost is bounded by the message limit, not by the input: every container visited
is charged the least JSON it can make, :data:`DICT_ENTRY_BYTES` per entry and
:data:`LIST_ITEM_BYTES` per item (a shared sub-object is charged each time it
is reached, as it is written each time), and cleaning stops with
``MessageTooLarge`` once one message's charges pass ``MAX_MESSAGE_BYTES``. The
charge is a lower bound of the JSON of what is kept; a dropped value is charged
as if kept, since walking it costs as much.

Speed: :func:`clean_field` first offers the dict to ``_speedups.clean_plain``,
the common case in C (exact str/int/float/bool/None, str-keyed dicts, lists,
tuples, sets, naive or UTC datetimes, dates) with the same charges. It returns
exactly what the rules here would, or hands the whole value back to them;
without the C path the Python code gives the same results.

Two problems only the encoder sees are left out of the hot path: ``str`` with
lone surrogates (not UTF-8) and ints too long for ``int``/``str`` conversion.
When encoding fails, the builder calls :func:`scrub` on the cleaned value, which
drops exactly those with a warning.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable
from datetime import date, datetime, timezone
from decimal import Decimal
from itertools import chain, islice
from typing import Any
from uuid import UUID

import msgspec

from ._errors import MessageTooLarge
from ._native import speedups
from .limits import MAX_MESSAGE_BYTES

_clean_plain: Callable[[object, int], Any] | None
_NOT_PLAIN: object
if speedups is None:  # no C extension, or SEGMENT_SANSIO_PURE: the Python path gives the same results
    _clean_plain = None
    _NOT_PLAIN = object()
else:
    _clean_plain = speedups.clean_plain
    _NOT_PLAIN = speedups.NOT_PLAIN

__all__ = [
    "DICT_ENTRY_BYTES",
    "LIST_ITEM_BYTES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "Walk",
    "clean",
    "clean_field",
    "scrub",
]

# Containers nested deeper than this are dropped with a warning. Real event
# payloads nest a handful of levels; 64 keeps the cleaner's recursion (two
# frames per level) far below Python's default recursion limit of 1000.
MAX_DEPTH = 64
# CPython's default limit on int <-> decimal string conversion
# (sys.int_info.default_max_str_digits, 3.11+ and 3.10.7+): Python's own json
# module cannot read a longer integer, so neither may we send one.
MAX_INT_DIGITS = 4300
# The least JSON an entry can add to its container: '"":0' and a comma; an item: '0' and a comma.
# (A container's own brackets are counted by its parent's entry or item.)
DICT_ENTRY_BYTES = 5
LIST_ITEM_BYTES = 2

# Keys are cut to this many characters in warning paths: enough to recognise, short to log.
_MAX_KEY_IN_PATH = 40

# Exact types that JSON carries unchanged (bool is never subclassed).
_ATOMS: frozenset[type] = frozenset({str, int, bool, type(None)})


class _Drop(enum.Enum):
    DROP = 0


_DROP = _Drop.DROP
_UTC = timezone.utc
# Formats naive and UTC datetimes (as isoformat() would, but in C).
_ENCODER = msgspec.json.Encoder()


class Walk:
    """The state of cleaning one message's values.

    Args:
        warnings: list that warnings are appended to.
        budget: the bytes of JSON the values may still take at least (see the module's strategy).
        keep_objects: build the returned form (datetimes, dates kept; Decimal as float)
            instead of the wire form.
        limit: the whole message's budget, if ``budget`` is what is left of it (for the error).
    """

    __slots__ = ("active", "budget", "converted", "keep_objects", "limit", "warnings")

    def __init__(
        self, warnings: list[str], budget: int = MAX_MESSAGE_BYTES, *, keep_objects: bool = False, limit: int = 0
    ) -> None:
        self.warnings = warnings
        self.limit = limit or budget  # the whole message's budget, for MessageTooLarge
        self.budget = budget
        self.keep_objects = keep_objects
        # Whether a value was cleaned whose returned form differs from its wire form.
        self.converted = False
        # The ids of the containers being cleaned, to spot cycles.
        self.active: set[int] = set()

    def charge(self, size: int) -> None:
        """Spend ``size`` bytes of the budget; past it, the message is too large.

        Raises:
            MessageTooLarge: with the bytes charged so far (a lower bound of the JSON).
        """
        self.budget -= size
        if self.budget < 0:
            raise MessageTooLarge(self.limit - self.budget, self.limit)


def clean(value: object, path: str = "value", *, budget: int = MAX_MESSAGE_BYTES) -> tuple[Any, tuple[str, ...]]:
    """Clean one value by the module's rules, into its wire form.

    Args:
        value: any Python value.
        path: how warnings name the value (``"properties"``).
        budget: the JSON the value may take (see the module's strategy).

    Returns:
        ``(cleaned, warnings)``. If the value itself cannot be represented,
        ``cleaned`` is None and a warning says why.

    Raises:
        MessageTooLarge: the value is bigger than ``budget`` as JSON.
    """
    walk = Walk([], budget)
    cleaned = _clean_any(value, path, walk, 0)
    return (None if cleaned is _DROP else cleaned), tuple(walk.warnings)


def clean_field(
    value: dict[Any, Any], path: str, warnings: list[str], budget: int
) -> tuple[dict[str, Any], dict[Any, Any], int]:
    """Clean one dict argument (properties, traits, context, integrations): the builder's entry point.

    Args:
        value: the caller's dict, or an instance of a dict subclass (never mutated).
        path: the name of the field, for warnings (``"properties"``).
        warnings: the message's list of warnings, appended to.
        budget: what is left of the message's budget (see the module's strategy).

    Returns:
        ``(wire, returned, budget left)``: new dicts, the same object unless the two forms differ.

    Raises:
        MessageTooLarge: the message's values are bigger than its budget as JSON.
    """
    if _clean_plain is not None:
        # The common case (plain JSON values, datetimes) in C; anything else the rules below decide.
        plain: tuple[dict[str, Any], dict[Any, Any], int] = _clean_plain(value, budget)
        if plain is not _NOT_PLAIN:
            return plain
    return clean_field_in_python(value, path, warnings, budget)


def clean_field_in_python(
    value: dict[Any, Any], path: str, warnings: list[str], budget: int
) -> tuple[dict[str, Any], dict[Any, Any], int]:
    """:func:`clean_field` without the C path (what the C path must agree with)."""
    walk = Walk(warnings, budget, limit=MAX_MESSAGE_BYTES)
    wire = _clean_any(value, path, walk, 0)
    if wire is _DROP:  # a dict subclass whose items() failed: the warning says so
        wire = {}
    if not walk.converted:
        return wire, wire, walk.budget
    # A datetime, date or integral Decimal inside: the returned form is another walk (no new warnings).
    again = Walk([], budget, keep_objects=True, limit=MAX_MESSAGE_BYTES)
    returned = _clean_any(value, path, again, 0)
    return wire, ({} if returned is _DROP else returned), walk.budget


# Paths are built lazily: a path is the root's name, or a (parent path, key)
# pair, and becomes text only for a warning. So clean values cost no string
# formatting however deep they sit.
_Path = str | tuple["_Path", str | int]


def _render(path: _Path) -> str:
    parts: list[str] = []
    while isinstance(path, tuple):
        path, key = path
        if isinstance(key, int):
            parts.append(f"[{key}]")
        else:
            parts.append(f".{key[:_MAX_KEY_IN_PATH]}..." if len(key) > _MAX_KEY_IN_PATH else f".{key}")
    parts.append(path)
    return "".join(reversed(parts))


def _refuse(path: _Path, walk: Walk, depth: int) -> _Drop:
    """Warn that a container is too deep or already being cleaned (a cycle), and drop it."""
    if depth >= MAX_DEPTH:
        walk.warnings.append(f"{_render(path)}: nested deeper than {MAX_DEPTH} levels")
    else:
        walk.warnings.append(f"{_render(path)}: circular reference")
    return _DROP


def _clean_dict(d: dict[Any, Any], path: _Path, walk: Walk, depth: int) -> dict[Any, Any] | _Drop:
    """An exact dict (subclasses go through ``_clean_mapping``)."""
    walk.charge(DICT_ENTRY_BYTES * len(d))
    items = iter(d.items())
    for k, v in items:
        if (type(v) in _ATOMS or (type(v) is float and v - v == 0.0)) and type(k) is str:
            continue
        break
    else:
        return dict(d)
    active = walk.active
    ident = id(d)
    if depth >= MAX_DEPTH or ident in active:
        return _refuse(path, walk, depth)
    active.add(ident)
    depth += 1
    try:
        if type(k) is str:
            # Everything before k is clean: copy the whole dict in C, then
            # patch the values from k on. A non-str key further on means the
            # keys change too: start again with _rebuild_dict.
            out = dict(d)
            warnings = walk.warnings
            mark, budget_mark = len(warnings), walk.budget
            first = ((k, v),)
            for key, value in chain(first, items):
                if type(key) is not str:
                    break
                t = type(value)
                if t in _ATOMS:
                    continue
                if t is float:
                    if value - value != 0.0:
                        out[key] = None
                    continue
                c: Any
                if t is dict:
                    c = _clean_dict(value, (path, key), walk, depth)
                elif t is list or t is tuple:
                    c = _clean_list(value, (path, key), walk, depth)
                else:
                    c = _clean_any(value, (path, key), walk, depth)
                if c is _DROP:
                    del out[key]
                else:
                    out[key] = c
            else:
                return out
            del warnings[mark:]
            walk.budget = budget_mark  # what the first attempt spent is spent again, not twice
        return _rebuild_dict(d, path, walk, depth)
    finally:
        active.discard(ident)


def _rebuild_dict(d: dict[Any, Any], path: _Path, walk: Walk, depth: int) -> dict[str, Any]:
    """A dict with some non-str keys, entry by entry (``depth`` is that of its values)."""
    out: dict[str, Any] = {}
    warnings = walk.warnings
    for k, v in d.items():
        if type(k) is not str:
            str_key = _clean_key(k, path, warnings)
            if str_key is None:
                continue
            if str_key in out:
                warnings.append(f"{_render((path, str_key))}: duplicate key after stringifying; last value kept")
            k = str_key  # noqa: PLW2901
        t = type(v)
        if t in _ATOMS:
            out[k] = v
        elif t is float:
            out[k] = v if v - v == 0.0 else None
        else:
            c = _clean_any(v, (path, k), walk, depth)
            if c is not _DROP:
                out[k] = c
    return out


def _clean_list(
    seq: list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any], path: _Path, walk: Walk, depth: int
) -> list[Any] | _Drop:
    """An exact list, tuple, set or frozenset (subclasses go through ``_clean_iterable``)."""
    walk.charge(LIST_ITEM_BYTES * len(seq))
    for v in seq:
        if type(v) in _ATOMS or (type(v) is float and v - v == 0.0):
            continue
        break
    else:
        return list(seq)
    active = walk.active
    ident = id(seq)
    if depth >= MAX_DEPTH or ident in active:
        return _refuse(path, walk, depth)
    active.add(ident)
    depth += 1
    try:
        out: list[Any] = []
        for i, v in enumerate(seq):
            t = type(v)
            if t in _ATOMS:
                out.append(v)
            elif t is float:
                out.append(v if v - v == 0.0 else None)
            else:
                c: Any
                if t is dict:
                    c = _clean_dict(v, (path, i), walk, depth)
                elif t is list or t is tuple:
                    c = _clean_list(v, (path, i), walk, depth)
                else:
                    c = _clean_any(v, (path, i), walk, depth)
                if c is not _DROP:
                    out.append(c)
        return out
    finally:
        active.discard(ident)


def _read_at_most(
    value: object, items: Callable[[], Iterable[Any]], count: int, path: _Path, walk: Walk
) -> list[Any] | _Drop:
    """The first ``count`` of a subclass's ``items()`` or iteration (more could not fit the budget anyway)."""
    try:
        return list(islice(items(), count))
    except Exception:  # a broken __iter__ or items(); one bad value never costs the rest
        walk.warnings.append(f"{_render(path)}: {type(value).__name__} could not be read")
        return _DROP


def _clean_mapping(value: dict[Any, Any], path: _Path, walk: Walk, depth: int) -> Any:
    """A dict subclass, read through ``items()`` as 2.4 reads it: never its storage, which ``dict(d)`` reads."""
    ident = id(value)
    if ident in walk.active:
        return _refuse(path, walk, depth)
    pairs = _read_at_most(value, value.items, walk.budget // DICT_ENTRY_BYTES + 1, path, walk)
    if pairs is _DROP:
        return _DROP
    try:
        read = dict(pairs)
    except (TypeError, ValueError):  # items() gave something other than (hashable key, value) pairs
        walk.warnings.append(f"{_render(path)}: {type(value).__name__} could not be read")
        return _DROP
    walk.active.add(ident)
    try:
        return _clean_dict(read, path, walk, depth)
    finally:
        walk.active.discard(ident)


def _clean_iterable(
    value: list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any], path: _Path, walk: Walk, depth: int
) -> Any:
    """A list, tuple, set or frozenset subclass (a namedtuple...), read through iteration as 2.4 reads it."""
    ident = id(value)
    if ident in walk.active:
        return _refuse(path, walk, depth)
    read = _read_at_most(value, value.__iter__, walk.budget // LIST_ITEM_BYTES + 1, path, walk)
    if read is _DROP:
        return _DROP
    walk.active.add(ident)
    try:
        return _clean_list(read, path, walk, depth)
    finally:
        walk.active.discard(ident)


def _clean_any(value: Any, path: _Path, walk: Walk, depth: int) -> Any:
    """Clean any value; returns ``_DROP`` (after adding a warning) if it cannot be represented."""
    t = type(value)
    if t in _ATOMS:
        return value
    if t is float:
        return value if value - value == 0.0 else None
    if t is datetime:
        return _dated(value, path, walk)
    if t is dict:
        return _clean_dict(value, path, walk, depth)
    if t is list or t is tuple or t is set or t is frozenset:
        return _clean_list(value, path, walk, depth)
    # Enum first: str and int Enums are also str and int.
    if isinstance(value, enum.Enum):
        if depth >= MAX_DEPTH:
            walk.warnings.append(f"{_render(path)}: nested deeper than {MAX_DEPTH} levels")
            return _DROP
        return _clean_any(value.value, path, walk, depth + 1)
    if isinstance(value, (datetime, date)):
        return _dated(value, path, walk)
    if isinstance(value, dict):
        return _clean_mapping(value, path, walk, depth)
    if isinstance(value, (list, tuple, set, frozenset)):
        return _clean_iterable(value, path, walk, depth)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        f = float.__float__(value)
        return f if f - f == 0.0 else None
    if isinstance(value, Decimal):
        return _clean_decimal(value, path, walk)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            walk.warnings.append(f"{_render(path)}: invalid UTF-8 in {t.__name__}")
            return _DROP
    if isinstance(value, msgspec.Struct) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return _clean_object(value, path, walk, depth)
    walk.warnings.append(f"{_render(path)}: unsupported type {t.__name__}")
    return _DROP


def _dated(value: date, path: _Path, walk: Walk) -> Any:
    """A date or datetime: its ISO text on the wire, itself in the returned message; dropped if it has no text."""
    if type(value) is datetime:
        text = _datetime_text(value, path, walk.warnings)
    else:
        try:
            text = value.isoformat()
        except Exception:  # a broken tzinfo; one bad value never costs the rest
            walk.warnings.append(f"{_render(path)}: {type(value).__name__} could not be formatted")
            return _DROP
    if text is _DROP:
        return _DROP
    if walk.keep_objects:
        return value
    walk.converted = True
    return text


def _datetime_text(dt: datetime, path: _Path, warnings: list[str]) -> Any:
    """``dt.isoformat()``; for naive and UTC datetimes via msgspec's C formatter, which is faster."""
    tz = dt.tzinfo
    if tz is None:
        return _ENCODER.encode(dt)[1:-1].decode()
    if tz is _UTC:
        # msgspec writes UTC as "Z"; isoformat() (and segment-analytics-python) as "+00:00".
        return _ENCODER.encode(dt)[1:-2].decode() + "+00:00"
    try:
        return dt.isoformat()
    except Exception:  # a broken tzinfo; one bad value never costs the rest
        warnings.append(f"{_render(path)}: datetime could not be formatted")
        return _DROP


def _clean_decimal(value: Decimal, path: _Path, walk: Walk) -> Any:
    """int if integral, else float, on the wire; 2.4's ``float(value)`` in the returned message."""
    if not value.is_finite():
        return None
    if value.adjusted() >= MAX_INT_DIGITS:
        # int() of it would build a huge number that JSON readers refuse.
        walk.warnings.append(f"{_render(path)}: Decimal too large for JSON")
        return _DROP
    if value == value.to_integral_value():
        if walk.keep_objects:
            f = float(value)
            if f - f == 0.0:
                return f
        walk.converted = True
        return int(value)
    f = float(value)
    return f if f - f == 0.0 else None


def _clean_object(value: Any, path: _Path, walk: Walk, depth: int) -> Any:
    """A dataclass instance or msgspec Struct, as a dict of its fields."""
    ident = id(value)
    if depth >= MAX_DEPTH or ident in walk.active:
        return _refuse(path, walk, depth)
    try:
        if isinstance(value, msgspec.Struct):
            as_dict = {
                f.encode_name: getattr(value, f.name)
                for f in msgspec.structs.fields(value)
                if getattr(value, f.name) is not msgspec.UNSET
            }
        else:
            as_dict = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    except Exception:  # e.g. a field that was never set; one bad value never costs the rest
        walk.warnings.append(f"{_render(path)}: {type(value).__name__} fields could not be read")
        return _DROP
    walk.active.add(ident)
    try:
        return _clean_dict(as_dict, path, walk, depth + 1)
    finally:
        walk.active.discard(ident)


def _clean_key(key: object, path: _Path, warnings: list[str]) -> str | None:
    """A non-str dict key as str, the way ``json.dumps`` writes it; None (and a warning) if it cannot be."""
    k = key.value if isinstance(key, enum.Enum) else key
    if isinstance(k, str):
        return str.__str__(k)
    if k is True:
        return "true"
    if k is False:
        return "false"
    if isinstance(k, int):
        try:
            return int.__repr__(k)
        except ValueError:  # longer than sys.get_int_max_str_digits()
            warnings.append(f"{_render(path)}: int key too large for JSON")
            return None
    if isinstance(k, float):
        if k - k == 0.0:
            return float.__repr__(k)
        return "NaN" if math.isnan(k) else ("Infinity" if k > 0 else "-Infinity")
    if isinstance(k, UUID):
        return str(k)
    warnings.append(f"{_render(path)}: unsupported key type {type(key).__name__}")
    return None


def _encodable_str(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encodable_int(i: int) -> bool:
    try:
        int.__repr__(i)
    except ValueError:
        return False
    return True


def scrub(value: Any, path: str, warnings: list[str]) -> Any:
    """Drop what the JSON encoder refuses from an already cleaned value.

    Only needed when encoding failed: ``str`` keys or values with lone
    surrogates (not UTF-8 encodable) and ints longer than Python allows to be
    written as decimal text.

    Args:
        value: a value returned by :func:`clean` or :func:`clean_dict`.
        path: how warnings name the value.
        warnings: list that warnings are appended to.

    Returns:
        The value without those parts (a new container if anything was dropped;
        None if ``value`` itself was dropped).
    """
    out = _scrub(value, path, warnings)
    return None if out is _DROP else out


def _scrub(value: Any, path: _Path, warnings: list[str]) -> Any:
    t = type(value)
    if t is str:
        if _encodable_str(value):
            return value
        warnings.append(f"{_render(path)}: str is not valid Unicode (lone surrogates)")
        return _DROP
    if t is int:
        if _encodable_int(value):
            return value
        warnings.append(f"{_render(path)}: int too large for JSON")
        return _DROP
    if t is dict:
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not _encodable_str(k):
                warnings.append(f"{_render(path)}: key is not valid Unicode (lone surrogates)")
                continue
            c = _scrub(v, (path, k), warnings)
            if c is not _DROP:
                out[k] = c
        return out
    if t is list:
        items: list[Any] = []
        for i, v in enumerate(value):
            c = _scrub(v, (path, i), warnings)
            if c is not _DROP:
                items.append(c)
        return items
    return value
