"""Recursive cleaning of user values into what JSON can carry.

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
- anything else -> the key (or list element) dropped with a warning

One bad value only costs itself. Warnings are data (never logged here): short
strings naming the path and the type, never the value. Containers nested deeper
than :data:`MAX_DEPTH` and circular references are dropped with a warning.

Speed: ``clean_dict`` first offers the dict to ``_speedups.clean_plain``, the
common case in C (exact str/int/float/bool/None, str-keyed dicts, lists,
tuples, sets, naive or UTC datetimes, dates). It returns exactly what the rules
here would, or hands the whole value back to them; without a C compiler the
package installs without it and gives the same results.

Two problems only the encoder sees are left out of the hot path: ``str`` with
lone surrogates (not UTF-8) and ints too long for ``int``/``str`` conversion.
When encoding fails, the builder calls :func:`scrub` on the cleaned value, which
drops exactly those with a warning.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal
from itertools import chain
from typing import Any
from uuid import UUID

import msgspec

from ._native import speedups

_clean_plain: Callable[[object], Any] | None
_NOT_PLAIN: object
if speedups is None:  # no C extension, or SEGMENT_SANSIO_PURE: the Python path gives the same results
    _clean_plain = None
    _NOT_PLAIN = object()
else:
    _clean_plain = speedups.clean_plain
    _NOT_PLAIN = speedups.NOT_PLAIN

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "clean",
    "clean_dict",
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


def clean(value: object, path: str = "value") -> tuple[Any, tuple[str, ...]]:
    """Clean one value by the module's rules.

    Args:
        value: any Python value.
        path: how warnings name the value (``"properties"``).

    Returns:
        ``(cleaned, warnings)``. If the value itself cannot be represented,
        ``cleaned`` is None and a warning says why.
    """
    warnings: list[str] = []
    cleaned = _clean_any(value, path, warnings, None, 0)
    return (None if cleaned is _DROP else cleaned), tuple(warnings)


def clean_dict(value: dict[Any, Any], path: str, warnings: list[str]) -> dict[str, Any]:
    """Clean a dict into a new dict with str keys (the builder's entry point).

    Args:
        value: the caller's dict (never mutated).
        path: the name of the field, for warnings (``"properties"``).
        warnings: list that warnings are appended to.

    Returns:
        A new dict; entries that cannot be represented are left out.
    """
    if _clean_plain is not None:
        # The common case (plain JSON values, datetimes) in C; anything else the rules below decide.
        plain: dict[str, Any] = _clean_plain(value)
        if plain is not _NOT_PLAIN:
            return plain
    out = _clean_dict(value, path, warnings, None, 0)
    return {} if out is _DROP else out


# Paths are built lazily: a path is the root's name, or a (parent path, key)
# pair, and becomes text only for a warning. So clean values cost no string
# formatting however deep they sit.
# ``active`` holds the ids of the containers being cleaned, to spot cycles; it
# is made by the first container that needs the slow path.
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


def _refuse(path: _Path, warnings: list[str], depth: int) -> _Drop:
    """Warn that a container is too deep or already being cleaned (a cycle), and drop it."""
    if depth >= MAX_DEPTH:
        warnings.append(f"{_render(path)}: nested deeper than {MAX_DEPTH} levels")
    else:
        warnings.append(f"{_render(path)}: circular reference")
    return _DROP


def _clean_dict(
    d: dict[Any, Any], path: _Path, warnings: list[str], active: set[int] | None, depth: int
) -> dict[str, Any] | _Drop:
    items = iter(d.items())
    for k, v in items:
        if (type(v) in _ATOMS or (type(v) is float and v - v == 0.0)) and type(k) is str:
            continue
        break
    else:
        return dict(d)
    if active is None:
        active = set()
    ident = id(d)
    if depth >= MAX_DEPTH or ident in active:
        return _refuse(path, warnings, depth)
    active.add(ident)
    depth += 1
    try:
        if type(k) is str:
            # Everything before k is clean: copy the whole dict in C, then
            # patch the values from k on. A non-str key further on means the
            # keys change too: start again with _rebuild_dict.
            out = dict(d)
            mark = len(warnings)
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
                    c = _clean_dict(value, (path, key), warnings, active, depth)
                elif t is list or t is tuple:
                    c = _clean_list(value, (path, key), warnings, active, depth)
                elif t is datetime:
                    c = _datetime_text(value, (path, key), warnings)
                else:
                    c = _clean_any(value, (path, key), warnings, active, depth)
                if c is _DROP:
                    del out[key]
                else:
                    out[key] = c
            else:
                return out
            del warnings[mark:]
        return _rebuild_dict(d, path, warnings, active, depth)
    finally:
        active.discard(ident)


def _rebuild_dict(d: dict[Any, Any], path: _Path, warnings: list[str], active: set[int], depth: int) -> dict[str, Any]:
    """A dict with some non-str keys, entry by entry (``depth`` is that of its values)."""
    out: dict[str, Any] = {}
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
            c = _clean_any(v, (path, k), warnings, active, depth)
            if c is not _DROP:
                out[k] = c
    return out


def _clean_list(
    seq: list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any],
    path: _Path,
    warnings: list[str],
    active: set[int] | None,
    depth: int,
) -> list[Any] | _Drop:
    for v in seq:
        if type(v) in _ATOMS or (type(v) is float and v - v == 0.0):
            continue
        break
    else:
        return list(seq)
    if active is None:
        active = set()
    ident = id(seq)
    if depth >= MAX_DEPTH or ident in active:
        return _refuse(path, warnings, depth)
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
                    c = _clean_dict(v, (path, i), warnings, active, depth)
                elif t is list or t is tuple:
                    c = _clean_list(v, (path, i), warnings, active, depth)
                else:
                    c = _clean_any(v, (path, i), warnings, active, depth)
                if c is not _DROP:
                    out.append(c)
        return out
    finally:
        active.discard(ident)


def _clean_any(value: Any, path: _Path, warnings: list[str], active: set[int] | None, depth: int) -> Any:
    """Clean any value; returns ``_DROP`` (after adding a warning) if it cannot be represented."""
    t = type(value)
    if t in _ATOMS:
        return value
    if t is float:
        return value if value - value == 0.0 else None
    if t is datetime:
        return _datetime_text(value, path, warnings)
    if t is dict:
        return _clean_dict(value, path, warnings, active, depth)
    if t is list or t is tuple or t is set or t is frozenset:
        return _clean_list(value, path, warnings, active, depth)
    # Enum first: str and int Enums are also str and int.
    if isinstance(value, enum.Enum):
        if depth >= MAX_DEPTH:
            warnings.append(f"{_render(path)}: nested deeper than {MAX_DEPTH} levels")
            return _DROP
        return _clean_any(value.value, path, warnings, active, depth + 1)
    if isinstance(value, (datetime, date)):
        try:
            return value.isoformat()
        except Exception:  # a broken tzinfo; one bad value never costs the rest
            warnings.append(f"{_render(path)}: {t.__name__} could not be formatted")
            return _DROP
    if isinstance(value, dict):
        return _clean_dict(value, path, warnings, active, depth)
    if isinstance(value, (list, tuple, set, frozenset)):
        return _clean_list(value, path, warnings, active, depth)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        f = float.__float__(value)
        return f if f - f == 0.0 else None
    if isinstance(value, Decimal):
        return _clean_decimal(value, path, warnings)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            warnings.append(f"{_render(path)}: invalid UTF-8 in {t.__name__}")
            return _DROP
    if isinstance(value, msgspec.Struct) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return _clean_object(value, path, warnings, active, depth)
    warnings.append(f"{_render(path)}: unsupported type {t.__name__}")
    return _DROP


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


def _clean_decimal(value: Decimal, path: _Path, warnings: list[str]) -> Any:
    if not value.is_finite():
        return None
    if value.adjusted() >= MAX_INT_DIGITS:
        # int() of it would build a huge number that JSON readers refuse.
        warnings.append(f"{_render(path)}: Decimal too large for JSON")
        return _DROP
    if value == value.to_integral_value():
        return int(value)
    f = float(value)
    return f if f - f == 0.0 else None


def _clean_object(value: Any, path: _Path, warnings: list[str], active: set[int] | None, depth: int) -> Any:
    """A dataclass instance or msgspec Struct, as a dict of its fields."""
    if active is None:
        active = set()
    ident = id(value)
    if depth >= MAX_DEPTH or ident in active:
        return _refuse(path, warnings, depth)
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
        warnings.append(f"{_render(path)}: {type(value).__name__} fields could not be read")
        return _DROP
    active.add(ident)
    try:
        return _clean_dict(as_dict, path, warnings, active, depth + 1)
    finally:
        active.discard(ident)


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
