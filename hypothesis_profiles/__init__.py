"""Named hypothesis profiles, chosen by the HYPOTHESIS_PROFILE environment variable.

- ``dev``: few examples, for a fast edit-test loop (the default).
- ``ci``: derandomized so a run is reproducible, no deadline (shared CI machines
  are noisy and a slow example is not a failure), a moderate number of examples.
- ``exhaustive``: many examples, for a long hunt before a release.
- ``mutation``: ``ci`` without shrinking, for mutmut (CONTRIBUTING.md): a mutant is
  killed by the first failing example, and shrinking it would only spend the run's time.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

__all__ = ["PROFILES", "load_profile"]

PROFILES = ("dev", "ci", "exhaustive", "mutation")


def _register() -> None:
    settings.register_profile("dev", max_examples=30, deadline=None)
    settings.register_profile(
        "ci",
        max_examples=100,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile(
        "mutation",
        parent=settings.get_profile("ci"),
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    settings.register_profile(
        "exhaustive",
        max_examples=2000,
        deadline=None,
        phases=list(Phase),
        suppress_health_check=[HealthCheck.too_slow],
    )


def load_profile() -> str:
    """Register the profiles and load the one HYPOTHESIS_PROFILE names (default ``dev``)."""
    _register()
    name = os.environ.get("HYPOTHESIS_PROFILE", "dev")
    if name not in PROFILES:
        raise ValueError(f"HYPOTHESIS_PROFILE must be one of {PROFILES}, got {name!r}")
    settings.load_profile(name)
    return name
