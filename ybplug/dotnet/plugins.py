""".NET classes as ybplug plugins.

A plugin class implements hooks as public methods named ``On`` + the hook's name in CamelCase,
each taking one string, the hook's arguments as a JSON object with the spec's wire names
(``collection_result`` -> ``void OnCollectionResult(string json)``; names match without regard
to case, so ``OnRealNameResolved`` serves ``realname_resolved``).  Methods may be static or
instance methods (then the class needs a public parameterless constructor).  The JSON holds every
argument of the hook but ``host`` (``birth``, ``result``, ``birth_id``, ``event_id``...).  Hooks
that answer (``ybplug_decode_qr``, ``ybplug_void``, ``ybplug_sync``) return a string with the
answer's JSON, or null for "not mine".  ``ybplug_transport`` cannot be implemented in .NET.
A hook the class does not implement is not registered for it.  A .NET exception thrown by a
method becomes :class:`DotnetException`, and the host retries the delivery like any plugin error.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from ybplug.dotnet.config import DotnetPluginEntry, DotnetSection
from ybplug.dotnet.errors import DotnetError, DotnetException, DotnetMethodNotFound, DotnetTypeNotFound
from ybplug.dotnet.reflect import load_type, method_shape, release, signature
from ybplug.dotnet.runtime import DotnetRuntime, dotnet_exception, runtime_of
from ybplug.hooks import PROJECT, hookimpl
from ybplug.messages import Message, QrIdentity, VoidResult, load

__all__ = ["DotnetPlugin", "hook_method_name", "plugins_from_config"]

log = logging.getLogger("ybplug.dotnet")


def hook_method_name(hook: str) -> str:
    """``collection_result`` -> ``OnCollectionResult``: the .NET method serving a hook."""
    return "On" + "".join(part[:1].upper() + part[1:] for part in hook.split("_") if part)


#: Arguments a .NET method never gets (they are live Python objects).
_NOT_SENT = frozenset({"host"})
#: What the hooks that answer decode their .NET method's string into.
_ANSWERS: dict[str, Any] = {"ybplug_decode_qr": QrIdentity, "ybplug_void": VoidResult, "ybplug_sync": dict[str, int]}


class _HookShape(msgspec.Struct, frozen=True):
    name: str
    argnames: tuple[str, ...]
    answer: Any  # the type to decode, or None when the hook's return value is ignored
    spec: Any  # the hook's spec function (its parameter names are the implementation's)


def _hook_shapes() -> dict[str, _HookShape]:
    """The hooks .NET may implement, from :mod:`ybplug.hooks.specs`."""
    from ybplug.hooks import specs

    shapes: dict[str, _HookShape] = {}
    for name, fn in vars(specs).items():
        if not inspect.isfunction(fn) or getattr(fn, PROJECT + "_spec", None) is None:
            continue
        spec = inspect.signature(fn)
        argnames = tuple(spec.parameters)
        returns = spec.return_annotation
        if returns in (None, "None", inspect.Signature.empty):
            answer = None
        elif name in _ANSWERS:
            answer = _ANSWERS[name]
        else:
            continue  # answers with a Python object (ybplug_transport): not for .NET
        shapes[name] = _HookShape(name, argnames, answer, fn)
    return shapes


class _Bound(msgspec.Struct, frozen=True):
    """What the .NET thread found: a hook's method (Python side: names only)."""

    hook: str
    method: str
    returns_text: bool
    static: bool


_encoder = msgspec.json.Encoder()


def _make_impl(hook: _HookShape, call: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
    """An ``async def`` hook implementation taking the spec's parameters.

    pluggy reads an implementation's parameter names from its code after ``inspect.unwrap``; the
    forwarder's ``__wrapped__`` is the hook's own spec function, so pluggy sees exactly the spec's
    names and calls the forwarder with the arguments in that order (a person may call it with
    keywords).  No code is built at run time.
    """
    argnames = hook.argnames

    async def forward(*args: Any, **kwargs: Any) -> Any:
        arguments = {**dict(zip(argnames, args)), **kwargs}
        return await call({name: value for name, value in arguments.items() if name not in _NOT_SENT})

    forward.__name__ = forward.__qualname__ = hook.name
    forward.__doc__ = f"Forwards {hook.name} to the .NET method {hook_method_name(hook.name)}(string json)."
    forward.__wrapped__ = hook.spec  # type: ignore[attr-defined]
    marked: Callable[..., Any] = hookimpl(forward)
    return marked


class DotnetPlugin:
    """A .NET class as a ybplug plugin: register the instance with the host.

    ::

        plugin = DotnetPlugin("C:/his/StMary.Ybplug.dll", "StMary.Ybplug.HisPlugin")
        async with Host(config, plugins=[plugin]) as host: ...

    Loading (the runtime on first use, the assembly, the class, its methods) happens in the
    constructor, on the .NET thread, and blocks until done; errors name what is missing
    (:class:`DotnetRuntimeUnavailable`, :class:`DotnetAssemblyNotFound`,
    :class:`DotnetTypeNotFound`, :class:`DotnetMethodNotFound`).  The instance has one
    ``async def`` attribute per hook the class implements, and no other hook attributes.
    """

    def __init__(
        self,
        assembly: str | os.PathLike[str],
        type_name: str,
        *,
        name: str | None = None,
        runtime: DotnetRuntime | DotnetSection | None = None,
    ) -> None:
        self.assembly = Path(assembly)
        self.type_name = type_name
        #: The plugin's stable name (the host registers it under this name).
        self.ybplug_name = name or f"dotnet:{type_name}"
        self._runtime = runtime_of(runtime)
        shapes = _hook_shapes()
        self._handle, bound = self._runtime.call(
            _open_plugin, self._runtime, str(self.assembly), type_name, shapes
        )
        self._bound: dict[str, _Bound] = {b.hook: b for b in bound}
        self.hooks: tuple[str, ...] = tuple(sorted(self._bound))
        for hook in self.hooks:
            setattr(self, hook, _make_impl(shapes[hook], self._forwarder(hook, shapes[hook].answer)))
        log.info("loaded .NET plugin %s (%s from %s): %s", self.ybplug_name, type_name, self.assembly, ", ".join(self.hooks))

    def __repr__(self) -> str:
        return f"<DotnetPlugin {self.ybplug_name} hooks={list(self.hooks)}>"

    def _forwarder(self, hook: str, answer: Any) -> Callable[[dict[str, Any]], Any]:
        method = self._bound[hook].method

        async def forward(arguments: dict[str, Any]) -> Any:
            payload = _encoder.encode(arguments).decode("utf-8")
            try:
                text = await self._runtime.run(_invoke_hook, self._runtime, self._handle, hook, payload)
            except DotnetException as exc:
                exc.plugin, exc.hook = self.ybplug_name, hook
                raise
            if answer is None or text is None or not text.strip() or text.strip() == "null":
                return None
            try:
                document = msgspec.json.decode(text)
                if isinstance(answer, type) and issubclass(answer, Message):
                    return load(answer, document, strict=False)
                return msgspec.convert(document, answer, strict=False)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                raise DotnetError(
                    f"{self.type_name}.{method} returned a string that is not the {hook} answer: {exc}",
                    plugin=self.ybplug_name,
                    hook=hook,
                ) from None

        return forward

    async def aclose(self) -> None:
        """Let the .NET objects go (on the .NET thread).  The hooks fail afterwards."""
        handle, self._handle = self._handle, 0
        if handle:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._runtime.run(release, self._runtime, handle)


class _PluginObjects:
    """(.NET thread) What a plugin's handle stands for."""

    def __init__(self, type_name: str, instance: Any, methods: dict[str, Any]) -> None:
        self.type_name = type_name
        self.instance = instance
        self.methods = methods


def _open_plugin(
    runtime: DotnetRuntime, assembly: str, type_name: str, shapes: dict[str, _HookShape]
) -> tuple[int, list[_Bound]]:
    """(.NET thread) Find the hook methods of a plugin class and create its instance."""
    System = runtime._System
    found = load_type(runtime, assembly, type_name)
    methods = [m for m in found.GetMethods() if not m.IsGenericMethodDefinition]
    by_name: dict[str, list[Any]] = {}
    for method in methods:
        by_name.setdefault(str(method.Name).lower(), []).append(method)
    chosen: dict[str, Any] = {}
    bound: list[_Bound] = []
    for hook, shape in shapes.items():
        expected = hook_method_name(hook)
        candidates = by_name.pop(expected.lower(), [])
        if not candidates:
            continue
        usable = [m for m in candidates if method_shape(m)[0] == ["System.String"]
                  and method_shape(m)[1] in ("System.Void", "System.String")]
        if not usable:
            found_as = "; ".join(signature(m) for m in candidates)
            returns = "string" if shape.answer is not None else "void"
            raise DotnetMethodNotFound(
                f"{type_name}.{expected} must be `public {returns} {expected}(string json)` "
                f"(the arguments of hook {hook} as JSON); found {found_as}"
            )
        if len(usable) > 1:
            raise DotnetMethodNotFound(
                f"{type_name} has {len(usable)} methods serving hook {hook}: "
                + "; ".join(signature(m) for m in usable)
            )
        method = usable[0]
        chosen[hook] = method
        bound.append(_Bound(hook, str(method.Name), method_shape(method)[1] == "System.String", bool(method.IsStatic)))
    if "onybplugtransport" in by_name:
        raise DotnetMethodNotFound(
            f"{type_name}.OnYbplugTransport: ybplug_transport answers with a Python transport and cannot "
            "be implemented in .NET"
        )
    # Public methods of the class that look like hooks but match none: probably misspelled.
    full_name = str(found.FullName)
    for name, candidates in by_name.items():
        for method in candidates:
            if (
                name.startswith("on")
                and method_shape(method)[0] == ["System.String"]
                and str(method.DeclaringType.FullName) == full_name
            ):
                log.warning(
                    ".NET plugin %s: %s looks like a hook method but ybplug has no such hook (hooks: %s)",
                    type_name, method.Name, ", ".join(hook_method_name(h) for h in sorted(shapes)),
                )
    if not bound:
        raise DotnetMethodNotFound(
            f".NET type {type_name} in {assembly} implements no ybplug hook: expected public methods like "
            "`void OnCollectionResult(string json)`"
        )
    instance = None
    if any(not b.static for b in bound):
        if found.IsAbstract or found.GetConstructor(System.Type.EmptyTypes) is None:
            raise DotnetTypeNotFound(
                f".NET type {type_name} has instance hook methods but no public parameterless constructor "
                "(or is abstract): add one, or make the hook methods static"
            )
        try:
            instance = System.Activator.CreateInstance(found)
        except Exception as exc:  # noqa: BLE001
            raise dotnet_exception(System, exc, where=f"{type_name} constructor") from None
    handle = runtime.keep(_PluginObjects(type_name, instance, chosen))
    return handle, bound


def _invoke_hook(runtime: DotnetRuntime, handle: int, hook: str, payload: str) -> str | None:
    """(.NET thread) Call a plugin's method for ``hook`` with the JSON of its arguments."""
    objects: _PluginObjects = runtime.kept(handle)
    method = objects.methods[hook]
    try:
        result = method.Invoke(None if method.IsStatic else objects.instance, [payload])
    except Exception as exc:  # noqa: BLE001
        raise dotnet_exception(runtime._System, exc, where=f"{objects.type_name}.{method.Name}") from None
    return None if result is None else str(result)


def plugins_from_config(
    entries: Iterable[DotnetPluginEntry],
    *,
    runtime: DotnetRuntime | DotnetSection | None = None,
) -> list[tuple[str, object]]:
    """``(name, plugin)`` for each ``[[dotnet.plugins]]`` entry, ready for ``pm.register``.

    ``runtime`` is the ``[dotnet]`` section (or a loaded runtime); nothing is imported and no
    runtime is loaded when ``entries`` is empty.
    """
    entries = list(entries)
    if not entries:
        return []
    loaded = runtime_of(runtime)
    plugins: list[tuple[str, object]] = []
    for entry in entries:
        plugin = DotnetPlugin(entry.assembly, entry.type, name=entry.plugin_name, runtime=loaded)
        plugins.append((plugin.ybplug_name, plugin))
    return plugins
