"""(.NET thread) Reflection helpers shared by the hook plugins and the .NET EcTrans: load a type
from an assembly with errors that name what is missing, describe a method's shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ybplug.dotnet.errors import DotnetAssemblyNotFound, DotnetTypeNotFound
from ybplug.dotnet.runtime import DotnetRuntime

__all__ = ["load_type", "method_shape", "release", "signature"]


def release(runtime: DotnetRuntime, handle: int) -> None:
    runtime.release(handle)


def load_type(runtime: DotnetRuntime, assembly: str, type_name: str) -> Any:
    """(.NET thread) Load ``assembly`` and find ``type_name`` in it."""
    System = runtime._System
    path = Path(assembly)
    if not path.is_file():
        raise DotnetAssemblyNotFound(f".NET assembly not found: {path}")
    try:
        loaded = System.Reflection.Assembly.LoadFrom(str(path.resolve()))
    except Exception as exc:  # noqa: BLE001 - BadImageFormatException, FileLoadException...
        error = runtime._translate(exc)
        raise DotnetAssemblyNotFound(f"cannot load .NET assembly {path}: {error}") from None
    found = loaded.GetType(type_name, False, False)
    if found is None:
        try:
            public = sorted(str(t.FullName) for t in loaded.GetExportedTypes())
        except Exception:  # noqa: BLE001 - a dependency is missing; the names are a courtesy
            public = []
        shown = ", ".join(public[:12]) + (", ..." if len(public) > 12 else "")
        raise DotnetTypeNotFound(
            f".NET type {type_name!r} not found in {path}"
            + (f"; its public types: {shown}" if public else "")
            + " (give the full name, namespace included)"
        )
    return found


def method_shape(method: Any) -> tuple[list[str], str]:
    """(.NET thread) A method's parameter type names and return type name."""
    parameters = [str(p.ParameterType.FullName or p.ParameterType.Name) for p in method.GetParameters()]
    return parameters, str(method.ReturnType.FullName)


def signature(method: Any) -> str:
    parameters, returns = method_shape(method)
    return f"{returns} {method.Name}({', '.join(parameters)})"
