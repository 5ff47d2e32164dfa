"""What to say when an optional part is used without the extra that installs it."""

from __future__ import annotations

__all__ = ["missing_extra"]

DISTRIBUTION = "segment-sansio"


def missing_extra(extra: str, feature: str) -> str:
    """The message of the ImportError raised when ``feature`` needs ``extra``: it names the install command."""
    return f"{feature} needs the [{extra}] extra: pip install '{DISTRIBUTION}[{extra}]'"
