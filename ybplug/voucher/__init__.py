"""EcTrans: decode national medical-insurance e-voucher QR codes through the vendor's library.

The vendor ships ``ylz-certificate.dll`` exporting ``int EcTrans(char* inData, char* outData)``:
GBK JSON in, GBK JSON out into a buffer the caller allocates (no length is passed), 0 on success.
Libraries of this kind hang when the centre is unreachable, crash the process, are not safe to
call concurrently, open a scanning window when ``idcode`` is empty, must match the process's
bitness and answer with not-quite-JSON.  This package contains all of that behind one call::

    config = VoucherConfig(library=r"C:\\ybplug\\ylz-certificate.dll")
    async with Voucher(config) as voucher:
        identity = await voucher.decode(request)      # QrRequest -> QrIdentity

Modules: ``config`` (the one ``[voucher]`` struct), ``errors``, ``codec`` and ``scan`` (request
bytes, tolerant reply reading, identity, scrubbing), ``backend`` (the protocol), ``thread``,
``process`` and ``worker`` (the stdlib-only worker program), ``front`` (:class:`Voucher`); the .NET
backend is :mod:`ybplug.dotnet.ectrans`.

Backends (``VoucherConfig.backend``): ``"process"`` (the default) survives crashes and hangs of
the library; ``"thread"`` survives neither (a hung call keeps the library busy until it returns,
and calls fail at once with :class:`VoucherBusy` meanwhile); ``"dotnet"`` calls a .NET
``static int EcTrans(string inData, out string outData)``.

A 32-bit vendor DLL in a 64-bit HIS: install a 32-bit Python beside the HIS (no packages needed,
Python >= 3.8) and set ``python = "C:/Python311-32/python.exe"`` with ``backend = "process"``.  The
DLL's PE header is read before loading: a bitness mismatch is one clear
:class:`VoucherLibraryError` naming both bitnesses.  Calling convention ``"auto"`` means stdcall on
Windows and cdecl elsewhere; the 32-bit stdcall names ``_EcTrans@8`` (MSVC) and ``EcTrans@8``
(MinGW) are found as well as ``EcTrans``.

This ``__init__`` is light (the configuration loader imports the package's ``config``); the
front and the errors are exported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ybplug.voucher.config import VoucherConfig
from ybplug.lazy import exports

if TYPE_CHECKING:
    from ybplug.voucher.codec import decode_reply, encode_request
    from ybplug.voucher.errors import (
        VoucherBusy,
        VoucherCallFailed,
        VoucherCrashed,
        VoucherError,
        VoucherLibraryError,
        VoucherRefused,
        VoucherReplyUnreadable,
        VoucherRequestInvalid,
        VoucherTimeout,
    )
    from ybplug.voucher.front import Voucher

# The lazy export (ybplug.lazy): its names are those of errors.py's __all__ and the imports above,
# which mypy needs spelled out (as errors.py's __all__ spells them again: `duplicates` pairs the two).
_LAZY = {
    "Voucher": "ybplug.voucher.front",
    "decode_reply": "ybplug.voucher.codec",
    "encode_request": "ybplug.voucher.codec",
    **{
        name: "ybplug.voucher.errors"
        for name in (
            "VoucherBusy", "VoucherCallFailed", "VoucherCrashed", "VoucherError", "VoucherLibraryError",
            "VoucherRefused", "VoucherReplyUnreadable", "VoucherRequestInvalid", "VoucherTimeout",
        )
    },
}

__all__ = [
    "VoucherConfig",
    "Voucher",
    "VoucherBusy",
    "VoucherCallFailed",
    "VoucherCrashed",
    "VoucherError",
    "VoucherLibraryError",
    "VoucherRefused",
    "VoucherReplyUnreadable",
    "VoucherRequestInvalid",
    "VoucherTimeout",
    "decode_reply",
    "encode_request",
]


__getattr__ = exports(__name__, _LAZY)
