"""ybplug: the Xiamen medical-insurance newborn interface for a Python HIS.

The messages are importable from here; the host, the transport and the sandbox live in their own
modules so that ``import ybplug`` stays light.
"""

from ybplug.codes import (
    CertificateType,
    DataSource,
    Eligibility,
    MedicalCategory,
    QrBusinessType,
    RealNameFlag,
    Sex,
    VoidFlag,
)
from ybplug.fields import InvalidMessage, Problem
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
    "RealNameFlag", "Sex", "VoidFlag",
]
