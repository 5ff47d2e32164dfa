"""Recursive cleaning of user values into what JSON can carry.

Strategy: cleaning always builds new containers (the caller's dicts and lists
are never mutated, and the message never aliases them), and is cheap where
values are already JSON: a container whose items are all ``str``/``int``/
``bool``/``None``/finite ``float`` under ``str`` keys is scanned with one
``type(v) in _ATOMS`` test per item and copied in C (``dict(d)``/``list(s)``).
Anything else goes through the slow path, where the rules are, exactly:

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

Two problems only the encoder sees are left out of the hot path: ``str`` with
lone surrogates (not UTF-8) and ints too long for ``int``/``str`` conversion.
When encoding fails, the builder calls :func:`scrub` on the cleaned value, which
drops exactly those with a warning.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

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
    cleaned = _clean_any(value, None, path, warnings, None, 0)
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
    out = _clean_dict(value, None, path, warnings, None, 0)
    return {} if out is _DROP else out


# The recursive functions below take the parent's path and this value's key
# separately and join them only when needed (a warning, or a container that
# needs the slow path), so that clean values cost no string formatting.
# ``active`` holds the ids of the containers being cleaned (to spot cycles);
# it is made by the first container that needs the slow path.


def _path(parent: str | None, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if len(key) > _MAX_KEY_IN_PATH:
        key = f"{key[:_MAX_KEY_IN_PATH]}..."
    return str(key) if parent is None else f"{parent}.{key}"


def _enter(
    value: object, parent: str | None, key: str | int, warnings: list[str], active: set[int], depth: int
) -> bool:
    """Check depth and cycles before recursing into ``value``; warn and return False to drop it."""
    if depth >= MAX_DEPTH:
        warnings.append(f"{_path(parent, key)}: nested deeper than {MAX_DEPTH} levels")
        return False
    if id(value) in active:
        warnings.append(f"{_path(parent, key)}: circular reference")
        return False
    active.add(id(value))
    return True


def _clean_dict(
    d: dict[Any, Any],
    parent: str | None,
    key: str | int,
    warnings: list[str],
    active: set[int] | None,
    depth: int,
) -> dict[str, Any] | _Drop:
    for k, v in d.items():
        if (type(v) in _ATOMS or (type(v) is float and v - v == 0.0)) and type(k) is str:
            continue
        break
    else:
        return dict(d)
    if active is None:
        active = set()
    if not _enter(d, parent, key, warnings, active, depth):
        return _DROP
    path = _path(parent, key)
    try:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if type(k) is not str:
                str_key = _clean_key(k, path, warnings)
                if str_key is None:
                    continue
                if str_key in out:
                    warnings.append(f"{_path(path, str_key)}: duplicate key after stringifying; last value kept")
                k = str_key  # noqa: PLW2901
            t = type(v)
            if t in _ATOMS:
                out[k] = v
            elif t is float:
                out[k] = v if v - v == 0.0 else None
            else:
                c = _clean_any(v, path, k, warnings, active, depth + 1)
                if c is not _DROP:
                    out[k] = c
        return out
    finally:
        active.discard(id(d))


def _clean_list(
    seq: list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any],
    parent: str | None,
    key: str | int,
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
    if not _enter(seq, parent, key, warnings, active, depth):
        return _DROP
    path = _path(parent, key)
    try:
        out: list[Any] = []
        for i, v in enumerate(seq):
            t = type(v)
            if t in _ATOMS:
                out.append(v)
            elif t is float:
                out.append(v if v - v == 0.0 else None)
            else:
                c = _clean_any(v, path, i, warnings, active, depth + 1)
                if c is not _DROP:
                    out.append(c)
        return out
    finally:
        active.discard(id(seq))


def _clean_any(
    value: Any,
    parent: str | None,
    key: str | int,
    warnings: list[str],
    active: set[int] | None,
    depth: int,
) -> Any:
    """Clean any value; returns ``_DROP`` (after adding a warning) if it cannot be represented."""
    t = type(value)
    if t in _ATOMS:
        return value
    if t is float:
        return value if value - value == 0.0 else None
    if t is dict:
        return _clean_dict(value, parent, key, warnings, active, depth)
    if t is list or t is tuple or t is set or t is frozenset:
        return _clean_list(value, parent, key, warnings, active, depth)
    if t is datetime:
        return _datetime_text(value, parent, key, warnings)
    # Enum first: str and int Enums are also str and int.
    if isinstance(value, enum.Enum):
        if depth >= MAX_DEPTH:
            warnings.append(f"{_path(parent, key)}: nested deeper than {MAX_DEPTH} levels")
            return _DROP
        return _clean_any(value.value, parent, key, warnings, active, depth + 1)
    if isinstance(value, (datetime, date)):
        try:
            return value.isoformat()
        except Exception:  # a broken tzinfo; one bad value never costs the rest
            warnings.append(f"{_path(parent, key)}: {t.__name__} could not be formatted")
            return _DROP
    if isinstance(value, dict):
        return _clean_dict(value, parent, key, warnings, active, depth)
    if isinstance(value, (list, tuple, set, frozenset)):
        return _clean_list(value, parent, key, warnings, active, depth)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        f = float.__float__(value)
        return f if f - f == 0.0 else None
    if isinstance(value, Decimal):
        return _clean_decimal(value, parent, key, warnings)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            warnings.append(f"{_path(parent, key)}: invalid UTF-8 in {t.__name__}")
            return _DROP
    if isinstance(value, msgspec.Struct) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return _clean_object(value, parent, key, warnings, active, depth)
    warnings.append(f"{_path(parent, key)}: unsupported type {t.__name__}")
    return _DROP


def _datetime_text(dt: datetime, parent: str | None, key: str | int, warnings: list[str]) -> Any:
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
        warnings.append(f"{_path(parent, key)}: datetime could not be formatted")
        return _DROP


def _clean_decimal(value: Decimal, parent: str | None, key: str | int, warnings: list[str]) -> Any:
    if not value.is_finite():
        return None
    if value.adjusted() >= MAX_INT_DIGITS:
        # int() of it would build a huge number that JSON readers refuse.
        warnings.append(f"{_path(parent, key)}: Decimal too large for JSON")
        return _DROP
    if value == value.to_integral_value():
        return int(value)
    f = float(value)
    return f if f - f == 0.0 else None


def _clean_object(
    value: Any,
    parent: str | None,
    key: str | int,
    warnings: list[str],
    active: set[int] | None,
    depth: int,
) -> Any:
    """A dataclass instance or msgspec Struct, as a dict of its fields."""
    if active is None:
        active = set()
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
        warnings.append(f"{_path(parent, key)}: {type(value).__name__} fields could not be read")
        return _DROP
    if not _enter(value, parent, key, warnings, active, depth):
        return _DROP
    try:
        return _clean_dict(as_dict, parent, key, warnings, active, depth + 1)
    finally:
        active.discard(id(value))


def _clean_key(key: object, path: str, warnings: list[str]) -> str | None:
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
            warnings.append(f"{path}: int key too large for JSON")
            return None
    if isinstance(k, float):
        if k - k == 0.0:
            return float.__repr__(k)
        return "NaN" if math.isnan(k) else ("Infinity" if k > 0 else "-Infinity")
    if isinstance(k, UUID):
        return str(k)
    warnings.append(f"{path}: unsupported key type {type(key).__name__}")
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


def _scrub(value: Any, path: str, warnings: list[str]) -> Any:
    t = type(value)
    if t is str:
        if _encodable_str(value):
            return value
        warnings.append(f"{path}: str is not valid Unicode (lone surrogates)")
        return _DROP
    if t is int:
        if _encodable_int(value):
            return value
        warnings.append(f"{path}: int too large for JSON")
        return _DROP
    if t is dict:
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not _encodable_str(k):
                warnings.append(f"{path}: key is not valid Unicode (lone surrogates)")
                continue
            c = _scrub(v, f"{path}.{k}", warnings)
            if c is not _DROP:
                out[k] = c
        return out
    if t is list:
        items: list[Any] = []
        for i, v in enumerate(value):
            c = _scrub(v, f"{path}[{i}]", warnings)
            if c is not _DROP:
                items.append(c)
        return items
    return value
