"""The public surface, as trio's test_exports checks its own.

- Every public name of segment_core is defined in exactly one private module and re-exported once.
- No package reaches into another's private modules (segment_runtimes uses segment_core's public
  names only, and segment_core never imports segment_runtimes).
- Every public name, and every public method and property of a public class, has a docstring;
  every member of a public enum is documented.
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import segment_core
import segment_runtimes

PRIVATE_MODULES = [
    importlib.import_module(f"segment_core.{info.name}")
    for info in pkgutil.iter_modules(segment_core.__path__)
    if info.name.startswith("_") and info.name != "_speedups"
]

PUBLIC_MODULES = [
    "segment_core",
    "segment_core.limits",
    "segment_core.testing",
    "segment_runtimes.threaded",
    "segment_runtimes.asyncio",
    "segment_runtimes.trio",
    "segment_runtimes.collector",
    "segment_runtimes.pytest_plugin",
]


def test_each_exported_name_comes_from_one_module() -> None:
    owners: dict[str, list[str]] = {}
    for module in PRIVATE_MODULES:
        for name in getattr(module, "__all__", ()):
            owners.setdefault(name, []).append(module.__name__)
    exported = [name for name in segment_core.__all__ if name != "__version__"]
    for name in exported:
        if isinstance(getattr(segment_core, name), type(segment_core)):
            continue  # submodules such as segment_core.testing
        assert len(owners.get(name, [])) == 1, f"{name} is defined in {owners.get(name)}"


def test_exported_objects_are_the_module_objects() -> None:
    for module in PRIVATE_MODULES:
        for name in getattr(module, "__all__", ()):
            if hasattr(segment_core, name):
                assert getattr(segment_core, name) is getattr(module, name), name


def test_the_core_surface_is_small() -> None:
    # h11 exports 23 names; the core's roles (messages, building, delivery, its inputs and
    # outputs, errors) take a few more. Growing it should be a decision, not a drift.
    assert len(segment_core.__all__) <= 46


def test_core_errors_split_by_whose_fault() -> None:
    assert issubclass(segment_core.ValidationError, AssertionError)
    assert issubclass(segment_core.ValidationError, ValueError)
    assert issubclass(segment_core.MessageTooLarge, segment_core.ValidationError)
    assert issubclass(segment_core.MessageTooLarge, RuntimeError)
    for error in (segment_core.APIError, segment_core.RetriesExhausted, segment_core.ShutdownDeadline):
        assert issubclass(error, segment_core.DeliveryError)
        assert not issubclass(error, segment_core.ValidationError)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, relative ones resolved against its package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.with_suffix("").parts[-len(path.with_suffix("").parts) :])
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: -node.level]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


ROOT = Path(segment_core.__file__).parent.parent


@pytest.mark.parametrize(
    ("package", "foreign"), [("segment_runtimes", "segment_core"), ("segment_core", "segment_runtimes")]
)
def test_no_package_imports_another_packages_private_modules(package: str, foreign: str) -> None:
    offences = []
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT)
        for line, module in _imports(relative):
            parts = module.split(".")
            if parts[0] != foreign:
                continue
            if package == "segment_core" or any(part.startswith("_") and part != "__version__" for part in parts[1:]):
                offences.append(f"{relative}:{line} imports {module}")
    assert offences == []


def _public_members(cls: type) -> list[tuple[str, Any]]:
    members = []
    for name, value in vars(cls).items():
        if name.startswith("_") or isinstance(value, enum.Enum):
            continue
        if isinstance(value, property | staticmethod | classmethod) or inspect.isfunction(value):
            members.append((name, value))
    return members


def _documented(obj: Any) -> bool:
    if isinstance(obj, staticmethod | classmethod):
        obj = obj.__func__
    doc = obj.__doc__ if isinstance(obj, property) else getattr(obj, "__doc__", None)
    return bool(doc and doc.strip())


def _public_objects() -> list[tuple[str, Any]]:
    objects = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if inspect.isclass(value) or inspect.isfunction(value) or isinstance(value, ModuleType):
                objects.append((f"{module_name}.{name}", value))
    return objects


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for qualified, value in _public_objects():
        own = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
        if not (own and own.strip()):
            missing.append(qualified)
        if inspect.isclass(value) and value.__module__.startswith(("segment_core", "segment_runtimes")):
            missing += [f"{qualified}.{name}" for name, member in _public_members(value) if not _documented(member)]
    assert missing == []


def test_every_enum_member_is_documented() -> None:
    undocumented = []
    for qualified, value in _public_objects():
        if not (inspect.isclass(value) and issubclass(value, enum.Enum)):
            continue
        source = inspect.getsource(value)
        body = ast.parse(source).body[0]
        assert isinstance(body, ast.ClassDef)
        statements = body.body
        for index, statement in enumerate(statements):
            if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
                following = statements[index + 1] if index + 1 < len(statements) else None
                is_doc = (
                    isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)
                )
                if not is_doc:
                    undocumented.append(f"{qualified}.{statement.targets[0].id}")
    assert undocumented == []


def test_the_public_packages_say_what_they_are() -> None:
    for package in (segment_core, segment_runtimes):
        assert package.__doc__
        assert len(package.__doc__.splitlines()) > 3
