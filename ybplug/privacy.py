"""Masking of personal data for anything a person or a log may read.

ID numbers, names, phone numbers, QR tokens and passwords must never reach a log line in the
clear.  Messages mask themselves in ``repr``; log calls and the CLI go through :func:`mask`.
"""

from __future__ import annotations

import re
import traceback
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
_NUMBER_LABELS = "身份证号码|身份证号|身份证|证件号码|证件号|证号|手机号码|手机号|手机|电话号码|电话|号码"
#: A run of 2 to 4 Chinese characters of its own (label aside), then at most two spaces or
#: brackets or colons, then an ID or phone number: how a library writes "陈静 3502…".
_NAME_BESIDE_NUMBER = re.compile(
    rf"(?<![{_CJK}])(?:{_NAME_LABELS})?(?P<name>[{_CJK}]{{2,4}})(?:{_NUMBER_LABELS})?"
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


def scrub(text: str, secrets: Iterable[object] = ()) -> str:
    """Text from elsewhere (a centre's cause, a plugin's error, a library's message) made fit for
    a log line: each of ``secrets`` (the personal values of the record at hand: names, a QR code)
    masked wherever it appears, then ID and phone numbers masked.  The one scrubber of ybplug."""
    for secret in sorted({str(s) for s in secrets if s is not None and str(s)}, key=len, reverse=True):
        text = text.replace(secret, mask(secret))
    return _NUMBER_LIKE.sub(lambda m: mask(m.group()), text)


def described(error: BaseException, secrets: Iterable[object] = ()) -> str:
    """What a log line says of an error that ended some work: an ybplug :class:`Error` is one line
    (its message is already fit for a log); anything else is a bug, whose whole traceback the
    log keeps so it can be fixed, scrubbed like any text from elsewhere."""
    if isinstance(error, Error):
        return str(error)
    return "a bug: " + scrub("".join(traceback.format_exception(error)).rstrip(), secrets)
