"""Code tables of the newborn interface, in one place.

Every coded field the spec names ("参见编码附件") is checked against one of these tables, and a
hospital can use the members as enums (``Sex.FEMALE``) instead of bare strings.  Each member is a
``str`` equal to its wire value and carries the Chinese ``label`` the centre's documents use, so
error messages and the CLI can show both.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self


# The tables below share the shape of any enum (member = code, label): `duplicates` pairs them.
class Code(StrEnum):
    """A coded value with its Chinese label; compares equal to the wire string."""

    label: str

    def __new__(cls, value: str, label: str) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member

    @classmethod
    def describe(cls) -> str:
        """The table as one line, for error messages: ``1 男, 2 女``."""
        return ", ".join(f"{m.value} {m.label}" for m in cls)

    @classmethod
    def has(cls, value: str) -> bool:
        return value in cls._value2member_map_


class Funid(Code):
    """The centre's transactions this interface uses (function ids), with the spec's titles.

    The only place a transaction id is written: everything else names them through this table.
    """

    COLLECT = "yb04.13.01.21", "新生儿信息采集"
    VOID = "yb04.13.01.22", "新生儿采集信息作废"
    REALNAME = "yb04.13.01.24", "新生儿实名信息查询"


class MedicalCategory(Code):
    """AKA130 医疗类别.  V0.33 adds 35 for newborn settlement ("【通用收费】固定上传 35")."""

    NEWBORN_DELIVERY = "35", "新生儿分娩"


class Sex(Code):
    """aac004 性别 (GB/T 2261.1)."""

    UNKNOWN = "0", "未知的性别"
    MALE = "1", "男"
    FEMALE = "2", "女"
    UNSTATED = "9", "未说明的性别"


class CertificateType(Code):
    """ac058 / aac058 / idType 证件类型, as listed with the QR decoder's idType."""

    RESIDENT_ID_CARD = "01", "居民身份证"
    HOUSEHOLD_REGISTER = "02", "居民户口簿"
    PASSPORT = "03", "护照"
    MILITARY_OFFICER = "04", "军官证"
    DRIVING_LICENCE = "05", "驾驶证"
    HK_MACAO_PERMIT = "06", "港澳居民来往内地通行证"
    TAIWAN_PERMIT = "07", "台湾居民来往内地通行证"
    BIRTH_CERTIFICATE = "08", "出生医学证明"
    OTHER = "99", "其他法定有效证件"


class DataSource(Code):
    """bke241 数据来源.

    V0.33 refers to a code appendix it does not include.  These values follow the collection
    flow it describes (upload from the HIS, or manual entry in 定点机构管理系统); confirm them
    with the centre before going live.
    """

    HIS = "1", "医院HIS上传"
    INSTITUTION_SYSTEM = "2", "定点机构管理系统登记"


class QrBusinessType(Code):
    """businessType 用码业务类别 of the EcTrans request."""

    REGISTRATION = "101", "挂号"
    TOP_UP = "102", "充值"
    REFUND = "103", "退款"
    DIAGNOSIS = "105", "诊断"
    PRESCRIPTION = "106", "开方"
    SURGERY = "109", "手术"
    ENQUIRY = "110", "信息查询"
    OTHER = "900", "其他"


class RealNameFlag(Code):
    """bae018 实名标识."""

    REAL_NAMED = "Y", "已实名"
    NOT_REAL_NAMED = "N", "未实名"


class VoidFlag(Code):
    """bae009 作废标志."""

    NORMAL = "Z", "正常"
    VOID = "F", "作废"


class Eligibility(Code):
    """bkee45 是否可预参保."""

    ELIGIBLE = "1", "是"
    NOT_ELIGIBLE = "0", "否"
