"""The EcTrans errors, one module of their own so that anything may catch them without loading a
backend.  Every one is a :class:`ybplug.errors.Error` whose ``outcome`` is how the journal records
the failed call.  Messages never hold personal data and never exceed :data:`MESSAGE_LIMIT`."""

from __future__ import annotations

from ybplug.errors import Error, Outcome
from ybplug.fields import InvalidMessage, Problem

__all__ = [
    "MESSAGE_LIMIT",
    "DotnetVoucherFailed",
    "VoucherBusy",
    "VoucherCallFailed",
    "VoucherCrashed",
    "VoucherError",
    "VoucherLibraryError",
    "VoucherRefused",
    "VoucherReplyUnreadable",
    "VoucherRequestInvalid",
    "VoucherTimeout",
]

#: Characters an error message may have: text from a library (a cause) is cut to fit.
MESSAGE_LIMIT = 2000


def capped(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying so."""
    if len(text) <= limit:
        return text
    return text[: limit - 20] + f" ... ({len(text)} chars)"


class VoucherError(Error):
    """Base of every EcTrans failure.  Messages never contain personal data."""

    #: How the journal records the failed call.
    outcome: Outcome = Outcome.FAILED

    def __init__(self, message: str = "") -> None:
        super().__init__(capped(message))


class VoucherLibraryError(VoucherError):
    """The library cannot be used: not found, wrong bitness, no ``EcTrans`` export, no worker."""


class VoucherRequestInvalid(VoucherError, InvalidMessage):
    """The request cannot be sent: a field holds a character GBK cannot encode.

    Also an :class:`~ybplug.fields.InvalidMessage`, so ``problems`` names each field.
    """

    def __init__(self, message_type: str, problems: list[Problem]) -> None:
        InvalidMessage.__init__(self, message_type, problems)


class VoucherCallFailed(VoucherError):
    """``EcTrans`` returned non-zero.  ``code`` is what it returned, ``cause`` any reason it wrote."""

    def __init__(self, code: int, cause: str | None = None) -> None:
        self.code = code
        self.cause = capped(cause) if cause else cause
        text = f"EcTrans returned {code}"
        super().__init__(f"{text}: {self.cause}" if self.cause else text)


class VoucherRefused(VoucherError):
    """The voucher service answered flag 0: the QR code was not decoded.  ``cause`` says why."""

    outcome = Outcome.REFUSED

    def __init__(self, cause: str) -> None:
        self.cause = capped(cause)
        super().__init__(f"the voucher service refused the QR code: {self.cause or '(no cause given)'}")


class VoucherTimeout(VoucherError, TimeoutError):
    """``EcTrans`` did not answer within ``timeout`` seconds: whether it did anything is unknown."""

    outcome = Outcome.UNKNOWN

    def __init__(self, message: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(message)


class VoucherBusy(VoucherError):
    """The call never reached the library: it is busy, typically with a call that timed out.
    Nothing was sent, so the journal records it as not delivered."""

    outcome = Outcome.NOT_DELIVERED


class VoucherCrashed(VoucherError):
    """The library crashed.  ``exit_code`` is the worker's exit status, ``signal`` the POSIX signal
    that killed it (``None`` when not known or not a signal)."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        self.exit_code = exit_code
        self.signal = -exit_code if exit_code is not None and exit_code < 0 else None
        super().__init__(message)


class VoucherReplyUnreadable(VoucherError):
    """The reply cannot be read as the spec's JSON, even after the usual repairs."""


class DotnetVoucherFailed(VoucherError):
    """A .NET EcTrans threw.  ``dotnet_type`` is the exception's type; the message (scrubbed)
    follows it."""

    def __init__(self, dotnet_type: str, message: str) -> None:
        self.dotnet_type = dotnet_type
        super().__init__(f"EcTrans threw {dotnet_type}: {message}")
