""".NET bridge: hospital plugins and an EcTrans backend written in C# or another .NET language.

Many hospitals keep their local code in .NET assemblies, and voucher vendors ship .NET wrappers of
their decoder.  With the ``dotnet`` extra (``pip install 'ybplug[dotnet]'``, which brings
pythonnet) ybplug hosts them::

    [dotnet]
    runtime = "coreclr"                         # "netfx" on Windows, "coreclr" or "mono" on Linux

    [[dotnet.plugins]]
    assembly = "C:/his/StMary.Ybplug.dll"
    type = "StMary.Ybplug.HisPlugin"

A plugin class implements hooks as public methods named ``On`` + the hook's name in CamelCase,
each taking one string, the hook's arguments as a JSON object with the spec's wire names
(``collection_result`` -> ``void OnCollectionResult(string json)``; names match without regard
to case, so ``OnRealNameResolved`` serves ``realname_resolved``).  Methods may be static or
instance methods (then the class needs a public parameterless constructor).  The JSON holds every
argument of the hook but ``host`` (``birth``, ``result``, ``birth_id``, ``event_id``...).  Hooks
that answer (``ybplug_decode_qr``, ``ybplug_void``, ``ybplug_sync``) return a string with the
answer's JSON, or null for "not mine".  ``ybplug_transport`` cannot be implemented in .NET.
A hook the class does not implement is not registered for it.  A .NET exception thrown by a
method becomes :class:`DotnetException` (``System.InvalidOperationException: HIS database is
down``), and the host retries the delivery like any plugin error.

A vendor's .NET EcTrans (``public static int EcTrans(string inData, out string outData)``) is used
through :class:`DotnetVoucher` instead of the ctypes binding.

One thread, one runtime
-----------------------
Every call into .NET, loading the runtime included, is made by one dedicated daemon thread owned
by :class:`DotnetRuntime`; async callers queue a job and wait for it without blocking the event
loop (and without holding a worker thread).  Runtimes are not all happy to be called from many
threads: Debian's Mono 6.8 hung in 4 of 9 runs when called from 8 threads at once, and was fine
when one thread made every call.  The price is that calls are serial: a .NET method that hangs
holds up every later .NET call in the process (each is still bounded by its caller's timeout;
a call that times out before it started is dropped, never run late).

pythonnet loads **one** .NET runtime per process, for good: the first :class:`DotnetSection`
used decides it, and asking for another later raises :class:`DotnetRuntimeUnavailable`.  If the
HIS itself already loaded pythonnet, its runtime is reused when it is of the kind configured.
A runtime ybplug loaded is not unloaded at exit: pythonnet would do it from the main thread,
which Mono does not know (the process aborts), and an orderly unload costs seconds; it ends with
the process.

Runtimes (``DotnetSection.runtime``)
------------------------------------
``coreclr`` (.NET Core / .NET 5+): the root is ``dotnet_root``, else ``$DOTNET_ROOT``, else the
runtime shipped by the PyPI package ``dotnetcore2`` (.NET Core 3.1) if installed, else the
``dotnet`` on the PATH.  Without ``runtime_config`` a ``runtimeconfig.json`` is written for the
newest ``Microsoft.NETCore.App`` found there.  ``invariant_globalization`` (default on) spares the
runtime ICU, which a slim Linux machine may lack; strings, Chinese included, are unaffected.
``mono``: ``libmono`` or the system's ``libmonosgen-2.0`` (Debian: ``libmonosgen-2.0-1`` and
``mono-devel`` for the ``netstandard`` facade).  ``netfx``: the .NET Framework, Windows only.
Assemblies compiled for .NET Framework 4.x (``mcs``, ``csc``) load in all three.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import importlib.util
import inspect
import itertools
import json
import keyword
import logging
import os
import queue
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import anyio
import msgspec

from ybplug.binding import (
    VoucherBusy,
    VoucherCallFailed,
    VoucherError,
    VoucherRefused,
    VoucherReplyUnreadable,
    VoucherTimeout,
    decode_reply,
)
from ybplug.caller import PluginError
from ybplug.hooks import PROJECT, hookimpl
from ybplug.messages import Message, QrIdentity, QrRequest, VoidResult, load
from ybplug.privacy import mask

__all__ = [
    "DotnetAssemblyNotFound",
    "DotnetError",
    "DotnetException",
    "DotnetMethodNotFound",
    "DotnetPlugin",
    "DotnetPluginEntry",
    "DotnetRuntime",
    "DotnetRuntimeUnavailable",
    "DotnetSection",
    "DotnetTypeNotFound",
    "DotnetVoucher",
    "DotnetVoucherFailed",
    "RuntimeName",
    "hook_method_name",
    "plugins_from_config",
]

log = logging.getLogger("ybplug.dotnet")

T = TypeVar("T")

RuntimeName = Literal["coreclr", "mono", "netfx"]
DEFAULT_RUNTIME: RuntimeName = "netfx" if sys.platform == "win32" else "coreclr"


# --------------------------------------------------------------------------------------------
# Configuration


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

    def _runtime_key(self) -> tuple[object, ...]:
        return (self.runtime, self.dotnet_root, self.runtime_config, self.libmono, self.invariant_globalization)

    def _describe(self) -> str:
        given = [f"{name}={value}" for name, value in (
            ("dotnet_root", self.dotnet_root), ("runtime_config", self.runtime_config), ("libmono", self.libmono),
        ) if value]
        return f"{self.runtime} ({', '.join(given)})" if given else self.runtime


# --------------------------------------------------------------------------------------------
# Errors


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


class DotnetVoucherFailed(VoucherError):
    """The .NET EcTrans threw.  ``dotnet_type`` is the exception's type; the message (masked)
    follows it."""

    def __init__(self, dotnet_type: str, message: str) -> None:
        self.dotnet_type = dotnet_type
        super().__init__(f"EcTrans threw {dotnet_type}: {message}")


# --------------------------------------------------------------------------------------------
# The runtime and its thread


def _wakeup() -> Callable[[Callable[[], object]], object]:
    """A thread-safe, non-blocking "run this on the current event loop soon"."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        trio = importlib.import_module("trio")
        run_sync_soon: Callable[[Callable[[], object]], object] = trio.lowlevel.current_trio_token().run_sync_soon
        return run_sync_soon
    return loop.call_soon_threadsafe


class DotnetCall:
    """One job for the .NET thread; :meth:`DotnetRuntime.submit` returns it."""

    _QUEUED, _RUNNING, _DONE, _DROPPED = "queued", "running", "done", "dropped"

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], asynchronous: bool) -> None:
        self._fn: Callable[..., Any] | None = fn
        self._args: tuple[Any, ...] = args
        self._lock = threading.Lock()
        self._state = self._QUEUED
        self._result: Any = None
        self._error: BaseException | None = None
        self._finished = threading.Event()
        self.started: float | None = None
        self._wake = _wakeup() if asynchronous else None
        self._event = anyio.Event() if asynchronous else None

    @property
    def state(self) -> str:
        """``queued``, ``running``, ``done`` or ``dropped`` (its caller gave up before it started)."""
        return self._state

    def _execute(self, translate: Callable[[BaseException], BaseException]) -> None:
        """Run on the .NET thread."""
        with self._lock:
            if self._state == self._DROPPED:
                self._fn, self._args = None, ()
                return
            self._state = self._RUNNING
            self.started = time.monotonic()
        fn, args = self._fn, self._args
        self._fn, self._args = None, ()
        assert fn is not None
        try:
            self._result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, never lost
            error = translate(exc)
            if isinstance(error, DotnetError):
                # Its traceback's frames and its context hold .NET objects, which must not be
                # freed on another thread: the caller gets the message, not the frames.
                error.__cause__ = error.__context__ = None
                error.__suppress_context__ = True
                error = error.with_traceback(None)
            self._error = error
            del exc, error
        finally:
            del fn, args
            with self._lock:
                self._state = self._DONE
            self._finished.set()
            if self._wake is not None and self._event is not None:
                with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody waits
                    self._wake(self._event.set)

    def _drop(self) -> bool:
        """Give up on the job: it will not run if it has not started.  Whether it was dropped."""
        with self._lock:
            if self._state == self._QUEUED:
                self._state = self._DROPPED
        return self._state == self._DROPPED

    def _outcome(self) -> Any:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._result

    async def result(self) -> Any:
        """Wait for the job without blocking the event loop; its result, or its error raised.

        Cancelling the wait drops the job if it has not started; a started job finishes on the
        .NET thread and its result is discarded.
        """
        assert self._event is not None, "a blocking call: use wait()"
        try:
            await self._event.wait()
        except BaseException:
            self._drop()
            raise
        return self._outcome()

    def wait(self, timeout: float | None) -> Any:
        """Block until the job is done (start-up work, never on the event loop's hot path)."""
        if not self._finished.wait(timeout):
            if self._drop():
                raise DotnetBusy(
                    f"the .NET thread did not take the job within {timeout:g} s: another .NET call hangs"
                )
            raise DotnetBusy(f"the .NET call did not finish within {timeout:g} s (it goes on on the .NET thread)")
        return self._outcome()


class DotnetRuntime:
    """The process's .NET runtime and the one thread that makes every call into it.

    Get it with :meth:`get`, which loads the runtime the first time (blocking, on the .NET thread)
    and refuses a different runtime later.  ``await runtime.run(fn, *args)`` runs ``fn`` on the
    .NET thread; a .NET exception it lets through arrives as :class:`DotnetException`.  ``fn``
    should return plain Python values: .NET objects stay on the .NET thread (keep them with
    :meth:`keep` and pass the integer handle around).
    """

    _instance: ClassVar[DotnetRuntime | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: DotnetSection) -> None:
        self.settings = settings
        self.description = ""
        self._queue: queue.SimpleQueue[DotnetCall] = queue.SimpleQueue()
        self._objects: dict[int, Any] = {}
        self._handles = itertools.count(1)
        self._current: DotnetCall | None = None
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        self._System: Any = None
        self._thread = threading.Thread(target=self._main, name="ybplug-dotnet", daemon=True)

    # -- the process-wide instance ---------------------------------------------------------------

    @classmethod
    def get(cls, settings: DotnetSection | None = None) -> DotnetRuntime:
        """The process's runtime, loaded with ``settings`` the first time.

        Raises :class:`DotnetRuntimeUnavailable` when the runtime cannot be loaded, or when
        ``settings`` name another runtime than the one already loaded (pythonnet loads one per
        process).  Blocks while the runtime loads (about a second): call it from a worker thread
        in async code (:meth:`aget`).
        """
        settings = settings or DotnetSection()
        with cls._instance_lock:
            current = cls._instance
            if current is not None:
                if current.settings._runtime_key() != settings._runtime_key():
                    raise DotnetRuntimeUnavailable(
                        f"pythonnet loads one .NET runtime per process and {current.settings._describe()} "
                        f"is loaded; the configuration asks for {settings._describe()}: use one [dotnet] "
                        "runtime setting for the whole process"
                    )
                return current
            runtime = cls(settings)
            runtime._start()
            cls._instance = runtime
            return runtime

    @classmethod
    async def aget(cls, settings: DotnetSection | None = None) -> DotnetRuntime:
        """:meth:`get` without blocking the event loop."""
        return await anyio.to_thread.run_sync(cls.get, settings)

    def _start(self) -> None:
        self._thread.start()
        if not self._ready.wait(self.settings.load_timeout):
            raise DotnetRuntimeUnavailable(
                f"the {self.settings.runtime} runtime did not load within {self.settings.load_timeout:g} s"
            )
        if self._load_error is not None:
            raise self._load_error

    # -- calling -----------------------------------------------------------------------------

    @property
    def thread(self) -> threading.Thread:
        """The thread that makes every call into .NET."""
        return self._thread

    def busy_for(self) -> float | None:
        """Seconds the job on the .NET thread has been running, or None when it is idle."""
        current = self._current
        started = current.started if current is not None else None
        return None if started is None else time.monotonic() - started

    def submit(self, fn: Callable[..., Any], *args: Any) -> DotnetCall:
        """Queue ``fn(*args)`` for the .NET thread; await :meth:`DotnetCall.result`."""
        call = DotnetCall(fn, args, asynchronous=True)
        self._queue.put(call)
        return call

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the .NET thread and return its result, without blocking the loop.

        Cancellation-safe: a cancelled call that has not started never runs.
        """
        result: T = await self.submit(fn, *args).result()
        return result

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` on the .NET thread, blocking (start-up work; never on a hot path).

        Raises :class:`DotnetBusy` if the thread does not take the job within ``timeout`` seconds
        (by default the section's ``load_timeout``).
        """
        if threading.current_thread() is self._thread:
            return fn(*args)
        job = DotnetCall(fn, args, asynchronous=False)
        self._queue.put(job)
        result: T = job.wait(self.settings.load_timeout if timeout is None else timeout)
        return result

    # -- .NET objects, kept on the .NET thread -----------------------------------------------------

    def keep(self, obj: Any) -> int:
        """(.NET thread) Keep a .NET object on the .NET thread; returns its handle."""
        self._check_thread()
        handle = next(self._handles)
        self._objects[handle] = obj
        return handle

    def kept(self, handle: int) -> Any:
        """(.NET thread) The object kept under ``handle``."""
        self._check_thread()
        try:
            return self._objects[handle]
        except KeyError:
            raise DotnetError(f"no .NET object under handle {handle} (released?)") from None

    def release(self, handle: int) -> None:
        """(.NET thread) Forget the object kept under ``handle``."""
        self._check_thread()
        self._objects.pop(handle, None)

    def _check_thread(self) -> None:
        if threading.current_thread() is not self._thread:
            raise RuntimeError("this must run on the .NET thread: use DotnetRuntime.run or call")

    # -- the thread ------------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._load()
        except BaseException as exc:  # noqa: BLE001 - reported to get()
            self._load_error = exc if isinstance(exc, DotnetError) else DotnetRuntimeUnavailable(
                f"cannot start the {self.settings.runtime} .NET runtime: {type(exc).__name__}: {exc}"
            )
            self._ready.set()
            return
        self._ready.set()
        while True:
            job = self._queue.get()
            self._current = job
            try:
                job._execute(self._translate)
            finally:
                self._current = None
                del job

    def _load(self) -> None:
        try:
            clr_loader = importlib.import_module("clr_loader")
            pythonnet = importlib.import_module("pythonnet")
        except ImportError:
            raise DotnetRuntimeUnavailable("pythonnet is not installed: pip install 'ybplug[dotnet]'") from None
        settings = self.settings
        kinds = {"coreclr": "CoreCLR", "mono": "Mono", "netfx": ".NET Framework"}
        existing = pythonnet.get_runtime_info()
        if existing is not None:  # the HIS (or an `import clr`) set up pythonnet before us
            if existing.kind != kinds[settings.runtime]:
                raise DotnetRuntimeUnavailable(
                    f"pythonnet already runs the {existing.kind} runtime in this process and loads only one; "
                    f"the configuration asks for {settings.runtime}"
                )
            pythonnet.load()
        else:
            with tempfile.TemporaryDirectory(prefix="ybplug-dotnet-") as scratch:
                runtime = _make_runtime(clr_loader, settings, Path(scratch))
                try:
                    pythonnet.load(runtime)
                except Exception as exc:
                    raise DotnetRuntimeUnavailable(
                        f"cannot start the {settings.runtime} .NET runtime: {type(exc).__name__}: {exc}"
                    ) from None
            # pythonnet and clr_loader unload the runtime at exit from the main thread.  Mono does
            # not know that thread and aborts the process ("Cannot enter GC unsafe region if the
            # thread is not attached"); unloading from this thread works but takes about 3 s and
            # mono_jit_cleanup may hang.  The runtime ends with the process instead.
            atexit.unregister(pythonnet.unload)
            release = getattr(sys.modules.get("clr_loader.mono"), "_release", None)
            if callable(release):
                atexit.unregister(release)
        importlib.import_module("clr")  # makes the .NET namespaces importable
        System = importlib.import_module("System")

        self._System = System
        try:
            self.description = str(System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription)
        except Exception:  # noqa: BLE001 - informative only
            self.description = str(System.Environment.Version)
        log.info("loaded the %s .NET runtime (%s)", settings.runtime, self.description)

    def _translate(self, exc: BaseException) -> BaseException:
        """(.NET thread) A .NET exception becomes a :class:`DotnetException`; others pass."""
        System = self._System
        if System is None or not isinstance(exc, System.Exception):
            return exc
        return _dotnet_exception(System, exc)


def _dotnet_exception(System: Any, exc: Any, where: str | None = None) -> DotnetException:
    """(.NET thread) The Python error for a .NET exception: the innermost of the wrappers
    reflection and tasks add, its type and message, its stack trace kept apart."""
    wrappers = (System.Reflection.TargetInvocationException, System.AggregateException)
    while isinstance(exc, wrappers) and exc.InnerException is not None:
        exc = exc.InnerException
    try:
        name = str(exc.GetType().FullName)
        message = str(exc.Message)
        stack = None if exc.StackTrace is None else str(exc.StackTrace)
    except Exception:  # noqa: BLE001 - a broken exception object still gets reported
        name, message, stack = type(exc).__name__, str(exc), None
    return DotnetException(name, message, stack_trace=stack, where=where)


def _make_runtime(clr_loader: Any, settings: DotnetSection, scratch: Path) -> Any:
    """(.NET thread) The clr_loader runtime the settings describe, with errors that say what to do."""
    if settings.runtime == "netfx":
        if sys.platform != "win32":
            raise DotnetRuntimeUnavailable(
                "runtime 'netfx' is the .NET Framework, which exists only on Windows: use coreclr or mono"
            )
        try:
            return clr_loader.get_netfx()
        except Exception as exc:
            raise DotnetRuntimeUnavailable(f"no .NET Framework runtime: {exc}") from None
    if settings.runtime == "mono":
        libmono = settings.libmono
        if libmono is not None and not Path(libmono).is_file():
            raise DotnetRuntimeUnavailable(f"no Mono runtime at libmono = {libmono}")
        try:
            return clr_loader.get_mono(libmono=libmono)
        except Exception as exc:
            raise DotnetRuntimeUnavailable(
                f"no Mono runtime found ({exc}): install it (Debian: apt-get install libmonosgen-2.0-1 "
                "mono-devel) or set libmono in [dotnet]"
            ) from None
    root = _dotnet_root(settings)
    if settings.runtime_config is not None:
        config = Path(settings.runtime_config)
        if not config.is_file():
            raise DotnetRuntimeUnavailable(f"runtime_config not found: {config}")
    else:
        config = _write_runtime_config(root, scratch)
    try:
        runtime = clr_loader.get_coreclr(runtime_config=str(config), dotnet_root=str(root))
    except Exception as exc:
        raise DotnetRuntimeUnavailable(f"cannot start the coreclr runtime in {root}: {exc}") from None
    if settings.invariant_globalization:
        runtime["System.Globalization.Invariant"] = "true"
    return runtime


def _dotnet_root(settings: DotnetSection) -> Path:
    """The .NET root for coreclr: the setting, $DOTNET_ROOT, the dotnetcore2 package, the CLI."""
    hint = (
        "install one (pip install dotnetcore2 ships .NET Core 3.1; or your distribution's "
        "dotnet-runtime) or set dotnet_root in [dotnet]"
    )
    if settings.dotnet_root is not None:
        root = Path(settings.dotnet_root)
        source = "dotnet_root"
    elif os.environ.get("DOTNET_ROOT"):
        root = Path(os.environ["DOTNET_ROOT"])
        source = "$DOTNET_ROOT"
    else:
        found: Path | None = None
        spec = importlib.util.find_spec("dotnetcore2")  # a .NET Core runtime from PyPI
        for location in (spec.submodule_search_locations or []) if spec is not None else []:
            candidate = Path(location) / "bin"
            if (candidate / "host" / "fxr").is_dir():
                found = candidate
                break
        if found is None:
            try:
                found = Path(importlib.import_module("clr_loader").find_dotnet_root())
            except Exception:  # noqa: BLE001 - becomes the message below
                raise DotnetRuntimeUnavailable(f"no coreclr runtime found: {hint}") from None
        root, source = found, "found"
    if not (root / "host" / "fxr").is_dir():
        raise DotnetRuntimeUnavailable(f"no coreclr runtime in {root} ({source}: no host/fxr there): {hint}")
    return root


def _write_runtime_config(root: Path, scratch: Path) -> Path:
    """A ``runtimeconfig.json`` for the newest Microsoft.NETCore.App under ``root``."""
    shared = root / "shared" / "Microsoft.NETCore.App"
    versions: list[tuple[tuple[int, ...], str]] = []
    if shared.is_dir():
        for entry in shared.iterdir():
            match = re.match(r"^(\d+)\.(\d+)\.(\d+)", entry.name)
            if entry.is_dir() and match:
                versions.append((tuple(int(part) for part in match.groups()), entry.name))
    if not versions:
        raise DotnetRuntimeUnavailable(f"no Microsoft.NETCore.App runtime under {shared}")
    (major, minor, _), version = max(versions)
    tfm = f"net{major}.{minor}" if major >= 5 else f"netcoreapp{major}.{minor}"
    config = scratch / "ybplug.runtimeconfig.json"
    config.write_text(json.dumps({
        "runtimeOptions": {"tfm": tfm, "framework": {"name": "Microsoft.NETCore.App", "version": version}}
    }))
    return config


def _runtime(runtime: DotnetRuntime | DotnetSection | None) -> DotnetRuntime:
    return runtime if isinstance(runtime, DotnetRuntime) else DotnetRuntime.get(runtime)


# --------------------------------------------------------------------------------------------
# Plugins


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


def _hook_shapes() -> dict[str, _HookShape]:
    """The hooks .NET may implement, from :mod:`ybplug.hooks.specs`."""
    from ybplug.hooks import specs

    shapes: dict[str, _HookShape] = {}
    for name, fn in vars(specs).items():
        if not inspect.isfunction(fn) or getattr(fn, PROJECT + "_spec", None) is None:
            continue
        signature = inspect.signature(fn)
        argnames = tuple(signature.parameters)
        returns = signature.return_annotation
        if returns in (None, "None", inspect.Signature.empty):
            answer = None
        elif name in _ANSWERS:
            answer = _ANSWERS[name]
        else:
            continue  # answers with a Python object (ybplug_transport): not for .NET
        shapes[name] = _HookShape(name, argnames, answer)
    return shapes


class _Bound(msgspec.Struct, frozen=True):
    """What the .NET thread found: a hook's method (Python side: names only)."""

    hook: str
    method: str
    returns_text: bool
    static: bool


_encoder = msgspec.json.Encoder()


def _make_impl(hook: str, argnames: Sequence[str], call: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
    """An ``async def`` hook implementation with exactly the spec's parameter names.

    pluggy reads the names from the function's code, so the function is compiled from source;
    every name is a hook parameter from the specs and is checked to be a plain identifier.
    """
    for name in (hook, *argnames):
        if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
            raise DotnetError(f"hook {hook!r}: cannot forward a parameter named {name!r}")
    sent = ", ".join(f"{name!r}: {name}" for name in argnames if name not in _NOT_SENT)
    source = f"async def {hook}({', '.join(argnames)}):\n    return await _call({{{sent}}})\n"
    namespace: dict[str, Any] = {"_call": call, "__name__": __name__}
    exec(compile(source, f"<ybplug.dotnet:{hook}>", "exec"), namespace)  # noqa: S102 - names checked above
    function: Callable[..., Any] = namespace[hook]
    function.__doc__ = f"Forwards {hook} to the .NET method {hook_method_name(hook)}(string json)."
    marked: Callable[..., Any] = hookimpl(function)
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
        self._runtime = _runtime(runtime)
        shapes = _hook_shapes()
        self._handle, bound = self._runtime.call(
            _open_plugin, self._runtime, str(self.assembly), type_name, shapes
        )
        self._bound: dict[str, _Bound] = {b.hook: b for b in bound}
        self.hooks: tuple[str, ...] = tuple(sorted(self._bound))
        for hook in self.hooks:
            setattr(self, hook, _make_impl(hook, shapes[hook].argnames, self._forwarder(hook, shapes[hook].answer)))
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
                await self._runtime.run(_release, self._runtime, handle)


class _PluginObjects:
    """(.NET thread) What a plugin's handle stands for."""

    def __init__(self, type_name: str, instance: Any, methods: dict[str, Any]) -> None:
        self.type_name = type_name
        self.instance = instance
        self.methods = methods


def _release(runtime: DotnetRuntime, handle: int) -> None:
    runtime.release(handle)


def _load_type(runtime: DotnetRuntime, assembly: str, type_name: str) -> Any:
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


def _shape(method: Any) -> tuple[list[str], str]:
    """(.NET thread) A method's parameter type names and return type name."""
    parameters = [str(p.ParameterType.FullName or p.ParameterType.Name) for p in method.GetParameters()]
    return parameters, str(method.ReturnType.FullName)


def _signature(method: Any) -> str:
    parameters, returns = _shape(method)
    return f"{returns} {method.Name}({', '.join(parameters)})"


def _open_plugin(
    runtime: DotnetRuntime, assembly: str, type_name: str, shapes: dict[str, _HookShape]
) -> tuple[int, list[_Bound]]:
    """(.NET thread) Find the hook methods of a plugin class and create its instance."""
    System = runtime._System
    found = _load_type(runtime, assembly, type_name)
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
        usable = [m for m in candidates if _shape(m)[0] == ["System.String"]
                  and _shape(m)[1] in ("System.Void", "System.String")]
        if not usable:
            found_as = "; ".join(_signature(m) for m in candidates)
            returns = "string" if shape.answer is not None else "void"
            raise DotnetMethodNotFound(
                f"{type_name}.{expected} must be `public {returns} {expected}(string json)` "
                f"(the arguments of hook {hook} as JSON); found {found_as}"
            )
        if len(usable) > 1:
            raise DotnetMethodNotFound(
                f"{type_name} has {len(usable)} methods serving hook {hook}: "
                + "; ".join(_signature(m) for m in usable)
            )
        method = usable[0]
        chosen[hook] = method
        bound.append(_Bound(hook, str(method.Name), _shape(method)[1] == "System.String", bool(method.IsStatic)))
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
                and _shape(method)[0] == ["System.String"]
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
            raise _dotnet_exception(System, exc, where=f"{type_name} constructor") from None
    handle = runtime.keep(_PluginObjects(type_name, instance, chosen))
    return handle, bound


def _invoke_hook(runtime: DotnetRuntime, handle: int, hook: str, payload: str) -> str | None:
    """(.NET thread) Call a plugin's method for ``hook`` with the JSON of its arguments."""
    objects: _PluginObjects = runtime.kept(handle)
    method = objects.methods[hook]
    try:
        result = method.Invoke(None if method.IsStatic else objects.instance, [payload])
    except Exception as exc:  # noqa: BLE001
        raise _dotnet_exception(runtime._System, exc, where=f"{objects.type_name}.{method.Name}") from None
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
    loaded = _runtime(runtime)
    plugins: list[tuple[str, object]] = []
    for entry in entries:
        plugin = DotnetPlugin(entry.assembly, entry.type, name=entry.plugin_name, runtime=loaded)
        plugins.append((plugin.ybplug_name, plugin))
    return plugins


# --------------------------------------------------------------------------------------------
# EcTrans in .NET


_UTF8_BOM = b"\xef\xbb\xbf"
_ID_LIKE = re.compile(r"\d{15,}[\dXx]?")


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, mask(secret))
    return _ID_LIKE.sub(lambda m: mask(m.group()), text)


def _request_text(request: QrRequest) -> str:
    """``inData``: the same JSON the ctypes binding sends, as a .NET string (no GBK limit)."""
    if not isinstance(request, QrRequest):
        raise TypeError(f"expected a QrRequest, got {type(request).__name__}")
    document = {"idcode": request.idcode, "data": msgspec.to_builtins(request.data)}
    return msgspec.json.encode(document).decode("utf-8")


def _open_ectrans(runtime: DotnetRuntime, assembly: str, type_name: str, method_name: str) -> int:
    """(.NET thread) Find ``static int EcTrans(string inData, out string outData)``."""
    found = _load_type(runtime, assembly, type_name)
    candidates = [m for m in found.GetMethods() if str(m.Name) == method_name]
    wanted = f"public static int {method_name}(string inData, out string outData)"
    if not candidates:
        raise DotnetMethodNotFound(f".NET type {type_name} has no public method {method_name}: expected `{wanted}`")
    for method in candidates:
        parameters = list(method.GetParameters())
        if (
            method.IsStatic
            and str(method.ReturnType.FullName) == "System.Int32"
            and len(parameters) == 2
            and str(parameters[0].ParameterType.FullName) == "System.String"
            and bool(parameters[1].ParameterType.IsByRef)
            and str(parameters[1].ParameterType.GetElementType().FullName) == "System.String"
        ):
            return runtime.keep(method)
    found_as = "; ".join(("static " if m.IsStatic else "") + _signature(m) for m in candidates)
    raise DotnetMethodNotFound(f"{type_name}.{method_name} must be `{wanted}`; found {found_as}")


def _call_ectrans(runtime: DotnetRuntime, handle: int, in_data: str) -> tuple[int, str | None]:
    """(.NET thread) One EcTrans call; the return code and ``outData``."""
    System = runtime._System
    method = runtime.kept(handle)
    arguments = System.Array[System.Object]([in_data, None])
    try:
        code = method.Invoke(None, arguments)
    except Exception as exc:  # noqa: BLE001
        raise _dotnet_exception(System, exc, where=f"{method.DeclaringType.FullName}.{method.Name}") from None
    out = arguments[1]
    return int(code), None if out is None else str(out)


class DotnetVoucher:
    """EcTrans served by a .NET assembly: ``public static int EcTrans(string inData, out string outData)``.

    The same contract as :class:`ybplug.binding.Voucher`: ``await decode(request)`` returns the
    :class:`~ybplug.messages.QrIdentity` or raises a :class:`~ybplug.binding.VoucherError`
    (:class:`~ybplug.binding.VoucherCallFailed` for a non-zero return,
    :class:`~ybplug.binding.VoucherRefused` for flag 0, :class:`~ybplug.binding.VoucherTimeout`,
    :class:`~ybplug.binding.VoucherBusy` when the .NET thread stayed busy, :class:`DotnetVoucherFailed`
    when EcTrans threw, :class:`~ybplug.binding.VoucherReplyUnreadable`).  ``outData`` is read as
    tolerantly as the ctypes binding reads its buffer (the spec's trailing comma and all).
    Loading errors are :class:`DotnetError` subclasses naming what is missing.

    A call that times out cannot be stopped: the .NET thread stays busy until EcTrans returns,
    and the .NET plugins' calls wait behind it.
    """

    def __init__(
        self,
        assembly: str | os.PathLike[str],
        type_name: str,
        *,
        method: str = "EcTrans",
        timeout: float = 15.0,
        scan_timeout: float = 120.0,
        runtime: DotnetRuntime | DotnetSection | None = None,
    ) -> None:
        if not timeout > 0 or not scan_timeout > 0:
            raise ValueError("timeout and scan_timeout must be positive")
        self.assembly = Path(assembly)
        self.type_name = type_name
        self.method = method
        self.timeout = timeout
        self.scan_timeout = scan_timeout
        self._settings = runtime
        self._runtime: DotnetRuntime | None = runtime if isinstance(runtime, DotnetRuntime) else None
        self._handle = 0
        self._closed = False
        self._lock: anyio.Lock | None = None

    async def __aenter__(self) -> DotnetVoucher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Load the runtime (on first use), the assembly and the method now rather than at the
        first decode."""
        if self._closed:
            raise VoucherError("this DotnetVoucher is closed")
        if self._handle:
            return
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._handle:
                return
            if self._runtime is None:
                settings = self._settings if isinstance(self._settings, DotnetSection) else None
                self._runtime = await DotnetRuntime.aget(settings)
            with anyio.fail_after(self._runtime.settings.load_timeout):
                self._handle = await self._runtime.run(
                    _open_ectrans, self._runtime, str(self.assembly), self.type_name, self.method
                )
            log.info("EcTrans from .NET: %s.%s in %s", self.type_name, self.method, self.assembly)

    async def decode(self, request: QrRequest) -> QrIdentity:
        """Decode one QR code (an empty ``idcode`` lets the library scan: ``scan_timeout``)."""
        await self.start()
        runtime = self._runtime
        assert runtime is not None
        in_data = _request_text(request)
        scanning = not request.idcode
        timeout = self.scan_timeout if scanning else self.timeout
        secrets = (request.idcode,)
        began = time.monotonic()
        call = runtime.submit(_call_ectrans, runtime, self._handle, in_data)
        answered = False
        try:
            with anyio.move_on_after(timeout):
                code, out = await call.result()
                answered = True
        except DotnetException as exc:
            log.warning("EcTrans (.NET) threw %s after %.0f ms", exc.dotnet_type, 1000 * (time.monotonic() - began))
            raise DotnetVoucherFailed(exc.dotnet_type, _scrub(exc.dotnet_message, secrets)) from None
        if not answered:
            if call.state == "dropped":
                busy = runtime.busy_for()
                raise VoucherBusy(
                    f"waited {timeout:g} s but the .NET thread was busy with another call the whole time"
                    + (f" (that call has been running for {busy:.0f} s)" if busy is not None and busy >= 1 else "")
                )
            log.warning("EcTrans (.NET) timed out after %g s; the .NET thread stays busy until it returns", timeout)
            raise VoucherTimeout(
                f"EcTrans did not answer within {timeout:g} s"
                + (" (the scanning window was open)" if scanning else "")
                + "; a .NET call cannot be stopped: the .NET thread stays busy until it returns",
                timeout,
            )
        raw = b"" if out is None else _UTF8_BOM + out.encode("utf-8", "surrogatepass")
        if code != 0:
            cause: str | None = None
            with contextlib.suppress(VoucherError):
                cause = decode_reply(raw).cause
            raise VoucherCallFailed(code, _scrub(cause, secrets) if cause else None)
        reply = decode_reply(raw)
        if reply.flag != 1:
            raise VoucherRefused(_scrub(reply.cause or "", secrets))
        if reply.data is None:
            raise VoucherReplyUnreadable("the reply says flag 1 but has no data node")
        log.debug("EcTrans (.NET) decoded a QR code in %.0f ms", 1000 * (time.monotonic() - began))
        return reply.data

    async def aclose(self) -> None:
        """Let the .NET method go; further decodes raise :class:`~ybplug.binding.VoucherError`."""
        self._closed = True
        handle, self._handle = self._handle, 0
        if handle and self._runtime is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._runtime.run(_release, self._runtime, handle)
