"""The .NET runtime of the process, the one thread that calls into it, and finding a runtime.

One thread, one runtime
-----------------------
Every call into .NET, loading the runtime included, is made by one dedicated daemon thread owned
by :class:`DotnetRuntime` (a :class:`ybplug.dedicated.DedicatedThread`); async callers queue a
job and wait for it without blocking the event loop (and without holding a worker thread).  Runtimes are not all happy to be called from many
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

import atexit
import importlib
import importlib.util
import itertools
import json
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.to_thread

from ybplug.dedicated import DedicatedThread, Job
from ybplug.dotnet.config import DotnetSection
from ybplug.dotnet.errors import DotnetBusy, DotnetError, DotnetException, DotnetRuntimeUnavailable

__all__ = ["DotnetRuntime", "dotnet_exception", "runtime_of"]

log = logging.getLogger("ybplug.dotnet")

T = TypeVar("T")


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
        self._objects: dict[int, Any] = {}
        self._handles = itertools.count(1)
        self._System: Any = None
        self._worker = DedicatedThread("ybplug-dotnet", translate=self._translate)

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
                if current.settings.runtime_key() != settings.runtime_key():
                    raise DotnetRuntimeUnavailable(
                        f"pythonnet loads one .NET runtime per process and {current.settings.describe()} "
                        f"is loaded; the configuration asks for {settings.describe()}: use one [dotnet] "
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
        job = self._worker.submit(self._load, asynchronous=False)
        if not job.wait_blocking(self.settings.load_timeout):
            raise DotnetRuntimeUnavailable(
                f"the {self.settings.runtime} runtime did not load within {self.settings.load_timeout:g} s"
            )
        try:
            job.outcome()
        except DotnetError:
            self._worker.stop(timeout=0)  # no runtime: the thread has nothing left to do
            raise
        except BaseException as exc:  # noqa: BLE001 - reported as the runtime being unavailable
            self._worker.stop(timeout=0)
            raise DotnetRuntimeUnavailable(
                f"cannot start the {self.settings.runtime} .NET runtime: {type(exc).__name__}: {exc}"
            ) from None

    # -- calling -----------------------------------------------------------------------------

    @property
    def thread(self) -> threading.Thread:
        """The thread that makes every call into .NET."""
        thread = self._worker.thread
        assert thread is not None
        return thread

    def busy_for(self) -> float | None:
        """Seconds the job on the .NET thread has been running, or None when it is idle."""
        return self._worker.busy_for()

    def stuck_for(self) -> float | None:
        """Seconds the job on the .NET thread has been running, if its caller gave up on it."""
        job = self._worker.current()
        return self._worker.busy_for() if job is not None and job.abandoned else None

    def submit(self, fn: Callable[..., T], *args: Any) -> Job[T]:
        """Queue ``fn(*args)`` for the .NET thread; await :meth:`Job.result`."""
        return self._worker.submit(fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the .NET thread and return its result, without blocking the loop.

        Cancellation-safe: a cancelled call that has not started never runs.
        """
        return await self._worker.run(fn, *args)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` on the .NET thread, blocking (start-up work; never on a hot path).

        Raises :class:`DotnetBusy` if the thread does not take the job within ``timeout`` seconds
        (by default the section's ``load_timeout``).
        """
        if self._worker.on_thread():
            return fn(*args)
        limit = self.settings.load_timeout if timeout is None else timeout
        job = self._worker.submit(fn, *args, asynchronous=False)
        if not job.wait_blocking(limit):
            if job.drop():
                raise DotnetBusy(f"the .NET thread did not take the job within {limit:g} s: another .NET call hangs")
            raise DotnetBusy(f"the .NET call did not finish within {limit:g} s (it goes on on the .NET thread)")
        return job.outcome()

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
        if not self._worker.on_thread():
            raise RuntimeError("this must run on the .NET thread: use DotnetRuntime.run or call")

    # -- on the thread ---------------------------------------------------------------------------

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
        error = dotnet_exception(System, exc)
        # Its traceback's frames and its context hold .NET objects, which must not be freed on
        # another thread: the caller gets the message, not the frames.
        error.__cause__ = error.__context__ = None
        error.__suppress_context__ = True
        return error.with_traceback(None)


def dotnet_exception(System: Any, exc: Any, where: str | None = None) -> DotnetException:
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


def runtime_of(runtime: DotnetRuntime | DotnetSection | None) -> DotnetRuntime:
    """A loaded runtime: the one given, or the process's loaded with the section given."""
    return runtime if isinstance(runtime, DotnetRuntime) else DotnetRuntime.get(runtime)
