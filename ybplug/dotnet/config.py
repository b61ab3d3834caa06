"""``[dotnet]``: which .NET runtime, and the .NET plugins.

Light on purpose (msgspec only): the configuration loader imports it, and loading a configuration
must not load pythonnet, a runtime or the hook machinery.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

import msgspec

__all__ = ["DEFAULT_RUNTIME", "DotnetPluginEntry", "DotnetSection", "RuntimeName"]

RuntimeName = Literal["coreclr", "mono", "netfx"]
DEFAULT_RUNTIME: RuntimeName = "netfx" if sys.platform == "win32" else "coreclr"


class DotnetPluginEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One ``[[dotnet.plugins]]`` table: a .NET class serving hooks."""

    assembly: str
    """Path of the assembly (``.dll``)."""
    type: str
    """Full name of the class, namespace included (``StMary.Ybplug.HisPlugin``)."""
    name: str | None = None
    """The plugin's name in the journal and in ``YBPLUG_PLUGINS``; ``dotnet:<type>`` by default.
    Deliveries are journaled per name: keep it stable."""

    @property
    def plugin_name(self) -> str:
        """The name the plugin is registered under: ``name``, else ``dotnet:<type>``."""
        return self.name or f"dotnet:{self.type}"


class DotnetSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The ``[dotnet]`` table: which .NET runtime, and the .NET plugins."""

    runtime: RuntimeName = DEFAULT_RUNTIME
    dotnet_root: str | None = None
    """coreclr: the .NET root (holding ``host/fxr`` and ``shared``)."""
    runtime_config: str | None = None
    """coreclr: a ``runtimeconfig.json``; by default one is written for the newest runtime found."""
    invariant_globalization: bool = True
    """coreclr: run without ICU (``System.Globalization.Invariant``)."""
    libmono: str | None = None
    """mono: path of ``libmonosgen-2.0.so`` (or ``mono-2.0-sgen.dll``); found by default."""
    load_timeout: float = 60.0
    """Seconds to wait for the runtime, an assembly or the .NET thread at start-up."""
    plugins: list[DotnetPluginEntry] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.load_timeout > 0:
            raise ValueError("load_timeout must be positive")

    def resolve(self, base: str | os.PathLike[str]) -> DotnetSection:
        """A copy with relative paths made absolute against ``base`` (the config file's folder)."""

        def absolute(value: str | None) -> str | None:
            if value is None or Path(value).is_absolute():
                return value
            return str(Path(base) / value)

        plugins = [
            msgspec.structs.replace(entry, assembly=absolute(entry.assembly) or entry.assembly)
            for entry in self.plugins
        ]
        return msgspec.structs.replace(
            self,
            dotnet_root=absolute(self.dotnet_root),
            runtime_config=absolute(self.runtime_config),
            libmono=absolute(self.libmono),
            plugins=plugins,
        )

    def runtime_key(self) -> tuple[object, ...]:
        return (self.runtime, self.dotnet_root, self.runtime_config, self.libmono, self.invariant_globalization)

    def describe(self) -> str:
        given = [f"{name}={value}" for name, value in (
            ("dotnet_root", self.dotnet_root), ("runtime_config", self.runtime_config), ("libmono", self.libmono),
        ) if value]
        return f"{self.runtime} ({', '.join(given)})" if given else self.runtime
