"""The Windows side of EcTrans, as far as a Linux machine can check it (issue "Windows").

``ybplug/fake_ectrans.c`` is cross-built with MinGW-w64 into a 32-bit and a 64-bit DLL; the tests
read what those real PE files export and which machine they are built for, and check that the
binding looks up the names such a DLL really exports and refuses a DLL of the other bitness with
a clear message, from the PE header, before loading it.  Without the cross compilers the tests
skip, except under ``CI=true`` (CI installs gcc-mingw-w64-x86-64 and gcc-mingw-w64-i686).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ybplug.voucher import Voucher, VoucherConfig, VoucherLibraryError
from ybplug.voucher import worker
from ybplug.voucher.worker import EXPORT_NAMES, check_bitness, load_ectrans, pe_machine

SOURCE = Path(worker.__file__).resolve().parent.parent / "fake_ectrans.c"
COMPILERS = {32: "i686-w64-mingw32-gcc", 64: "x86_64-w64-mingw32-gcc"}
OBJDUMP = "x86_64-w64-mingw32-objdump"


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the Windows DLL tests: apt-get install gcc-mingw-w64-x86-64 gcc-mingw-w64-i686)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def dlls(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """fake_ectrans.c built as a 32-bit and a 64-bit Windows DLL."""
    folder = tmp_path_factory.mktemp("windows")
    built: dict[int, Path] = {}
    for bits, compiler in COMPILERS.items():
        if shutil.which(compiler) is None:
            unavailable(f"no {compiler}: apt-get install gcc-mingw-w64-x86-64 gcc-mingw-w64-i686")
        target = folder / f"fake_ectrans{bits}.dll"
        subprocess.run([compiler, "-shared", "-O2", "-o", str(target), str(SOURCE)], check=True, capture_output=True)
        built[bits] = target
    return built


def exported(dll: Path) -> set[str]:
    """The names in a DLL's export table, as objdump reads them."""
    if shutil.which(OBJDUMP) is None:
        unavailable(f"no {OBJDUMP} (binutils-mingw-w64)")
    dump = subprocess.run([OBJDUMP, "-p", str(dll)], check=True, capture_output=True, text=True).stdout
    table = dump.split("[Ordinal/Name Pointer] Table", 1)[1]
    return set(re.findall(r"^\s*\[\s*\d+\]\s+(\S+)$", table.split("\n\n", 1)[0], re.MULTILINE))


def test_the_binding_looks_up_the_names_real_dlls_export(dlls: dict[int, Path]) -> None:
    assert exported(dlls[64]) >= {"EcTrans", "FakeCalls", "FakeRelease"}
    assert "EcTrans" in EXPORT_NAMES
    # 32-bit stdcall: MinGW exports it decorated (without --kill-at), MSVC as _EcTrans@8.
    names32 = exported(dlls[32])
    assert "EcTrans@8" in names32 and "EcTrans" not in names32
    assert names32 & set(EXPORT_NAMES) == {"EcTrans@8"}


def test_pe_header_gives_the_machine_and_bitness(dlls: dict[int, Path], fake_library: Path, tmp_path: Path) -> None:
    assert pe_machine(str(dlls[32])) == (0x014C, "I386", 32)
    assert pe_machine(str(dlls[64])) == (0x8664, "AMD64", 64)
    assert pe_machine(str(fake_library)) is None  # an ELF shared object
    text = tmp_path / "notes.dll"
    text.write_text("MZ but nothing else")
    assert pe_machine(str(text)) is None
    assert pe_machine(str(tmp_path / "missing.dll")) is None


def test_a_dll_of_the_other_bitness_is_refused_before_loading(dlls: dict[int, Path]) -> None:
    with pytest.raises(OSError, match=r"is a 32-bit DLL \(I386\) and this Python is 64-bit: .* set python in \[voucher\] to a 32-bit Python"):
        load_ectrans(str(dlls[32]), "cdecl", bits=64)
    with pytest.raises(OSError, match=r"is a 64-bit DLL \(AMD64\) and this Python is 32-bit"):
        check_bitness(str(dlls[64]), 32)
    check_bitness(str(dlls[64]), 64)  # a match passes


@pytest.mark.anyio
async def test_the_process_backend_names_the_mismatch(anyio_backend: str, dlls: dict[int, Path]) -> None:
    # This machine's Python is 64-bit: the 32-bit DLL is refused by the worker, from its header.
    config = VoucherConfig(library=str(dlls[32]), backend="process", timeout=5.0)
    with pytest.raises(VoucherLibraryError, match=r"32-bit DLL \(I386\) and this Python is 64-bit"):
        await Voucher(config).start()


def test_the_worker_is_python_38_code() -> None:
    # A 32-bit Python beside the HIS may be an old one: the worker keeps to Python 3.8 grammar.
    source = Path(worker.__file__).read_text(encoding="utf-8")
    ast.parse(source, feature_version=(3, 8))
    assert "ybplug" not in {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
