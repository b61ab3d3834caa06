"""Lazy exports: a package names its public things without importing them until asked.

``import ybplug`` (or ``ybplug.voucher``, ``ybplug.dotnet``, ``ybplug.sandbox``) stays light:
the host, aiohttp, the .NET bridge load only when a name that needs them is first used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def exports(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: each name of ``table`` is imported from the
    module it maps to when first asked for, then kept in the package like any attribute."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
