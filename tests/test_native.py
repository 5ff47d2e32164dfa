"""Which path runs: the C extension's one import site and the switch that turns it off.

``segment_core._native`` imports ``_speedups`` where it was built, unless
``SEGMENT_SANSIO_PURE`` is set (to anything but "" or "0"); every user of the
C objects takes them from there, and ``c_speedups_active()`` says which path is
on. Each case runs in a fresh interpreter, since the switch is read once, at
import.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import segment_core
from segment_core import _native

ROOT = Path(segment_core.__file__).parent.parent
BUILT = importlib.util.find_spec("segment_core._speedups") is not None

REPORT = """
import json, segment_core
from segment_core import _message_builder, _message_queue, _value_cleaning
print(json.dumps({
    "active": segment_core.c_speedups_active(),
    "track_in_c": _message_builder.build_plain_track is not None,
    "clean_in_c": _value_cleaning._clean_plain is not None,
    "intake": _message_queue.Intake.__module__,
}))
"""


def paths_in_a_fresh_interpreter(switch: str | None, *, hide_extension: bool = False) -> dict[str, object]:
    env = {key: value for key, value in os.environ.items() if key != _native.PURE_SWITCH}
    if switch is not None:
        env[_native.PURE_SWITCH] = switch
    # sys.modules[name] = None makes the import fail as it does where no compiler built it.
    code = ("import sys; sys.modules['segment_core._speedups'] = None\n" if hide_extension else "") + REPORT
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    report: dict[str, object] = json.loads(result.stdout)
    return report


C_PATH = {"active": True, "track_in_c": True, "clean_in_c": True, "intake": "segment_core._speedups"}
PURE_PATH = {"active": False, "track_in_c": False, "clean_in_c": False, "intake": "segment_core._message_queue"}


@pytest.mark.parametrize("switch", [None, "", "0"], ids=["unset", "empty", "zero"])
def test_the_c_path_runs_where_built_and_not_switched_off(switch: str | None) -> None:
    assert paths_in_a_fresh_interpreter(switch) == (C_PATH if BUILT else PURE_PATH)


@pytest.mark.parametrize("switch", ["1", "yes"])
def test_segment_sansio_pure_turns_every_c_object_off(switch: str) -> None:
    assert paths_in_a_fresh_interpreter(switch) == PURE_PATH


def test_without_the_extension_the_python_code_does_everything() -> None:
    assert paths_in_a_fresh_interpreter(None, hide_extension=True) == PURE_PATH


def test_c_speedups_active_reports_this_process() -> None:
    switched_off = os.environ.get(_native.PURE_SWITCH, "") not in ("", "0")
    assert segment_core.c_speedups_active() is (BUILT and not switched_off)
    assert segment_core.c_speedups_active() is (_native.speedups is not None)


@pytest.fixture(scope="module")
def unbuilt_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout as it is where no C compiler built the extension: the same files, no shared library."""
    copy = tmp_path_factory.mktemp("unbuilt") / "checkout"
    ignore = shutil.ignore_patterns(
        "*.so", "*.pyd", ".venv", "build", ".git", ".hypothesis", "*.egg-info", "__pycache__"
    )
    shutil.copytree(ROOT, copy, ignore=ignore)
    return copy


def pytest_in(checkout: Path, *arguments: str, unbuilt: bool = True) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        # An editable install's finder would find the extension where it was built: leave it out.
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]\n"
        "import pytest, segment_core\n"
        f"assert segment_core.__file__.startswith({str(checkout)!r}), segment_core.__file__\n"
        + ("assert not segment_core.c_speedups_active()\n" if unbuilt else "")
        + f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', *{list(arguments)!r}]))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != _native.PURE_SWITCH}
    env.update(HYPOTHESIS_PROFILE="ci", PYTHONPATH=str(checkout))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=checkout, env=env, timeout=300
    )


def collection_errors(result: subprocess.CompletedProcess[str]) -> set[str]:
    return {line for line in result.stdout.splitlines() if line.startswith("ERROR ")}


def test_every_test_module_is_collected_where_the_extension_was_not_built(unbuilt_checkout: Path) -> None:
    """No module fails to collect for want of the extension (a missing optional tool fails the same in both)."""
    unbuilt = pytest_in(unbuilt_checkout, "--collect-only", "tests")
    built = pytest_in(ROOT, "--collect-only", "tests", unbuilt=False)
    assert collection_errors(unbuilt) <= collection_errors(built), unbuilt.stdout[-3000:] + unbuilt.stderr[-3000:]
    assert unbuilt.returncode == built.returncode
    assert " tests collected" in unbuilt.stdout


def test_the_c_tests_skip_cleanly_where_the_extension_was_not_built(unbuilt_checkout: Path) -> None:
    """Collected and skipped with one reason; the Python halves beside them still run."""
    result = pytest_in(unbuilt_checkout, "-rs", "tests/test_speedups.py", "tests/test_intake.py")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "C path inactive" in result.stdout
    assert " passed" in result.stdout
