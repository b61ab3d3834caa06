"""The spec's messages and their rules, as a hospital's engineer would check them.

Requests are built from dicts written with the spec's wire names (``msgspec.convert`` /
``ybplug.load``) or in Python with readable attribute names; every rule names the wire field and
its Chinese name.  Replies decode leniently.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
from support import SPEC_EXAMPLE_IDENTITY

import ybplug
from ybplug import (
    Birth,
    CertificateType,
    CollectionResult,
    InvalidMessage,
    MedicalCategory,
    Problem,
    QrBusinessType,
    QrReply,
    QrRequest,
    QrRequestData,
    RealNameQuery,
    RealNameResult,
    Sex,
    VoidRequest,
)
from ybplug.fields import CHINA_TIME, id_check_digit, second_generation_id, with_check_digit
from ybplug.privacy import mask

MOTHER_ID = with_check_digit("35020419900101002")  # 350204199001010022
FATHER_ID = with_check_digit("11010519491231002")  # 11010519491231002X
WRONG_CHECK = MOTHER_ID[:17] + ("0" if MOTHER_ID[17] != "0" else "1")


def record(**changes: Any) -> dict[str, Any]:
    """A valid collection record with the spec's field names; ``...`` removes a field."""
    data: dict[str, Any] = {
        "akc190": "YB2025000001",
        "bke042": "ZY20250101001",
        "bme027": 1,
        "aac004": "1",
        "aac006": 20250101083000,
        "bkee43": "01",
        "bkee35": MOTHER_ID,
        "bkee37": "王芳",
        "bkee33": 13800138000,
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def problems(**changes: Any) -> list[Problem]:
    """The problems ``ybplug.load`` reports for the valid record with ``changes``."""
    with pytest.raises(InvalidMessage) as info:
        ybplug.load(Birth, record(**changes))
    assert info.value.message_type == "Birth"
    return info.value.problems


def only_problem(**changes: Any) -> Problem:
    found = problems(**changes)
    assert len(found) == 1, found
    return found[0]


def python_birth(**changes: Any) -> Birth:
    fields: dict[str, Any] = dict(
        medical_serial="YB2025000001",
        his_serial="ZY20250101001",
        multiple_birth_number=1,
        newborn_sex=Sex.MALE,
        birth_time=20250101083000,
        mother_certificate_type=CertificateType.RESIDENT_ID_CARD,
        mother_id_number=MOTHER_ID,
        mother_name="王芳",
        mother_phone=13800138000,
    )
    fields.update(changes)
    return Birth(**fields)


# -- a valid record -------------------------------------------------------------------------------


def test_valid_record_converts_and_encodes_with_the_specs_wire_names() -> None:
    assert MOTHER_ID == "350204199001010022" and id_check_digit(MOTHER_ID[:17]) == "2"
    birth = msgspec.convert(record(bkee42="01", bkee34=FATHER_ID, bkee36="李强", bkee32=13900139000), Birth)
    assert birth.mother_id_number == MOTHER_ID
    assert birth.multiple_birth_number == 1 and birth.birth_time == 20250101083000

    wire = msgspec.json.decode(msgspec.json.encode(birth))
    assert set(wire) == {
        "akc190", "bke042", "bme027", "bkee30", "aac004", "aac006", "bkee43", "bkee35",
        "bkee37", "bkee33", "bkee42", "bkee34", "bkee36", "bkee32", "bke241",
    }
    # number(n) fields travel as JSON numbers, varchar2 fields as text
    for number in ("bme027", "aac006", "bkee33", "bkee32"):
        assert type(wire[number]) is int, number
    for text in ("akc190", "bke042", "bkee30", "aac004", "bkee43", "bkee35", "bkee37", "bke241"):
        assert type(wire[text]) is str, text
    assert wire["aac006"] == 20250101083000 and wire["bkee33"] == 13800138000
    assert wire["bkee30"] == "王芳之子"
    assert wire["bke241"] == "1"  # data source defaults to HIS upload
    assert msgspec.to_builtins(birth) == wire


def test_optional_fields_left_out_are_not_sent() -> None:
    wire = msgspec.json.decode(msgspec.json.encode(msgspec.convert(record(), Birth)))
    assert set(wire) == {
        "akc190", "bke042", "bme027", "bkee30", "aac004", "aac006", "bkee43", "bkee35",
        "bkee37", "bkee33", "bke241",
    }


def test_the_idempotency_key() -> None:
    birth = msgspec.convert(record(bme027=2), Birth)
    assert birth.key == (MOTHER_ID, 20250101083000, 2)


# -- ID numbers -----------------------------------------------------------------------------------


def test_wrong_check_digit_names_field_and_label() -> None:
    with pytest.raises(msgspec.ValidationError, match="bkee35 母亲证件号码: check digit is wrong"):
        msgspec.convert(record(bkee35=WRONG_CHECK), Birth)
    assert only_problem(bkee35=WRONG_CHECK) == Problem("bkee35", "母亲证件号码", "check digit is wrong")


def test_lower_case_x_check_digit_is_accepted_and_normalised() -> None:
    assert FATHER_ID.endswith("X")
    birth = msgspec.convert(record(bkee35=FATHER_ID.lower()), Birth)
    assert birth.mother_id_number == FATHER_ID
    assert msgspec.to_builtins(birth)["bkee35"] == FATHER_ID


def test_resident_id_of_the_wrong_shape() -> None:
    problem = only_problem(bkee35="35020419900101002")
    assert problem.field == "bkee35" and "17 digits and a check digit" in problem.rule
    assert only_problem(bkee35="3502041990010100Y2").field == "bkee35"


def test_other_certificate_types_are_not_check_digit_checked() -> None:
    for kind in ("02", "03", "06", "07", "99"):
        birth = msgspec.convert(record(bkee43=kind, bkee35="E12345678"), Birth)
        assert birth.mother_id_number == "E12345678"
        birth = msgspec.convert(record(bkee43=kind, bkee35=WRONG_CHECK), Birth)
        assert birth.mother_id_number == WRONG_CHECK


def test_unknown_certificate_type() -> None:
    problem = only_problem(bkee43="00")
    assert (problem.field, problem.label) == ("bkee43", "母亲证件类型")
    assert "'00' is not a code of CertificateType" in problem.rule
    assert "01 居民身份证" in problem.rule  # the table is shown to the clerk


def test_father_id_needs_a_certificate_type() -> None:
    problem = only_problem(bkee34=FATHER_ID)
    assert (problem.field, problem.label) == ("bkee42", "父亲证件类型")
    assert "required" in problem.rule and "bkee34" in problem.rule


def test_father_resident_id_with_a_wrong_check_digit() -> None:
    wrong = FATHER_ID[:17] + "0"
    assert only_problem(bkee42="01", bkee34=wrong) == Problem("bkee34", "父亲证件号码", "check digit is wrong")
    birth = msgspec.convert(record(bkee42="01", bkee34=FATHER_ID.lower()), Birth)
    assert birth.father_id_number == FATHER_ID
    # a passport number is not check-digit-checked
    assert msgspec.convert(record(bkee42="03", bkee34=wrong), Birth).father_id_number == wrong
    assert only_problem(bkee42="98", bkee34=FATHER_ID).field == "bkee42"


# -- names: GBK bytes, not characters -------------------------------------------------------------


def test_name_length_is_counted_in_gbk_bytes() -> None:
    assert msgspec.convert(record(bkee30="王" * 25), Birth).newborn_name == "王" * 25  # 50 bytes
    problem = only_problem(bkee30="王" * 26)  # 52 bytes
    assert (problem.field, problem.label) == ("bkee30", "新生儿姓名")
    assert "52 bytes in GBK" in problem.rule and "varchar2(50)" in problem.rule

    assert msgspec.convert(record(bkee30="a" * 50), Birth).newborn_name == "a" * 50  # ASCII: 1 byte
    assert "51 bytes" in only_problem(bkee30="a" * 51).rule
    assert msgspec.convert(record(bkee30="王" * 24 + "ab"), Birth).newborn_name == "王" * 24 + "ab"
    assert "51 bytes" in only_problem(bkee30="王" * 24 + "abc").rule


def test_mother_name_length_in_gbk_bytes() -> None:
    ok = msgspec.convert(record(bkee37="王" * 25, bkee30="王小宝"), Birth)
    assert ok.mother_name == "王" * 25
    problem = only_problem(bkee37="王" * 26, bkee30="王小宝")
    assert (problem.field, problem.label) == ("bkee37", "母亲姓名")
    assert "52 bytes in GBK" in problem.rule


def test_the_default_newborn_name_must_fit_too() -> None:
    # 24 characters of mother's name fit (48 bytes); + 之子 makes a 52-byte newborn name
    problem = only_problem(bkee37="王" * 24)
    assert problem.field == "bkee30" and "52 bytes" in problem.rule


def test_character_outside_gbk_is_named() -> None:
    problem = only_problem(bkee37="𠮷芳", bkee30="王小宝")
    assert (problem.field, problem.label) == ("bkee37", "母亲姓名")
    # a name is personal: the character is named by its code point and place, not shown
    assert problem.rule == "character U+20BB7 (character 1) cannot be encoded in GBK"
    assert "𠮷" not in str(problem)
    # construction checks against GB18030 (the permissive charset); the configured one is explicit
    birth = msgspec.convert(record(bkee37="𠮷芳", bkee30="王小宝"), Birth)
    with pytest.raises(InvalidMessage, match="bkee37 母亲姓名: character U\\+20BB7"):
        birth.check("gbk")
    birth.check("gb18030")
    with pytest.raises(InvalidMessage, match="bkee35 母亲证件号码: character '𠮷'|bkee35 母亲证件号码: character U"):
        python_birth(mother_certificate_type="02", mother_id_number="护照𠮷").check("gbk")


def test_gb18030_accepts_characters_outside_gbk() -> None:
    birth = ybplug.load(Birth, record(bkee37="𠮷芳"), charset="gb18030")
    assert birth.mother_name == "𠮷芳"
    assert birth.newborn_name == "𠮷芳之子"
    # and lengths are counted in GB18030 bytes: 𠮷 takes four
    with pytest.raises(InvalidMessage) as info:
        ybplug.load(Birth, record(bkee30="𠮷" * 12 + "王a"), charset="gb18030")  # 48 + 2 + 1 = 51 bytes
    assert "51 bytes in GB18030" in info.value.problems[0].rule
    # the same name built in Python is within GB18030, and the charset is applied explicitly
    assert python_birth(newborn_name="𠮷" * 12 + "王").newborn_name == "𠮷" * 12 + "王"
    with pytest.raises(InvalidMessage, match="51 bytes in GB18030"):
        python_birth(newborn_name="𠮷" * 12 + "王a")
    assert only_problem(bkee37="𠮷芳", bkee30="王小宝").field == "bkee37"  # load's default is GBK


def test_names_are_stripped_and_control_characters_rejected() -> None:
    birth = msgspec.convert(record(bkee37="  王芳 "), Birth)
    assert birth.mother_name == "王芳" and birth.newborn_name == "王芳之子"
    assert "control characters" in only_problem(bkee37="王\n芳", bkee30="王小宝").rule


# -- the default newborn name -----------------------------------------------------------------------


def test_default_newborn_name_by_sex() -> None:
    assert msgspec.convert(record(aac004="1"), Birth).newborn_name == "王芳之子"
    assert msgspec.convert(record(aac004="2"), Birth).newborn_name == "王芳之女"
    assert python_birth(newborn_sex=Sex.FEMALE).newborn_name == "王芳之女"
    # a name the hospital gives is kept
    assert msgspec.convert(record(aac004="2", bkee30="王小美"), Birth).newborn_name == "王小美"


@pytest.mark.parametrize("sex", ["0", "9"])
def test_newborn_name_required_when_sex_is_not_male_or_female(sex: str) -> None:
    found = problems(aac004=sex)
    assert found and all(p.field == "bkee30" and p.label == "新生儿姓名" for p in found)
    assert "required" in found[0].rule and "aac004" in found[0].rule
    assert msgspec.convert(record(aac004=sex, bkee30="王宝宝"), Birth).newborn_name == "王宝宝"


@pytest.mark.parametrize("sex", ["0", "9"])
def test_newborn_name_required_is_reported_once(sex: str) -> None:
    assert len(problems(aac004=sex)) == 1


# -- codes, numbers, times, phones ---------------------------------------------------------------


def test_unknown_sex_code() -> None:
    problem = only_problem(aac004="3")
    assert (problem.field, problem.label) == ("aac004", "新生儿性别")
    assert "'3' is not a code of Sex" in problem.rule and "2 女" in problem.rule


def test_unknown_data_source() -> None:
    assert only_problem(bke241="7").field == "bke241"
    assert msgspec.convert(record(bke241="2"), Birth).data_source == "2"


@pytest.mark.parametrize("value", [0, 10, -1])
def test_multiple_birth_number_is_one_digit_from_one(value: int) -> None:
    problem = only_problem(bme027=value)
    assert (problem.field, problem.label) == ("bme027", "多胞胎序号")


def test_multiple_birth_number_one_to_nine_accepted() -> None:
    for value in (1, 2, 9):
        assert msgspec.convert(record(bme027=value), Birth).multiple_birth_number == value


def test_birth_time_in_the_future() -> None:
    later = (datetime.now(CHINA_TIME) + timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
    problem = only_problem(aac006=int(later))
    assert (problem.field, problem.label) == ("aac006", "新生儿出生时间")
    assert "in the future" in problem.rule


def test_birth_time_a_minute_ago_china_time_is_fine_whatever_the_servers_zone() -> None:
    earlier = (datetime.now(CHINA_TIME) - timedelta(minutes=1)).strftime("%Y%m%d%H%M%S")
    assert msgspec.convert(record(aac006=int(earlier)), Birth).birth_time == int(earlier)


@pytest.mark.parametrize("value", [20260230120000, 20250101250000, 20251301083000, 20250101083060])
def test_birth_time_impossible_date(value: int) -> None:
    problem = only_problem(aac006=value)
    assert problem.field == "aac006" and "not a real date and time" in problem.rule


@pytest.mark.parametrize("value", [2025010108300, 202501010830])
def test_birth_time_wrong_length(value: int) -> None:
    problem = only_problem(aac006=value)
    assert problem.field == "aac006" and "14 digits" in problem.rule


def test_birth_time_too_many_digits() -> None:
    problem = only_problem(aac006=202501010830001)
    assert problem.field == "aac006" and "number(14)" in problem.rule


@pytest.mark.parametrize("phone", [12345, 23800138000, 12800138000])
def test_mother_phone_must_be_a_mobile_number(phone: int) -> None:
    problem = only_problem(bkee33=phone)
    assert (problem.field, problem.label) == ("bkee33", "母亲联系方式")
    assert "mobile" in problem.rule
    assert str(phone) not in problem.rule  # masked


def test_father_phone_must_be_a_mobile_number() -> None:
    problem = only_problem(bkee32=23800138000)
    assert (problem.field, problem.label) == ("bkee32", "父亲联系方式")
    assert "23800138000" not in str(problem)


def test_phone_with_too_many_digits() -> None:
    problem = only_problem(bkee33=138001380001)
    assert problem.field == "bkee33" and "number(11)" in problem.rule


def test_a_mistyped_phone_number_is_masked_in_the_error() -> None:
    assert "138001380001" not in str(only_problem(bkee33=138001380001))
    with pytest.raises(InvalidMessage) as info:
        python_birth(mother_phone="138-0013-8000")
    assert "138-0013-8000" not in str(info.value)


@pytest.mark.parametrize("field", ["akc190", "bke042", "bme027", "aac004", "aac006", "bkee43", "bkee35", "bkee37", "bkee33"])
def test_missing_required_field(field: str) -> None:
    problem = only_problem(**{field: ...})
    assert problem.field == field
    assert problem.label == Birth.labels[field] and problem.label
    assert "required" in problem.rule


@pytest.mark.parametrize("field", ["akc190", "bke042", "bkee35", "bkee37"])
def test_empty_or_blank_required_text(field: str) -> None:
    assert only_problem(**{field: ""}) == Problem(field, Birth.labels[field], "is required")
    assert only_problem(**{field: "   "}) == Problem(field, Birth.labels[field], "is required")


def test_too_long_serials() -> None:
    problem = only_problem(akc190="Y" * 21)
    assert (problem.field, problem.label) == ("akc190", "医保流水号") and "varchar2(20)" in problem.rule
    assert msgspec.convert(record(bke042="H" * 50), Birth).his_serial == "H" * 50
    assert only_problem(bke042="H" * 51).field == "bke042"


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(InvalidMessage) as info:
        ybplug.load(Birth, record(bme027=0, aac004="5", bkee35=WRONG_CHECK, bkee33=23800138000))
    fields = [p.field for p in info.value.problems]
    assert fields == ["bme027", "aac004", "bkee35", "bkee33"]
    message = str(info.value)
    for part in ("bme027 多胞胎序号", "aac004 新生儿性别", "bkee35 母亲证件号码: check digit is wrong", "bkee33 母亲联系方式"):
        assert part in message
    assert message.count("; ") == 3


def test_two_missing_fields_are_reported_together() -> None:
    assert {p.field for p in problems(akc190=..., bkee37=...)} == {"akc190", "bkee37"}


# -- load and type errors --------------------------------------------------------------------------


def test_load_reports_type_errors_with_the_chinese_name() -> None:
    with pytest.raises(InvalidMessage) as info:
        ybplug.load(Birth, record(bme027="x"))
    [problem] = info.value.problems
    assert (problem.field, problem.label) == ("bme027", "多胞胎序号")
    assert problem.rule == "must be a number of at most 1 digits, got 'x'"
    assert str(info.value).startswith("bme027 多胞胎序号: ")
    assert isinstance(info.value, ValueError)


def test_load_of_a_missing_field_and_a_rule_error() -> None:
    assert ybplug.load(Birth, record()).mother_name == "王芳"
    [problem] = problems(bkee37=...)
    assert (problem.field, problem.label, problem.rule) == ("bkee37", "母亲姓名", "is required")
    [problem] = problems(bkee35=WRONG_CHECK)
    assert problem == Problem("bkee35", "母亲证件号码", "check digit is wrong")


def test_load_of_something_that_is_not_an_object() -> None:
    with pytest.raises(InvalidMessage) as info:
        ybplug.load(Birth, ["not", "a", "record"])
    assert "object" in str(info.value)


def test_load_takes_digit_strings_for_numbers_as_python_does() -> None:
    for strict in (True, False):
        birth = ybplug.load(Birth, record(bme027="2", aac006="20250101083000", bkee33="13800138000"), strict=strict)
        assert (birth.multiple_birth_number, birth.birth_time, birth.mother_phone) == (2, 20250101083000, 13800138000)


def test_type_errors_are_reported_with_every_other_problem() -> None:
    found = problems(akc190=12, bme027=[1], aac004="5", aac006={"y": 2025}, bkee35=WRONG_CHECK, bkee37=None,
                     bkee33="138-0013-8000", bkee32=1.5, extra="?")
    assert [p.field for p in found] == ["'extra'", "akc190", "bme027", "aac004", "aac006", "bkee35", "bkee37", "bkee33", "bkee32"]
    rules = {p.field: p.rule for p in found}
    assert rules["akc190"] == "must be text, got int"
    assert rules["bme027"] == "must be a number of at most 1 digits, got a list"
    assert rules["aac006"] == "must be a number of at most 14 digits, got a dict"
    assert rules["bkee32"] == "must be a number of at most 11 digits, got a float"
    assert "138-0013-8000" not in str(found)


@pytest.mark.parametrize("phone", [5921234567, "05921234567", "01012345678", "02112345678", 13800138000, "13800138000"])
def test_phones_are_mobiles_or_11_digit_landlines(phone: int | str) -> None:
    birth = ybplug.load(Birth, record(bkee33=phone, bkee42="01", bkee34=FATHER_ID, bkee32=phone))
    assert birth.mother_phone == birth.father_phone == int(phone)  # number(11): no leading 0 on the wire
    assert python_birth(mother_phone=phone).mother_phone == int(phone)


@pytest.mark.parametrize("phone", ["0592123456", "059212345678", "00012345678", 1234567890, "+8613800138000"])
def test_other_phone_shapes_are_refused(phone: int | str) -> None:
    problem = only_problem(bkee33=phone)
    assert problem.field == "bkee33" and str(phone) not in str(problem)


def test_birth_time_as_a_datetime() -> None:
    from datetime import datetime, timezone

    naive = python_birth(birth_time=datetime(2025, 1, 1, 8, 30, 5))  # China time
    assert naive.birth_time == 20250101083005
    aware = python_birth(birth_time=datetime(2025, 1, 1, 0, 30, 5, tzinfo=timezone.utc))
    assert aware.birth_time == 20250101083005
    assert ybplug.load(Birth, record(aac006=datetime(2025, 1, 1, 8, 30, 5))).birth_time == 20250101083005
    with pytest.raises(InvalidMessage, match="aac006 新生儿出生时间: .* is in the future"):
        python_birth(birth_time=datetime(2999, 1, 1))
    wire = msgspec.to_builtins(naive)
    assert wire["aac006"] == 20250101083005


def test_a_first_generation_id_number_is_pointed_to_its_18_digit_form() -> None:
    old = "350204900101002"  # region 350204, born (19)900101, sequence 002
    new = second_generation_id(old)
    assert new == MOTHER_ID  # 350204 19 900101 002 + check digit 2
    problem = only_problem(bkee35=old)
    assert problem.field == "bkee35" and "15-digit first-generation" in problem.rule
    assert mask(new) in problem.rule and old not in problem.rule and new not in problem.rule


def test_digit_strings_for_numbers_are_accepted_in_python() -> None:
    birth = python_birth(mother_phone="13800138000", multiple_birth_number="2", birth_time="20250101083000")
    assert birth.mother_phone == 13800138000 and type(birth.mother_phone) is int
    assert birth.multiple_birth_number == 2 and birth.birth_time == 20250101083000
    wire = msgspec.json.decode(msgspec.json.encode(birth))
    assert wire["bkee33"] == 13800138000 and wire["bme027"] == 2 and wire["aac006"] == 20250101083000
    with pytest.raises(InvalidMessage, match="bkee33 母亲联系方式"):
        python_birth(mother_phone="1380013800a")
    with pytest.raises(InvalidMessage, match="bme027 多胞胎序号"):
        python_birth(multiple_birth_number=True)


def test_code_members_work_as_values_in_python() -> None:
    birth = python_birth(newborn_sex=Sex.FEMALE, mother_certificate_type=CertificateType.RESIDENT_ID_CARD)
    wire = msgspec.to_builtins(birth)
    assert wire["aac004"] == "2" and wire["bkee43"] == "01" and wire["bkee30"] == "王芳之女"
    with pytest.raises(InvalidMessage, match="bkee35 母亲证件号码: check digit is wrong"):
        python_birth(mother_id_number=WRONG_CHECK)


# -- privacy ---------------------------------------------------------------------------------------


def test_repr_masks_personal_data() -> None:
    birth = python_birth(
        father_certificate_type="01", father_id_number=FATHER_ID, father_name="李强",
        father_phone=13900139000, newborn_name="王小宝",
    )
    for shown in (repr(birth), str(birth), f"{birth}", repr([birth])):
        for secret in (MOTHER_ID, FATHER_ID, "王芳", "李强", "王小宝", "13800138000", "13900139000"):
            assert secret not in shown, secret
    text = repr(birth)
    assert "3502**********0022" in text and "138****8000" in text
    assert "medical_serial='YB2025000001'" in text  # not personal: shown


# -- replies ----------------------------------------------------------------------------------------


def test_collection_result_decodes_leniently() -> None:
    result = msgspec.convert(
        {"flag": "1", "cause": "", "baz726": 1234567, "bkee45": "1", "bkee46": None},
        CollectionResult,
        strict=False,
    )
    assert result.flag == 1 and result.ok
    assert result.registration_number == "1234567" and type(result.registration_number) is str
    assert result.eligible and result.ineligibility_reason is None


def test_collection_result_keeps_registration_text_as_is() -> None:
    for value in ("XSE0000000000012", "0001234"):
        raw = msgspec.json.encode({"flag": 1, "baz726": value, "bkee45": "0", "bkee46": "非本市户籍"})
        result = msgspec.json.decode(raw, type=CollectionResult, strict=False)
        assert result.registration_number == value
        assert not result.eligible and result.ineligibility_reason == "非本市户籍"


def test_a_refusal() -> None:
    result = msgspec.convert({"flag": "0", "cause": "重复申报"}, CollectionResult, strict=False)
    assert result.flag == 0 and not result.ok and result.cause == "重复申报"
    assert result.registration_number == ""


def test_real_name_query_of() -> None:
    query = RealNameQuery.of(["XSE0000000000001", "XSE0000000000002"])
    assert query.row_count == 2 and len(query.items) == 2
    assert msgspec.json.decode(msgspec.json.encode(query)) == {
        "rownum": 2,
        "xseqqlb": [{"baz726": "XSE0000000000001"}, {"baz726": "XSE0000000000002"}],
    }


def test_real_name_query_rownum_mismatch_and_empty() -> None:
    with pytest.raises(InvalidMessage) as info:
        ybplug.load(RealNameQuery, {"rownum": 3, "xseqqlb": [{"baz726": "XSE1"}]})
    [problem] = info.value.problems
    assert (problem.field, problem.label) == ("rownum", "记录总数")
    assert "3" in problem.rule and "1" in problem.rule
    with pytest.raises(InvalidMessage, match="xseqqlb"):
        RealNameQuery.of([])
    with pytest.raises(InvalidMessage, match="baz726"):
        RealNameQuery.of(["XSE" + "0" * 14])  # 17 characters, over varchar 16


def test_real_name_result_decodes_rows() -> None:
    reply = {
        "flag": "1",
        "cause": "",
        "rownum": "3",
        "xsesmlb": [
            {
                "baz726": "XSE0000000000001", "bae018": "Y", "aac058": "01", "aac058_mc": "居民身份证",
                "aac002": "350203202501010011", "aac003": "王小明", "aac004": "1", "aac004_mc": "男",
                "aac999": "1010010101001", "bae014": "20250301120000", "bae009": "Z",
            },
            {"baz726": "XSE0000000000002", "bae018": "N", "bae009": "Z"},
            {"baz726": 3, "bae018": "Y", "bae009": "F"},
        ],
    }
    result = msgspec.convert(reply, RealNameResult, strict=False)
    assert result.ok and result.row_count == 3 and len(result.records) == 3
    named, pending, voided = result.records
    assert named.real_named and not named.voided
    assert named.id_number == "350203202501010011" and named.name == "王小明"
    assert named.personal_code == "1010010101001" and named.real_named_at == "20250301120000"
    assert not pending.real_named and not pending.voided and pending.id_number is None
    assert voided.voided and not voided.real_named  # a voided registration is never "real-named"
    assert voided.registration_number == "3"
    assert "350203202501010011" not in repr(result) and "王小明" not in repr(result)


def test_void_request() -> None:
    request = VoidRequest(registration_number="XSE0000000000001", reason="重复上传")
    assert msgspec.to_builtins(request) == {"baz726": "XSE0000000000001", "bae016": "重复上传", "bke241": "1"}
    with pytest.raises(InvalidMessage, match="bae016 作废原因: is required"):
        VoidRequest(registration_number="XSE0000000000001", reason="")


# -- the QR decoder's messages ----------------------------------------------------------------------


def qr_data(**changes: Any) -> QrRequestData:
    fields: dict[str, Any] = dict(org_id="3500000101", business_type="101", district_no="350000")
    fields.update(changes)
    return QrRequestData(**fields)


def test_qr_request_data_accepts_the_specs_examples() -> None:
    assert qr_data().org_id == "3500000101"
    assert qr_data(org_id="350100100011").org_id == "350100100011"
    assert qr_data(business_type=QrBusinessType.ENQUIRY).business_type == "110"


@pytest.mark.parametrize("org_id", ["ab12", "990000", "35000", "3500000101ab", "3" * 21])
def test_qr_org_id_must_be_digits_with_a_province_prefix(org_id: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        qr_data(org_id=org_id)
    [problem] = info.value.problems
    assert (problem.field, problem.label) == ("orgId", "机构ID")


@pytest.mark.parametrize("district", ["35000", "3500001", "990000", "35000a"])
def test_qr_district_is_six_digits(district: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        qr_data(district_no=district)
    assert [(p.field, p.label) for p in info.value.problems] == [("districtNo", "参保地行政区划")]


def test_qr_business_type_from_the_table() -> None:
    with pytest.raises(InvalidMessage) as info:
        qr_data(business_type="104")
    [problem] = info.value.problems
    assert (problem.field, problem.label) == ("businessType", "用码业务类别")
    assert "101 挂号" in problem.rule


def test_qr_request_encodes_camel_case_wire_names() -> None:
    request = QrRequest(
        data=qr_data(operator_id="A0002", operator_name="李明", office_id="NK01", office_name="内科"),
        idcode="9993604787698063769694000000",
    )
    wire = msgspec.json.decode(msgspec.json.encode(request))
    assert wire == {
        "idcode": "9993604787698063769694000000",
        "data": {
            "orgId": "3500000101", "operatorId": "A0002", "operatorName": "李明",
            "businessType": "101", "districtNo": "350000", "officeId": "NK01", "officeName": "内科",
        },
    }
    assert "9993604787698063769694000000" not in repr(request)
    assert msgspec.convert(wire["data"], QrRequestData) == request.data


# The spec's outData example, verbatim, including its trailing comma.
SPEC_OUT_DATA = """{
    "flag": "1",
    "cause": "",
    "data": {
        "ecToken": "398397485fkjdk9sf92j3mlkf",
        "idNo": "350204198001010001",
        "idType": "01",
        "userName": "张三",
        "insuOrg": "350000",
        "aaz500": "K001934831",
        "id0000": "1010010101001",
    }
}"""


def test_qr_reply_decodes_the_specs_example() -> None:
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(SPEC_OUT_DATA)  # the example is not valid JSON as printed
    fixed = re.sub(r",(\s*[}\]])", r"\1", SPEC_OUT_DATA)
    reply = msgspec.json.decode(fixed, type=QrReply, strict=False)
    assert reply.ok and reply.flag == 1 and reply.cause == ""
    assert reply.data == SPEC_EXAMPLE_IDENTITY
    for secret in ("398397485fkjdk9sf92j3mlkf", "350204198001010001", "张三", "K001934831"):
        assert secret not in repr(reply)


def test_qr_refusal_without_data() -> None:
    raw = '{"flag": "0", "cause": "二维码已过期"}'.encode()
    reply = msgspec.json.decode(raw, type=QrReply, strict=False)
    assert not reply.ok and reply.data is None and reply.cause == "二维码已过期"


# -- code tables -------------------------------------------------------------------------------------


def test_code_tables() -> None:
    assert ybplug.Sex.FEMALE == "2" and ybplug.Sex.FEMALE.label == "女"
    assert ybplug.Sex.MALE == "1" and ybplug.Sex.MALE.label == "男"
    assert ybplug.MedicalCategory.NEWBORN_DELIVERY == "35"
    assert MedicalCategory.NEWBORN_DELIVERY.label == "新生儿分娩"
    assert ybplug.CertificateType("08").label == "出生医学证明"
    assert ybplug.Sex.has("9") and not ybplug.Sex.has("3")
    assert ybplug.Eligibility.ELIGIBLE == "1"
    assert ybplug.RealNameFlag.REAL_NAMED == "Y" and ybplug.VoidFlag.VOID == "F"
    assert ybplug.QrBusinessType.describe().startswith("101 挂号, 102 充值")
    assert msgspec.json.encode(ybplug.Sex.FEMALE) == b'"2"'


@pytest.mark.parametrize("field", ["bme027", "aac006", "aac004"])
@pytest.mark.parametrize("typed", ["13800138000\n", "350203199001010026", "陈静"])
def test_personal_data_typed_into_a_number_or_code_field_is_echoed_masked(field: str, typed: str) -> None:
    [problem] = [p for p in problems(**{field: typed}) if p.field == field]
    assert typed.strip() not in str(problem)
    if field == "aac006" and typed != "350203199001010026":  # (a code says only its length; 18 digits, their count)
        assert mask(typed.strip()) in str(problem)


def test_a_plain_wrong_value_is_still_shown_as_typed() -> None:
    assert "'abc'" in str(only_problem(bme027="abc"))


@pytest.mark.parametrize("bad", ["１２３４５６７８９０１２３４５", "35020480010100", "3502048001010011", None, 350204800101001,
                                 "35020480010100X"])
def test_second_generation_id_refuses_what_is_not_15_ascii_digits_naming_the_field(bad: Any) -> None:
    with pytest.raises(InvalidMessage, match="bkee35 母亲证件号码: a first-generation ID number is 15 ASCII digits") as info:
        second_generation_id(bad)
    assert not isinstance(bad, str) or bad not in str(info.value)


def test_second_generation_id_of_a_first_generation_number() -> None:
    assert second_generation_id("350204800101001") == with_check_digit("35020419800101001")
