from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import is_hypothesis_test

from hypothesis_profiles import load_profile
from segment_runtimes.collector import Collector

load_profile()


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A started loopback collector (any non-empty write key, no faults), stopped after the test."""
    with Collector() as running:
        yield running


# Under mutmut no selected test takes more than a few seconds: a mutant that loops (a retry
# that never gives up) is killed by this instead of the 120 s of ordinary runs.
MUTANT_TEST_TIMEOUT = 30


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under mutmut, run the example tests before the property tests: most mutants die in the
    first, in milliseconds, and a mutant's run stops at its first failure (``-x``)."""
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    items.sort(key=lambda item: is_hypothesis_test(getattr(item, "obj", None)))
    for item in items:
        item.add_marker(pytest.mark.timeout(MUTANT_TEST_TIMEOUT))
