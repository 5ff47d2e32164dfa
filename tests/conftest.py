from __future__ import annotations

from collections.abc import Iterator

import pytest

from hypothesis_profiles import load_profile
from segment_runtimes.collector import Collector

load_profile()


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A started loopback collector (any non-empty write key, no faults), stopped after the test."""
    with Collector() as running:
        yield running
