"""Importing a heavy or optional package only where it is used, with a clear error."""

from __future__ import annotations

import importlib
from types import ModuleType

from tierwise.errors import DependencyMissingError


def require(module: str, package: str, purpose: str) -> ModuleType:
    """``import module``, or a DependencyMissingError naming ``pip install package``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyMissingError(package, f"pip install {package}", purpose) from exc
