"""The .NET bridge's errors: :class:`~ybplug.caller.PluginError` subclasses, so the CLI shows each
as one line and the hook caller logs it without a Python traceback.  (A .NET EcTrans that throws
is :class:`ybplug.voucher.errors.DotnetVoucherFailed`, a voucher error like any other backend's.)"""

from __future__ import annotations

from ybplug.caller import PluginError

__all__ = [
    "DotnetAssemblyNotFound",
    "DotnetBusy",
    "DotnetError",
    "DotnetException",
    "DotnetMethodNotFound",
    "DotnetRuntimeUnavailable",
    "DotnetTypeNotFound",
]


class DotnetError(PluginError):
    """Base of the .NET bridge's errors.  A :class:`~ybplug.caller.PluginError`: the CLI shows it as
    one line and the hook caller logs it without a Python traceback."""


class DotnetRuntimeUnavailable(DotnetError):
    """pythonnet or the configured runtime cannot be had, or another runtime is already loaded."""


class DotnetAssemblyNotFound(DotnetError):
    """The assembly file does not exist, or is not an assembly the runtime can load."""


class DotnetTypeNotFound(DotnetError):
    """The assembly has no such type (or it cannot be instantiated)."""


class DotnetMethodNotFound(DotnetError):
    """A method is missing or does not have the shape ybplug needs."""


class DotnetException(DotnetError):
    """A .NET method threw.  The message is the .NET exception's type and message; ``dotnet_type``,
    ``dotnet_message`` and ``dotnet_stack_trace`` (the .NET stack, never shown by default) hold
    them apart, ``where`` names the method."""

    def __init__(
        self,
        dotnet_type: str,
        dotnet_message: str,
        *,
        stack_trace: str | None = None,
        where: str | None = None,
        plugin: str | None = None,
        hook: str | None = None,
    ) -> None:
        super().__init__(f"{dotnet_type}: {dotnet_message}", plugin=plugin, hook=hook)
        self.dotnet_type = dotnet_type
        self.dotnet_message = dotnet_message
        self.dotnet_stack_trace = stack_trace
        self.where = where


class DotnetBusy(DotnetError):
    """The .NET thread did not take a start-up job in time: it is busy with a call that hangs."""
