"""segment_core is pure: no sockets, threads, tasks, sleeps, clock, timezone, locale or entropy reads.

Every module of the package is parsed with ``ast`` (nothing is imported or
run) and checked for imports of I/O, concurrency, clock, timezone, locale and
entropy modules, and for calls that read the clock, the host's timezone
(``datetime.fromtimestamp(t)`` without a zone, ``astimezone()`` without one,
``localtime``, ``tzlocal``...), the locale (``strftime``) or the OS's entropy.
Two narrow allowances: ``segment_core.testing`` may import ``random``, and only
to build a seeded ``random.Random``; ``segment_core/_native.py`` may read the
one environment variable ``SEGMENT_SANSIO_PURE`` that turns the C path off
(``os.environ.get`` of that name, once), and is the only module that imports
the C extension. The checker is itself tested on snippets, so a rule that
stopped matching would be noticed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import segment_core

CORE = Path(segment_core.__file__).parent
MODULES = sorted(CORE.rglob("*.py"))

# Whole modules the core must not import: I/O, concurrency, clocks, process state, logging.
FORBIDDEN_MODULES = frozenset(
    {
        "socket",
        "threading",
        "asyncio",
        "trio",
        "httpx",
        "selectors",
        "subprocess",
        "time",
        "os",
        "logging",
        "segment_runtimes",
        # the host's timezone database and locale
        "locale",
        "zoneinfo",
        "dateutil",
        "tzlocal",
        "pytz",
    }
)
# Names that read the clock or the OS's entropy, wherever they come from.
CLOCK_METHODS = frozenset({"now", "utcnow", "today"})
CLOCK_OWNERS = frozenset({"datetime", "date"})
UUID_CLOCK_OR_ENTROPY = frozenset({"uuid1", "uuid4"})
# Names that read the host's timezone or locale, whoever owns them (``email.utils.localtime``...).
TIMEZONE_OR_LOCALE_NAMES = frozenset({"localtime", "mktime", "tzset", "tzlocal", "gettz", "strftime", "strptime"})
# The one environment read (in _native.py only): which variable, through which call.
PURE_SWITCH = "SEGMENT_SANSIO_PURE"
NATIVE_MODULE = "_native.py"


def _is_pure_switch_read(node: ast.AST) -> bool:
    """``os.environ.get("SEGMENT_SANSIO_PURE", ...)``, exactly."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == "environ"
        and isinstance(node.func.value.value, ast.Name)
        and node.func.value.value.id == "os"
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == PURE_SWITCH
        and not node.keywords
    )


def _reads_local_time(node: ast.Call) -> str | None:
    """Why a call reads the host's timezone, or None: ``fromtimestamp(t)`` and ``astimezone()`` with no zone."""
    func = node.func
    if not isinstance(func, ast.Attribute):
        return None
    zone_given = any(keyword.arg == "tz" for keyword in node.keywords)
    if func.attr == "fromtimestamp" and len(node.args) < 2 and not zone_given:
        return "fromtimestamp() without a timezone reads local time"
    if func.attr == "astimezone" and not node.args and not zone_given:
        return "astimezone() without a timezone reads local time"
    return None


def violations(source: str, *, allow_seeded_random: bool = False, is_native_module: bool = False) -> list[str]:
    """What in this module's source breaks the core's purity, one line per finding.

    ``is_native_module``: the source is _native.py, which may ``import os`` to read
    ``SEGMENT_SANSIO_PURE`` once, and may import the C extension.
    """
    tree = ast.parse(source)
    found: list[str] = []
    imports_random = False
    switch_reads = [node for node in ast.walk(tree) if _is_pure_switch_read(node)] if is_native_module else []
    if len(switch_reads) > 1:
        found.append(f"{len(switch_reads)} reads of {PURE_SWITCH}: one is allowed")
    # The ``os`` and ``os.environ`` nodes of the allowed read.
    allowed_os = {id(node.func.value.value) for node in switch_reads[:1]}  # type: ignore[attr-defined]

    def where(node: ast.AST) -> str:
        return f"line {getattr(node, 'lineno', '?')}"

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top == "os" and alias.name == "os" and alias.asname is None and allowed_os:
                    continue
                if top in FORBIDDEN_MODULES:
                    found.append(f"{where(node)}: import {alias.name}")
                elif top == "random":
                    imports_random = True
                    if not allow_seeded_random or alias.asname is not None:
                        found.append(f"{where(node)}: import random")
        elif isinstance(node, ast.ImportFrom):
            names = {alias.name for alias in node.names}
            if node.level:  # relative: inside the package
                if not is_native_module and (node.module == "_speedups" or "_speedups" in names):
                    found.append(f"{where(node)}: the C extension is imported only in {NATIVE_MODULE}")
                continue
            top = (node.module or "").split(".")[0]
            if top == "segment_core" and "_speedups" in (node.module or "") + " ".join(names):
                found.append(f"{where(node)}: the C extension is imported only in {NATIVE_MODULE}")
            if top in FORBIDDEN_MODULES:
                found.append(f"{where(node)}: from {node.module} import ...")
            elif top == "random":
                found.append(f"{where(node)}: from random import {', '.join(sorted(names))}")
            elif top == "uuid" and names & (UUID_CLOCK_OR_ENTROPY | {"*"}):
                found.append(f"{where(node)}: from uuid import {', '.join(sorted(names))}")
        elif isinstance(node, ast.Attribute):
            owner = node.value
            owner_name = (
                owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            )
            if node.attr in CLOCK_METHODS and owner_name in CLOCK_OWNERS:
                found.append(f"{where(node)}: {owner_name}.{node.attr}")
            if node.attr in UUID_CLOCK_OR_ENTROPY and owner_name == "uuid":
                found.append(f"{where(node)}: uuid.{node.attr}")
            if owner_name in ("time", "os") and isinstance(owner, ast.Name) and id(owner) not in allowed_os:
                found.append(f"{where(node)}: {owner_name}.{node.attr}")
            if node.attr in TIMEZONE_OR_LOCALE_NAMES:
                found.append(f"{where(node)}: .{node.attr} reads the host's timezone or locale")
        elif isinstance(node, ast.Name) and node.id in TIMEZONE_OR_LOCALE_NAMES:
            found.append(f"{where(node)}: {node.id} reads the host's timezone or locale")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "__import__":
                found.append(f"{where(node)}: __import__()")
            if isinstance(func, ast.Attribute) and func.attr == "import_module":
                found.append(f"{where(node)}: import_module()")
            local_read = _reads_local_time(node)
            if local_read:
                found.append(f"{where(node)}: {local_read}")

    if imports_random:
        # The module ``random`` may only appear as ``random.Random(...)``.
        allowed = {
            id(node.func.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "Random"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "random"
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "random" and id(node) not in allowed:
                found.append(f"{where(node)}: random used other than as random.Random(seed)")
    return found


@pytest.mark.parametrize("path", MODULES, ids=[str(path.relative_to(CORE)) for path in MODULES])
def test_core_module_is_pure(path: Path) -> None:
    found = violations(
        path.read_text(encoding="utf-8"),
        allow_seeded_random=path.name == "testing.py",
        is_native_module=path.name == NATIVE_MODULE,
    )
    assert found == [], f"{path.relative_to(CORE.parent)} is not pure: {found}"


def test_every_core_module_was_checked() -> None:
    names = {path.name for path in MODULES}
    assert {"__init__.py", "_engine.py", "_retry_policy.py", "_batch_requests.py", "_events.py", "testing.py"} <= names
    assert {NATIVE_MODULE, "_message_builder.py", "_value_cleaning.py", "_call_api.py"} <= names


def test_importing_the_core_does_not_import_the_runtimes() -> None:
    code = (
        "import sys, segment_core, segment_core.testing\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'segment_runtimes')\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=CORE.parent)
    assert result.returncode == 0, result.stderr


IMPURE = [
    ("import-socket", "import socket"),
    ("import-threading", "import threading"),
    ("import-asyncio", "import asyncio.events"),
    ("import-trio", "import trio"),
    ("import-httpx", "from httpx import Client"),
    ("import-selectors", "import selectors"),
    ("import-subprocess", "import subprocess"),
    ("import-time", "import time"),
    ("from-time", "from time import monotonic"),
    ("import-os", "import os"),
    ("from-os", "from os import urandom"),
    ("import-logging", "import logging"),
    ("import-runtimes", "from segment_runtimes.threaded import Client"),
    ("uuid4-call", "import uuid\nx = uuid.uuid4()"),
    ("uuid1-from", "from uuid import uuid1"),
    ("datetime-now", "from datetime import datetime\nx = datetime.now()"),
    ("datetime-module-utcnow", "import datetime\nx = datetime.datetime.utcnow()"),
    ("date-today", "from datetime import date\nx = date.today()"),
    ("random-function", "import random\nx = random.random()"),
    ("from-random", "from random import Random"),
    ("random-choice-beside-seeded", "import random\nr = random.Random(1)\nx = random.choice([1])"),
    ("dunder-import", "m = __import__('socket')"),
    ("import-module", "import importlib\nm = importlib.import_module('socket')"),
    # the host's timezone and locale
    ("fromtimestamp-local", "from datetime import datetime\nx = datetime.fromtimestamp(0)"),
    ("date-fromtimestamp", "import datetime\nx = datetime.date.fromtimestamp(0)"),
    ("astimezone-local", "def f(dt):\n    return dt.astimezone()"),
    ("time-localtime", "import time\nx = time.localtime(0).tm_gmtoff"),
    ("from-time-localtime", "from time import localtime"),
    ("email-localtime", "import email.utils\nx = email.utils.localtime()"),
    ("localtime-name", "def f(localtime):\n    return localtime()"),
    ("mktime", "def f(t):\n    return t.mktime(0)"),
    ("tzlocal", "from dateutil.tz import tzlocal"),
    ("tzlocal-module", "import tzlocal"),
    ("zoneinfo", "from zoneinfo import ZoneInfo"),
    ("pytz", "import pytz"),
    ("locale", "import locale"),
    ("strftime", "def f(dt):\n    return dt.strftime('%c')"),
    ("strptime", "from datetime import datetime\nx = datetime.strptime('1', '%d')"),
    ("datetime-now-with-zone", "from datetime import datetime, timezone\nx = datetime.now(timezone.utc)"),
    # the C extension outside _native.py
    ("speedups-relative", "from ._speedups import clean_plain"),
    ("speedups-module", "from . import _speedups"),
    ("speedups-absolute", "from segment_core._speedups import Intake"),
    ("speedups-absolute-module", "from segment_core import _speedups"),
]


@pytest.mark.parametrize("source", [row[1] for row in IMPURE], ids=[row[0] for row in IMPURE])
def test_checker_finds_impurity(source: str) -> None:
    assert violations(textwrap.dedent(source), allow_seeded_random=True)


PURE = [
    ("seeded-random", "import random\nr = random.Random(7)", True),
    ("uuid-class", "import uuid\nx = uuid.UUID(int=5, version=4)", False),
    ("uuid-from-class", "from uuid import UUID", False),
    (
        "datetime-from-timestamp",
        "from datetime import datetime, timezone\nx = datetime.fromtimestamp(0, timezone.utc)",
        False,
    ),
    ("random-parameter", "def f(random):\n    return random.random()", False),
    ("relative-import", "from ._engine import Engine", False),
    (
        "fromtimestamp-tz-keyword",
        "from datetime import datetime, timezone\nx = datetime.fromtimestamp(0, tz=timezone.utc)",
        False,
    ),
    ("astimezone-utc", "from datetime import timezone\ndef f(dt):\n    return dt.astimezone(timezone.utc)", False),
    ("isoformat", "def f(dt):\n    return dt.isoformat(timespec='milliseconds')", False),
]


@pytest.mark.parametrize(("source", "allow"), [row[1:] for row in PURE], ids=[row[0] for row in PURE])
def test_checker_allows_pure_code(source: str, allow: bool) -> None:
    assert violations(source, allow_seeded_random=allow) == []


def test_random_outside_testing_is_refused() -> None:
    assert violations("import random\nr = random.Random(7)", allow_seeded_random=False)


# --- the one environment read: SEGMENT_SANSIO_PURE, in _native.py -------------------------------

SWITCH_READ = 'import os\npure = os.environ.get("SEGMENT_SANSIO_PURE", "")'


def test_the_native_module_may_read_the_pure_switch() -> None:
    assert violations(SWITCH_READ, is_native_module=True) == []
    assert violations("from . import _speedups", is_native_module=True) == []


def test_no_other_module_may_read_the_pure_switch() -> None:
    assert violations(SWITCH_READ) != []


ENVIRONMENT_READS = [
    ("other-variable", 'import os\nx = os.environ.get("TZ", "")'),
    ("switch-and-another", SWITCH_READ + '\ny = os.environ.get("HOME")'),
    ("switch-twice", SWITCH_READ + '\ny = os.environ.get("SEGMENT_SANSIO_PURE")'),
    ("subscript", 'import os\nx = os.environ["SEGMENT_SANSIO_PURE"]'),
    ("getenv", 'import os\nx = os.getenv("SEGMENT_SANSIO_PURE")'),
    ("from-os", 'from os import environ\nx = environ.get("SEGMENT_SANSIO_PURE")'),
    ("os-alias", 'import os as o\nx = o.environ.get("SEGMENT_SANSIO_PURE")'),
    ("switch-then-urandom", SWITCH_READ + "\nx = os.urandom(16)"),
    ("name-in-a-variable", 'import os\nNAME = "SEGMENT_SANSIO_PURE"\nx = os.environ.get(NAME)'),
]


@pytest.mark.parametrize("source", [row[1] for row in ENVIRONMENT_READS], ids=[row[0] for row in ENVIRONMENT_READS])
def test_the_native_module_may_read_nothing_else(source: str) -> None:
    assert violations(source, is_native_module=True) != []
