"""What differs between the platforms ybplug runs on (Windows at most hospitals, POSIX here).

Every platform-specific call lives here, behind a function that works on both, so the rest of
the package is portable by construction.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine.

    Not ``os.kill(pid, 0)`` on Windows: there it sends CTRL_C_EVENT instead of checking.
    """
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        process_query_limited_information = 0x1000
        still_active = 259
        handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
        if not handle:
            return False  # gone (or not ours to see, which a worker of ours would be)
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == still_active
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)  # posix-only: signal 0 checks without sending
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


__all__ = ["process_alive", "private_dir", "private_file"]
