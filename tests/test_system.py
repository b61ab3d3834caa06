"""The platform layer (``ybplug.system``) on both platforms: the POSIX branches for real, the
Windows branches with the platform's functions substituted (no Windows machine runs the tests),
and ``ybplug run`` stopping on a signal as a service manager sends it."""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from ybplug import system
from ybplug.config import Config

YBPLUG = str(Path(sys.executable).parent / "ybplug")
FAKE_SIGBREAK = 21  # its number on Windows


# --- process_alive -----------------------------------------------------------------------------


def test_process_alive_on_posix_tells_a_live_process_from_a_gone_one() -> None:
    assert system.process_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process now
    assert not system.process_alive(child.pid)
    assert not system.process_alive(0) and not system.process_alive(-1)  # "my group", "everyone"


class FakeKernel32:
    """kernel32 as process_alive uses it: OpenProcess, GetExitCodeProcess, CloseHandle."""

    def __init__(self, *, handle: int = 0, last_error: int = 0, exit_code: int | None = None) -> None:
        self.handle, self.last_error, self.exit_code = handle, last_error, exit_code
        self.opened: list[tuple[int, bool, int]] = []
        self.closed: list[int] = []
        outer = self

        def open_process(access: int, inherit: bool, pid: int) -> int:
            outer.opened.append((access, inherit, pid))
            return outer.handle

        def get_exit_code_process(handle: int, code: Any) -> bool:
            if outer.exit_code is None:
                return False
            code._obj.value = outer.exit_code  # what the API writes through the pointer
            return True

        def close_handle(handle: int) -> bool:
            outer.closed.append(handle)
            return True

        # plain functions, so process_alive can set argtypes/restype on them as on ctypes functions
        self.OpenProcess = open_process
        self.GetExitCodeProcess = get_exit_code_process
        self.CloseHandle = close_handle


@pytest.fixture
def windows_kernel32(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeKernel32]:
    def install(**behaviour: Any) -> FakeKernel32:
        kernel32 = FakeKernel32(**behaviour)

        def windll(name: str, use_last_error: bool = False) -> FakeKernel32:
            assert name == "kernel32" and use_last_error  # GetLastError read the reliable way
            return kernel32

        monkeypatch.setattr(sys, "platform", "win32")
        monkeypatch.setattr(ctypes, "WinDLL", windll, raising=False)
        monkeypatch.setattr(ctypes, "get_last_error", lambda: kernel32.last_error, raising=False)
        monkeypatch.setattr(os, "kill", lambda *a: pytest.fail("os.kill on Windows terminates the process"))
        return kernel32

    return install


def test_process_alive_on_windows_asks_openprocess_and_closes_the_handle(
    windows_kernel32: Callable[..., FakeKernel32],
) -> None:
    running = windows_kernel32(handle=0x1C4, exit_code=259)  # STILL_ACTIVE
    assert system.process_alive(4242)
    assert running.opened == [(0x1000, False, 4242)]  # PROCESS_QUERY_LIMITED_INFORMATION
    assert running.closed == [0x1C4]

    exited = windows_kernel32(handle=0x1C8, exit_code=0)  # a handle to a process that has ended
    assert not system.process_alive(4242)
    assert exited.closed == [0x1C8]


def test_process_alive_on_windows_reads_why_openprocess_failed(windows_kernel32: Callable[..., FakeKernel32]) -> None:
    windows_kernel32(handle=0, last_error=87)  # ERROR_INVALID_PARAMETER: no such process
    assert not system.process_alive(4242)
    windows_kernel32(handle=0, last_error=5)  # ERROR_ACCESS_DENIED: the service's worker, seen by a clerk
    assert system.process_alive(4242)
    unsure = windows_kernel32(handle=0x1CC, exit_code=None)  # GetExitCodeProcess failed
    assert system.process_alive(4242) and unsure.closed == [0x1CC]


# --- private files and folders ----------------------------------------------------------------


def test_private_dir_and_file_on_posix_close_what_ybplug_creates_only(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir(mode=0o755)
    os.chmod(tmp_path / "shared", 0o755)
    system.private_dir(tmp_path / "shared" / "ybplug" / "logs")
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o755  # existed: the owner's choice
    assert stat.S_IMODE((tmp_path / "shared" / "ybplug").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "shared" / "ybplug" / "logs").stat().st_mode) == 0o700
    (tmp_path / "journal.db").write_text("", encoding="utf-8")
    os.chmod(tmp_path / "journal.db", 0o644)
    system.private_file(tmp_path / "journal.db")
    assert stat.S_IMODE((tmp_path / "journal.db").stat().st_mode) == 0o600


SID = "S-1-5-21-1004336348-1177238915-682003330-1001"  # the current user, as the token says
FOLDER_SDDL = f"D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;{SID})"
FILE_SDDL = f"D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;{SID})"
SET_DACL = 0x80000004  # PROTECTED_DACL_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION


class FakeSecurity:
    """advapi32 and kernel32 as the private DACL code uses them: the token's user, the SDDL
    converted, the DACL set; ``applied`` holds (path, object type, flags, the SDDL it came from)."""

    DESCRIPTOR, DACL, TOKEN = 0x5D00, 0xDAC0, 0x70C0

    def __init__(self, *, set_status: int = 0, convert_error: int = 0, last_error: int = 0) -> None:
        self.set_status, self.convert_error, self.last_error = set_status, convert_error, last_error
        self.converted: list[tuple[str, int]] = []
        self.applied: list[tuple[str, int, int, str]] = []
        self.freed: list[int | None] = []
        self.closed: list[object] = []
        self._sid = ctypes.create_unicode_buffer(SID)
        outer = self

        def open_process_token(process: int, access: int, token: Any) -> bool:
            assert access == 0x0008  # TOKEN_QUERY, no more
            token._obj.value = outer.TOKEN
            return True

        def get_token_information(token: Any, kind: int, buffer: Any, size: int, returned: Any) -> bool:
            assert token.value == outer.TOKEN and kind == 1 and size >= 76  # TokenUser; room for the largest SID
            return True

        def convert_sid(sid: Any, out: Any) -> bool:
            out._obj.value = ctypes.addressof(outer._sid)
            return True

        def convert_sddl(sddl: str, revision: int, out: Any, size: Any) -> bool:
            outer.converted.append((sddl, revision))
            if outer.convert_error:
                outer.last_error = outer.convert_error
                return False
            out._obj.value = outer.DESCRIPTOR
            return True

        def get_dacl(descriptor: Any, present: Any, dacl: Any, defaulted: Any) -> bool:
            assert descriptor.value == outer.DESCRIPTOR
            present._obj.value, dacl._obj.value = 1, outer.DACL
            return True

        def set_named_security_info(name: str, kind: int, flags: int, owner: Any, group: Any, dacl: Any, sacl: Any) -> int:
            assert owner is None and group is None and sacl is None and dacl.value == outer.DACL
            outer.applied.append((name, kind, flags, outer.converted[-1][0]))
            return outer.set_status

        def local_free(pointer: Any) -> None:
            outer.freed.append(pointer.value)

        self.OpenProcessToken = open_process_token
        self.GetCurrentProcess = lambda: -1
        self.GetTokenInformation = get_token_information
        self.ConvertSidToStringSidW = convert_sid
        self.ConvertStringSecurityDescriptorToSecurityDescriptorW = convert_sddl
        self.GetSecurityDescriptorDacl = get_dacl
        self.SetNamedSecurityInfoW = set_named_security_info
        self.LocalFree = local_free
        self.CloseHandle = lambda handle: outer.closed.append(handle) or True


@pytest.fixture
def windows_security(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeSecurity]]:
    def install(**behaviour: Any) -> FakeSecurity:
        fake = FakeSecurity(**behaviour)

        def windll(name: str, use_last_error: bool = False) -> FakeSecurity:
            assert name in ("advapi32", "kernel32") and use_last_error
            return fake

        monkeypatch.setattr(sys, "platform", "win32")
        monkeypatch.setattr(ctypes, "WinDLL", windll, raising=False)
        monkeypatch.setattr(ctypes, "get_last_error", lambda: fake.last_error, raising=False)
        monkeypatch.setattr(os, "chmod", lambda *a: pytest.fail("chmod on Windows only toggles read-only"))
        system._windows_user_sid.cache_clear()
        return fake

    yield install
    system._windows_user_sid.cache_clear()


def test_private_dir_on_windows_protects_each_folder_it_creates_for_system_admins_and_this_user(
    tmp_path: Path, windows_security: Callable[..., FakeSecurity]
) -> None:
    # It did nothing on Windows: %PROGRAMDATA%\ybplug inherited BUILTIN\Users' read access.
    security = windows_security()
    (tmp_path / "ProgramData").mkdir()
    system.private_dir(tmp_path / "ProgramData" / "ybplug" / "logs")
    assert security.applied == [  # outermost first; ProgramData existed: left as it was
        (str(tmp_path / "ProgramData" / "ybplug"), 1, SET_DACL, FOLDER_SDDL),  # 1: SE_FILE_OBJECT
        (str(tmp_path / "ProgramData" / "ybplug" / "logs"), 1, SET_DACL, FOLDER_SDDL),
    ]
    assert [revision for _, revision in security.converted] == [1, 1]  # SDDL_REVISION_1
    assert security.freed == [ctypes.addressof(security._sid)] + [FakeSecurity.DESCRIPTOR] * 2  # LocalFree each
    assert security.closed  # the token's handle
    system.private_dir(tmp_path / "ProgramData" / "ybplug" / "logs")  # all there: nothing to do
    assert len(security.applied) == 2


def test_private_file_on_windows_protects_the_file_whatever_its_folder_passes_on(
    tmp_path: Path, windows_security: Callable[..., FakeSecurity]
) -> None:
    security = windows_security()
    (tmp_path / "journal.db").write_text("", encoding="utf-8")
    system.private_file(tmp_path / "journal.db")
    system.private_file(tmp_path / "journal.db-wal")  # not there: nothing to do
    assert security.applied == [(str(tmp_path / "journal.db"), 1, SET_DACL, FILE_SDDL)]


def test_the_sddl_is_protected_and_names_only_system_admins_and_the_user() -> None:
    assert system.windows_private_sddl("S-1-5-18", container=True) == (
        "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;S-1-5-18)"
    )
    assert system.windows_private_sddl(SID, container=False) == FILE_SDDL


def test_a_dacl_windows_refuses_is_one_clear_error_not_silence(
    tmp_path: Path, windows_security: Callable[..., FakeSecurity]
) -> None:
    security = windows_security(set_status=5)  # ERROR_ACCESS_DENIED
    with pytest.raises(system.PrivacyError) as refused:
        system.private_dir(tmp_path / "ybplug")
    assert isinstance(refused.value, PermissionError) and refused.value.filename == str(tmp_path / "ybplug")
    assert refused.value.strerror == (
        "cannot make it private to SYSTEM, Administrators and this user: SetNamedSecurityInfoW failed (Windows error 5)"
    )
    assert security.freed[-1] == FakeSecurity.DESCRIPTOR  # freed all the same
    from ybplug.errors import Error

    assert isinstance(refused.value, Error)  # one line from the CLI where nothing else catches it
    assert str(refused.value) == f"{tmp_path / 'ybplug'}: {refused.value.strerror}"

    windows_security(convert_error=1336)  # ERROR_INVALID_ACL
    (tmp_path / "journal.db").write_text("", encoding="utf-8")
    with pytest.raises(system.PrivacyError, match=r"ConvertStringSecurityDescriptorToSecurityDescriptorW failed \(Windows error 1336\)"):
        system.private_file(tmp_path / "journal.db")


def test_the_log_file_on_windows_is_private_and_so_is_each_file_after_a_rollover(
    tmp_path: Path, windows_security: Callable[..., FakeSecurity]
) -> None:
    from ybplug.logfile import PrivateRotatingFileHandler

    security = windows_security()
    handler = PrivateRotatingFileHandler(tmp_path / "logs" / "ybplug.log", max_bytes=200, backups=2)
    try:
        for n in range(8):
            handler.emit(logging.LogRecord("ybplug", logging.INFO, __file__, 1, "line %d " + "x" * 60, (n,), None))
    finally:
        handler.close()
    assert (tmp_path / "logs" / "ybplug.log.1").exists()  # it did roll over
    folder = [entry for entry in security.applied if entry[3] == FOLDER_SDDL]
    files = {entry[0] for entry in security.applied if entry[3] == FILE_SDDL}
    assert folder == [(str(tmp_path / "logs"), 1, SET_DACL, FOLDER_SDDL)]
    assert files == {str(tmp_path / "logs" / "ybplug.log")}
    reopened = [entry for entry in security.applied if entry[0] == str(tmp_path / "logs" / "ybplug.log")]
    assert len(reopened) >= 3  # created, then every new file after a rollover


def test_a_log_file_whose_dacl_fails_is_refused_with_the_reason(
    tmp_path: Path, windows_security: Callable[..., FakeSecurity]
) -> None:
    from ybplug.logfile import PrivateRotatingFileHandler

    windows_security(set_status=1307)  # ERROR_INVALID_OWNER
    with pytest.raises(OSError) as refused:
        PrivateRotatingFileHandler(tmp_path / "ybplug.log", max_bytes=200, backups=2)
    assert "SetNamedSecurityInfoW failed (Windows error 1307)" in str(refused.value.strerror)


# --- stopping ----------------------------------------------------------------------------------


def test_the_stop_signals_of_each_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    assert system.stop_signals() == [signal.SIGINT, signal.SIGTERM]
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(signal, "SIGBREAK", FAKE_SIGBREAK, raising=False)
    assert system.stop_signals() == [signal.SIGINT, FAKE_SIGBREAK]


@pytest.fixture
def handlers_kept() -> Iterator[None]:
    """Whatever a test does to SIGINT/SIGTERM, pytest gets its own handlers back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@pytest.mark.anyio
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_wait_for_stop_on_posix_returns_on_a_real_signal_and_puts_the_handlers_back(
    signum: signal.Signals, handlers_kept: None
) -> None:
    before = signal.getsignal(signum)
    result: list[str] = []

    async def waiter() -> None:
        result.append(await system.wait_for_stop())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            while signal.getsignal(signum) is before:  # not yet listening: the signal would kill pytest
                await anyio.sleep(0.01)
            threading.Thread(target=os.kill, args=(os.getpid(), signum)).start()  # lands on any thread
    assert result == [signum.name]
    assert signal.getsignal(signum) is before


class FakeSignals:
    """``signal.signal``/``getsignal`` as Windows has them, recording what is installed."""

    def __init__(self) -> None:
        self.handlers: dict[int, Any] = {signal.SIGINT: signal.default_int_handler, FAKE_SIGBREAK: signal.SIG_DFL}

    def signal(self, signum: int, handler: Any) -> Any:
        previous, self.handlers[signum] = self.handlers.get(signum), handler
        return previous

    def getsignal(self, signum: int) -> Any:
        return self.handlers.get(signum)


@pytest.fixture
def windows_signals(monkeypatch: pytest.MonkeyPatch) -> FakeSignals:
    fake = FakeSignals()
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(signal, "SIGBREAK", FAKE_SIGBREAK, raising=False)
    monkeypatch.setattr(signal, "signal", fake.signal)
    monkeypatch.setattr(signal, "getsignal", fake.getsignal)
    return fake


def windows_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The running loop made like Windows' proactor loop: no add_signal_handler."""

    def unsupported(*args: object) -> None:
        raise NotImplementedError  # what ProactorEventLoop does

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "add_signal_handler", unsupported)
    monkeypatch.setattr(loop, "remove_signal_handler", unsupported)


@pytest.mark.anyio
@pytest.mark.parametrize("signum", [signal.SIGINT, FAKE_SIGBREAK], ids=["ctrl-c", "ctrl-break"])
async def test_wait_for_stop_on_windows_uses_signal_handlers_and_puts_them_back(
    signum: int, windows_signals: FakeSignals, monkeypatch: pytest.MonkeyPatch
) -> None:
    windows_loop(monkeypatch)
    before = dict(windows_signals.handlers)
    result: list[str] = []

    async def waiter() -> None:
        result.append(await system.wait_for_stop())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            while windows_signals.handlers[signum] is before[signum]:
                await anyio.sleep(0.01)
            handler = windows_signals.handlers[signum]
            # Windows runs a console control handler on a thread of its own: as a service stop arrives
            threading.Thread(target=handler, args=(signum, None)).start()
    assert result == ["SIGINT" if signum == signal.SIGINT else "SIGBREAK"]
    assert windows_signals.handlers == before


def test_exit_on_stop_signals_makes_a_service_stop_during_start_up_a_clean_exit(
    handlers_kept: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctrl_c = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    system.exit_on_stop_signals()
    assert signal.getsignal(signal.SIGINT) is ctrl_c  # Ctrl+C stays as it was (KeyboardInterrupt)
    leave = signal.getsignal(signal.SIGTERM)
    assert callable(leave)
    with pytest.raises(SystemExit) as stopped:
        leave(signal.SIGTERM, None)
    assert stopped.value.code == 0

    fake = FakeSignals()
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(signal, "SIGBREAK", FAKE_SIGBREAK, raising=False)
    monkeypatch.setattr(signal, "signal", fake.signal)
    system.exit_on_stop_signals()
    assert fake.handlers[signal.SIGINT] is signal.default_int_handler and callable(fake.handlers[FAKE_SIGBREAK])


@pytest.mark.anyio
async def test_ybplug_run_stops_on_ctrl_break_the_windows_way(
    tmp_path: Path, windows_signals: FakeSignals, windows_security: Callable[..., FakeSecurity],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's own code path with Windows' loop and signals (anyio's signal receiver would
    raise NotImplementedError here), and its journal's files given the private DACL."""
    from ybplug import cli

    security = windows_security()
    windows_loop(monkeypatch)
    monkeypatch.setattr(system, "process_alive", lambda pid: pytest.fail("no lease to check here"))
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\n[wire]\nurl = "http://127.0.0.1:9"\nusr = "his"\n', encoding="utf-8")
    args = cli._parser().parse_args(["run", "-c", str(tmp_path / "ybplug.toml")])
    caplog.set_level(logging.INFO, logger="ybplug")
    codes: list[int] = []

    async def worker() -> None:
        codes.append(await cli._run(args))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)
            while not callable(windows_signals.handlers[FAKE_SIGBREAK]):
                await anyio.sleep(0.01)
            threading.Thread(target=windows_signals.handlers[FAKE_SIGBREAK], args=(FAKE_SIGBREAK, None)).start()
    assert codes == [0]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("worker running: journal " + str(tmp_path / "journal.db")) for m in messages)
    assert "stopping (SIGBREAK)" in messages
    protected = {path for path, _, _, sddl in security.applied if sddl == FILE_SDDL}
    assert {str(tmp_path / "journal.db"), str(tmp_path / "journal.db.id.tmp")} <= protected, protected


def start_worker(tmp_path: Path, config: str) -> subprocess.Popen[str]:
    (tmp_path / "ybplug.toml").write_text(config + '[wire]\nurl = "http://127.0.0.1:9"\nusr = "his"\n', encoding="utf-8")
    worker = subprocess.Popen(
        [YBPLUG, "run", "-c", "ybplug.toml"], cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert worker.stderr is not None
    deadline = time.monotonic() + 60
    for line in worker.stderr:  # the worker is listening once it says it runs
        if "worker running" in line or time.monotonic() > deadline:
            break
    return worker


@pytest.mark.parametrize(
    ("signum", "log_format"), [(signal.SIGTERM, "json"), (signal.SIGINT, "text")], ids=["sigterm-json", "ctrl-c-text"]
)
def test_ybplug_run_stops_within_10_s_and_logs_to_a_private_rotating_file(
    tmp_path: Path, signum: signal.Signals, log_format: str
) -> None:
    worker = start_worker(
        tmp_path,
        f'journal = "journal.db"\nlog_file = "logs/ybplug.log"\nlog_format = "{log_format}"\n'
        "log_max_bytes = 150\nlog_backups = 1\n",
    )
    asked = time.monotonic()
    worker.send_signal(signum)
    try:
        code = worker.wait(timeout=10)
    finally:
        worker.kill()
    assert code == 0, worker.stderr.read() if worker.stderr else ""
    assert time.monotonic() - asked < 10
    logs = tmp_path / "logs"
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    files = sorted(logs.iterdir())
    assert [f.name for f in files] == ["ybplug.log", "ybplug.log.1"]  # rotated at 150 bytes, one kept
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    lines = (files[1].read_text(encoding="utf-8") + files[0].read_text(encoding="utf-8")).splitlines()
    if log_format == "json":
        entries = [json.loads(line) for line in lines]  # every line one object
        assert entries[-1]["message"] == f"stopping ({signum.name})" and entries[-1]["level"] == "INFO"
        assert entries[-1]["logger"] == "ybplug" and "T" in entries[-1]["time"]
        assert entries[-2]["message"].startswith("worker running: journal " + str(tmp_path / "journal.db"))
    else:
        assert lines[-1].endswith(f"INFO ybplug: stopping ({signum.name})")
        assert "INFO ybplug: worker running: journal " + str(tmp_path / "journal.db") in lines[-2]


def test_a_log_file_that_cannot_be_opened_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\nlog_file = "a-file/ybplug.log"\n', encoding="utf-8")
    done = subprocess.run([YBPLUG, "run", "-c", "ybplug.toml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"ybplug run: error: log_file {tmp_path / 'a-file' / 'ybplug.log'}: cannot open it")


# --- where the journal lives -------------------------------------------------------------------


def test_the_machine_folder_of_each_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STATE_DIRECTORY")
    assert system.state_dir() == Path("/var/lib/ybplug")  # named only, nothing written there
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")  # systemd may list several
    assert system.state_dir() == tmp_path / "a"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("PROGRAMDATA", str(tmp_path / "ProgramData"))
    assert system.state_dir() == tmp_path / "ProgramData" / "ybplug"


def test_the_user_folder_of_each_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert system.user_state_dir() == tmp_path / "home" / ".local" / "state" / "ybplug"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert system.user_state_dir() == tmp_path / "state" / "ybplug"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert system.user_state_dir() == tmp_path / "Local" / "ybplug"


def test_a_config_without_journal_uses_the_machine_folder_created_private_by_the_journal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ybplug.journal import Journal

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "var" / "ybplug"))
    monkeypatch.chdir(tmp_path)
    assert Config().journal == str(tmp_path / "var" / "ybplug" / "journal.db")
    assert not (tmp_path / "var").exists()  # chosen, not created: a read-only command leaves nothing
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "ybplug.toml").write_text('upload = "immediate"\n', encoding="utf-8")
    config = Config.load(tmp_path / "conf" / "ybplug.toml")
    assert config.journal == str(tmp_path / "var" / "ybplug" / "journal.db")
    Journal(config.journal).open().close()
    assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "var" / "ybplug").stat().st_mode) == 0o700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conf", "var"]  # nothing in the current directory


def test_read_only_commands_do_not_create_the_state_folder(tmp_path: Path) -> None:
    # `STATE_DIRECTORY=/tmp/x ybplug plugins` created /tmp/x (a tester): only the journal or the
    # log file may create it, when they are created.
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "state" / "ybplug")}
    for command in (["plugins"], ["status"], ["status", "--json"]):
        done = subprocess.run([YBPLUG, *command], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == [], command


def test_an_unwritable_machine_folder_falls_back_to_the_user_folder_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "a-file" / "ybplug"))  # cannot be created, even by root
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "user"))
    caplog.set_level(logging.INFO, logger="ybplug")
    assert Config().journal == str(tmp_path / "user" / "ybplug" / "journal.db")
    assert Config().journal == str(tmp_path / "user" / "ybplug" / "journal.db")
    [line] = [r.getMessage() for r in caplog.records]
    assert line == f"{tmp_path / 'a-file' / 'ybplug'} is not writable by this user; the journal goes to {tmp_path / 'user' / 'ybplug'} instead"


def test_ybplug_status_without_a_config_reads_the_machine_folder_not_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "cwd").mkdir()
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "state")}
    done = subprocess.run([YBPLUG, "status"], cwd=tmp_path / "cwd", capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"no journal at {tmp_path / 'state' / 'journal.db'} yet"
    assert list((tmp_path / "cwd").iterdir()) == []
