"""The .NET bridge: C# compiled in the test run, driven through a real host against the sandbox.

``tests/dotnet/HospitalPlugin.cs`` (a hospital's local writes) and ``tests/dotnet/Voucher.cs`` (a
vendor's EcTrans) are compiled with ``mcs`` into a temporary folder.  The runtime is coreclr
(``dotnetcore2`` from PyPI) unless ``YBPLUG_TEST_DOTNET_RUNTIME`` says ``mono``; pythonnet loads
one runtime per process, so the Mono run is this module again in a child pytest.
``.ci/dotnet-setup`` installs all of it.  Without a compiler or a runtime the tests skip, saying
why; under CI (``CI=true``) they fail instead, because CI must run them.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import anyio
import pytest
import support

import ybplug
from ybplug.caller import PluginError
from ybplug.config import Config
from ybplug.dotnet import (
    DotnetAssemblyNotFound,
    DotnetError,
    DotnetException,
    DotnetMethodNotFound,
    DotnetPlugin,
    DotnetPluginEntry,
    DotnetRuntime,
    DotnetRuntimeUnavailable,
    DotnetSection,
    DotnetTypeNotFound,
    hook_method_name,
    plugins_from_config,
)
from ybplug.hooks import hookimpl
from ybplug.host import Host
from ybplug.messages import QrIdentity, QrRequest, QrRequestData, load
from ybplug.sandbox import Sandbox
from ybplug.voucher import Voucher, VoucherBusy, VoucherCallFailed, VoucherConfig, VoucherRefused, VoucherTimeout
from ybplug.voucher.errors import DotnetVoucherFailed

from support import birth_record

RUNTIME = os.environ.get("YBPLUG_TEST_DOTNET_RUNTIME", "coreclr")
SOURCES = Path(__file__).parent / "dotnet"
ROOT = Path(__file__).resolve().parent.parent
HIS = "StMary.Ybplug.HisPlugin"
ECTRANS = "Vendor.Certificate.EcTransApi"


def unavailable(reason: str) -> NoReturn:
    """Skip where nothing can be had, except under CI, which must run these tests."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must run the .NET tests: .ci/dotnet-setup installs what they need)")
    pytest.skip(reason)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def assemblies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding HospitalPlugin.dll and Voucher.dll, compiled now."""
    compiler = shutil.which("mcs")
    if compiler is None:
        unavailable("no C# compiler: install mono-mcs (apt-get install mono-mcs), or run .ci/dotnet-setup")
    folder = tmp_path_factory.mktemp("dotnet")
    for name in ("HospitalPlugin", "Voucher"):
        built = subprocess.run(
            [compiler, "-target:library", "-codepage:utf8", f"-out:{folder / name}.dll", str(SOURCES / f"{name}.cs")],
            capture_output=True, text=True, timeout=120,
        )
        assert built.returncode == 0, f"mcs failed on {name}.cs:\n{built.stdout}{built.stderr}"
    return folder


@pytest.fixture(scope="session")
def runtime(assemblies: Path) -> DotnetRuntime:
    try:
        importlib.import_module("pythonnet")
    except ImportError:
        unavailable("pythonnet is not installed: pip install 'ybplug[dotnet]', or run .ci/dotnet-setup")
    try:
        return DotnetRuntime.get(DotnetSection(runtime=RUNTIME))  # type: ignore[arg-type]
    except DotnetRuntimeUnavailable as exc:
        unavailable(f"no {RUNTIME} .NET runtime on this machine: {exc}")


@pytest.fixture
def fresh_store(assemblies: Path) -> Path:
    """The C# plugin's "HIS table" (his-store.tsv beside the assembly), emptied for this test."""
    path = assemblies / "his-store.tsv"
    path.unlink(missing_ok=True)
    return path


def store(assemblies: Path) -> list[dict[str, str]]:
    """What the C# plugin wrote to its "HIS table"."""
    path = assemblies / "his-store.tsv"
    if not path.exists():
        return []
    columns = ("hook", "event_id", "birth_id", "registration", "newborn_name", "in_flight", "thread")
    return [dict(zip(columns, line.split("\t"))) for line in path.read_text("utf-8").splitlines()]


def host_config(tmp_path: Path, sandbox: Sandbox, **overrides: Any) -> Config:
    """Generous timeouts: the .NET runtime's first calls are slow."""
    return support.host_config(tmp_path, sandbox, hook_timeout=20.0, read_timeout=10.0, **overrides)


def his_plugin(assemblies: Path, runtime: DotnetRuntime, type_name: str = HIS, name: str = "st_mary_dotnet") -> DotnetPlugin:
    return DotnetPlugin(assemblies / "HospitalPlugin.dll", type_name, name=name, runtime=runtime)


def qr_request(idcode: str) -> QrRequest:
    return QrRequest(data=QrRequestData(org_id="350200100011", business_type="101", district_no="350203"), idcode=idcode)


# --- a C# plugin through the host ---------------------------------------------------------------


@pytest.mark.anyio
async def test_csharp_plugin_writes_the_registration_number_the_sandbox_issued(
    tmp_path: Path, sandbox: Sandbox, assemblies: Path, runtime: DotnetRuntime, fresh_store: Path
) -> None:
    plugin = his_plugin(assemblies, runtime)
    assert plugin.hooks == ("birth_recorded", "collection_result")  # only what the class implements
    async with Host(host_config(tmp_path, sandbox), plugins=[plugin], entry_points=False) as host:
        recorded = await host.record_birth(birth_record(1, number=2, sex="2"))
        summary = await host.sync("upload")
        assert summary["uploaded"] == 1
        assert (await host.status())["deliveries"] == {"delivered": 2}
        birth = await host.run_journal(host.journal.birth, recorded.birth_id)

    [registration] = sandbox.registrations()
    assert birth.registration_number == registration["baz726"]
    written = [row for row in store(assemblies) if row["birth_id"] == str(recorded.birth_id) and row["hook"] == "collection_result"]
    assert len(written) == 1
    [row] = written
    assert row["registration"] == registration["baz726"]  # the local write is visible
    assert row["newborn_name"] == "陈静之女"  # Chinese survives the trip
    assert any(r["hook"] == "birth_recorded" and r["birth_id"] == str(recorded.birth_id) for r in store(assemblies))


@pytest.mark.anyio
async def test_fifty_concurrent_deliveries_complete_without_a_hang_repeatedly(
    tmp_path: Path, sandbox: Sandbox, assemblies: Path, runtime: DotnetRuntime, fresh_store: Path
) -> None:
    plugin = his_plugin(assemblies, runtime)
    config = host_config(tmp_path, sandbox, upload_batch=50, upload_concurrency=16)
    async with Host(config, plugins=[plugin], entry_points=False) as host:
        for round_ in range(3):
            births = [await host.record_birth(birth_record(100 * round_ + i, number=1)) for i in range(50)]
            with anyio.fail_after(60):
                summary = await host.sync("upload")
            assert summary["uploaded"] == 50
            assert (await host.status())["deliveries"] == {"delivered": 100 * (round_ + 1)}
            ids = {str(b.birth_id) for b in births}
            rows = [r for r in store(assemblies) if r["hook"] == "collection_result" and r["birth_id"] in ids]
            assert len(rows) == 50 and len({r["registration"] for r in rows}) == 50
            assert all(r["registration"].startswith("XSE") for r in rows)

        # The hook itself, 50 calls at once, five times over.
        birth = load(ybplug.Birth, birth_record(999))
        result = ybplug.CollectionResult(flag=1, registration_number="XSE0000000000999", eligibility="1")
        for _ in range(5):
            event_ids = [uuid.uuid4().hex for _ in range(50)]
            outcomes: list[Any] = []

            async def deliver(event_id: str) -> None:
                outcomes.extend(await host.caller.call_each(
                    "collection_result", only=["st_mary_dotnet"], birth=birth, result=result, birth_id=999, event_id=event_id, resolved_by=None,
                ))

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for event_id in event_ids:
                        tg.start_soon(deliver, event_id)
            assert len(outcomes) == 50 and all(o.ok for o in outcomes), outcomes
            written = {r["event_id"] for r in store(assemblies)}
            assert set(event_ids) <= written

    rows = store(assemblies)
    assert {r["in_flight"] for r in rows} == {"1"}  # never two calls in .NET at once
    assert len({r["thread"] for r in rows}) == 1  # and always the same thread


@pytest.mark.anyio
async def test_a_dotnet_exception_is_a_plugin_error_with_its_type_and_message(
    tmp_path: Path, sandbox: Sandbox, assemblies: Path, runtime: DotnetRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    down = his_plugin(assemblies, runtime, "StMary.Ybplug.DownPlugin", name="down")
    with pytest.raises(DotnetException) as raised:
        await down.collection_result(birth=None, result=None, birth_id=1, event_id="e")  # type: ignore[attr-defined]
    error = raised.value
    assert isinstance(error, DotnetError) and isinstance(error, PluginError)
    assert str(error) == "System.InvalidOperationException: HIS database is down"
    assert error.dotnet_type == "System.InvalidOperationException"
    assert error.where == "StMary.Ybplug.DownPlugin.OnCollectionResult"
    assert (error.plugin, error.hook) == ("down", "collection_result")
    assert "OnCollectionResult" in (error.dotnet_stack_trace or "")

    # Through the host: retried, then parked with the .NET type and message, no Python traceback logged.
    # (The wait for the parked delivery is the one test_host.py's parking test makes.)
    async with Host(host_config(tmp_path, sandbox, delivery_attempts=2), plugins=[down], entry_points=False) as host:
        await host.record_birth(birth_record(3))
        await host.sync("upload")
        with anyio.fail_after(10):
            while not (await host.status())["parked"]:
                await anyio.sleep(0.05)
        [parked] = (await host.status())["parked"]
    assert parked["plugin"] == "down" and parked["attempts"] == 2
    assert parked["error"] == "DotnetException: System.InvalidOperationException: HIS database is down"
    logged = [r for r in caplog.records if r.name == "ybplug.hooks" and "HIS database is down" in r.getMessage()]
    assert logged and all(r.exc_info is None for r in logged)


@pytest.mark.anyio
async def test_csharp_plugin_answers_decode_qr_through_the_host(
    tmp_path: Path, sandbox: Sandbox, assemblies: Path, runtime: DotnetRuntime
) -> None:
    front_desk = his_plugin(assemblies, runtime, "StMary.Ybplug.FrontDesk", name="front_desk")  # static methods
    assert front_desk.hooks == ("ybplug_decode_qr",)
    async with Host(host_config(tmp_path, sandbox), plugins=[front_desk], entry_points=False) as host:
        identity = await host.decode_qr(business_type="101", idcode="Q1", org_id="350200100011", district_no="350203")
    assert identity.name == "张三" and identity.ec_token == "tok-Q1" and identity.insurance_division == "350203"


# --- a C# EcTrans ---------------------------------------------------------------------------------


def dotnet_voucher(assemblies: Path, runtime: DotnetRuntime, type_name: str = ECTRANS, **settings: Any) -> Voucher:
    """A Voucher with backend = "dotnet", as plugins/voucher.py makes it from [voucher]."""
    config = VoucherConfig(library=str(assemblies / "Voucher.dll"), backend="dotnet", dotnet_type=type_name, **settings)
    return Voucher(config, dotnet=runtime)


class DotnetVoucherPlugin:
    """What plugins/voucher.py does with a [voucher] backend = "dotnet"."""

    def __init__(self, voucher: Voucher) -> None:
        self.voucher = voucher

    @hookimpl
    async def ybplug_decode_qr(self, host: Host, request: QrRequest) -> QrIdentity | None:
        return await self.voucher.decode(request)


@pytest.fixture
async def voucher(assemblies: Path, runtime: DotnetRuntime) -> AsyncIterator[Voucher]:
    async with dotnet_voucher(assemblies, runtime, timeout=5.0) as loaded:
        yield loaded


@pytest.mark.anyio
async def test_csharp_ectrans_serves_host_decode_qr(
    tmp_path: Path, sandbox: Sandbox, voucher: Voucher
) -> None:
    decoded: list[QrIdentity] = []

    class Registrar:
        @hookimpl
        async def qr_decoded(self, identity: QrIdentity) -> None:
            decoded.append(identity)

    plugins = [DotnetVoucherPlugin(voucher), Registrar()]
    async with Host(host_config(tmp_path, sandbox), plugins=plugins, entry_points=False) as host:
        identity = await host.decode_qr(
            business_type="101", idcode="QR350204198001010001", org_id="350200100011", district_no="350203"
        )
    assert identity == QrIdentity(
        ec_token="398397485fkjdk9sf92j3mlkf", id_number="350204198001010001", id_type="01", name="张三",
        insurance_division="350203", card_number="K001934831", personal_code="1010010101001",
    )  # from the spec's example reply, trailing comma and all
    assert decoded == [identity]


@pytest.mark.anyio
async def test_csharp_ectrans_failures_are_voucher_errors(voucher: Voucher) -> None:
    with pytest.raises(VoucherRefused, match="二维码已失效"):
        await voucher.decode(qr_request("refuse"))
    with pytest.raises(VoucherCallFailed) as failed:
        await voucher.decode(qr_request("fail"))
    assert failed.value.code == 5 and failed.value.cause == "网络连接失败"
    with pytest.raises(DotnetVoucherFailed, match="System.InvalidOperationException: 证书服务不可用"):
        await voucher.decode(qr_request("throw"))
    with pytest.raises(VoucherRefused) as leaked:
        await voucher.decode(qr_request("leak:QR0123456789"))
    assert "QR0123456789" not in str(leaked.value) and "350204198001010001" not in str(leaked.value)
    # One scrubbing for every path (ybplug.privacy.scrub): phone numbers are masked too, in a
    # refusal's cause and in the message of an exception the .NET EcTrans threw.
    assert "13800138000" not in str(leaked.value) and "138****8000" in str(leaked.value)
    with pytest.raises(DotnetVoucherFailed) as thrown:
        await voucher.decode(qr_request("throwleak:QR0123456789"))
    assert "QR0123456789" not in str(thrown.value) and "13912345678" not in str(thrown.value)
    assert "139****5678" in str(thrown.value) and "坏码" in str(thrown.value)

    calls = [voucher.decode(qr_request(f"Q{i:03d}")) for i in range(20)]
    identities: list[QrIdentity] = []

    async def decode(call: Any) -> None:
        identities.append(await call)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for call in calls:
                tg.start_soon(decode, call)
    assert sorted(i.id_number for i in identities) == [f"{i:03d}" for i in range(20)]  # none saw an overlap


@pytest.mark.anyio
async def test_csharp_ectrans_is_bounded_by_its_timeout(assemblies: Path, runtime: DotnetRuntime) -> None:
    async with dotnet_voucher(assemblies, runtime, timeout=0.3) as voucher:
        started = time.monotonic()
        with pytest.raises(VoucherTimeout):
            await voucher.decode(qr_request("slow:1500"))
        assert time.monotonic() - started < 1.4  # the 0.3 s timeout, not the 1.5 s call
        with pytest.raises(VoucherBusy):  # queued behind the call that is still running: dropped
            await voucher.decode(qr_request("Q1"))
        await anyio.sleep(1.3)
        assert (await voucher.decode(qr_request("Q2"))).id_number == "2"


# --- loading errors ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_missing_assembly_type_or_method_is_named(assemblies: Path, runtime: DotnetRuntime) -> None:
    missing = assemblies / "StMary.Missing.dll"
    with pytest.raises(DotnetAssemblyNotFound, match=f"assembly not found: {missing}"):
        DotnetPlugin(missing, HIS, runtime=runtime)
    not_an_assembly = assemblies / "his-notes.dll"
    not_an_assembly.write_text("not a PE file")
    with pytest.raises(DotnetAssemblyNotFound, match="cannot load .NET assembly .*his-notes.dll"):
        DotnetPlugin(not_an_assembly, HIS, runtime=runtime)
    with pytest.raises(DotnetTypeNotFound, match=r"'StMary\.Ybplug\.HisPlugn' not found .*its public types: .*StMary\.Ybplug\.HisPlugin"):
        DotnetPlugin(assemblies / "HospitalPlugin.dll", "StMary.Ybplug.HisPlugn", runtime=runtime)
    with pytest.raises(DotnetMethodNotFound, match=r"WrongShape\.OnCollectionResult must be `public void OnCollectionResult\(string json\)`"):
        DotnetPlugin(assemblies / "HospitalPlugin.dll", "StMary.Ybplug.WrongShape", runtime=runtime)
    with pytest.raises(DotnetMethodNotFound, match="NoHooks .* implements no ybplug hook"):
        DotnetPlugin(assemblies / "HospitalPlugin.dll", "StMary.Ybplug.NoHooks", runtime=runtime)

    with pytest.raises(DotnetMethodNotFound, match=r"EcTransApi has no public method Decode: expected `public static int Decode\(string inData, out string outData\)`"):
        await dotnet_voucher(assemblies, runtime, dotnet_method="Decode").start()
    with pytest.raises(DotnetMethodNotFound, match=r"Legacy\.EcTrans must be `public static int EcTrans\(string inData, out string outData\)`; found System.Int32 EcTrans\(System.String\)"):
        await dotnet_voucher(assemblies, runtime, "Vendor.Certificate.Legacy").start()
    with pytest.raises(DotnetTypeNotFound, match="'Vendor.Certificate.Nope' not found"):
        await dotnet_voucher(assemblies, runtime, "Vendor.Certificate.Nope").start()


def test_plugins_from_config_and_names(assemblies: Path, runtime: DotnetRuntime) -> None:
    assert plugins_from_config([]) == []  # nothing configured: nothing loaded
    entries = [
        DotnetPluginEntry(assembly=str(assemblies / "HospitalPlugin.dll"), type=HIS),
        DotnetPluginEntry(assembly=str(assemblies / "HospitalPlugin.dll"), type="StMary.Ybplug.FrontDesk", name="front"),
    ]
    loaded = plugins_from_config(entries, runtime=runtime)
    assert [name for name, _ in loaded] == [f"dotnet:{HIS}", "front"] == [e.plugin_name for e in entries]
    assert hook_method_name("collection_result") == "OnCollectionResult"
    assert hook_method_name("ybplug_decode_qr") == "OnYbplugDecodeQr"
    section = DotnetSection(runtime="coreclr", plugins=[DotnetPluginEntry(assembly="lib/His.dll", type="X")])
    resolved = section.resolve("/etc/ybplug")
    assert resolved.plugins[0].assembly == str(Path("/etc/ybplug") / "lib/His.dll")


def test_a_second_runtime_in_the_same_process_is_refused(runtime: DotnetRuntime) -> None:
    other = "mono" if RUNTIME == "coreclr" else "coreclr"
    with pytest.raises(DotnetRuntimeUnavailable, match=f"one .NET runtime per process .*asks for {other}"):
        DotnetRuntime.get(DotnetSection(runtime=other))  # type: ignore[arg-type]
    assert DotnetRuntime.get(DotnetSection(runtime=RUNTIME)) is runtime  # type: ignore[arg-type]


def test_runtime_that_cannot_be_had_says_what_to_do(tmp_path: Path) -> None:
    """In a fresh interpreter (this one has its runtime loaded for good)."""
    program = textwrap.dedent("""
        import json, sys
        from ybplug.dotnet import DotnetRuntime, DotnetSection, DotnetError
        cases = {
            "coreclr_root": DotnetSection(runtime="coreclr", dotnet_root=sys.argv[1]),
            "mono_lib": DotnetSection(runtime="mono", libmono=sys.argv[1] + "/libmonosgen-2.0.so"),
        }
        if sys.platform != "win32":
            cases["netfx"] = DotnetSection(runtime="netfx")
        out = {}
        for name, section in cases.items():
            try:
                DotnetRuntime.get(section)
            except DotnetError as exc:
                out[name] = f"{type(exc).__name__}: {exc}"
        sys.modules["pythonnet"] = None
        try:
            DotnetRuntime.get(DotnetSection(runtime="coreclr"))
        except DotnetError as exc:
            out["no_pythonnet"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", program, str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    messages = json.loads(done.stdout)
    assert messages["coreclr_root"] == (
        f"DotnetRuntimeUnavailable: no coreclr runtime in {tmp_path} (dotnet_root: no host/fxr there): install one "
        "(pip install dotnetcore2 ships .NET Core 3.1; or your distribution's dotnet-runtime) or set dotnet_root in [dotnet]"
    )
    assert messages["mono_lib"] == f"DotnetRuntimeUnavailable: no Mono runtime at libmono = {tmp_path}/libmonosgen-2.0.so"
    if sys.platform != "win32":
        assert "netfx' is the .NET Framework, which exists only on Windows" in messages["netfx"]
    assert messages["no_pythonnet"] == "DotnetRuntimeUnavailable: pythonnet is not installed: pip install 'ybplug[dotnet]'"


# --- the one thread ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_calls_run_on_the_one_thread_without_blocking_the_loop(runtime: DotnetRuntime) -> None:
    def sleep_in_dotnet(ms: int) -> int:
        importlib.import_module("System").Threading.Thread.Sleep(ms)
        return threading.get_ident()

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        ident = await runtime.run(sleep_in_dotnet, 400)
        tg.cancel_scope.cancel()
    assert ident == runtime.thread.ident != threading.get_ident()
    assert ticks >= 15  # the loop went on while .NET slept

    # Cancellation: a queued call whose caller gave up never runs; the thread goes on serving.
    ran: list[str] = []
    slow = runtime.submit(sleep_in_dotnet, 300)
    with anyio.move_on_after(0.05):
        await runtime.run(ran.append, "late")
    assert await slow.result() == runtime.thread.ident
    assert await runtime.run(lambda: "after") == "after" and ran == []

    # A .NET exception from any job arrives as DotnetException.
    def throw() -> None:
        System = importlib.import_module("System")
        raise System.ArgumentException("bad argument")

    with pytest.raises(DotnetException, match="^System.ArgumentException: bad argument"):
        await runtime.run(throw)


# --- the other runtime ----------------------------------------------------------------------------


def test_the_same_tests_pass_on_mono(tmp_path: Path) -> None:
    """pythonnet loads one runtime per process: run this module again, on Mono, in a child pytest."""
    if RUNTIME != "coreclr":
        pytest.skip("this is the child run")
    try:
        importlib.import_module("clr_loader").find_libmono()
    except Exception as exc:  # noqa: BLE001
        unavailable(f"no Mono runtime ({exc}): apt-get install libmonosgen-2.0-1 mono-devel, or run .ci/dotnet-setup")
    env = {**os.environ, "YBPLUG_TEST_DOTNET_RUNTIME": "mono"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-p", "no:cacheprovider",
         "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), "-W", "ignore::UserWarning"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, tail
    assert " passed" in done.stdout and " failed" not in done.stdout, tail
