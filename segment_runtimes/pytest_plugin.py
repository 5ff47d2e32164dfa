"""A pytest plugin: fixtures to test code that sends Segment events.

Registered through the ``pytest11`` entry point, so installing segment-sansio
is enough; like pytest-httpx and respx, nothing needs to be listed in a
``conftest.py``. Two fixtures:

- ``segment_simulator``: a :class:`segment_core.testing.Simulator` (virtual
  clock, scripted server, no sockets), whose ``.client`` has the real clients'
  calls. Configured per test with ``@pytest.mark.segment_simulator(...)``.
- ``segment_collector``: a started loopback
  :class:`segment_runtimes.collector.Collector`, stopped after the test.
  Configured per test with ``@pytest.mark.segment_collector(...)``.

Strategy: pytest imports this module in every run of every project that has
segment-sansio installed, so it imports only pytest at the top; the core and
the collector (whose h11 comes from the ``[collector]`` extra) are imported
inside the fixtures, the first time a test asks for one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from segment_core.testing import Simulator
    from segment_runtimes.collector import Collector

__all__ = ["pytest_configure", "segment_collector", "segment_simulator"]

# Marker keywords for the ScriptedServer; ``seed`` goes to the Simulator, every other keyword to EngineConfig.
_SERVER_OPTIONS = ("script", "then", "token_script", "token_then")

# The write key of the simulator's EngineConfig unless the marker names one.
_DEFAULT_WRITE_KEY = "test"


def pytest_configure(config: pytest.Config) -> None:
    """Declare the markers, so that ``--strict-markers`` accepts them."""
    config.addinivalue_line(
        "markers",
        "segment_simulator(script=..., then=..., token_script=..., token_then=..., seed=..., **engine_config): "
        "configure the segment_simulator fixture; other keywords go to segment_core.EngineConfig",
    )
    config.addinivalue_line(
        "markers",
        "segment_collector(**options): keyword arguments for the segment_collector fixture's "
        "segment_runtimes.collector.Collector (faults=..., write_keys=..., oauth=..., ...)",
    )


def _marker_kwargs(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    """The keywords of the closest ``name`` marker (function over class over module), or none."""
    marker = request.node.get_closest_marker(name)
    if marker is None:
        return {}
    if marker.args:
        raise TypeError(f"@pytest.mark.{name} takes keyword arguments only")
    return dict(marker.kwargs)


@pytest.fixture
def segment_simulator(request: pytest.FixtureRequest) -> Simulator:
    """A deterministic Simulator: ``EngineConfig(write_key="test")`` against an always-200 server.

    Hand ``segment_simulator.client`` to the code under test (it has ``track``,
    ``identify``, ... and ``flush()``), then read ``segment_simulator.delivered_messages()``.

    ``@pytest.mark.segment_simulator(...)`` changes it: ``script``, ``then``,
    ``token_script`` and ``token_then`` go to the ``ScriptedServer``, ``seed`` to
    the ``Simulator``, and every other keyword (``upload_size``, ``max_retries``,
    ``write_key``, ...) to the ``EngineConfig``.
    """
    from segment_core import EngineConfig  # noqa: PLC0415 - keep the plugin cheap to import
    from segment_core.testing import ScriptedServer, Simulator  # noqa: PLC0415

    options = _marker_kwargs(request, "segment_simulator")
    server_options = {key: options.pop(key) for key in _SERVER_OPTIONS if key in options}
    seed = options.pop("seed", 0)
    options.setdefault("write_key", _DEFAULT_WRITE_KEY)
    return Simulator(EngineConfig(**options), ScriptedServer(**server_options), seed=seed)


@pytest.fixture
def segment_collector(request: pytest.FixtureRequest) -> Iterator[Collector]:
    """A started loopback Collector (any non-empty write key, no faults), stopped after the test.

    Point a client at ``segment_collector.url``; read ``segment_collector.messages()``
    (or wait with ``segment_collector.wait_for(n)``). Keywords of
    ``@pytest.mark.segment_collector(...)`` go to the ``Collector``.
    Needs the ``[collector]`` extra; only the tests that use it fail without it.
    """
    from segment_runtimes.collector import Collector  # noqa: PLC0415 - h11 only when asked for

    with Collector(**_marker_kwargs(request, "segment_collector")) as running:
        yield running
