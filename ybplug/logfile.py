"""A private rotating log file for ``ybplug run`` (a module of its own: only the worker needs
``logging.handlers``, and ``ybplug status`` should not pay for importing it)."""

from __future__ import annotations

import io
import logging.handlers
import os
import sys
from pathlib import Path

from ybplug.system import private_dir, private_file


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file readable by this user only (0600 on POSIX, the private DACL of
    :func:`ybplug.system.private_file` on Windows), each new file after a rollover too: on POSIX
    it is created with that mode, never chmod-ed after being open to others; on Windows its DACL
    is set as soon as it is created, before anything is written to it."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        private_dir(path.parent)
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=False)
        private_file(path)  # one written by an earlier version or by hand

    def _open(self) -> io.TextIOWrapper:
        # O_BINARY on Windows: os.open's fd is otherwise in text mode, and the CRT would turn the
        # text wrapper's \r\n into \r\r\n (open() itself always asks for binary).
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)
        fd = os.open(self.baseFilename, flags, 0o600)
        if sys.platform == "win32":  # the mode means nothing there: the DACL, before a line is written
            try:
                private_file(Path(self.baseFilename))
            except OSError:
                os.close(fd)
                raise
        return open(fd, "a", encoding=self.encoding, errors=self.errors)
