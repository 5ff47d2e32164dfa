"""The one import site of the C extension, and the one switch that turns it off.

``segment_core._speedups`` (built from ``_speedups.c`` by setup.py where a C
compiler is available) runs the caller's hot path in C: the cleaner's common
case, the plain ``track`` call, message ids, timestamps, the engine's queue
and the spool's record writer (``write_record``).
Every module that uses it takes it from here, so the rule for when it is used
is written once: it is used when it was built and ``SEGMENT_SANSIO_PURE`` is
unset, empty or ``"0"``. Otherwise the Python code does every step, with the
same results (the tests drive both and compare them).

Reading that one variable, once, at import, is the only environment read in
segment_core; tests/test_core_purity.py allows exactly this one.
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["PURE_SWITCH", "c_speedups_active", "speedups"]

# The environment variable that turns the C path off (for tests, debugging, or a suspect build).
PURE_SWITCH = "SEGMENT_SANSIO_PURE"


def _load() -> ModuleType | None:
    if os.environ.get("SEGMENT_SANSIO_PURE", "") not in ("", "0"):
        return None
    try:
        from . import _speedups  # noqa: PLC0415
    except ImportError:  # built without a C compiler
        return None
    return _speedups


# The extension module, or None where the Python code does everything.
speedups: ModuleType | None = _load()


def c_speedups_active() -> bool:
    """Whether segment_core runs its hot path in C.

    True when the C extension ``segment_core._speedups`` was built and the
    environment variable ``SEGMENT_SANSIO_PURE`` was unset, empty or ``"0"``
    when segment_core was imported. Both paths give the same results; the C
    one is several times cheaper per call.

    Returns:
        True for the C path, False for pure Python.
    """
    return speedups is not None
