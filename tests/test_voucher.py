"""ybplug.voucher against a C library of our own with EcTrans's signature (tests/ectrans).

The library is compiled once per session with the system compiler; the tests are skipped where
there is none.  Every behaviour runs on both backends, except the crashes: a segfault on the
thread backend would take pytest down with it, which is exactly the limit the process backend
exists for.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest
from support import SPEC_EXAMPLE_IDENTITY

from ybplug.voucher import (
    Voucher,
    VoucherBusy,
    VoucherCallFailed,
    VoucherConfig,
    VoucherCrashed,
    VoucherError,
    VoucherLibraryError,
    VoucherRefused,
    VoucherReplyUnreadable,
    VoucherRequestInvalid,
    VoucherTimeout,
    decode_reply,
    encode_request,
)
from ybplug.fields import InvalidMessage, wire_charset
from ybplug.messages import QrIdentity, QrRequest, QrRequestData

BUFFER = 8192
#: What a test treats as personal: the QR code's tail (echoed as idNo and inside ecToken).
TAIL = "Q3502041980010100017"
BACKENDS = ["thread", "process"]


@pytest.fixture(scope="session")
def fake(fake_library: Path) -> ctypes.CDLL:
    """The fake's counters, as seen by this process (and so by the thread backend)."""
    library = ctypes.CDLL(str(fake_library))
    library.FakeOverlaps.restype = ctypes.c_int
    library.FakeCalls.restype = ctypes.c_int
    library.FakeRelease.restype = None
    return library


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def configure(library: Path, backend: str, **overrides: object) -> VoucherConfig:
    settings: dict[str, object] = {"timeout": 1.0, "scan_timeout": 2.0, "buffer_size": BUFFER}
    settings.update(overrides)
    return VoucherConfig(library=library, backend=backend, **settings)  # type: ignore[arg-type]


def code(mode: str, arg: object = "", tail: str = TAIL) -> str:
    """An idcode that tells the fake how to behave."""
    return f"mode:{mode}:{arg}:{tail}"


def qr(idcode: str, operator_name: str = "李明") -> QrRequest:
    return QrRequest(
        idcode=idcode,
        data=QrRequestData(
            org_id="350200100011",
            business_type="101",
            district_no="350203",
            operator_id="A0002",
            operator_name=operator_name,
        ),
    )


async def settle(library: Path) -> None:
    """Wait until the shared library thread is no longer busy with a call a test gave up on.

    The thread backend shares one thread per library across Vouchers, so a hung call left by one
    test would make the next test's calls fail with VoucherBusy.
    """
    probe = Voucher(configure(library, "thread"))
    deadline = time.monotonic() + 5
    while True:
        try:
            await probe.decode(qr(code("ok")))
            return
        except VoucherBusy:
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.02)


@pytest.fixture
async def voucher(
    anyio_backend: str, fake_library: Path, fake: ctypes.CDLL, backend: str
) -> AsyncIterator[Voucher]:
    async with Voucher(configure(fake_library, backend)) as voucher:
        yield voucher
    fake.FakeRelease()
    await settle(fake_library)


# ---------------------------------------------------------------------------------------------
# Every mode on both backends


@pytest.mark.anyio
async def test_decode_returns_the_identity(voucher: Voucher) -> None:
    identity = await voucher.decode(qr(code("ok")))
    assert isinstance(identity, QrIdentity)
    assert identity.name == "张三"
    assert identity.id_number == TAIL  # the input arrived
    assert identity.ec_token == f"tok-{TAIL}"
    assert identity.insurance_division == "350203"  # districtNo of the request, echoed
    assert identity.id_type == "01"


@pytest.mark.anyio
async def test_the_library_serves_many_calls(voucher: Voucher) -> None:
    for n in range(20):
        identity = await voucher.decode(qr(code("ok", tail=f"T{n}")))
        assert identity.id_number == f"T{n}"


@pytest.mark.anyio
async def test_non_zero_return_is_call_failed_with_code(voucher: Voucher) -> None:
    with pytest.raises(VoucherCallFailed) as caught:
        await voucher.decode(qr(code("rc", 7)))
    assert caught.value.code == 7
    assert caught.value.cause == "网络连接失败"
    assert await voucher.decode(qr(code("ok")))


@pytest.mark.anyio
async def test_flag_zero_is_refused_with_cause(voucher: Voucher) -> None:
    with pytest.raises(VoucherRefused) as caught:
        await voucher.decode(qr(code("refuse")))
    assert caught.value.cause == "二维码已失效"
    assert "二维码已失效" in str(caught.value)


@pytest.mark.anyio
async def test_slow_call_within_timeout(voucher: Voucher) -> None:
    identity = await voucher.decode(qr(code("slow", 300)))
    assert identity.name == "张三"


@pytest.mark.anyio
async def test_trailing_comma_of_the_spec_example(voucher: Voucher) -> None:
    identity = await voucher.decode(qr(code("comma")))
    assert identity == SPEC_EXAMPLE_IDENTITY


@pytest.mark.anyio
async def test_name_outside_gbk_in_gb18030(voucher: Voucher) -> None:
    identity = await voucher.decode(qr(code("gb18030")))
    assert identity.name == "张\U00020bb7"  # 张𠮷
    assert identity.id_number == TAIL


@pytest.mark.anyio
async def test_reply_of_nearly_the_buffer_size(voucher: Voucher) -> None:
    identity = await voucher.decode(qr(code("big", BUFFER - 1)))  # NUL in the buffer's last byte
    assert identity.name == "张三"
    assert identity.id_number == TAIL  # written last: the whole reply was read


@pytest.mark.anyio
async def test_reply_past_the_buffer_is_reported_not_trusted(voucher: Voucher) -> None:
    with pytest.raises(VoucherReplyUnreadable, match=f"whole {BUFFER}-byte output buffer"):
        await voucher.decode(qr(code("big", BUFFER + 100)))  # lands in the guard zone
    assert (await voucher.decode(qr(code("ok")))).name == "张三"


@pytest.mark.parametrize("mode", ["garbage", "bom", "bomutf8", "bom18030", "numbers", "ctrl", "chatty"])
@pytest.mark.anyio
async def test_untidy_replies_are_read(voucher: Voucher, mode: str) -> None:
    identity = await voucher.decode(qr(code(mode)))
    assert identity.name == "张三"
    assert identity.id_number == TAIL


@pytest.mark.anyio
async def test_numbers_become_text(voucher: Voucher) -> None:
    identity = await voucher.decode(qr(code("numbers")))
    assert identity.insurance_division == "350200"
    assert identity.personal_code == "1010010101001"
    assert identity.card_number == ""  # null


@pytest.mark.parametrize("mode", ["notjson", "truncated"])
@pytest.mark.anyio
async def test_unreadable_replies(voucher: Voucher, mode: str) -> None:
    with pytest.raises(VoucherReplyUnreadable):
        await voucher.decode(qr(code(mode)))
    assert (await voucher.decode(qr(code("ok")))).name == "张三"


@pytest.mark.anyio
async def test_input_reaches_the_library_in_gbk(voucher: Voucher) -> None:
    # The fake refuses input carrying 李 in UTF-8; the operator's name 李明 must arrive as GBK.
    assert (await voucher.decode(qr(code("ok"), operator_name="李明"))).name == "张三"


# ---------------------------------------------------------------------------------------------
# Hangs, timeouts, crashes


@pytest.mark.parametrize("backend", ["process"])
@pytest.mark.anyio
async def test_hang_times_out_and_the_next_call_succeeds(voucher: Voucher) -> None:
    began = time.monotonic()
    with pytest.raises(VoucherTimeout) as caught:
        await voucher.decode(qr(code("hang")))
    elapsed = time.monotonic() - began
    assert 1.0 <= elapsed < 4.0  # the timeout, then a kill: not the hang itself (which never ends)
    assert caught.value.timeout == 1.0
    assert "killed" in str(caught.value)
    identity = await voucher.decode(qr(code("ok", tail="NEXT")))
    assert identity.id_number == "NEXT"


@pytest.mark.anyio
async def test_thread_backend_hang_fails_fast_until_the_call_returns(
    anyio_backend: str, fake_library: Path, fake: ctypes.CDLL
) -> None:
    async with Voucher(configure(fake_library, "thread", timeout=0.5)) as voucher:
        began = time.monotonic()
        with pytest.raises(VoucherTimeout, match="cannot be stopped in the thread backend"):
            await voucher.decode(qr(code("hang")))
        assert 0.5 <= time.monotonic() - began < 2.5  # the timeout, not the hang (which never ends)

        # The hung call still holds the library: the next caller learns it at once, and its call
        # never reaches the library.
        calls = fake.FakeCalls()
        began = time.monotonic()
        with pytest.raises(VoucherBusy, match="still busy with a call that timed out"):
            await voucher.decode(qr(code("ok")))
        assert time.monotonic() - began < 0.2
        assert fake.FakeCalls() == calls

        # Another Voucher on the same library is held off too: it shares the library thread.
        with pytest.raises(VoucherBusy):
            await Voucher(configure(fake_library, "thread")).decode(qr(code("ok")))

        # The daemon library thread is the only one left blocked: it cannot keep pytest alive.
        blocked = [t for t in threading.enumerate() if t.name == "ybplug-ectrans"]
        assert blocked and all(t.daemon for t in blocked)

        fake.FakeRelease()  # the hung call returns by itself...
        await settle(fake_library)
        identity = await voucher.decode(qr(code("ok", tail="NEXT")))  # ...and the library is free
        assert identity.id_number == "NEXT"


@pytest.mark.anyio
async def test_queued_callers_behind_a_hang_do_not_wait_forever(
    anyio_backend: str, fake_library: Path, fake: ctypes.CDLL, backend: str
) -> None:
    outcomes: list[type[BaseException] | str] = []
    subject = Voucher(configure(fake_library, backend, timeout=0.5))

    async def one(idcode: str) -> None:
        try:
            outcomes.append((await subject.decode(qr(idcode))).id_number)
        except VoucherError as exc:
            outcomes.append(type(exc))

    async with subject:
        began = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, code("hang"))
            await anyio.sleep(0.3)  # queued calls have 0.3 s left once the hang times out
            for _ in range(3):
                tg.start_soon(one, code("ok"))
        assert time.monotonic() - began < 3.0  # bounded by the timeout, not the hang (which never ends)
    fake.FakeRelease()
    await settle(fake_library)
    assert outcomes.count(VoucherTimeout) == 1
    if backend == "thread":
        assert outcomes.count(VoucherBusy) == 3
    else:  # the hung worker was killed; the queued calls ran on a fresh one
        assert outcomes.count(TAIL) == 3


@pytest.mark.parametrize("mode, signal_number", [("segv", 11), ("abort", 6)])
@pytest.mark.parametrize("backend", ["process"])
@pytest.mark.anyio
async def test_crash_kills_only_the_worker(voucher: Voucher, mode: str, signal_number: int) -> None:
    with pytest.raises(VoucherCrashed) as caught:
        await voucher.decode(qr(code(mode)))
    assert caught.value.signal == signal_number
    assert caught.value.exit_code == -signal_number
    assert "next call starts a new worker" in str(caught.value)
    identity = await voucher.decode(qr(code("ok", tail="NEXT")))
    assert identity.id_number == "NEXT"


@pytest.mark.anyio
async def test_empty_idcode_gets_the_scan_timeout(
    anyio_backend: str, fake_library: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # No idcode: the real library would open its scanning window, so the longer timeout applies.
    monkeypatch.setenv("FAKE_ECTRANS_MODE", "slow:400")  # read at each call, inherited by the worker
    async with Voucher(configure(fake_library, backend, timeout=0.2, scan_timeout=3.0)) as voucher:
        identity = await voucher.decode(qr(""))
        assert identity.name == "张三"
        with pytest.raises(VoucherTimeout, match="within 0.2 s"):
            await voucher.decode(qr(code("slow", 400)))
    monkeypatch.delenv("FAKE_ECTRANS_MODE")
    await settle(fake_library)


@pytest.mark.anyio
async def test_cancelled_call_does_not_desynchronise(voucher: Voucher, fake_library: Path) -> None:
    with anyio.move_on_after(0.1):
        await voucher.decode(qr(code("slow", 300, tail="SLOW")))
    if voucher.config.backend == "thread":
        await settle(fake_library)
    # The reply to the abandoned call must never be taken for this one's.
    assert (await voucher.decode(qr(code("ok", tail="FRESH")))).id_number == "FRESH"


# ---------------------------------------------------------------------------------------------
# Concurrency


@pytest.mark.anyio
async def test_concurrent_decodes_never_overlap(voucher: Voucher, fake: ctypes.CDLL) -> None:
    overlaps = fake.FakeOverlaps()
    results: dict[int, str] = {}

    async def one(n: int) -> None:
        results[n] = (await voucher.decode(qr(code("ok", tail=f"C{n}")))).id_number

    async with anyio.create_task_group() as tg:
        for n in range(50):
            tg.start_soon(one, n)
    # An overlapping call would have come back flag 0 "overlap" and raised VoucherRefused.
    assert results == {n: f"C{n}" for n in range(50)}
    assert fake.FakeOverlaps() == overlaps  # this process's counter (the thread backend's calls)


@pytest.mark.anyio
async def test_two_thread_vouchers_on_one_library_never_overlap(
    anyio_backend: str, fake_library: Path, fake: ctypes.CDLL
) -> None:
    overlaps = fake.FakeOverlaps()
    first = Voucher(configure(fake_library, "thread"))
    second = Voucher(configure(fake_library, "thread"))
    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(first.decode, qr(code("ok")))
            tg.start_soon(second.decode, qr(code("ok")))
    assert fake.FakeOverlaps() == overlaps


def test_the_overlap_detector_detects(fake: ctypes.CDLL) -> None:
    """Control: unserialised calls from several threads do overlap, so zero above means something."""
    overlaps = fake.FakeOverlaps()
    request = json.dumps({"idcode": code("ok"), "data": {}}).encode()

    def call() -> None:
        for _ in range(5):
            fake.EcTrans(ctypes.create_string_buffer(request), ctypes.create_string_buffer(BUFFER))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake.FakeOverlaps() > overlaps


# ---------------------------------------------------------------------------------------------
# Privacy


@pytest.mark.anyio
async def test_no_personal_data_in_errors_or_logs(
    voucher: Voucher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ybplug")
    secrets = [TAIL, f"tok-{TAIL}", "张三", "350204198001010001", "398397485fkjdk9sf92j3mlkf"]
    modes = ["ok", "comma", "rc", "refuse", "echo", "notjson", "truncated", ("big", BUFFER + 10)]
    if voucher.config.backend == "process":
        modes += ["segv", "hang"]
    messages = []
    for mode in modes:
        name, arg = mode if isinstance(mode, tuple) else (mode, "")
        idcode = code(name, arg)
        secrets.append(idcode)
        try:
            await voucher.decode(qr(idcode))
        except VoucherError as exc:
            messages.append(str(exc))
            messages.append(repr(exc))
    assert len(messages) >= 12
    seen = "\n".join(messages + [caplog.text])
    for secret in secrets:
        assert secret not in seen
    assert "refused the QR code: 无效的二维码:m***" in seen  # the echo mode's cause was shown, masked (a name's rule: not digits)


# ---------------------------------------------------------------------------------------------
# Loading problems


@pytest.mark.anyio
async def test_missing_library_names_the_path(anyio_backend: str, tmp_path: Path, backend: str) -> None:
    missing = tmp_path / "ylz-certificate.dll"
    voucher = Voucher(configure(missing, backend))
    with pytest.raises(VoucherLibraryError, match="not found") as caught:
        await voucher.start()
    assert str(missing) in str(caught.value)
    with pytest.raises(VoucherLibraryError):
        await voucher.decode(qr(code("ok")))
    await voucher.aclose()


@pytest.mark.anyio
async def test_library_without_ectrans(anyio_backend: str, tmp_path: Path, backend: str) -> None:
    other = tmp_path / "libother.so"
    source = tmp_path / "other.c"
    source.write_text("int NotEcTrans(void) { return 0; }\n")
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        pytest.skip("no C compiler")
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(other), str(source)], check=True)
    with pytest.raises(VoucherLibraryError, match="does not export EcTrans") as caught:
        async with Voucher(configure(other, backend)):
            pass
    assert str(other) in str(caught.value)


@pytest.mark.anyio
async def test_wrong_bitness_gets_a_hint(anyio_backend: str, fake_library: Path, tmp_path: Path, backend: str) -> None:
    # The same library with its ELF class byte flipped to 32-bit: the loader refuses it.
    elf = bytearray(fake_library.read_bytes())
    assert elf[:4] == b"\x7fELF" and elf[4] == 2
    elf[4] = 1
    thirty_two = tmp_path / "lib32.so"
    thirty_two.write_bytes(bytes(elf))
    with pytest.raises(VoucherLibraryError, match='use backend = "process" with a 32-bit python'):
        await Voucher(configure(thirty_two, backend)).start()


@pytest.mark.anyio
async def test_stdcall_exists_only_on_windows(anyio_backend: str, fake_library: Path, backend: str) -> None:
    with pytest.raises(VoucherLibraryError, match="only on Windows"):
        await Voucher(configure(fake_library, backend, convention="stdcall")).start()


@pytest.mark.anyio
async def test_missing_worker_interpreter(anyio_backend: str, fake_library: Path, tmp_path: Path) -> None:
    python = str(tmp_path / "python-32")
    with pytest.raises(VoucherLibraryError, match="cannot start the voucher worker"):
        await Voucher(configure(fake_library, "process", python=python)).start()


@pytest.mark.anyio
async def test_worker_runs_without_ybplug(anyio_backend: str, fake_library: Path, tmp_path: Path) -> None:
    # An interpreter with nothing installed (as a 32-bit Python beside a 64-bit HIS would be):
    # -I ignores PYTHONPATH and user site-packages; a venv without packages stands in for it.
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    python = bare / "bin" / "python"
    probe = subprocess.run([str(python), "-I", "-c", "import msgspec"], capture_output=True)
    assert probe.returncode != 0  # really bare
    async with Voucher(configure(fake_library, "process", python=str(python))) as voucher:
        assert (await voucher.decode(qr(code("ok")))).name == "张三"


@pytest.mark.anyio
async def test_worker_falls_back_to_the_module(
    anyio_backend: str, fake_library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without source files (a byte-code-only install) the worker is `python -m ybplug.voucher.worker`.
    import ybplug.voucher.process

    monkeypatch.setattr(ybplug.voucher.process, "worker_script", lambda: None)
    async with Voucher(configure(fake_library, "process")) as voucher:
        assert "-m" in ybplug.voucher.process.worker_command(voucher.config, None)
        assert (await voucher.decode(qr(code("chatty")))).name == "张三"
        with pytest.raises(VoucherCrashed):
            await voucher.decode(qr(code("abort")))
        assert (await voucher.decode(qr(code("ok")))).name == "张三"


# ---------------------------------------------------------------------------------------------
# Lifecycle and configuration


@pytest.mark.anyio
async def test_closed_voucher_refuses_calls(anyio_backend: str, fake_library: Path, backend: str) -> None:
    voucher = Voucher(configure(fake_library, backend))
    assert (await voucher.decode(qr(code("ok")))).name == "张三"  # started lazily
    await voucher.aclose()
    await voucher.aclose()  # idempotent
    with pytest.raises(VoucherError, match="closed"):
        await voucher.decode(qr(code("ok")))


@pytest.mark.anyio
async def test_close_during_a_hung_call(anyio_backend: str, fake_library: Path) -> None:
    voucher = Voucher(configure(fake_library, "process", timeout=5))
    errors: list[BaseException] = []

    async def hang() -> None:
        try:
            await voucher.decode(qr(code("hang")))
        except VoucherError as exc:
            errors.append(exc)

    began = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(hang)
        await anyio.sleep(0.3)
        await voucher.aclose()
    assert time.monotonic() - began < 2
    assert len(errors) == 1 and "closed" in str(errors[0])


@pytest.mark.parametrize(
    "overrides, problem",
    [
        ({"backend": "fork"}, "backend"),
        ({"convention": "fastcall"}, "convention"),
        ({"buffer_size": 100}, "buffer_size"),
        ({"timeout": 0}, "timeout"),
        ({"scan_timeout": -1}, "scan_timeout"),
    ],
)
def test_config_is_validated(overrides: dict[str, object], problem: str) -> None:
    settings: dict[str, object] = {"library": "ylz-certificate.dll", **overrides}
    with pytest.raises(ValueError, match=problem):
        VoucherConfig(**settings)  # type: ignore[arg-type]


def test_config_defaults() -> None:
    config = VoucherConfig(library=Path("ylz-certificate.dll"))
    assert config.path == "ylz-certificate.dll"
    assert config.buffer_size == 64 * 1024
    assert (config.timeout, config.scan_timeout) == (15.0, 120.0)
    assert config.calling_convention == ("stdcall" if sys.platform == "win32" else "cdecl")
    assert VoucherConfig(library="x", convention="cdecl").calling_convention == "cdecl"


# ---------------------------------------------------------------------------------------------
# Encoding and decoding, without a library


def test_request_is_gbk_json_with_wire_names() -> None:
    payload = encode_request(qr("abc"))
    assert "李明".encode("gbk") in payload
    document = json.loads(payload.decode("gbk"))
    assert document["idcode"] == "abc"
    assert document["data"]["orgId"] == "350200100011"
    assert document["data"]["operatorName"] == "李明"
    assert "officeId" not in document["data"]  # optional and absent


def test_empty_idcode_is_still_sent() -> None:
    assert json.loads(encode_request(qr("")).decode("gbk"))["idcode"] == ""


def test_idcode_outside_gbk_is_rejected_without_showing_it() -> None:
    with pytest.raises(VoucherRequestInvalid) as caught:
        encode_request(qr("SECRET-\U00020bb7"))
    assert isinstance(caught.value, InvalidMessage)
    assert caught.value.problems[0].field == "idcode"
    assert "U+20BB7" in str(caught.value) and "GBK" in str(caught.value)
    assert "SECRET" not in str(caught.value)


def test_field_outside_gbk_names_the_field() -> None:
    token = wire_charset.set("gb18030")  # the message accepts it; the library's input cannot
    try:
        request = qr("abc", operator_name="李\U00020bb7")
    finally:
        wire_charset.reset(token)
    with pytest.raises(VoucherRequestInvalid, match="data.operatorName 院内操作员工姓名: character '\U00020bb7'"):
        encode_request(request)


@pytest.mark.parametrize(
    "raw, cause",
    [
        # commas and brackets inside strings stay; only structural trailing commas go
        (b'{"flag":"0","cause":"a,}b,]",}', "a,}b,]"),
        (b'{"flag":"0","cause":"a,}b,]" , \r\n}', "a,}b,]"),
        # GBK characters whose second byte is } \\ ] (81 7D, 81 5C, 81 5D), a comma after them
        ('{"flag":"0","cause":"亇乗乚",}'.encode("gbk"), "亇乗乚"),
        # escapes, including an escaped quote before a comma
        (b'{"flag":"0","cause":"\\"a,\\"",}', '"a,"'),
    ],
)
def test_repairs_respect_strings(raw: bytes, cause: str) -> None:
    reply = decode_reply(raw + b"  trailing } junk")
    assert reply.flag == 0
    assert reply.cause == cause


def test_nested_trailing_commas_and_data_as_text() -> None:
    reply = decode_reply(b'\n\t{"flag":1,"cause":"","data":"{\\"idNo\\":\\"X\\",\\"userName\\":\\"A\\"}",}\x00\xff')
    assert reply.data is not None and reply.data.id_number == "X"
    assert decode_reply(b'{"flag":"1","data":{"idNo":"1",},"extra":[1,2,],}').data == QrIdentity(id_number="1")


@pytest.mark.parametrize(
    "raw, problem",
    [
        (b"", "empty"),
        (b"\x00{}", "empty"),
        (b"[1,2]", "no JSON object"),
        (b'{"cause":""}', "no flag"),
        (b'{"flag":"1","data":{"idNo":', "ends before"),
        (b'{"flag":"1","data":{"idNo":[1]}}', "shape"),
    ],
)
def test_unreadable_reply_messages(raw: bytes, problem: str) -> None:
    with pytest.raises(VoucherReplyUnreadable, match=problem):
        decode_reply(raw)


def test_every_error_is_a_voucher_error() -> None:
    errors: list[Callable[[], BaseException]] = [
        lambda: VoucherCallFailed(3),
        lambda: VoucherRefused(""),
        lambda: VoucherTimeout("t", 1.0),
        lambda: VoucherBusy("b"),
        lambda: VoucherCrashed("c", -11),
        lambda: VoucherReplyUnreadable("u"),
        lambda: VoucherLibraryError("l"),
        lambda: VoucherRequestInvalid("QrRequest", []),
    ]
    for make in errors:
        assert isinstance(make(), VoucherError)
    assert isinstance(VoucherTimeout("t", 1.0), TimeoutError)
    assert VoucherCrashed("c", -11).signal == 11
    assert VoucherCrashed("c", 3).signal is None


@pytest.mark.anyio
async def test_a_reply_nested_3000_deep_is_unreadable_on_every_backend(voucher: Voucher) -> None:
    # Issue "Hostile input": a well-formed 6 KB reply nested 3,000 deep raised RecursionError.
    with pytest.raises(VoucherReplyUnreadable, match="nests deeper than 32 levels"):
        await voucher.decode(qr(code("deep", 3000)))
    assert (await voucher.decode(qr(code("ok")))).name == "张三"


@pytest.mark.anyio
async def test_worker_environment_holds_no_secrets(
    anyio_backend: str, fake_library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker inherited YBPLUG_PWD (issue "Hostile input"): a vendor library has no business
    # with the centre's password, nor with anything named like a secret.
    monkeypatch.setenv("YBPLUG_PWD", "centre-password")
    monkeypatch.setenv("YBPLUG_USR", "H35020001")
    monkeypatch.setenv("HIS_DB_PASSWORD", "his-password")
    async with Voucher(configure(fake_library, "process")) as voucher:
        with pytest.raises(VoucherRefused) as seen:
            await voucher.decode(qr(code("environ")))
    assert seen.value.cause == "env: YBPLUG_PWD=unset YBPLUG_USR=unset HIS_DB_PASSWORD=unset PATH=set"


def test_worker_environment_withholds_every_common_secret_name_and_password_carrying_value() -> None:
    # A tester found HIS_DB_PASS, HIS_CREDENTIALS, *_API_KEY and DATABASE_URL (a password in it)
    # reaching the vendor library's process.
    from ybplug.voucher.process import worker_environment

    secrets = {
        "YBPLUG_PWD": "a", "DB_PASSWORD": "b", "HIS_API_TOKEN": "c", "MY_SECRET_KEY": "d", "PGPASSWORD": "e",
        "HIS_DB_PASS": "f", "AWS_SECRET_ACCESS_KEY": "g", "ORACLE_PWD": "h", "HIS_CREDENTIALS": "i",
        "PAYMENT_API_KEY": "j", "HIS_APIKEY": "k", "AWS_ACCESS_KEY_ID": "l", "db_pw": "m", "Github_Token": "n",
        "DATABASE_URL": "postgresql://his:url-secret@db/his",
        "HIS_DSN": "Driver={SQL Server};Server=db;Uid=his;Pwd=s3cret;",
        "HIS_CONN": "Server=db;Database=his;User Id=his;Password=s3cret",
    }
    ordinary = {
        "PATH": "C:\\Windows\\system32;C:\\Windows", "SystemRoot": "C:\\Windows", "TEMP": "C:\\Temp",
        "PROCESSOR_ARCHITECTURE": "AMD64", "KEYBOARD_LAYOUT": "us", "MONKEY": "1",
        "HIS_URL": "https://his.example/api", "HTTP_PROXY": "http://proxy:8080", "NO_PROXY": "localhost",
        "LANG": "zh_CN.GBK", "USERNAME": "his",
    }
    assert worker_environment({**secrets, **ordinary}) == ordinary


@pytest.mark.anyio
async def test_thread_backend_drops_calls_queued_behind_a_hang_when_it_times_out(
    anyio_backend: str, fake_library: Path, fake: ctypes.CDLL
) -> None:
    await settle(fake_library)
    subject = Voucher(configure(fake_library, "thread", timeout=1.0))
    failures: dict[str, tuple[type[BaseException], float]] = {}

    async def one(name: str, idcode: str) -> None:
        began = time.monotonic()
        try:
            await subject.decode(qr(idcode))
        except VoucherError as exc:
            failures[name] = (type(exc), time.monotonic() - began)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "hung", code("hang"))
        await anyio.sleep(0.4)
        tg.start_soon(one, "queued", code("ok"))
    assert failures["hung"][0] is VoucherTimeout
    kind, waited = failures["queued"]
    assert kind is VoucherBusy and waited < 0.9  # failed when the hang timed out, not at its own 1 s
    assert VoucherBusy.outcome == "not_delivered" and VoucherTimeout.outcome == "unknown"
    fake.FakeRelease()
    await settle(fake_library)



def test_the_toml_section_is_the_voucher_config(tmp_path: Path) -> None:
    # One struct, one set of defaults: [voucher] loads into the VoucherConfig that Voucher takes.
    from ybplug.config import Config, ConfigError

    file = tmp_path / "ybplug.toml"
    file.write_text('[voucher]\nlibrary = "C:/ylz/ylz-certificate.dll"\npython = "C:/Python311-32/python.exe"\n')
    section = Config.load(file).voucher
    assert isinstance(section, VoucherConfig)
    assert section == VoucherConfig(library="C:/ylz/ylz-certificate.dll", python="C:/Python311-32/python.exe")
    assert (section.backend, section.buffer_size, section.timeout) == ("process", 64 * 1024, 15.0)
    file.write_text('[voucher]\nlibrary = "x.dll"\nbuffer_size = 10\n')
    with pytest.raises(ConfigError, match=r"voucher.*buffer_size must be 1024 to 1048576 bytes, got 10"):
        Config.load(file)


_slow_python_calls = {"running": 0, "peak": 0}
_slow_python_lock = threading.Lock()


def slow_python_ectrans(in_data: bytes) -> tuple[int, bytes]:
    """A Python EcTrans that takes a second, counting how many of its calls overlap."""
    with _slow_python_lock:
        _slow_python_calls["running"] += 1
        _slow_python_calls["peak"] = max(_slow_python_calls["peak"], _slow_python_calls["running"])
    time.sleep(1.0)
    with _slow_python_lock:
        _slow_python_calls["running"] -= 1
    return 0, b"{}"


@pytest.mark.anyio
async def test_python_backend_never_runs_a_call_beside_one_that_timed_out() -> None:
    from ybplug.voucher.errors import VoucherBusy, VoucherTimeout
    from ybplug.voucher.pycall import PythonBackend

    backend = PythonBackend(VoucherConfig(library=f"{__name__}:slow_python_ectrans", backend="python"))
    with pytest.raises(VoucherTimeout):
        await backend.call(b"{}", 0.2, False)
    for _ in range(2):
        with pytest.raises(VoucherBusy, match="still busy"):
            await backend.call(b"{}", 0.2, False)
    assert _slow_python_calls["peak"] == 1
    await anyio.sleep(1.2)  # the abandoned call returns: the library answers again
    assert await backend.call(b"{}", 2.0, False) == (0, b"{}")


LEAKED_ID = "350203199001010026"


def leaky_python_ectrans(in_data: bytes) -> tuple[int, bytes]:
    """A Python EcTrans whose causes quote the request (QR code, operator) and the insured
    person (name and ID number), as a tester saw: "…refused the QR code: 陈静 3502…"."""
    request = json.loads(in_data.decode("gbk"))
    cause = (f"操作员{request['data']['operatorName']}：陈静 {LEAKED_ID} 二维码{request['idcode']}已过期，"
             "查询失败：请重新扫码")
    reply = json.dumps({"flag": 0, "cause": cause}, ensure_ascii=False).encode("gbk")
    return (9 if request["idcode"].startswith("rc") else 0), reply


@pytest.mark.anyio
@pytest.mark.parametrize("idcode", ["9993604787698063769694000000", "rc-9993604787698063769694000000"])
async def test_a_library_cause_is_scrubbed_of_the_request_and_of_a_name_beside_a_number(
    anyio_backend: str, idcode: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = VoucherConfig(library=f"{__name__}:leaky_python_ectrans", backend="python", timeout=5.0)
    with caplog.at_level(logging.DEBUG, logger="ybplug"):
        async with Voucher(config) as voucher:
            with pytest.raises((VoucherRefused, VoucherCallFailed)) as caught:
                await voucher.decode(qr(idcode, operator_name="李明"))
    said = str(caught.value)
    for secret in ("李明", "陈静", LEAKED_ID, idcode):
        assert secret not in said and secret not in caplog.text, secret
    assert f"陈* {LEAKED_ID[:4]}" in said and "操作员李*" in said
    assert "已过期" in said and "查询失败：请重新扫码" in said  # ordinary text left readable


def test_the_dotnet_path_scrubs_with_the_same_request_secrets_as_the_front() -> None:
    from ybplug.dotnet.ectrans import _secrets
    from ybplug.voucher.codec import encode_request, request_secrets

    request = qr("9993604787698063769694000000", operator_name="李明")
    assert _secrets(encode_request(request, "utf-8")) == request_secrets(request) == (request.idcode, "李明")
    assert request_secrets(qr("", operator_name="")) == ()  # scanning, no operator named
