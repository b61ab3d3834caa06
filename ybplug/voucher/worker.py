"""The EcTrans worker process: load the vendor library once, answer framed requests on stdin.

Run as a script by path (``python -I .../ybplug/voucher/worker.py LIBRARY CONVENTION BYTES PID``)
by :mod:`ybplug.voucher.process`, under the HIS's interpreter or another one (a 32-bit Python for a
32-bit DLL).  So this file uses the standard library only and Python 3.8 syntax: the interpreter
running it needs nothing installed, not ybplug, not msgspec.  The thread backend imports
:func:`load_ectrans` from here, so both backends load the library the same way.

Frames.  Request: ``>I`` length, then the GBK JSON.  Reply: ``>BiI`` kind, EcTrans's return
code, length, then the body.  The worker also exits by itself when the HIS process dies, so an
orphan never keeps the scanner or the library's port busy.
"""

import ctypes
import os
import struct
import sys
import threading
import time
from typing import Any  # noqa: F401 - used in type comments (Python 3.8 syntax)

REQUEST_HEAD = ">I"
REPLY_HEAD = ">BiI"
FRAME_READY = 0  # body: the worker's Python version and bitness
FRAME_LOAD_FAILED = 1  # body: why the library did not load (UTF-8 text)
FRAME_REPLY = 2  # body: outData up to its first NUL
FRAME_CALL_FAILED = 3  # body: the exception EcTrans raised (an access violation on Windows)
FRAME_KINDS = frozenset({FRAME_READY, FRAME_LOAD_FAILED, FRAME_REPLY, FRAME_CALL_FAILED})

#: The names EcTrans is exported under: plain (cdecl, 64-bit, or stdcall linked with --kill-at),
#: and the 32-bit stdcall decorations (MSVC ``_EcTrans@8``, MinGW ``EcTrans@8``).
EXPORT_NAMES = ("EcTrans", "_EcTrans@8", "EcTrans@8")

#: PE machine types and the bitness of code built for them.
PE_MACHINES = {0x014C: ("I386", 32), 0x8664: ("AMD64", 64), 0xAA64: ("ARM64", 64), 0x01C4: ("ARMNT", 32)}


def pe_machine(path):
    # type: (str) -> tuple[int, str, int] | None
    """(machine type, its name, its bitness) from a PE file's header; None if not a PE file.

    The DOS header's ``e_lfanew`` (offset 0x3C) points at ``PE\\0\\0`` and the COFF header, whose
    first field is the machine.  Read before loading, so a 32-bit DLL meets a clear message in a
    64-bit Python instead of Windows' "%1 is not a valid Win32 application".
    """
    try:
        with open(path, "rb") as file:
            dos = file.read(64)
            if len(dos) < 64 or dos[:2] != b"MZ":
                return None
            offset = struct.unpack_from("<I", dos, 0x3C)[0]
            file.seek(offset)
            head = file.read(6)
    except (OSError, ValueError, OverflowError):
        return None
    if len(head) < 6 or head[:4] != b"PE\0\0":
        return None
    machine = struct.unpack_from("<H", head, 4)[0]
    name, bits = PE_MACHINES.get(machine, ("0x%04X" % machine, 0))
    return machine, name, bits


def check_bitness(path, bits):
    # type: (str, int) -> None
    """Raise ``OSError`` when ``path`` is a PE file built for another bitness than ``bits``."""
    found = pe_machine(path)
    if found is None or not found[2] or found[2] == bits:
        return
    raise OSError(
        "the voucher library %s is a %d-bit DLL (%s) and this Python is %d-bit: a DLL loads only "
        "into a process of its own bitness; set python in [voucher] to a %d-bit Python "
        '(backend = "process")' % (path, found[2], found[1], bits, found[2])
    )


def load_ectrans(path, convention, bits=None):
    # type: (str, str, int | None) -> Any
    """Load the library and return its ``EcTrans`` with argument and result types declared.

    ``bits`` is this interpreter's bitness (a test may pretend another).  Raises ``OSError`` with
    a message naming the path (and a hint for the usual causes).
    """
    bits = bits or 8 * struct.calcsize("P")
    if (os.sep in path or (os.altsep and os.altsep in path)) and not os.path.exists(path):
        raise OSError("voucher library not found: %s" % path)
    if os.path.exists(path):
        check_bitness(path, bits)
    try:
        if convention == "stdcall":
            loader = getattr(ctypes, "WinDLL", None)
            if loader is None:
                raise OSError("the stdcall convention exists only on Windows: use cdecl")
            library = loader(path)
        else:
            library = ctypes.CDLL(path)
    except OSError as exc:
        hint = ""
        winerror = getattr(exc, "winerror", None)
        if winerror == 193 or "wrong ELF class" in str(exc):
            hint = (
                " (this Python is %d-bit and the library is not; a 32-bit DLL cannot load into"
                ' 64-bit Python: use backend = "process" with a 32-bit python)' % bits
            )
        elif winerror == 126:
            hint = " (a DLL it depends on is missing: put the vendor's other DLLs beside it)"
        raise OSError("cannot load the voucher library %s: %s%s" % (path, exc, hint)) from None
    for name in EXPORT_NAMES:
        try:
            function = getattr(library, name)
        except AttributeError:
            continue
        function.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        function.restype = ctypes.c_int
        return function
    raise OSError("the library %s does not export EcTrans: is it the voucher library?" % path)


def watch_parent(parent):
    # type: (int) -> None
    """Exit the worker when the HIS process dies, even while EcTrans hangs.

    An orphaned worker would keep the library's scanner, port or licence busy for good.
    """

    def watch():
        # type: () -> None
        if sys.platform == "win32":
            kernel32 = getattr(ctypes, "windll").kernel32
            kernel32.OpenProcess.restype = ctypes.c_void_p
            kernel32.WaitForSingleObject.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
            handle = kernel32.OpenProcess(0x00100000, False, parent)  # SYNCHRONIZE
            if not handle:
                return
            kernel32.WaitForSingleObject(handle, 0xFFFFFFFF)  # INFINITE
        else:
            original = os.getppid()  # a POSIX orphan is re-parented: its parent id changes
            while os.getppid() == original:
                time.sleep(0.5)
        os._exit(70)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(argv):
    # type: (list[str]) -> int
    """Load the library once, then answer framed requests until stdin ends.

    argv: library path, convention, output buffer bytes (guard included), the HIS's process id.
    The frames use private copies of stdin and stdout; fd 1 is pointed at stderr and fd 0 at the
    null device, so a library that prints to the console cannot corrupt them.
    """
    path, convention, size, parent = argv[0], argv[1], int(argv[2]), int(argv[3])
    requests, replies = os.dup(0), os.dup(1)
    sink = os.open(os.devnull, os.O_RDWR)
    os.dup2(sink, 0)
    try:
        os.dup2(2, 1)
    except OSError:  # no stderr (a GUI parent): the library's output goes nowhere
        os.dup2(sink, 1)
    os.close(sink)
    if sys.platform == "win32":
        import msvcrt

        msvcrt.setmode(requests, os.O_BINARY)
        msvcrt.setmode(replies, os.O_BINARY)
    watch_parent(parent)

    def send(kind, code, body):
        # type: (int, int, bytes) -> None
        data = struct.pack(REPLY_HEAD, kind, code, len(body)) + body
        while data:
            data = data[os.write(replies, data):]

    def receive(count):
        # type: (int) -> bytes | None
        chunks = []
        while count:
            chunk = os.read(requests, min(count, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            count -= len(chunk)
        return b"".join(chunks)

    try:
        function = load_ectrans(path, convention)
    except OSError as exc:
        send(FRAME_LOAD_FAILED, 0, str(exc).encode("utf-8", "replace"))
        return 2
    output = ctypes.create_string_buffer(size)
    bits = 8 * struct.calcsize("P")
    send(FRAME_READY, 0, ("Python %s, %d-bit" % (sys.version.split()[0], bits)).encode())
    head_size = struct.calcsize(REQUEST_HEAD)
    while True:
        head = receive(head_size)
        if head is None:
            return 0
        payload = receive(struct.unpack(REQUEST_HEAD, head)[0])
        if payload is None:
            return 0
        ctypes.memset(output, 0, size)
        request = ctypes.create_string_buffer(payload)
        try:
            code = function(request, output)
        except OSError as exc:  # Windows turns an access violation inside the call into OSError
            send(FRAME_CALL_FAILED, 0, str(exc).encode("utf-8", "replace"))
            return 3
        send(FRAME_REPLY, code, output.value)


def main(argv):
    # type: (list[str]) -> int
    if len(argv) != 4:
        sys.stderr.write("usage: python -I worker.py LIBRARY CONVENTION BUFFER_BYTES PARENT_PID\n")
        return 2
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
