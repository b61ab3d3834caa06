"""QR decoding through EcTrans: ``host.decode_qr`` on the fake vendor library.

The test library (``fake_ectrans.c``, shipped with the sandbox) is compiled with ``cc`` into a
scratch folder.  Calls are sequential (one clerk scanning one code after another).

* thread backend: ``host.decode_qr`` with ``[voucher] backend = "thread"`` (which journals the
  request, with the code masked, and its outcome, and fires ``qr_decoded``) against a bare
  ``anyio.to_thread.run_sync`` loop over the same ctypes call (the same request bytes, one
  reused output buffer, no parsing);
* process backend: the same ``host.decode_qr`` with ``backend = "process"``, against the thread
  backend;
* the fake library sleeps 2 ms inside every call (its overlap detector), so the figures above are
  mostly that sleep.  The rows marked "no 2 ms sleep" use a copy of the library built without it,
  which shows ybplug's own cost per call; ``Voucher.decode`` alone separates the binding from
  the host's journaling.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

import common
from common import Row

from ybplug.voucher import Voucher, VoucherConfig, encode_request
from ybplug.config import Config, VoucherSection, WireConfig
from ybplug.host import Host
from ybplug.messages import QrRequest, QrRequestData

ORG_ID = "3502001000"
DISTRICT = "350200"
IDCODE = "9993604787698063769694000000"


def source() -> Path:
    try:
        from ybplug.sandbox import FAKE_ECTRANS_SOURCE

        return Path(FAKE_ECTRANS_SOURCE)
    except ImportError:
        return common.REPO / "tests" / "ectrans" / "fake_ectrans.c"


def build(folder: Path, *, sleep: bool = True) -> Path:
    """Compile the fake library (optionally without its 2 ms overlap-detection sleep)."""
    src = source()
    name = "libfake_ectrans.so" if sleep else "libfake_ectrans_nosleep.so"
    if not sleep:
        text = src.read_text()
        stripped, n = re.subn(r"\n    sleep_ms\(2\);\n", "\n", text)
        if n != 1:
            raise RuntimeError("could not find the 2 ms sleep in fake_ectrans.c")
        src = folder / "fake_ectrans_nosleep.c"
        src.write_text(stripped)
    target = folder / name
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise RuntimeError("no C compiler (cc) to build the fake EcTrans library")
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(target), str(src), "-lpthread"], check=True)
    return target


def request() -> QrRequest:
    return QrRequest(data=QrRequestData(org_id=ORG_ID, business_type="101", district_no=DISTRICT), idcode=IDCODE)


def host_config(folder: Path, library: Path, backend: str) -> Config:
    return Config(
        journal=str(folder / f"journal-{library.stem}-{backend}.db"),
        wire=WireConfig(url="http://127.0.0.1:9"),  # never used
        voucher=VoucherSection(library=str(library), backend=backend, org_id=ORG_ID, district_no=DISTRICT),
    )


async def host_loop(host: Host, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        identity = await host.decode_qr(business_type="101", idcode=IDCODE)
    elapsed = time.perf_counter() - started
    assert identity.id_number == IDCODE, "the library did not echo the code"
    return elapsed


async def voucher_loop(voucher: Voucher, calls: int) -> float:
    req = request()
    started = time.perf_counter()
    for _ in range(calls):
        identity = await voucher.decode(req)
    elapsed = time.perf_counter() - started
    assert identity.id_number == IDCODE
    return elapsed


def bare_function(library: Path) -> Any:
    function = ctypes.CDLL(str(library)).EcTrans
    function.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    function.restype = ctypes.c_int
    return function


async def bare_loop(function: Any, calls: int) -> float:
    payload = encode_request(request())
    output = ctypes.create_string_buffer(64 * 1024 + 4096)

    def call() -> int:
        return int(function(payload, output))

    started = time.perf_counter()
    for _ in range(calls):
        if await anyio.to_thread.run_sync(call) != 0:
            raise RuntimeError("EcTrans failed")
    elapsed = time.perf_counter() - started
    assert IDCODE.encode() in output.value
    return elapsed


async def measure(quick: bool = False) -> list[Row]:
    repeats = 3 if quick else 5
    calls = 40 if quick else 200
    fast_calls = 300 if quick else 1500
    rows: list[Row] = []
    with common.scratch() as folder:
        slow_lib = build(folder)
        fast_lib = build(folder, sleep=False)
        for library, n, label in ((slow_lib, calls, "test library"), (fast_lib, fast_calls, "test library, no 2 ms sleep")):
            bare = bare_function(library)
            async with (
                Host(host_config(folder, library, "thread"), entry_points=False, background=False) as thread_host,
                Host(host_config(folder, library, "process"), entry_points=False, background=False) as process_host,
                Voucher(VoucherConfig(library=library, backend="thread")) as voucher,
            ):
                await host_loop(thread_host, 10)
                await host_loop(process_host, 10)
                await voucher_loop(voucher, 10)
                await bare_loop(bare, 10)

                async def thread_side() -> float:
                    return n / await host_loop(thread_host, n)

                async def process_side() -> float:
                    return n / await host_loop(process_host, n)

                async def voucher_side() -> float:
                    return n / await voucher_loop(voucher, n)

                async def bare_side() -> float:
                    return n / await bare_loop(bare, n)

                if library == fast_lib:
                    th, pr, ba, vo = await common.ainterleaved(repeats, thread_side, process_side, bare_side, voucher_side)
                else:
                    th, pr, ba = await common.ainterleaved(repeats, thread_side, process_side, bare_side)
            rows.append(Row(
                f"host.decode_qr, thread backend ({label})", "calls/s", th,
                "anyio.to_thread.run_sync over the ctypes call", ba, target=0.8 if library == slow_lib else None,
                extra={"overhead_us": 1e6 * (1 / th.median - 1 / ba.median)},
            ))
            rows.append(Row(
                f"host.decode_qr, process backend ({label})", "calls/s", pr,
                "host.decode_qr, thread backend", th,
                extra={"overhead_us": 1e6 * (1 / pr.median - 1 / th.median)},
            ))
            if library == fast_lib:
                rows.append(Row(
                    f"Voucher.decode alone, thread backend ({label})", "calls/s", vo,
                    "anyio.to_thread.run_sync over the ctypes call", ba,
                    extra={"overhead_us": 1e6 * (1 / vo.median - 1 / ba.median)},
                ))
    for row in rows:
        row.note = f"{row.extra['overhead_us']:+.0f} µs a call against its baseline"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = common.run_async(lambda: measure(args.quick))
    print(common.table(rows))
    for row in rows:
        print(f"{row.name}: {row.note}")


if __name__ == "__main__":
    main()
