"""The sandbox's stand-in for the vendor's ``ylz-certificate.dll``: a small C library, built here.

Same signature as the real ``EcTrans`` (GBK JSON in, GBK JSON out), with modes (selected by an
``idcode`` of ``mode:NAME:ARG:TAIL`` or ``$FAKE_ECTRANS_MODE``) that hang, crash or answer badly,
for tests and the demo.  The C source is ``ybplug/fake_ectrans.c``, shipped as package data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


__all__ = ["FAKE_ECTRANS_SOURCE", "NoCompiler", "build_fake_ectrans"]
