"""``[voucher]``: how to reach the EcTrans library, and the defaults of every QR request.

One struct, the single source of its defaults: the TOML's ``[voucher]`` table loads into it and
:class:`ybplug.voucher.Voucher` takes it as is.  This module is light (msgspec only): the
configuration loader imports it without loading a backend.
"""

from __future__ import annotations

import os
import sys
from typing import Literal

import msgspec

__all__ = ["BackendName", "Convention", "REPLY_LIMIT", "VoucherConfig"]

Convention = Literal["auto", "stdcall", "cdecl"]
BackendName = Literal["thread", "process", "dotnet", "python"]

#: The largest reply ybplug reads (bytes), and so the largest ``buffer_size``.
REPLY_LIMIT = 1 << 20


class VoucherConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How to reach the vendor library (the ``[voucher]`` table).

    ``library``: path (or a name the system loader finds) of ylz-certificate.dll; with
    ``backend = "dotnet"`` the .NET assembly holding EcTrans.
    ``convention``: ``"auto"`` (stdcall on Windows, cdecl elsewhere), ``"stdcall"`` or ``"cdecl"``.
    ``backend``: ``"process"`` (isolated worker, survives crashes and hangs), ``"thread"`` or
    ``"dotnet"`` (a .NET ``static int EcTrans(string, out string)`` in ``dotnet_type``) or
    ``"python"`` (``library = "module:function"``, a Python ``EcTrans(bytes) -> (int, bytes)``,
    e.g. the sandbox's pure-Python fake ``ybplug.sandbox.ectrans:fake_ectrans``).
    ``buffer_size``: bytes of the output buffer; comparable libraries want 8 to 20 KB.
    ``timeout``: seconds for a call with an ``idcode``; ``scan_timeout``: for a call without one,
    when the library shows its scanning window and waits for a person.
    ``python``: interpreter running the worker (process backend); the HIS's own by default, a
    32-bit one for a 32-bit DLL.  ``workdir``: the worker's working directory, for libraries that
    read their configuration from it (the HIS's own by default).
    ``org_id``, ``district_no``: defaults of every QR request made here.
    """

    # (Plain msgspec fields with defaults, shaped like every other struct's, messages.py's included.)
    library: str
    convention: Convention = "auto"
    backend: BackendName = "process"
    buffer_size: int = 64 * 1024
    timeout: float = 15.0
    scan_timeout: float = 120.0
    python: str | None = None
    workdir: str | None = None
    org_id: str | None = None
    district_no: str | None = None
    dotnet_type: str | None = None
    """backend = "dotnet": the class holding EcTrans (``library`` is then the .NET assembly)."""
    dotnet_method: str = "EcTrans"

    def __post_init__(self) -> None:
        self.library = os.fspath(self.library)  # a Path is welcome from Python code
        if not self.library:
            raise ValueError("VoucherConfig.library is empty: give the path of ylz-certificate.dll")
        if self.convention not in ("auto", "stdcall", "cdecl"):
            raise ValueError(f"VoucherConfig.convention must be auto, stdcall or cdecl, got {self.convention!r}")
        if self.backend not in ("thread", "process", "dotnet", "python"):
            raise ValueError(f"VoucherConfig.backend must be thread, process, dotnet or python, got {self.backend!r}")
        if self.backend == "python" and ":" not in self.library:
            raise ValueError(f'backend = "python" needs library = "module:function", got {self.library!r}')
        size = self.buffer_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1024 <= size <= REPLY_LIMIT:
            raise ValueError(f"VoucherConfig.buffer_size must be 1024 to {REPLY_LIMIT} bytes, got {size!r}")
        for name in ("timeout", "scan_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"VoucherConfig.{name} must be a positive number of seconds, got {value!r}")
        if self.backend == "dotnet" and not self.dotnet_type:
            raise ValueError('backend = "dotnet" needs dotnet_type, the .NET class holding EcTrans')

    @property
    def path(self) -> str:
        return os.fspath(self.library)

    @property
    def calling_convention(self) -> Literal["stdcall", "cdecl"]:
        """The convention ``"auto"`` stands for on this platform."""
        if self.convention == "auto":
            return "stdcall" if sys.platform == "win32" else "cdecl"
        return self.convention
