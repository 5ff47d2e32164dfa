"""The C extension for the tests that compare it with the Python code, and the one reason they skip.

Tests of C objects take them from ``c_module()`` (never ``import segment_core._speedups``
at module level), so where the extension was not built, or ``SEGMENT_SANSIO_PURE=1``
turned it off, they are collected and then skipped with ``SKIP_REASON``, and every
test of the Python code beside them still runs.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from segment_core import _native, c_speedups_active

__all__ = ["SKIP_REASON", "c_module", "requires_c"]

SKIP_REASON = "C path inactive: segment_core._speedups not built, or SEGMENT_SANSIO_PURE set"

requires_c = pytest.mark.skipif(not c_speedups_active(), reason=SKIP_REASON)


def c_module() -> ModuleType:
    """``segment_core._speedups`` as segment_core uses it; skips the calling test where it is inactive."""
    if _native.speedups is None:
        pytest.skip(SKIP_REASON)
    return _native.speedups
