"""What differs between the platforms ybplug runs on (Windows at most hospitals, POSIX here).

Every platform-specific call lives here, behind a function that works on both, so the rest of
the package is portable by construction.
"""

from __future__ import annotations

import contextlib
import errno
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

from ybplug.errors import Error

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
    (0700 on POSIX, :func:`windows_private_sddl` on Windows; folders that exist are left as their
    owner set them)."""
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing.append(folder)
    path.mkdir(parents=True, exist_ok=True)
    for folder in reversed(missing):  # outermost first: each one private before what it holds
        if sys.platform == "win32":
            _restrict_windows(folder, container=True)
        else:
            os.chmod(folder, 0o700)
    return path


def private_file(path: Path) -> None:
    """Make a file ybplug holds personal data in readable by this user only (0600 on POSIX; on
    Windows a protected DACL, :func:`windows_private_sddl`, whatever its folder would pass on)."""
    if not path.exists():
        return
    if sys.platform == "win32":
        _restrict_windows(path, container=False)
    else:
        os.chmod(path, 0o600)


def windows_private_sddl(user_sid: str, *, container: bool) -> str:
    """The security descriptor (SDDL) of what ybplug keeps personal data in on Windows.

    ``D:P``: a protected DACL, so nothing is inherited from above (``%PROGRAMDATA%`` lets
    BUILTIN\\Users read what is created in it); full control (``FA``) for SYSTEM (``SY``, the
    service), the Administrators (``BA``) and ``user_sid`` (this process's user, e.g. a clerk
    using her own folder), nobody else.  A folder's entries are inherited (``OICI``) by the files
    and folders created in it later: the journal SQLite creates there is private by construction.
    """
    inherit = "OICI" if container else ""
    return "D:P" + "".join(f"(A;{inherit};FA;;;{sid})" for sid in ("SY", "BA", user_sid))


class PrivacyError(PermissionError, Error):
    """A file or folder could not be made private (Windows: its DACL could not be set).

    An ``OSError`` whose ``strerror`` says what failed (what the journal and the log file report
    when they cannot open), and an :class:`ybplug.Error`, one line where nothing else caught it.
    """

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}" if self.filename else str(self.strerror)


def _restrict_windows(path: Path, *, container: bool) -> None:  # Windows only
    """Give ``path`` the DACL of :func:`windows_private_sddl`, or raise :class:`PrivacyError`:
    never left readable by every local user without a word."""
    if sys.platform != "win32":  # mypy checks what follows for Windows alone
        raise NotImplementedError("Windows only")
    import ctypes
    from ctypes import wintypes

    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.LocalFree.argtypes = [ctypes.c_void_p]
    kernel32.LocalFree.restype = ctypes.c_void_p

    def failed(call: str, code: int) -> PrivacyError:
        return PrivacyError(
            errno.EACCES,
            f"cannot make it private to SYSTEM, Administrators and this user: {call} failed (Windows error {code})",
            str(path),
        )

    sddl = windows_private_sddl(_windows_user_sid(), container=container)
    convert = advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW
    convert.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
    convert.restype = wintypes.BOOL
    descriptor = ctypes.c_void_p()
    if not convert(sddl, 1, ctypes.byref(descriptor), None):  # SDDL_REVISION_1
        raise failed("ConvertStringSecurityDescriptorToSecurityDescriptorW", ctypes.get_last_error())
    try:
        get_dacl = advapi32.GetSecurityDescriptorDacl
        get_dacl.argtypes = [ctypes.c_void_p, ctypes.POINTER(wintypes.BOOL), ctypes.POINTER(ctypes.c_void_p),
                             ctypes.POINTER(wintypes.BOOL)]
        get_dacl.restype = wintypes.BOOL
        present, defaulted, dacl = wintypes.BOOL(), wintypes.BOOL(), ctypes.c_void_p()
        if not get_dacl(descriptor, ctypes.byref(present), ctypes.byref(dacl), ctypes.byref(defaulted)) or not dacl:
            raise failed("GetSecurityDescriptorDacl", ctypes.get_last_error())
        set_info = advapi32.SetNamedSecurityInfoW
        set_info.argtypes = [wintypes.LPWSTR, ctypes.c_int, wintypes.DWORD, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_void_p]
        set_info.restype = wintypes.DWORD
        se_file_object = 1
        dacl_security_information = 0x00000004
        protected_dacl_security_information = 0x80000000  # what the SDDL's "P" means to this call
        status = set_info(str(path), se_file_object, dacl_security_information | protected_dacl_security_information,
                          None, None, dacl, None)
        if status != 0:  # the error itself, not GetLastError
            raise failed("SetNamedSecurityInfoW", status)
    finally:
        kernel32.LocalFree(descriptor)


@functools.lru_cache(maxsize=1)
def _windows_user_sid() -> str:  # Windows only
    """This process's user as a SID string (``S-1-5-18`` for LocalSystem), from its token."""
    if sys.platform != "win32":
        raise NotImplementedError("Windows only")
    import ctypes
    from ctypes import wintypes

    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.GetCurrentProcess.argtypes = []
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    kernel32.CloseHandle.restype = wintypes.BOOL
    kernel32.LocalFree.argtypes = [ctypes.c_void_p]
    kernel32.LocalFree.restype = ctypes.c_void_p
    advapi32.OpenProcessToken.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.POINTER(wintypes.HANDLE)]
    advapi32.OpenProcessToken.restype = wintypes.BOOL
    advapi32.GetTokenInformation.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD,
                                             ctypes.POINTER(wintypes.DWORD)]
    advapi32.GetTokenInformation.restype = wintypes.BOOL
    advapi32.ConvertSidToStringSidW.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    advapi32.ConvertSidToStringSidW.restype = wintypes.BOOL

    def failed(call: str) -> PrivacyError:
        return PrivacyError(errno.EACCES, f"cannot tell which user this process runs as: {call} failed "
                                          f"(Windows error {ctypes.get_last_error()})")

    token = wintypes.HANDLE()
    if not advapi32.OpenProcessToken(kernel32.GetCurrentProcess(), 0x0008, ctypes.byref(token)):  # TOKEN_QUERY
        raise failed("OpenProcessToken")
    try:
        # TOKEN_USER: a SID_AND_ATTRIBUTES whose first field points at the SID, which follows it
        # in the buffer; 256 bytes hold it with room to spare (a SID is at most 68 bytes).
        buffer = ctypes.create_string_buffer(256)
        size = wintypes.DWORD()
        if not advapi32.GetTokenInformation(token, 1, buffer, ctypes.sizeof(buffer), ctypes.byref(size)):  # TokenUser
            raise failed("GetTokenInformation")
        sid = ctypes.cast(buffer, ctypes.POINTER(ctypes.c_void_p))[0]
        text = ctypes.c_void_p()
        if not advapi32.ConvertSidToStringSidW(sid, ctypes.byref(text)):
            raise failed("ConvertSidToStringSidW")
        try:
            return ctypes.wstring_at(text.value or 0)
        finally:
            kernel32.LocalFree(text)
    finally:
        kernel32.CloseHandle(token)


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

    The machine-wide :func:`state_dir` when this user can write there, else
    :func:`user_state_dir`, with one log line saying so.  Neither is created here: a read-only
    command (``ybplug status``, ``ybplug plugins``) leaves no folder behind; the journal creates
    its folder, private, when it is first opened (:func:`private_dir`).
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
    """Whether this user can write in ``folder``, or create it: tried for real, with a file or a
    folder removed at once (on Windows only that tells what the ACL allows)."""
    import tempfile  # here: only the default journal needs it

    try:
        if folder.exists():
            if not folder.is_dir():
                return False
            with tempfile.TemporaryFile(dir=folder):
                pass
            return True
        nearest = next((parent for parent in folder.parents if parent.exists()), None)
        if nearest is None or not nearest.is_dir():
            return False
        os.rmdir(tempfile.mkdtemp(prefix=".ybplug-", dir=nearest))  # what creating the folder takes
    except OSError:
        return False
    return True


__all__ = [
    "default_journal",
    "exit_on_stop_signals",
    "PrivacyError",
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
    "windows_private_sddl",
]
