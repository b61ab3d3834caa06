"""What the :class:`~ybplug.voucher.Voucher` front asks of a backend: move bytes, nothing more.

A backend loads the library at :meth:`~VoucherBackend.start` and, per call, hands ``inData``
(already encoded by :mod:`ybplug.voucher.codec`, in the backend's ``charset``) to EcTrans and
returns its return code and ``outData``.  Request encoding, reply reading, identity building,
scrubbing and logging are the front's, so every backend behaves alike.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["GUARD", "VoucherBackend", "timeout_message"]

#: Bytes allocated behind ``buffer_size``: a library that writes a little past the end of the
#: buffer (it is never told its size) damages this zone, not the heap.
GUARD = 4096


class VoucherBackend(Protocol):
    #: Shown in log lines: ``thread``, ``process``, ``dotnet``.
    name: str
    #: The charset ``inData`` is encoded in.
    charset: str

    async def start(self, timeout: float) -> None:
        """Load the library now (within ``timeout`` seconds)."""

    async def call(self, payload: bytes, timeout: float, scanning: bool) -> tuple[int, bytes]:
        """One EcTrans call: its return code and ``outData`` (bytes up to the first NUL)."""

    async def aclose(self) -> None:
        """Release what the backend holds; a hung call is not waited for."""


def timeout_message(timeout: float, scanning: bool, consequence: str) -> str:
    what = "with its scanning window open (scan_timeout)" if scanning else "(timeout)"
    return f"EcTrans did not answer within {timeout:g} s {what}; {consequence}"
