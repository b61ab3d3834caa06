"""The kit for hospitals' own plugins: the pure-Python fake EcTrans answers as the C library does,
the demo decodes without a C compiler, and the ``ybplug_`` fixtures make what they promise."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from ybplug.codes import Funid
from ybplug.config import Config, WireConfig
from ybplug.hooks import hookimpl
from ybplug.host import Host
from ybplug.errors import Error
from ybplug.messages import QrIdentity, QrRequest, QrRequestData
from ybplug.sandbox import FAKE_ECTRANS_FUNCTION, SEED_MOTHERS, Fault, Sandbox, fake_ectrans
from ybplug.testing import BirthMaker, fake_voucher
from ybplug.voucher import Voucher, VoucherConfig, VoucherError, VoucherTimeout

YBPLUG = str(Path(sys.executable).parent / "ybplug")


def qr(idcode: str) -> QrRequest:
    return QrRequest(idcode=idcode, data=QrRequestData(org_id="350200100011", business_type="101", district_no="350203"))


async def answer(voucher: Voucher, idcode: str) -> QrIdentity | tuple[str, str]:
    try:
        return await voucher.decode(qr(idcode))
    except Error as exc:
        return type(exc).__name__, str(exc)


MODES = ["Q123", "mode:ok::Q9", "mode:rc:7:x", "mode:refuse::x", "mode:echo::SECRETCODE", "mode:comma::",
         "mode:gb18030::Q1", "mode:numbers::Q2", "mode:notjson::"]


@pytest.mark.anyio
async def test_the_python_fake_answers_as_the_c_library_does(fake_library: Path) -> None:
    c = Voucher(VoucherConfig(library=str(fake_library), backend="thread", timeout=2.0))
    py = Voucher(VoucherConfig(library=FAKE_ECTRANS_FUNCTION, backend="python", timeout=2.0))
    async with c, py:
        for idcode in MODES:
            assert await answer(py, idcode) == await answer(c, idcode), idcode


@pytest.mark.anyio
async def test_the_python_backend_times_out_and_names_a_bad_library() -> None:
    async with Voucher(VoucherConfig(library=FAKE_ECTRANS_FUNCTION, backend="python", timeout=0.1)) as voucher:
        with pytest.raises(VoucherTimeout):
            await voucher.decode(qr("mode:slow:1000:x"))
    with pytest.raises(VoucherError, match="has no function nowhere"):
        async with Voucher(VoucherConfig(library="ybplug.sandbox.ectrans:nowhere", backend="python")):
            pass
    with pytest.raises(ValueError, match="module:function"):
        VoucherConfig(library="fake.dll", backend="python")


def test_the_python_fake_refuses_utf8_input_as_the_c_library_does() -> None:
    code, out = fake_ectrans('{"idcode":"x","data":{"operatorName":"李明"}}'.encode())
    assert (code, out.decode("gbk")) == (0, '{"flag":"0","cause":"inData is not GBK","data":null}')


def test_without_a_compiler_the_kit_and_the_demo_use_the_python_fake(tmp_path: Path) -> None:
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc")}
    done = subprocess.run([YBPLUG, "demo", "--dir", str(tmp_path / "demo")], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "pure-Python fake EcTrans" in done.stdout and "qr_decoded" in done.stdout
    assert fake_voucher(tmp_path / "x").backend in ("thread", "python")


def test_the_birth_maker_makes_every_kind_of_mother_and_twins() -> None:
    make = BirthMaker()
    assert set(make.mothers) == set(SEED_MOTHERS)
    births = [make(kind) for kind in make.mothers] + make.twins("nonlocal", count=3)
    assert len({b.his_serial for b in births}) == len(births)
    assert [b.multiple_birth_number for b in births[-3:]] == [1, 2, 3]
    assert len({b.birth_time for b in births[-3:]}) == 1
    assert make("unregistered").mother_id_number not in SEED_MOTHERS.values()


@pytest.mark.anyio
async def test_the_kit_fixtures_upload_every_kind_of_mother(ybplug_host, ybplug_birth, ybplug_sandbox) -> None:  # type: ignore[no-untyped-def]
    for kind in ybplug_birth.mothers:
        await ybplug_host.record_birth(ybplug_birth(kind))
    await ybplug_host.record_birth(ybplug_birth("unregistered"))
    summary = await ybplug_host.sync("upload")
    assert summary["uploaded"] == len(ybplug_birth.mothers) + 1
    assert ybplug_sandbox.calls(Funid.COLLECT) == summary["uploaded"]
    identity = await ybplug_host.decode_qr(business_type="101", idcode="Q42")
    assert identity.id_number == "Q42"


@pytest.mark.anyio
async def test_the_kit_sandbox_takes_faults(ybplug_host, ybplug_birth, ybplug_sandbox) -> None:  # type: ignore[no-untyped-def]
    ybplug_sandbox.inject(Fault("http_error", funid=Funid.COLLECT))
    await ybplug_host.record_birth(ybplug_birth())
    assert (await ybplug_host.sync("upload"))["upload_failed"] == 1


@pytest.fixture
def ybplug_plugins() -> list[object]:
    """Here only the built-ins: the example plugin (installed in this environment) has tests of its own."""
    return []


def ybplug(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([YBPLUG, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


class Gone:
    """A plugin that subscribed once and then was uninstalled; its hook fails, so its delivery waits."""

    ybplug_name = "gone_plugin"

    @hookimpl
    def birth_recorded(self, event_id: str) -> None:
        raise RuntimeError("the hospital database is down")


@pytest.mark.anyio
async def test_ybplug_plugins_shows_origins_hooks_and_what_waits_for_a_plugin_not_loaded(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    config = Config(journal=str(tmp_path / "journal.db"), wire=WireConfig(url=sandbox.url))
    async with Host(config, plugins=[Gone()], entry_points=False, background=False) as host:
        await host.record_birth(BirthMaker()())
        await host.deliver_due()
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\n', encoding="utf-8")
    done = await anyio.to_thread.run_sync(lambda: ybplug("plugins", "-c", "ybplug.toml", cwd=tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ybplug.collection: built-in ybplug.plugins.collection" in out
    assert "example_hospital: entry point ybplug-example-hospital 0.1.0 (ybplug_example_hospital)" in out
    gone = out[out.index("gone_plugin: NOT LOADED"):]
    assert "hooks: birth_recorded" in gone and "1 pending, 0 parked" in gone
    listed = json.loads((await anyio.to_thread.run_sync(
        lambda: ybplug("plugins", "--json", "-c", "ybplug.toml", cwd=tmp_path))).stdout)
    [entry] = [e for e in listed if e["name"] == "gone_plugin"]
    assert (entry["loaded"], entry["pending"]) == (False, 1)


def test_ybplug_check_fails_on_each_thing_it_checks(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text(
        'journal = "junk.db"\nplugins = ["no_such_module_here"]\n[wire]\nurl = "http://127.0.0.1:9"\n'
        '[voucher]\nlibrary = "ybplug.sandbox.ectrans:nowhere"\nbackend = "python"\n', encoding="utf-8")
    (tmp_path / "junk.db").write_bytes(b"not a journal at all, " * 100)
    done = ybplug("check", "-c", "ybplug.toml", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = [line.split(None, 2) for line in done.stdout.splitlines()]
    assert [line[:2] for line in lines] == [
        ["ok", "config"], ["FAIL", "journal"], ["FAIL", "centre"], ["FAIL", "voucher"], ["FAIL", "plugins"]]
    assert "no_such_module_here" in lines[4][2] and "nowhere" in lines[3][2] and "junk.db" in lines[1][2]
    (tmp_path / "bad.toml").write_text('uplaod = "immediate"\n', encoding="utf-8")
    bad = ybplug("check", "-c", "bad.toml", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout.startswith("FAIL  config") and "uplaod" in bad.stdout  # a config error


def test_new_plugin_refuses_a_bad_name_and_a_folder_in_use(tmp_path: Path) -> None:
    bad = ybplug("new-plugin", "9 lives", cwd=tmp_path)
    assert bad.returncode == 2 and "plugin name" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x", encoding="utf-8")
    taken = ybplug("new-plugin", "mine", "--dir", "used", cwd=tmp_path)
    assert taken.returncode == 2 and "not empty" in taken.stderr


@pytest.mark.parametrize(("name", "why"), [
    ("ybplug", "is ybplug itself"),
    ("os", "standard library"),
    ("Asyncio", "standard library"),
    ("py", "already importable here"),  # pytest's py.py: a module of no distribution of that name
    ("ybplug-example-hospital", "distribution already installed here"),  # pip would replace it
])
def test_new_plugin_refuses_a_name_that_would_shadow_a_module(tmp_path: Path, name: str, why: str) -> None:
    done = ybplug("new-plugin", name, cwd=tmp_path)
    [line] = done.stderr.strip().splitlines()
    assert done.returncode == 2 and why in line and "choose another name" in line, line
    assert not (tmp_path / name).exists()


def test_the_birth_factory_checks_births_in_the_configured_charset(tmp_path: Path) -> None:
    (tmp_path / "test_charset.py").write_text(
        "import msgspec\nimport pytest\n\n\n"
        "@pytest.fixture\ndef ybplug_config(ybplug_config):\n"
        "    return msgspec.structs.replace(ybplug_config, charset='gb18030')\n\n\n"
        "@pytest.fixture\ndef ybplug_plugins():\n    return []\n\n\n"
        "@pytest.mark.anyio\nasync def test_a_name_gbk_lacks(ybplug_host, ybplug_birth):\n"
        "    assert (await ybplug_host.record_birth(ybplug_birth(mother_name='𠀀芳'))).created\n\n\n"
        "def test_gbk_without_a_config(ybplug_birth):\n"
        "    with pytest.raises(Exception, match='GBK'):\n        ybplug_birth(mother_name='𠀀芳')\n",
        encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_charset.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout[-3000:]


def test_check_says_when_the_voucher_worker_interpreter_cannot_start(tmp_path: Path) -> None:
    false = "/bin/false" if sys.platform != "win32" else "C:/Windows/System32/whoami.exe"
    (tmp_path / "ybplug.toml").write_text(
        '[wire]\nurl = "http://127.0.0.1:9"\n'
        f'[voucher]\nlibrary = "{(tmp_path / "ectrans.so").as_posix()}"\nbackend = "process"\npython = "{false}"\n',
        encoding="utf-8")
    done = ybplug("check", "-c", "ybplug.toml", cwd=tmp_path)
    [voucher] = [line for line in done.stdout.splitlines() if line.split()[1:2] == ["voucher"]]
    assert done.returncode == 1 and voucher.startswith("FAIL")
    assert "interpreter could not start the worker" in voucher and "crashed" not in voucher, voucher


def test_the_generated_hooks_are_every_event_hook_with_the_specs_own_parameters(tmp_path: Path) -> None:
    from ybplug.hooks import specs
    from ybplug.scaffold import PLUGIN_HOOKS, new_plugin

    module = (new_plugin("st-mary", tmp_path / "st-mary") / "st_mary" / "__init__.py").read_text(encoding="utf-8")
    for hook in PLUGIN_HOOKS:
        parameters = ", ".join(inspect.signature(getattr(specs, hook)).parameters)
        assert re.search(rf"^def {hook}\(", module, flags=re.M), hook
        found = re.search(rf"^def {hook}\((.*)\) -> None:", module, flags=re.M)
        assert found and ", ".join(p.split(":")[0] for p in found.group(1).split(", ")) == parameters


def test_version_and_python_dash_m(tmp_path: Path) -> None:
    from importlib.metadata import version

    script = ybplug("--version", cwd=tmp_path)
    module = subprocess.run([sys.executable, "-m", "ybplug", "--version"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert script.stdout == module.stdout == f"ybplug {version('ybplug')}\n"


def test_the_kit_runs_async_tests_on_asyncio_once_without_a_conftest(tmp_path: Path) -> None:
    """anyio's own default parametrizes every async test over each backend installed (trio too,
    where it is): the kit's ``anyio_backend`` makes it asyncio, once, which aiohttp needs."""
    (tmp_path / "test_backend.py").write_text(
        "import pytest\n\n\n@pytest.mark.anyio\nasync def test_on(anyio_backend):\n    assert anyio_backend == 'asyncio'\n",
        encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "test_backend.py::test_on\n" in done.stdout, done.stdout  # not test_on[asyncio], test_on[trio]
