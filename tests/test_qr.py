"""``host.decode_qr`` through the built-in voucher plugin and the sandbox's fake EcTrans library."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import ybplug
from ybplug.voucher import VoucherCrashed, VoucherRefused, VoucherTimeout
from ybplug.config import Config, VoucherSection, WireSection
from ybplug.hooks import hookimpl
from ybplug.host import Host
from ybplug.sandbox import Sandbox

IDCODE = "9993604787698063769694000000"  # the spec's example QR text: a secret


def qr_config(tmp_path: Path, sandbox: Sandbox, library: Path, backend: str = "process", **voucher: Any) -> Config:
    return Config(
        journal=str(tmp_path / "journal.db"),
        wire=WireSection(url=sandbox.url, usr="his", pwd="sandbox"),
        voucher=VoucherSection(
            library=str(library), backend=backend, org_id="3502001000", district_no="350200", **voucher  # type: ignore[arg-type]
        ),
    )


class Registers:
    """A hospital plugin registering the patient behind a scanned code."""

    def __init__(self) -> None:
        self.patients: list[tuple[ybplug.QrIdentity, str]] = []

    @hookimpl
    def qr_decoded(self, identity: ybplug.QrIdentity, request: ybplug.QrRequest) -> None:
        self.patients.append((identity, request.data.business_type))


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["thread", "process"])
async def test_decode_fires_qr_decoded_and_keeps_the_code_out_of_the_journal(
    tmp_path: Path, sandbox: Sandbox, fake_library: Path, backend: str
) -> None:
    desk = Registers()
    async with Host(qr_config(tmp_path, sandbox, fake_library, backend), plugins=[desk], entry_points=False) as host:
        identity = await host.decode_qr(business_type="101", idcode=IDCODE, operator_name="李明")
    assert identity.name == "张三" and identity.id_type == "01"
    assert desk.patients == [(identity, "101")]
    journal = b"".join(p.read_bytes() for p in tmp_path.glob("journal.db*"))
    assert IDCODE.encode() not in journal
    [(outcome, request)] = sqlite3.connect(tmp_path / "journal.db").execute(
        "SELECT outcome, request FROM exchanges WHERE funid = 'EcTrans'"
    ).fetchall()
    assert outcome == "ok" and b"9993" in request  # masked, not absent
    assert identity.ec_token.encode() not in journal


@pytest.mark.anyio
async def test_bad_requests_name_the_field_before_anything_is_called(
    tmp_path: Path, sandbox: Sandbox, fake_library: Path
) -> None:
    async with Host(qr_config(tmp_path, sandbox, fake_library), entry_points=False) as host:
        with pytest.raises(ybplug.InvalidMessage, match="businessType 用码业务类别: '104' is not a code"):
            await host.decode_qr(business_type="104", idcode=IDCODE)
        with pytest.raises(ybplug.InvalidMessage, match="orgId 机构ID"):
            await host.decode_qr(business_type="101", idcode=IDCODE, org_id="990000")
        with pytest.raises(ybplug.InvalidMessage, match="districtNo 参保地行政区划"):
            await host.decode_qr(business_type="101", idcode=IDCODE, district_no="35020")
        for scanned in ("\udcff", "99936\x00", "9" * 5000):  # a scanner's garbage: named, never a UnicodeError
            with pytest.raises(ybplug.InvalidMessage, match="idcode 二维码扫码结果"):
                await host.decode_qr(business_type="101", idcode=scanned)
        assert (await host.status())["births"] == {}


@pytest.mark.anyio
async def test_process_backend_survives_a_crash_and_a_hang_in_the_same_host(
    tmp_path: Path, sandbox: Sandbox, fake_library: Path
) -> None:
    config = qr_config(tmp_path, sandbox, fake_library, timeout=2.0)
    async with Host(config, entry_points=False) as host:
        with pytest.raises(VoucherCrashed):
            await host.decode_qr(business_type="101", idcode="mode:segv::Q1")
        assert (await host.decode_qr(business_type="101", idcode=IDCODE)).name == "张三"
        started = time.monotonic()
        with pytest.raises(VoucherTimeout):
            await host.decode_qr(business_type="101", idcode="mode:hang::Q2")
        assert time.monotonic() - started < 5.0  # the timeout, with room for a loaded machine
        assert (await host.decode_qr(business_type="110", idcode=IDCODE)).name == "张三"
        with pytest.raises(VoucherRefused):
            await host.decode_qr(business_type="101", idcode="mode:refuse::Q3")
    outcomes = [row[0] for row in sqlite3.connect(tmp_path / "journal.db").execute(
        "SELECT outcome FROM exchanges WHERE funid = 'EcTrans' ORDER BY id")]
    assert sorted(outcomes) == sorted(["failed", "ok", "unknown", "ok", "refused"])


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["thread", "process"])
async def test_fifty_concurrent_decodes_never_enter_the_library_together(
    tmp_path: Path, sandbox: Sandbox, fake_library: Path, backend: str
) -> None:
    # The fake answers flag 0 "overlap" (VoucherRefused) to a call that finds another in flight.
    async with Host(qr_config(tmp_path, sandbox, fake_library, backend, timeout=10.0), entry_points=False) as host:
        results: list[str] = []

        async def scan(n: int) -> None:
            results.append((await host.decode_qr(business_type="101", idcode=f"mode:ok::C{n}")).id_number)

        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(scan, n)
    assert sorted(results) == sorted(f"C{n}" for n in range(50))


def test_decode_command_prints_the_identity_masked(tmp_path: Path, fake_library: Path) -> None:
    (tmp_path / "ybplug.toml").write_text(
        f'[voucher]\nlibrary = "{fake_library}"\norg_id = "3502001000"\ndistrict_no = "350200"\n', encoding="utf-8"
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ybplug"), "decode", "--idcode", IDCODE, "--business-type", "101"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    assert "张*" in done.stdout and "ID number:" in done.stdout
    assert IDCODE not in done.stdout + done.stderr
    bad = subprocess.run(
        [str(Path(sys.executable).parent / "ybplug"), "decode", "--idcode", IDCODE, "--business-type", "104"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "businessType 用码业务类别" in bad.stderr.strip().splitlines()[-1]


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["thread", "process"])
async def test_a_decode_behind_a_hang_is_not_failed_for_the_hang(
    tmp_path: Path, sandbox: Sandbox, fake_library: Path, backend: str
) -> None:
    """Issue "Hostile input": a good decode queued behind a hung call waited its full timeout and
    failed with "worker did not load the library".  Now the thread backend fails it with
    VoucherBusy as soon as the hang times out (not at its own deadline), and the process backend
    runs it on a fresh worker once the hung one is killed; each journaled with its own outcome."""
    config = qr_config(tmp_path, sandbox, fake_library, backend, timeout=2.0)
    results: dict[str, object] = {}
    async with Host(config, entry_points=False) as host:
        await host.decode_qr(business_type="101", idcode="mode:ok::WARM")  # library loaded

        async def scan(name: str, idcode: str) -> None:
            began = time.monotonic()
            try:
                results[name] = (await host.decode_qr(business_type="101", idcode=idcode)).id_number
            except ybplug.Error as exc:
                results[name] = exc
            results[name + "_elapsed"] = time.monotonic() - began

        async with anyio.create_task_group() as tg:
            tg.start_soon(scan, "hung", "mode:hang::Q1")
            await anyio.sleep(1.0)  # the good call arrives half-way through the hang
            tg.start_soon(scan, "good", "mode:ok::Q2")
        if backend == "thread":
            await anyio.to_thread.run_sync(ctypes_release, fake_library)
    assert isinstance(results["hung"], VoucherTimeout)
    good = results["good"]
    if backend == "thread":
        assert isinstance(good, ybplug.Error) and type(good).__name__ == "VoucherBusy"
        assert "busy" in str(good) and "did not load" not in str(good)
        assert float(results["good_elapsed"]) < 1.9  # when the hang timed out, not its own 2 s
        expected = {"unknown", "not_delivered"}
    else:
        assert good == "Q2", good  # ran on a fresh worker
        assert float(results["good_elapsed"]) < 1.0 + 2.0 + 5.0  # the hang's rest, a new worker, its call
        expected = {"unknown", "ok"}
    rows = sqlite3.connect(tmp_path / "journal.db").execute(
        "SELECT outcome, error FROM exchanges WHERE funid = 'EcTrans' ORDER BY id").fetchall()
    assert {outcome for outcome, _ in rows[1:]} == expected
    assert not any("did not load" in (error or "") for _, error in rows)


def ctypes_release(library: Path) -> None:
    """Let this process's hung fake call (thread backend) return."""
    import ctypes

    ctypes.CDLL(str(library)).FakeRelease()
