"""The sandbox's stand-in for the vendor's ``ylz-certificate.dll``: a small C library, built here.

Same signature as the real ``EcTrans`` (GBK JSON in, GBK JSON out), with modes (selected by an
``idcode`` of ``mode:NAME:ARG:TAIL`` or ``$FAKE_ECTRANS_MODE``) that hang, crash or answer badly,
for tests and the demo.  The C source is ``ybplug/fake_ectrans.c``, shipped as package data.

Where no C compiler is (a Windows desk), :func:`fake_ectrans` answers the same way in pure Python
through the voucher's ``backend = "python"`` (:data:`FAKE_ECTRANS_FUNCTION`): the normal answers
(``ok``, ``rc``, ``refuse``, ``echo``, ``slow``, ``comma``, ``gb18030``, ``numbers``, ``notjson``),
not the crashes and hangs, which need the real C library and the process backend.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ybplug.sandbox.centre import SandboxError

#: Source of a test EcTrans library with the vendor's signature and selectable failure modes.
FAKE_ECTRANS_SOURCE = Path(__file__).resolve().parent.parent / "fake_ectrans.c"


class NoCompiler(SandboxError):
    """No C compiler to build the fake EcTrans library."""


def build_fake_ectrans(directory: str | Path) -> Path:
    """Compile the fake EcTrans library (``fake_ectrans.c``) into ``directory``; returns its path.

    Needs ``cc`` (or ``$CC``); POSIX only.
    """
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None or sys.platform == "win32":
        raise NoCompiler("no C compiler (cc) to build the fake EcTrans library")
    target = Path(directory) / "libfake_ectrans.so"
    target.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(target), str(FAKE_ECTRANS_SOURCE), "-lpthread"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise NoCompiler(f"building the fake EcTrans library failed: {done.stderr.strip()[:500]}")
    return target


#: ``[voucher] library`` for the pure-Python fake, with ``backend = "python"``.
FAKE_ECTRANS_FUNCTION = "ybplug.sandbox.ectrans:fake_ectrans"

# The texts the C library writes, as Python strings (it writes them in GBK).
_NETWORK_FAILED = "网络连接失败"
_CODE_EXPIRED = "二维码已失效"
_BAD_CODE = "无效的二维码:"
_SPEC_EXAMPLE = (
    '{\n    "flag": "1",\n    "cause": "",\n    "data": {\n        "ecToken": "398397485fkjdk9sf92j3mlkf",\n'
    '        "idNo": "350204198001010001",\n        "idType": "01",\n        "userName": "张三",\n'
    '        "insuOrg": "350000",\n        "aaz500": "K001934831",\n        "id0000": "1010010101001",\n    }\n}'
)


def fake_ectrans(in_data: bytes) -> tuple[int, bytes]:
    """``EcTrans`` in Python: GBK JSON in, ``(return code, GBK JSON out)``, as ``fake_ectrans.c``
    answers when it answers normally (same ``mode:NAME:ARG:TAIL`` idcodes, same
    ``$FAKE_ECTRANS_MODE``, same texts), so a test written against one passes against the other."""
    if "李".encode() in in_data:
        return 0, _refused("inData is not GBK")
    try:
        request = json.loads(in_data.decode("gbk"))
    except (UnicodeDecodeError, ValueError):
        request = {}
    idcode = str(request.get("idcode") or "") if isinstance(request, dict) else ""
    data = request.get("data") if isinstance(request, dict) else None
    district = str(data.get("districtNo") or "") if isinstance(data, dict) else ""
    name, arg, tail = _choose(idcode)
    if name == "rc":
        return (arg if arg is not None else 5), _gbk({"flag": "0", "cause": _NETWORK_FAILED})
    if name == "refuse":
        return 0, _refused(_CODE_EXPIRED)
    if name == "echo":
        return 0, _gbk({"flag": "0", "cause": _BAD_CODE + idcode})
    if name == "comma":
        return 0, _SPEC_EXAMPLE.encode("gbk")
    if name == "gb18030":
        return 0, _ok(tail, district, "张𠮷")  # 𠮷 is outside GBK: GB18030's four bytes, as the C library
    if name == "numbers":
        text = ('{"flag":1,"cause":null,"data":{"ecToken":"tok-%s","idNo":"%s","idType":"01","userName":"张三",'
                '"insuOrg":350200,"aaz500":null,"id0000":1010010101001}}') % (tail, tail)
        return 0, text.encode("gbk", "replace")
    if name == "notjson":
        return 0, b"ERROR 503: voucher service unavailable"
    if name == "slow":
        time.sleep((arg if arg is not None else 300) / 1000)
    elif name != "ok":
        return 0, _refused(f"mode {name} needs the C fake library (build_fake_ectrans)")
    return 0, _ok(tail, district, "张三")


def _choose(idcode: str) -> tuple[str, int | None, str]:
    if idcode.startswith("mode:"):
        name, _, rest = idcode[5:].partition(":")
        arg_text, _, tail = rest.partition(":")
        return name, int(arg_text) if arg_text.isdigit() else None, tail
    name, _, arg_text = os.environ.get("FAKE_ECTRANS_MODE", "").partition(":")
    return name or "ok", int(arg_text) if arg_text.isdigit() else None, idcode


def _gbk(document: dict[str, object]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("gb18030")


def _refused(cause: str) -> bytes:
    return _gbk({"flag": "0", "cause": cause, "data": None})


def _ok(tail: str, district: str, name: str) -> bytes:
    return _gbk({
        "flag": "1", "cause": "",
        "data": {"ecToken": f"tok-{tail}", "idNo": tail, "idType": "01", "userName": name,
                 "insuOrg": district or "350200", "aaz500": "K001934831", "id0000": "1010010101001"},
    })


__all__ = ["FAKE_ECTRANS_FUNCTION", "FAKE_ECTRANS_SOURCE", "NoCompiler", "build_fake_ectrans", "fake_ectrans"]
