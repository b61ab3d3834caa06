"""The spec's messages as msgspec Structs.

Attribute names are readable (``mother_id_number``); wire names are exactly the spec's (``bkee35``)
through msgspec renaming, so ``msgspec.convert(record, Birth)`` accepts a dict written with the
spec's field names and ``msgspec.to_builtins(birth)`` produces one.  Requests validate themselves
in ``__post_init__`` (which msgspec runs on decode and Python runs on construction); replies are
decoded leniently (``strict=False``) because real peers send numbers as strings.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from ybplug.codes import (
    CertificateType,
    DataSource,
    Eligibility,
    Funid,
    QrBusinessType,
    RealNameFlag,
    Sex,
    VoidFlag,
)
from ybplug.fields import (
    DEFAULT_CHARSET,
    PERMISSIVE_CHARSET,
    Checker,
    InvalidMessage,
    Message,
    Problem,
    shown,
    trusted,
)

__all__ = [
    "Birth",
    "CollectionResult",
    "VoidRequest",
    "VoidResult",
    "RealNameQuery",
    "RealNameQueryItem",
    "RealNameRecord",
    "RealNameResult",
    "QrRequest",
    "QrRequestData",
    "QrIdentity",
    "QrReply",
    "Transaction",
    "COLLECT",
    "VOID",
    "REALNAME",
    "InvalidMessage",
    "load",
    "Message",
    "Reply",
    "RequestT",
    "ResultT",
]


class Birth(
    Message,
    frozen=True,
    forbid_unknown_fields=True,
    rename={
        "medical_serial": "akc190",
        "his_serial": "bke042",
        "multiple_birth_number": "bme027",
        "newborn_name": "bkee30",
        "newborn_sex": "aac004",
        "birth_time": "aac006",
        "mother_certificate_type": "bkee43",
        "mother_id_number": "bkee35",
        "mother_name": "bkee37",
        "mother_phone": "bkee33",
        "father_certificate_type": "bkee42",
        "father_id_number": "bkee34",
        "father_name": "bkee36",
        "father_phone": "bkee32",
        "data_source": "bke241",
    },
):
    """yb04.13.01.21 新生儿信息采集 input: one newborn, as the HIS records it.

    ``newborn_name`` defaults to the mother's name + 之子 / 之女 by sex, as the spec prescribes
    for a baby not yet named; ``data_source`` defaults to 1 (HIS upload).  ``birth_time`` is
    ``YYYYMMDDHHMMSS`` as a number, China time; a ``datetime`` is accepted too (naive: China
    time; aware: converted to China time).  Phones are numbers or digit strings: a mobile, or an
    11-digit landline with its area code (number(11) keeps no leading 0: ``05921234567`` is sent
    as ``5921234567``).

    Construction checks names against GB18030 (every character, 4 bytes for one outside GBK);
    :meth:`check` (``birth.check("gbk")``) or ``load(Birth, data, charset=...)`` applies the
    configured charset.
    """

    checks_types: ClassVar[bool] = True

    labels: ClassVar[dict[str, str]] = {
        "akc190": "医保流水号",
        "bke042": "his流水号",
        "bme027": "多胞胎序号",
        "bkee30": "新生儿姓名",
        "aac004": "新生儿性别",
        "aac006": "新生儿出生时间",
        "bkee43": "母亲证件类型",
        "bkee35": "母亲证件号码",
        "bkee37": "母亲姓名",
        "bkee33": "母亲联系方式",
        "bkee42": "父亲证件类型",
        "bkee34": "父亲证件号码",
        "bkee36": "父亲姓名",
        "bkee32": "父亲联系方式",
        "bke241": "数据来源",
    }
    personal: ClassVar[frozenset[str]] = frozenset(
        {"newborn_name", "mother_id_number", "mother_name", "mother_phone",
         "father_id_number", "father_name", "father_phone"}
    )

    # Required fields have empty defaults so that __post_init__ reports every missing one at
    # once ("is required"), instead of msgspec stopping at the first.
    medical_serial: str = ""
    his_serial: str = ""
    multiple_birth_number: int = 0
    newborn_sex: str = ""
    birth_time: int = 0
    mother_certificate_type: str = ""
    mother_id_number: str = ""
    mother_name: str = ""
    mother_phone: int = 0
    newborn_name: str = ""
    father_certificate_type: str | None = None
    father_id_number: str | None = None
    father_name: str | None = None
    father_phone: int | None = None
    data_source: str = ""

    def rules(self, check: Checker) -> None:
        check.text("medical_serial", 20)
        check.text("his_serial", 50)
        check.number("multiple_birth_number", 1, missing="is required: 1 for a single birth, 1 and 2 for twins")
        sex = check.code("newborn_sex", Sex)
        check.moment("birth_time")
        check.number("birth_time", 14)
        check.timestamp("birth_time")
        mother_type = check.code("mother_certificate_type", CertificateType)
        check.text("mother_id_number", 18)
        check.id_number("mother_id_number", mother_type)
        mother = check.text("mother_name", 50)
        check.number("mother_phone", 11)
        check.phone("mother_phone")
        father_type = check.code("father_certificate_type", CertificateType, required=False)
        check.text("father_id_number", 18, required=False)
        if isinstance(self.father_id_number, str) and self.father_id_number and not father_type \
                and not check.failed("father_certificate_type"):
            check.fail("father_certificate_type", "is required when bkee34 父亲证件号码 is given")
        check.id_number("father_id_number", father_type)
        check.text("father_name", 50, required=False)
        check.number("father_phone", 11, required=False)
        check.phone("father_phone")
        if self.data_source is None or (isinstance(self.data_source, str) and not self.data_source):
            msgspec.structs.force_setattr(self, "data_source", DataSource.HIS.value)
        check.code("data_source", DataSource)
        if (self.newborn_name is None or self.newborn_name == "") and mother and sex:
            suffix = {Sex.MALE.value: "之子", Sex.FEMALE.value: "之女"}.get(sex)
            if suffix:
                msgspec.structs.force_setattr(self, "newborn_name", mother + suffix)
            else:
                check.fail("newborn_name", "is required when aac004 新生儿性别 is not 1 男 or 2 女")
        if (self.newborn_name not in (None, "") or (mother and sex)) and not check.failed("newborn_name"):
            check.text("newborn_name", 50)

    @property
    def key(self) -> tuple[str, int, int]:
        """What the centre treats as the same birth: mother's ID, birth time, multiple-birth number."""
        return (self.mother_id_number, self.birth_time, self.multiple_birth_number)


class Reply(Message, frozen=True):
    """Common head of the centre's answers: ``flag`` 1 success, 0 refusal with ``cause``."""

    labels: ClassVar[dict[str, str]] = {"flag": "操作成功标志", "cause": "失败原因说明"}

    flag: int = 0
    cause: str | None = None

    @property
    def ok(self) -> bool:
        return self.flag == 1

    @property
    def registration_numbers(self) -> tuple[str, ...]:
        """Every ``baz726`` the reply carries (each must be well formed for the reply to count)."""
        return ()


def _as_text(message: Message, attr: str) -> None:
    """``baz726`` is declared number(16) but holds ``XSE...``: keep it as text whatever arrives."""
    value = getattr(message, attr)
    if value is not None and not isinstance(value, str):
        msgspec.structs.force_setattr(message, attr, str(value))


class CollectionResult(Reply, frozen=True, rename={
    "registration_number": "baz726",
    "eligibility": "bkee45",
    "ineligibility_reason": "bkee46",
}):
    """yb04.13.01.21 output: the registration number and whether the newborn may pre-enrol."""

    labels: ClassVar[dict[str, str]] = {
        **Reply.labels,
        "baz726": "新生儿登记流水号",
        "bkee45": "是否可预参保",
        "bkee46": "不可预参保原因",
    }

    registration_number: str | int = ""
    eligibility: str | int = ""
    ineligibility_reason: str | None = None

    def __post_init__(self) -> None:
        _as_text(self, "registration_number")
        _as_text(self, "eligibility")

    @property
    def registration_numbers(self) -> tuple[str, ...]:
        return (str(self.registration_number),) if self.registration_number != "" else ()

    @property
    def eligible(self) -> bool:
        return self.eligibility == Eligibility.ELIGIBLE


class VoidRequest(Message, frozen=True, forbid_unknown_fields=True, rename={
    "registration_number": "baz726",
    "reason": "bae016",
    "data_source": "bke241",
}):
    """yb04.13.01.22 新生儿采集信息作废 input: which registration, and why."""

    labels: ClassVar[dict[str, str]] = {
        "baz726": "新生儿登记流水号",
        "bae016": "作废原因",
        "bke241": "数据来源",
    }

    registration_number: str
    reason: str
    data_source: str = ""

    checks_types: ClassVar[bool] = True

    def rules(self, check: Checker) -> None:
        check.text("registration_number", 16)
        check.text("reason", 100)
        if self.data_source is None or (isinstance(self.data_source, str) and not self.data_source):
            msgspec.structs.force_setattr(self, "data_source", DataSource.HIS.value)
        check.code("data_source", DataSource)


class VoidResult(Reply, frozen=True, rename={"registration_number": "baz726"}):
    """yb04.13.01.22 output: ``baz726`` is the voided registration."""

    labels: ClassVar[dict[str, str]] = {**Reply.labels, "baz726": "新生儿登记作废流水号"}

    registration_number: str | int = ""

    def __post_init__(self) -> None:
        _as_text(self, "registration_number")

    @property
    def registration_numbers(self) -> tuple[str, ...]:
        return (str(self.registration_number),) if self.registration_number != "" else ()


class RealNameQueryItem(Message, frozen=True, rename={"registration_number": "baz726"}):
    """One ``<xseqqlb>`` row: a registration number to ask about."""

    labels: ClassVar[dict[str, str]] = {"baz726": "新生儿登记流水号"}

    registration_number: str

    def rules(self, check: Checker) -> None:
        check.text("registration_number", 16)


class RealNameQuery(Message, frozen=True, rename={"row_count": "rownum", "items": "xseqqlb"}):
    """yb04.13.01.24 新生儿实名信息查询 input; build it with :meth:`of`."""

    labels: ClassVar[dict[str, str]] = {"rownum": "记录总数", "xseqqlb": "请求列表"}

    row_count: int
    items: list[RealNameQueryItem]

    @classmethod
    def of(cls, registration_numbers: list[str]) -> RealNameQuery:
        items = [RealNameQueryItem(registration_number=n) for n in registration_numbers]
        return cls(row_count=len(items), items=items)

    def rules(self, check: Checker) -> None:
        count = check.number("row_count", 5)
        if count is not None and count != len(self.items):
            check.fail("row_count", f"says {count} but <xseqqlb> holds {len(self.items)} rows")
        if not self.items:
            check.fail("items", "must hold at least one baz726")


class RealNameRecord(Message, frozen=True, rename={
    "registration_number": "baz726",
    "real_name_flag": "bae018",
    "certificate_type": "aac058",
    "certificate_type_name": "aac058_mc",
    "id_number": "aac002",
    "name": "aac003",
    "sex": "aac004",
    "sex_name": "aac004_mc",
    "personal_code": "aac999",
    "real_named_at": "bae014",
    "void_flag": "bae009",
}):
    """One ``<xsesmlb>`` row: a newborn's virtual registration and, once real-named, its identity."""

    labels: ClassVar[dict[str, str]] = {
        "baz726": "新生儿登记流水号",
        "bae018": "实名标识",
        "aac058": "证件类型",
        "aac058_mc": "证件类型名称",
        "aac002": "证件号码（社会保障号）",
        "aac003": "姓名",
        "aac004": "性别",
        "aac004_mc": "性别名称",
        "aac999": "个人管理码（医保编号）",
        "bae014": "实名参保时间",
        "bae009": "作废标志",
    }
    personal: ClassVar[frozenset[str]] = frozenset({"id_number", "name", "personal_code"})

    registration_number: str | int
    real_name_flag: str = RealNameFlag.NOT_REAL_NAMED.value
    void_flag: str = VoidFlag.NORMAL.value
    certificate_type: str | None = None
    certificate_type_name: str | None = None
    id_number: str | None = None
    name: str | None = None
    sex: str | None = None
    sex_name: str | None = None
    personal_code: str | None = None
    real_named_at: str | None = None

    def __post_init__(self) -> None:
        _as_text(self, "registration_number")

    @property
    def real_named(self) -> bool:
        return self.real_name_flag == RealNameFlag.REAL_NAMED and self.void_flag != VoidFlag.VOID

    @property
    def voided(self) -> bool:
        return self.void_flag == VoidFlag.VOID


class RealNameResult(Reply, frozen=True, rename={"row_count": "rownum", "records": "xsesmlb"}):
    """yb04.13.01.24 output: ``rownum`` rows of ``<xsesmlb>``."""

    labels: ClassVar[dict[str, str]] = {**Reply.labels, "rownum": "记录数", "xsesmlb": "实名列表"}

    row_count: int = 0
    records: list[RealNameRecord] = []

    @property
    def registration_numbers(self) -> tuple[str, ...]:
        return tuple(str(r.registration_number) for r in self.records)


class QrRequestData(Message, frozen=True, rename="camel"):
    """The ``data`` node of the EcTrans request: who scans, where, for what."""

    labels: ClassVar[dict[str, str]] = {
        "orgId": "机构ID",
        "operatorId": "院内操作员工号",
        "operatorName": "院内操作员工姓名",
        "businessType": "用码业务类别",
        "districtNo": "参保地行政区划",
        "officeId": "院内医保科室编号",
        "officeName": "院内科室名称",
    }

    org_id: str
    business_type: str
    district_no: str
    operator_id: str | None = None
    operator_name: str | None = None
    office_id: str | None = None
    office_name: str | None = None

    def rules(self, check: Checker) -> None:
        check.division("org_id", check.text("org_id", 20), exact=False)
        check.code("business_type", QrBusinessType)
        check.division("district_no", check.text("district_no", 6), exact=True)
        check.text("operator_id", 30, required=False)
        check.text("operator_name", 50, required=False)
        check.text("office_id", 30, required=False)
        check.text("office_name", 50, required=False)


class QrRequest(Message, frozen=True):
    """EcTrans ``inData``.  An empty ``idcode`` makes the vendor library open its scanning window."""

    labels: ClassVar[dict[str, str]] = {"idcode": "二维码扫码结果"}
    personal: ClassVar[frozenset[str]] = frozenset({"idcode"})

    data: QrRequestData
    idcode: str = ""

    def rules(self, check: Checker) -> None:
        # A QR code's text (digits in the national code; 512 is room for any vendor's form).
        check.text("idcode", 512, required=False)


class QrIdentity(Message, frozen=True, rename={
    "ec_token": "ecToken",
    "id_number": "idNo",
    "id_type": "idType",
    "name": "userName",
    "insurance_division": "insuOrg",
    "card_number": "aaz500",
    "personal_code": "id0000",
}):
    """EcTrans ``outData.data``: the insured person behind a scanned QR code."""

    labels: ClassVar[dict[str, str]] = {
        "ecToken": "凭证令牌",
        "idNo": "证件号码",
        "idType": "证件类型",
        "userName": "姓名",
        "insuOrg": "参保行政区划",
        "aaz500": "社保卡号",
        "id0000": "个人管理码",
    }
    personal: ClassVar[frozenset[str]] = frozenset({"ec_token", "id_number", "name", "card_number", "personal_code"})

    ec_token: str = ""
    id_number: str = ""
    id_type: str = ""
    name: str = ""
    insurance_division: str = ""
    card_number: str = ""
    personal_code: str = ""


class QrReply(Reply, frozen=True):
    """EcTrans ``outData``: flag, cause and the identity."""

    data: QrIdentity | None = None


RequestT = TypeVar("RequestT", bound=Message)
ResultT = TypeVar("ResultT", bound=Reply)


class Transaction(Generic[RequestT, ResultT]):
    """A centre transaction: its function id and the message types going each way."""

    def __init__(self, funid: str, title: str, request: type[RequestT], result: type[ResultT]) -> None:
        self.funid = funid
        self.title = title
        self.request = request
        self.result = result

    def __repr__(self) -> str:
        return f"<Transaction {self.funid} {self.title}>"


COLLECT = Transaction(Funid.COLLECT, Funid.COLLECT.label, Birth, CollectionResult)
VOID = Transaction(Funid.VOID, Funid.VOID.label, VoidRequest, VoidResult)
REALNAME = Transaction(Funid.REALNAME, Funid.REALNAME.label, RealNameQuery, RealNameResult)

MessageT = TypeVar("MessageT", bound=Message)


def load(message_type: type[MessageT], data: Any, *, strict: bool = True, charset: str = DEFAULT_CHARSET) -> MessageT:
    """Convert a wire-named dict into ``message_type``, raising :class:`InvalidMessage` naming every
    problem at once (type errors too), each with the spec's Chinese field name.

    ``charset`` is the centre's (``config.charset``): text lengths are counted and characters
    checked in it.  Messages whose rules check every field's type (:class:`Birth`,
    :class:`VoidRequest`) take the raw values and check each field (a digit string is a number
    there whatever ``strict`` says, as in Python construction); the others go through msgspec
    (``strict=False`` accepting digit strings for numbers), whose first type error is reported.
    """
    if message_type.checks_types:
        return _load_raw(message_type, data, charset)
    try:
        message = msgspec.convert(data, message_type, strict=strict)
    except msgspec.ValidationError as exc:
        raise _explain(message_type, exc) from None
    except RecursionError:  # hostile nesting in a field msgspec has to walk
        raise InvalidMessage(message_type.__name__, [Problem("?", "", "nested too deeply")]) from None
    if charset != PERMISSIVE_CHARSET:
        message.check(charset)
    return message


#: How many unknown keys an error lists by name (a hostile dict may hold millions).
_UNKNOWN_SHOWN = 5


def _load_raw(message_type: type[MessageT], data: Any, charset: str) -> MessageT:
    if isinstance(data, message_type):
        data.check(charset)
        return data
    if not isinstance(data, dict):
        problem = Problem("?", "", f"must be an object with the spec's field names, got {type(data).__name__}")
        raise InvalidMessage(message_type.__name__, [problem])
    attrs = _attributes(message_type)
    values: dict[str, Any] = dict.fromkeys(_required_attributes(message_type))
    unknown = []
    for key, value in data.items():
        attr = attrs.get(key) if isinstance(key, str) else None
        if attr is None:
            unknown.append(key)
        else:
            values[attr] = value
    problems = [Problem(shown(key), "", "is not a field of this message in the spec") for key in unknown[:_UNKNOWN_SHOWN]]
    if len(unknown) > _UNKNOWN_SHOWN:
        problems.append(Problem("…", "", f"and {len(unknown) - _UNKNOWN_SHOWN} more keys that are not fields of this message"))
    with trusted():  # built unchecked; the checks below run once, with the configured charset
        message = message_type(**values)
    checker = Checker(message, charset)
    message.rules(checker)
    checker.problems[:0] = problems
    checker.done()
    return message


@functools.cache
def _attributes(message_type: type[Message]) -> dict[str, str]:
    """Wire name -> attribute."""
    return dict(zip(message_type.__struct_encode_fields__, message_type.__struct_fields__, strict=True))


@functools.cache
def _required_attributes(message_type: type[Message]) -> tuple[str, ...]:
    """Attributes without a default: given as None when missing, so the rules say "is required"."""
    fields = message_type.__struct_fields__
    return fields[: len(fields) - len(message_type.__struct_defaults__)]


def _explain(message_type: type[Message], exc: msgspec.ValidationError) -> InvalidMessage:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, InvalidMessage):
        return cause
    text = str(exc)
    rule, _, where = text.partition(" - at `$.")
    field = where.rstrip("`").split(".")[0].split("[")[0] if where else ""
    if not field and text.startswith("Object missing required field `"):
        field = text.split("`")[1]
        rule = "is required"
    elif not field and text.startswith("Object contains unknown field `"):
        field = text.split("`")[1]
        return InvalidMessage(message_type.__name__, [Problem(shown(field), "", "is not a field of this message in the spec")])
    label = message_type.labels.get(field, "")
    if len(rule) > 200:  # msgspec quotes enum values and keys: bounded, never personal fields here
        rule = rule[:200] + "…"
    return InvalidMessage(message_type.__name__, [Problem(field if len(field) <= 40 else shown(field), label, rule)])
