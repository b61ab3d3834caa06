"""What differs between the platforms ybplug runs on (Windows at most hospitals, POSIX here).

Every platform-specific call lives here, behind a function that works on both, so the rest of
the package is portable by construction.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger("ybplug")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a lease's owner, before taking its births).

    On Windows OpenProcess and GetExitCodeProcess (signal 0 there would terminate the process
    instead of checking it); on POSIX signal 0.
    A process this user may not query (the service's worker, seen from a clerk's account) exists:
    on Windows OpenProcess then fails with ERROR_ACCESS_DENIED, on POSIX kill with EPERM.
    """
    if pid <= 0:
        return False  # 0 and -1 mean "my group" and "everyone" to kill(), no process to OpenProcess
    if sys.platform == "win32":
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
        kernel32.OpenProcess.restype = wintypes.HANDLE
        kernel32.GetExitCodeProcess.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD)]
        kernel32.GetExitCodeProcess.restype = wintypes.BOOL
        kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
        kernel32.CloseHandle.restype = wintypes.BOOL
        process_query_limited_information = 0x1000
        error_access_denied = 5
        still_active = 259
        handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
        if not handle:
            # ERROR_INVALID_PARAMETER: no such process; ERROR_ACCESS_DENIED: one we may not see
            return ctypes.get_last_error() == error_access_denied
        try:
            code = wintypes.DWORD()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True  # cannot tell: never take a live worker's births
            return code.value == still_active
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)  # posix-only: signal 0 checks without sending (Windows returned above)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) readable by this user only where ybplug creates it
    (0700 on POSIX; folders that exist are left as their owner set them)."""
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing.append(folder)
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform != "win32":
        for folder in missing:
            os.chmod(folder, 0o700)
    return path


def private_file(path: Path) -> None:
    """Make a file ybplug holds personal data in readable by this user only (0600 on POSIX;
    on Windows the folder's ACL, inherited from %PROGRAMDATA%\\ybplug, decides)."""
    if sys.platform != "win32" and path.exists():
        os.chmod(path, 0o600)


# --- stopping -----------------------------------------------------------------------------------

_Handler = Callable[[int, FrameType | None], Any] | int | None


def stop_signals() -> list[int]:
    """The signals that ask ybplug to stop here.

    POSIX: SIGTERM (systemd, ``kill``, Docker) and SIGINT (Ctrl+C).  Windows: SIGINT (Ctrl+C, and
    what WinSW and NSSM send a console program when its service is stopped) and SIGBREAK
    (Ctrl+Break, and a console window being closed); SIGTERM exists there only for ``raise()``.
    """
    if sys.platform == "win32":
        return [signal.SIGINT, signal.SIGBREAK]
    return [signal.SIGINT, signal.SIGTERM]


class StopRequest:
    """What :func:`stop_requests` yields: ``await stop.wait()`` returns the signal's name."""

    def __init__(self) -> None:
        import asyncio  # here, not at the top: the journal imports this module, and `ybplug status` needs no event loop

        self._event = asyncio.Event()
        self.signal_name = ""

    def _set(self, signum: int) -> None:
        if not self._event.is_set():
            self.signal_name = _name(signum)
        self._event.set()

    async def wait(self) -> str:
        await self._event.wait()
        return self.signal_name

    async def wait_or(self, failed: Any) -> str | None:
        """Wait for a stop request or for ``failed`` (an ``anyio.Event``: the host's journal lost),
        whichever comes first: the signal's name, or None when ``failed`` came first (whoever set
        it holds why).  What ``ybplug run`` and ``ybplug console`` block on."""
        import anyio

        reason: list[str] = []
        async with anyio.create_task_group() as tg:

            async def stopped() -> None:
                reason.append(await self.wait())
                tg.cancel_scope.cancel()

            async def gave_up() -> None:
                await failed.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(stopped)
            tg.start_soon(gave_up)
        return reason[0] if reason else None


@contextlib.asynccontextmanager
async def stop_requests() -> AsyncIterator[StopRequest]:
    """Listen for a stop request (:func:`stop_signals`) inside the block.

    Not anyio's signal receiver, which Windows lacks.  On POSIX the loop's
    ``add_signal_handler`` (it wakes the loop even when the signal lands on another thread); on
    Windows ``signal.signal`` handlers, which the proactor loop's wakeup socket makes prompt, and
    which hand the request to the loop through ``call_soon_threadsafe`` because they run between
    any two bytecodes of the main thread.  The previous handlers are back when the block ends, so
    a second Ctrl+C during shutdown interrupts it.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    stop = StopRequest()
    signums = stop_signals()
    previous: dict[int, _Handler] = {signum: signal.getsignal(signum) for signum in signums}
    try:
        for signum in signums:
            if sys.platform == "win32":
                signal.signal(signum, lambda n, frame: loop.call_soon_threadsafe(stop._set, n))
            else:
                loop.add_signal_handler(signum, stop._set, signum)  # posix-only (Windows above)
        yield stop
    finally:
        for signum, handler in previous.items():
            if sys.platform != "win32":
                loop.remove_signal_handler(signum)  # posix-only
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


async def wait_for_stop() -> str:
    """Wait until a stop is requested (see :func:`stop_requests`); returns the signal's name."""
    async with stop_requests() as stop:
        return await stop.wait()


def _name(signum: int) -> str:
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):  # SIGBREAK: Windows only
        if getattr(signal, name, None) == signum:
            return name
    return f"signal {signum}"


def exit_on_stop_signals() -> None:
    """Until :func:`wait_for_stop` listens, a service manager's stop (SIGTERM on POSIX, SIGBREAK
    on Windows) ends the process cleanly with status 0; Ctrl+C stays KeyboardInterrupt."""

    def leave(signum: int, frame: FrameType | None) -> None:
        sys.exit(0)

    for signum in stop_signals():
        if signum != signal.SIGINT:
            signal.signal(signum, leave)


# --- consoles ------------------------------------------------------------------------------------


def tolerant_console() -> None:
    """Make stdout and stderr write what their encoding cannot hold as ``\\U…`` escapes.

    A Chinese Windows console, a redirected service log or ``PYTHONIOENCODING=gbk`` encode in
    GBK (cp936), which lacks characters a mother's name can have (𠀀, 䶮): without this one such
    name ends a command in UnicodeEncodeError.
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


# --- where the journal lives ---------------------------------------------------------------------


def state_dir() -> Path:
    """The machine-wide folder a service keeps its journal in.

    ``STATE_DIRECTORY`` when the service manager names one (systemd's ``StateDirectory=``; set it
    in a WinSW ``<env>`` too), else ``%PROGRAMDATA%\\ybplug`` on Windows and ``/var/lib/ybplug``
    on POSIX.
    """
    named = os.environ.get("STATE_DIRECTORY", "").split(os.pathsep)[0]
    if named:
        return Path(named)
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA") or "C:\\ProgramData") / "ybplug"
    return Path("/var/lib/ybplug")


def user_state_dir() -> Path:
    """This user's folder, for when the machine-wide one is not writable (a clerk's account):
    ``%LOCALAPPDATA%\\ybplug`` on Windows, ``$XDG_STATE_HOME/ybplug`` or ``~/.local/state/ybplug``."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "ybplug"
    xdg = os.environ.get("XDG_STATE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "state") / "ybplug"


def default_journal() -> str:
    """The journal's path when the configuration names none: never the current directory (a
    Windows service starts in System32).

    The machine-wide :func:`state_dir` when this user can write there (it is created 0700 if
    missing, and written to once to be sure: on Windows only that tells what the ACL allows),
    else :func:`user_state_dir`, with one log line saying so.
    """
    return str(private_state_dir() / "journal.db")


def private_state_dir() -> Path:
    """The folder ybplug keeps this machine's state in (the default journal, the markers of
    PostgreSQL journals): :func:`state_dir` when this user can write there, else
    :func:`user_state_dir`."""
    return _choose(state_dir(), user_state_dir())


@functools.lru_cache(maxsize=None)
def _choose(machine: Path, user: Path) -> Path:
    if _writable(machine):
        return machine
    log.warning("%s is not writable by this user; the journal goes to %s instead", machine, user)
    return user


def _writable(folder: Path) -> bool:
    try:
        private_dir(folder)
        import tempfile  # here: only a service's first start needs it

        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


__all__ = [
    "default_journal",
    "exit_on_stop_signals",
    "private_dir",
    "private_file",
    "private_state_dir",
    "process_alive",
    "state_dir",
    "StopRequest",
    "stop_requests",
    "stop_signals",
    "tolerant_console",
    "user_state_dir",
    "wait_for_stop",
]
