"""A plain install runs the threaded client; trio and the collector's server say which extra they need.

Each check runs in a fresh interpreter in which the optional packages cannot be imported,
as on a machine where only ``pip install segment-sansio`` ran.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Makes the optional distributions' top-level packages unimportable in the child.
BLOCK_OPTIONAL = """
import sys
for name in ("trio", "h11", "jwt", "cryptography"):
    sys.modules[name] = None  # an import of it raises ImportError
"""


def run_without_extras(code: str, *, blocked: str = BLOCK_OPTIONAL) -> subprocess.CompletedProcess[str]:
    source = blocked + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, check=False, timeout=60)


def test_the_threaded_client_needs_no_extra() -> None:
    # h11 is the client transport's HTTP/1.1 (and comes with httpx): only the collector's extra names it.
    result = run_without_extras(
        """
        import segment_runtimes.threaded as analytics
        import segment_runtimes.asyncio
        client = analytics.Client("key", send=False)
        ok, message = client.track("user-1", "Signed Up", {"plan": "pro"})
        assert ok and message["event"] == "Signed Up"
        loaded = sorted(m for m in ("trio", "jwt", "cryptography") if sys.modules.get(m) is not None)
        assert not loaded, loaded
        print("ok")
        """,
        blocked=BLOCK_OPTIONAL.replace('"h11", ', ""),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("module", "extra", "missing"),
    [("segment_runtimes.trio", "trio", "trio"), ("segment_runtimes.collector", "collector", "h11")],
)
def test_an_optional_part_names_its_extra(module: str, extra: str, missing: str) -> None:
    result = run_without_extras(f"import {module}", blocked=f"import sys\nsys.modules[{missing!r}] = None\n")
    assert result.returncode != 0
    assert f"pip install 'segment-sansio[{extra}]'" in result.stderr
