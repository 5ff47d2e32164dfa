"""Every public name of segment_core is defined in exactly one private module and re-exported once."""

from __future__ import annotations

import importlib
import pkgutil

import segment_core

PRIVATE_MODULES = [
    importlib.import_module(f"segment_core.{info.name}")
    for info in pkgutil.iter_modules(segment_core.__path__)
    if info.name.startswith("_")
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


def test_core_errors_split_by_whose_fault() -> None:
    assert issubclass(segment_core.ValidationError, AssertionError)
    assert issubclass(segment_core.ValidationError, ValueError)
    assert issubclass(segment_core.MessageTooLarge, segment_core.ValidationError)
    assert issubclass(segment_core.MessageTooLarge, RuntimeError)
    for error in (segment_core.APIError, segment_core.RetriesExhausted, segment_core.ShutdownDeadline):
        assert issubclass(error, segment_core.DeliveryError)
        assert not issubclass(error, segment_core.ValidationError)
