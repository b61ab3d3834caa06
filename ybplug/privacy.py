"""Masking of personal data for anything a person or a log may read.

ID numbers, names, phone numbers, QR tokens and passwords must never reach a log line in the
clear.  Messages mask themselves in ``repr``; log calls and the CLI go through :func:`mask`.
"""

from __future__ import annotations

import functools
import re
import traceback
import unicodedata
from collections.abc import Iterable
from typing import Any

from ybplug.errors import Error


#: What an identifier looks like (an ID, passport or permit number, a phone, a QR token, a card
#: number): letters and digits, at least one a digit.  Any other text is masked as a name.
_IDENTIFIER = re.compile(r"[0-9A-Za-z-]*[0-9][0-9A-Za-z-]*")

#: The most asterisks a masked name has: its length beyond that is not shown either.
_NAME_STARS = 3


def mask(value: Any) -> str:
    """Keep enough of a value to recognise it, hide the rest.

    Identifiers keep their shape: ``350204198001010001`` -> ``3502**********0001``;
    ``13800138000`` -> ``138****8000``; ``1380013`` -> ``13***13``.  Anything else is a name
    (:func:`mask_name`): ``张三`` -> ``张*``, ``Mary Watson`` -> ``M***``.  One character is
    hidden entirely.
    """
    text = "" if value is None else str(value)
    if not _IDENTIFIER.fullmatch(text):
        return mask_name(text)
    n = len(text)
    if n >= 15:
        return text[:4] + "*" * (n - 8) + text[-4:]
    if n >= 11:
        return text[:3] + "*" * (n - 7) + text[-4:]
    if n >= 7:
        return text[:2] + "*" * (n - 4) + text[-2:]
    if n >= 2:
        return text[0] + "*" * (n - 1)
    return "*"


def mask_name(value: Any) -> str:
    """A name, or any text that is not an identifier: its first character at most, and not its
    length past four (``王*``, ``王**``, ``王***`` for 王芳芳芳芳芳芳芳芳芳芳芳芳芳芳芳).

    A name's end is as telling as its start (``…tson``, ``…拉提``), and a long name is rare enough
    to tell a person by its length alone: neither is shown.
    """
    text = "" if value is None else str(value)
    if len(text) <= 1:
        return "*" if text else ""
    return text[0] + "*" * min(len(text) - 1, _NAME_STARS)


#: Runs of digits as long as a mobile number or longer (ID numbers end in a digit or X).
_NUMBER_LIKE = re.compile(r"(?<![\dA-Za-z])1[3-9]\d{9}(?!\d)|\d{15,}[\dXx]?")


_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
#: What may stand before a name in the same run of characters: a label, not part of the name.
_NAME_LABELS = "姓名|名字|参保人|持卡人|人员|患者|母亲|父亲|新生儿|用户"
#: What may follow a name in the same run: the number's label.
_NUMBER_LABELS = "身份证号码|身份证号|身份证|证件号码|证件号|证件|证号|手机号码|手机号|手机|电话号码|电话|号码"
#: A run of 2 to 4 Chinese characters of its own (label aside), then at most two spaces or
#: brackets or colons, then an ID or phone number: how a library writes "陈静 3502…".  The
#: shortest name that leaves a label before the number: "陈静" of "陈静证件3502…", not "陈静证件".
_NAME_BESIDE_NUMBER = re.compile(
    rf"(?<![{_CJK}])(?:{_NAME_LABELS})?(?P<name>[{_CJK}]{{2,4}}?)(?:{_NUMBER_LABELS})?"
    rf"(?=[\s:：(（\[【,，]{{0,2}}(?:{_NUMBER_LIKE.pattern}))"
)
#: Common Chinese surnames (about 400, most people's): a run starting with another character is
#: not taken for a name (查询失败：, 错误 before a number must stay readable).
_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫阎段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔"
    "向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌"
    "毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦"
    "麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩"
    "明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强"
    "帅屠豆朴盖练廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容敬来扈晁芮都普阙浦戈伏鹿薄邸雍辜羊阿乌母裘亓"
    "修邰赫杭况那宿鲜印逯隆茹诸战慕危玉银亢嵇公哈湛宾戎勾茅利於呼居揭干但尉冶斯元束檀衣信展阴昝智幸奉植"
    "衡富尧闭由洪郭黄"
)
#: Words of labels and of error text, not of names: a run holding one is left alone.
_NOT_A_NAME = re.compile(
    "身份|证件|证号|号码|电话|手机|编号|卡号|凭证|二维码|人员|参保|姓名|名字|用户|患者|母亲|父亲|新生儿|"
    "失败|错误|有误|成功|查询|重复|上传|存在|无效|过期|异常|不能|不是|不符|没有|为空|一致|匹配|请求|数据|信息|"
    "系统|获取|调用|参数|格式|校验|验证|时间|文件|结果|状态|记录|登记|注销|办理|医保|机构|医院|编码|代码|账号|"
    "密码|已经|[号码证]$"
)


def mask_names_beside_numbers(text: str) -> str:
    """Text from elsewhere with the names ybplug cannot know beforehand masked where they can be
    told: a run of 2 to 4 Chinese characters standing just before an ID or phone number
    (``陈静 350203…``, ``人员陈静(350203…)``, ``母亲陈静身份证350203…``), less a label around it.

    Best effort, and conservative so as not to garble ordinary error text: the run must start
    with a common surname and hold no word of a label or of error text (身份证, 号码, 人员, 失败,
    重复…).  Left as they are: names after the number, far from any number, in a run of 5 or
    more characters, with a rare surname, or in Latin letters.
    """

    def masked(match: re.Match[str]) -> str:
        name = match["name"]
        if name[0] not in _SURNAMES or _NOT_A_NAME.search(name):
            return match.group()
        start, end = match.span("name")
        whole = match.group()
        offset = match.start()
        return whole[: start - offset] + mask_name(name) + whole[end - offset:]

    return _NAME_BESIDE_NUMBER.sub(masked, text)


#: What separates the parts of a name: a middle dot of any script, a space, a hyphen.
_NAME_PARTS = re.compile(r"[\s\u00b7\u2022\u2027\u2219\u22c5\u30fb\uff65\u318d\-_,.]+")
#: Latin letters (a Latin name or part of one matches as a whole word only: ``Ana`` in ``Anaheim``
#: stays) and the fewest a Latin part needs to be scrubbed alone (``An`` would garble every ``an``).
_LATIN = "A-Za-z\u00c0-\u024f"
_LATIN_PART = 3
_LATIN_WORD = re.compile(f"[{_LATIN}]+")
_LATIN_CHAR = re.compile(f"[{_LATIN}]")

#: What a number's groups may be set apart with, once NFKC has folded full-width forms.
_SEP = r"[ \-\u2010-\u2014]"
#: Numbers in the forms people write them, after NFKC: a landline with its area code set apart
#: (``(0592) 1234567``, ``0592-1234567``), a mobile (``13912345678``, ``+8613912345678``), 15 or
#: more digits (an ID, card or QR number), and digits in groups (``3502 0319 9001 0100 26``,
#: ``139-1234-5678``) -- groups that :func:`_grouped` masks only where they make such a number.
_NUMBERS = re.compile(
    rf"(?<![\dA-Za-z])(?P<tel>\(0[1-9]\d{{1,2}}\) ?\d{{7,8}}|0[1-9]\d{{1,2}}{_SEP}\d{{7,8}})(?![\dA-Za-z])"
    r"|(?<![\dA-Za-z])(?:\+?86)?1[3-9]\d{9}(?!\d)"
    r"|\d{15,}[\dXx]?"
    rf"|(?<![\dA-Za-z])(?P<groups>\d{{3,8}}(?:{_SEP}\d{{1,8}})+(?:[Xx])?)(?![\dA-Za-z])"
)
_GROUP = re.compile(r"\d+[Xx]?")
#: The most groups a number is written in (a 28-digit QR token in fours is 7).
_MOST_GROUPS = 8
#: Where a number may be: 7 or more characters of digits, separators and brackets.  Looked for
#: first because a pattern starting with a character class is skipped through fast.
_CANDIDATE = re.compile(r"[(+]?\d[\d() \-\u2010-\u2014]{5,}[\dXx]?")
#: A number as written (digits, separators, a bracketed area code, +86), masked as its digits.
_WRITTEN_NUMBER = re.compile(r"[()+ \-\u2010-\u2014]*\d[\d()+ \-\u2010-\u2014]*[Xx]?")
_SEPARATORS = re.compile(r"[^\dXx]")


def _is_number(digits: str) -> bool:
    """Whether digits written in groups make an ID, card or QR number or a mobile (with +86)."""
    n = len(digits)
    if n == 13 and digits.startswith("86"):
        digits, n = digits[2:], 11
    return n >= 15 or (n == 11 and digits[0] == "1" and digits[1] in "3456789")


def _grouped(text: str, start: int) -> list[tuple[int, int]]:
    """Spans (offset by ``start``) of the runs of ``text``'s digit groups that make a number: the
    leftmost, longest first, so ``HTTP 503 139 1234 5678`` masks the phone and keeps the 503.  A
    run is at most :data:`_MOST_GROUPS` groups, so a megabyte of ``1 2 3 …`` takes linear time."""
    if len(text) < 11:  # too few digits for any (a date, a time)
        return []
    groups = [(m.start() + start, m.end() + start, m.group()) for m in _GROUP.finditer(text)]
    counts = [0]
    for group in groups:
        counts.append(counts[-1] + len(group[2]))
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(groups):
        last = min(len(groups), i + _MOST_GROUPS)
        if [len(g[2]) for g in groups[i:i + 3]] == [4, 2, 2]:  # a date (2026-12-01) is no number's part
            i += 3
            continue
        if counts[last] - counts[i] >= 11:  # else no run from here makes a number
            for j in range(last, i, -1):
                count = counts[j] - counts[i]
                if count >= 15 or (count in (11, 13) and _is_number("".join(g[2] for g in groups[i:j]))):
                    spans.append((groups[i][0], groups[j - 1][1]))
                    i = j - 1
                    break
        i += 1
    return spans


def _folded(text: str) -> tuple[str, list[int] | None]:
    """``text`` in NFKC (full-width digits and letters as ASCII, a full-width space a space), for
    matching, and where each of its characters came from in ``text`` (None: the same place)."""
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
        return text, None
    folded: list[str] = []
    origin: list[int] = []
    for i, char in enumerate(text):
        part = unicodedata.normalize("NFKC", char) if not char.isascii() else char
        folded.append(part)
        origin.extend([i] * len(part))
    return "".join(folded), origin


@functools.lru_cache(maxsize=256)
def _variants(secrets: tuple[str, ...]) -> tuple[tuple[str, bool, bool], ...]:
    """The secrets (in NFKC, lower case) and the parts of each a text may quote alone
    (``阿卜杜热合曼`` of ``阿卜杜热合曼·买买提艾力``), longest first; for each, whether it must not
    start or end beside a Latin letter.  A variant of Latin letters and no digit (a Latin name)
    matches only as whole words (``Ana`` in ``Anaheim`` stays); others (Chinese names, numbers,
    tokens) anywhere, as before.  Cached: a birth's errors are scrubbed with the same secrets
    again and again."""
    variants: set[str] = set()
    for secret in secrets:
        text = _lower(unicodedata.normalize("NFKC", secret).strip())
        if not text:
            continue
        variants.add(text)
        parts = [part for part in _NAME_PARTS.split(text) if part]
        if len(parts) > 1 and not any(c.isdigit() for c in text):  # a name, not a number
            variants.update(p for p in parts if len(p) >= (_LATIN_PART if _LATIN_WORD.fullmatch(p) else 2))
    return tuple(
        (v, bool(_LATIN_CHAR.match(v[0])), bool(_LATIN_CHAR.match(v[-1])))
        if not any(c.isdigit() for c in v) else (v, False, False)
        for v in sorted(variants, key=len, reverse=True)
    )


def _lower(text: str) -> str:
    """``text`` in lower case, character for character (``İ`` lowers to two: left as it is)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _secret_spans(text: str, secrets: Iterable[object]) -> list[tuple[int, int]]:
    """Where ``text`` (folded) holds a secret or a part of one, in any case (``str.find``: many
    times faster than one regex of them all, and this runs on every logged error)."""
    variants = _variants(tuple(str(s) for s in secrets if s is not None))
    if not variants:
        return []
    lowered = _lower(text)
    spans: list[tuple[int, int]] = []
    for variant, bounded_start, bounded_end in variants:
        start = lowered.find(variant)
        while start >= 0:
            end = start + len(variant)
            if not (bounded_start and start and _LATIN_CHAR.match(lowered[start - 1])) and not (
                bounded_end and end < len(lowered) and _LATIN_CHAR.match(lowered[end])
            ):
                spans.append((start, end))
            start = lowered.find(variant, start + 1)
    return spans


def scrub(text: str, secrets: Iterable[object] = ()) -> str:
    """Text from elsewhere (a centre's cause, a plugin's error, a library's message) made fit for
    a log line: each of ``secrets`` (the personal values of the record at hand: names, a QR code)
    masked wherever it appears, and ID and phone numbers masked.  The one scrubber of ybplug.

    Matched as people write them, not only as ybplug holds them: a secret in any case
    (``Maria Gonzalez`` for ``MARIA GONZALEZ``), a part of a name of 2 characters or more (3 for
    Latin letters) split at middle dots and spaces, numbers in groups (``3502 0319 9001 0100 26``,
    ``139-1234-5678``, ``+86 139 1234 5678``, ``(0592) 1234567``) and in full-width digits
    (matched in NFKC, the original characters masked).  Left readable: dates (2026-12-01), short
    numbers (HTTP 503), registration numbers (XSE2612010000001), hex exchange ids."""
    folded, origin = _folded(text)
    spans = _secret_spans(folded, secrets)
    for candidate in _CANDIDATE.finditer(folded):  # a cheap first look: most text has no number
        start, end = candidate.span()
        found = candidate.group()
        if found.isdigit():
            if end - start >= 15:  # the commonest: an ID number as such
                spans.append((start, end))
                continue
            if end - start < 11 or (start and folded[start - 1].isascii() and folded[start - 1].isalpha()):
                continue  # too short for a phone, or a registration number's tail (XSE2612010000001)
        elif len(_SEPARATORS.sub("", found)) < 10:  # a date, a time: too few digits for any number
            continue
        for match in _NUMBERS.finditer(folded, start, end + 1):
            if match["groups"] is None:
                spans.append(match.span())
            else:
                spans.extend(_grouped(match["groups"], match.start("groups")))
    if not spans:
        return text
    if origin is not None:  # back to the original characters
        spans = [(origin[start], origin[end - 1] + 1) for start, end in spans]
    out: list[str] = []
    done = 0
    for start, end in _merged(spans):
        shown = unicodedata.normalize("NFKC", text[start:end]) if origin is not None else text[start:end]
        out += [text[done:start], mask(_SEPARATORS.sub("", shown) if _WRITTEN_NUMBER.fullmatch(shown) else shown)]
        done = end
    out.append(text[done:])
    return "".join(out)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans in order, overlapping ones joined: a number inside a secret is masked once."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def described(error: BaseException, secrets: Iterable[object] = ()) -> str:
    """What a log line says of an error that ended some work: an ybplug :class:`Error` is one line
    (its message is already fit for a log); anything else is a bug, whose whole traceback the
    log keeps so it can be fixed, scrubbed like any text from elsewhere."""
    if isinstance(error, Error):
        return str(error)
    return "a bug: " + scrub("".join(traceback.format_exception(error)).rstrip(), secrets)
