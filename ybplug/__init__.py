"""ybplug: the Xiamen medical-insurance newborn interface for a Python HIS.

The messages, the code tables and the error root are importable from here.  ``Host``, ``Config``
and ``hookimpl`` are too, but loaded on first use (module ``__getattr__``), so ``import ybplug``
stays light::

    import ybplug

    @ybplug.hookimpl
    async def collection_result(result, birth_id, event_id): ...

    try:
        async with ybplug.Host(ybplug.Config.load("ybplug.toml")) as host: ...
    except ybplug.Error as exc: ...
"""

from typing import TYPE_CHECKING

from ybplug.codes import (
    CertificateType,
    DataSource,
    Eligibility,
    Funid,
    MedicalCategory,
    QrBusinessType,
    RealNameFlag,
    Sex,
    VoidFlag,
)
from ybplug.errors import Error, Outcome
from ybplug.fields import InvalidMessage, Problem
from ybplug.lazy import exports
from ybplug.messages import (
    COLLECT,
    REALNAME,
    VOID,
    Birth,
    CollectionResult,
    QrIdentity,
    QrReply,
    QrRequest,
    QrRequestData,
    RealNameQuery,
    RealNameQueryItem,
    RealNameRecord,
    RealNameResult,
    Transaction,
    VoidRequest,
    VoidResult,
    load,
)

__all__ = [
    "Birth", "CollectionResult", "VoidRequest", "VoidResult", "RealNameQuery", "RealNameQueryItem",
    "RealNameRecord", "RealNameResult", "QrRequest", "QrRequestData", "QrIdentity", "QrReply",
    "Transaction", "COLLECT", "VOID", "REALNAME", "InvalidMessage", "Problem", "load",
    "CertificateType", "DataSource", "Eligibility", "MedicalCategory", "QrBusinessType",
    "RealNameFlag", "Sex", "VoidFlag", "Funid", "Error", "Outcome", "Host", "Config", "hookimpl",
]

if TYPE_CHECKING:
    from ybplug.config import Config
    from ybplug.hooks import hookimpl
    from ybplug.host import Host

_LAZY = {"Host": "ybplug.host", "Config": "ybplug.config", "hookimpl": "ybplug.hooks"}

#: ``Host``, ``Config`` and ``hookimpl`` are imported when first asked for.
__getattr__ = exports(__name__, _LAZY)
