""".NET bridge: hospital plugins and an EcTrans backend written in C# or another .NET language.

Many hospitals keep their local code in .NET assemblies, and voucher vendors ship .NET wrappers of
their decoder.  With the ``dotnet`` extra (``pip install 'ybplug[dotnet]'``, which brings
pythonnet) ybplug hosts them::

    [dotnet]
    runtime = "coreclr"                         # "netfx" on Windows, "coreclr" or "mono" on Linux

    [[dotnet.plugins]]
    assembly = "C:/his/StMary.Ybplug.dll"
    type = "StMary.Ybplug.HisPlugin"

Modules: ``config`` (the ``[dotnet]`` section, light: the configuration loader imports only it),
``errors``, ``runtime`` (the runtime, its one thread, finding a runtime), ``reflect``, ``plugins``
(.NET classes as hook plugins) and ``ectrans`` (``[voucher] backend = "dotnet"``: a vendor's
``static int EcTrans(string inData, out string outData)`` behind :class:`ybplug.voucher.Voucher`).

This ``__init__`` loads nothing heavy: the names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ybplug.dotnet.config import DEFAULT_RUNTIME, DotnetPluginEntry, DotnetSection, RuntimeName
from ybplug.lazy import exports

if TYPE_CHECKING:
    from ybplug.dotnet.ectrans import DotnetBackend
    from ybplug.dotnet.errors import (
        DotnetAssemblyNotFound,
        DotnetBusy,
        DotnetError,
        DotnetException,
        DotnetMethodNotFound,
        DotnetRuntimeUnavailable,
        DotnetTypeNotFound,
    )
    from ybplug.dotnet.plugins import DotnetPlugin, hook_method_name, plugins_from_config
    from ybplug.dotnet.runtime import DotnetRuntime

# The lazy export (ybplug.lazy): names spelled out for mypy in the imports above.
_LAZY = {
    "DotnetBackend": "ybplug.dotnet.ectrans",
    "DotnetPlugin": "ybplug.dotnet.plugins",
    "hook_method_name": "ybplug.dotnet.plugins",
    "plugins_from_config": "ybplug.dotnet.plugins",
    "DotnetRuntime": "ybplug.dotnet.runtime",
    **{
        name: "ybplug.dotnet.errors"
        for name in (
            "DotnetAssemblyNotFound", "DotnetBusy", "DotnetError", "DotnetException", "DotnetMethodNotFound",
            "DotnetRuntimeUnavailable", "DotnetTypeNotFound",
        )
    },
}

__all__ = [
    "DEFAULT_RUNTIME",
    "DotnetPluginEntry",
    "DotnetSection",
    "RuntimeName",
    "DotnetAssemblyNotFound",
    "DotnetBackend",
    "DotnetBusy",
    "DotnetError",
    "DotnetException",
    "DotnetMethodNotFound",
    "DotnetPlugin",
    "DotnetRuntime",
    "DotnetRuntimeUnavailable",
    "DotnetTypeNotFound",
    "hook_method_name",
    "plugins_from_config",
]


__getattr__ = exports(__name__, _LAZY)
