"""The issue's "done when": a plugin written by ``ybplug new-plugin``, installed in a fresh virtual
environment with ``ybplug[testing]``, passes its generated tests with plain ``pytest`` and no C
compiler on the PATH; ``ybplug plugins`` lists it; ``ybplug check`` passes against the sandbox."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from ybplug.sandbox import FAKE_ECTRANS_FUNCTION, SANDBOX_PWD, SANDBOX_USR, Sandbox

ROOT = Path(__file__).resolve().parents[1]
YBPLUG = str(Path(sys.executable).parent / "ybplug")


def _bin(venv: Path) -> Path:
    return venv / ("Scripts" if sys.platform == "win32" else "bin")


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fresh venv holding ybplug[testing] and a plugin ``ybplug new-plugin`` just wrote, both
    editable as the README says for a type-checked project (``editable_mode=strict``), and mypy."""
    where = tmp_path_factory.mktemp("new-plugin")
    made = subprocess.run([YBPLUG, "new-plugin", "st-mary-his"], cwd=where, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(_bin(venv) / "python"), "-m", "pip", "install", "-q", "--config-settings", "editable_mode=strict",
         "-e", f"{ROOT}[testing]", "-e", str(where / "st-mary-his"), "mypy", "setuptools>=77"],
        capture_output=True, text=True, timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv, where / "st-mary-his"


def no_compiler_env(venv: Path) -> dict[str, str]:
    """Only the venv's own programs on PATH (no cc, no gcc), and no $CC."""
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = str(_bin(venv))
    assert shutil.which("cc", path=env["PATH"]) is None and shutil.which("gcc", path=env["PATH"]) is None
    return env


@pytest.mark.timeout(900)
def test_the_generated_plugin_passes_its_own_tests_without_a_compiler(plugin_venv: tuple[Path, Path]) -> None:
    venv, project = plugin_venv
    done = subprocess.run([str(_bin(venv) / "pytest"), "-q", "-p", "no:cacheprovider"], cwd=project,
                          capture_output=True, text=True, timeout=300, env=no_compiler_env(venv))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout


@pytest.mark.timeout(900)
def test_ybplug_plugins_lists_the_generated_plugin(plugin_venv: tuple[Path, Path], tmp_path: Path) -> None:
    venv, _ = plugin_venv
    (tmp_path / "ybplug.toml").write_text(f'journal = "{(tmp_path / "j.db").as_posix()}"\n', encoding="utf-8")
    done = subprocess.run([str(_bin(venv) / "ybplug"), "plugins", "--json", "-c", "ybplug.toml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=no_compiler_env(venv))
    assert done.returncode == 0, done.stderr
    listed = {entry["name"]: entry for entry in json.loads(done.stdout)}
    mine = listed["st_mary_his"]
    assert (mine["origin"], mine["distribution"], mine["version"]) == ("entry point", "st-mary-his", "0.1.0")
    assert "collection_result" in mine["hooks"] and "qr_decoded" in mine["hooks"]
    assert listed["ybplug.collection"]["origin"] == "built-in"
    assert not (tmp_path / "j.db").exists()  # listing creates no journal


@pytest.mark.anyio
@pytest.mark.timeout(900)
async def test_ybplug_check_passes_against_the_sandbox_and_fails_on_a_wrong_password(
    plugin_venv: tuple[Path, Path], sandbox: Sandbox, tmp_path: Path
) -> None:
    venv, _ = plugin_venv
    env = no_compiler_env(venv)

    def check(pwd: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "ybplug.toml").write_text(
            f'[wire]\nurl = "{sandbox.url}"\nusr = "{SANDBOX_USR}"\npwd = "{pwd}"\n'
            f'[voucher]\nlibrary = "{FAKE_ECTRANS_FUNCTION}"\nbackend = "python"\n', encoding="utf-8")
        return subprocess.run([str(_bin(venv) / "ybplug"), "check", "-c", "ybplug.toml"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, env=env)

    done = await anyio.to_thread.run_sync(check, SANDBOX_PWD)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "config"], ["ok", "journal"], ["ok", "centre"], ["ok", "voucher"], ["ok", "plugins"]]
    assert "st_mary_his" in lines[-1]
    wrong = await anyio.to_thread.run_sync(check, "not-the-password")
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert [line.split()[:2] for line in wrong.stdout.splitlines()][2] == ["FAIL", "centre"]
    assert "not-the-password" not in wrong.stdout + wrong.stderr


@pytest.mark.timeout(900)
def test_mypy_finds_ybplug_types_for_the_generated_plugin(plugin_venv: tuple[Path, Path]) -> None:
    """A hospital's plugin type-checks against the editable ybplug: ``--strict`` passes, and a
    wrong use of a ybplug type is caught (so the types really were found, not skipped)."""
    venv, project = plugin_venv
    env = no_compiler_env(venv)
    mypy = str(_bin(venv) / "mypy")
    done = subprocess.run([mypy, "--strict", "--cache-dir", os.devnull, "st_mary_his"], cwd=project,
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    (project / "wrong.py").write_text("from ybplug.messages import Birth\n\nx: int = Birth\n", encoding="utf-8")
    wrong = subprocess.run([mypy, "--cache-dir", os.devnull, "wrong.py"], cwd=project, capture_output=True, text=True,
                           timeout=300, env=env)
    assert wrong.returncode == 1 and 'type "type[Birth]"' in wrong.stdout, wrong.stdout


@pytest.mark.timeout(900)
def test_the_sdist_carries_the_package_and_its_documents_not_a_broken_test_suite(
    plugin_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    import tarfile

    venv, _ = plugin_venv
    build = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    done = subprocess.run([str(_bin(venv) / "python"), "-c", build, str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with tarfile.open(tmp_path / done.stdout.split()[-1]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
        info = sdist.extractfile(next(n for n in sdist.getnames() if n.endswith("/PKG-INFO")))
        assert info is not None
        metadata = info.read().decode("utf-8")
    assert {"LICENSE", "CHANGELOG.md", "README.md", "ybplug/py.typed", "ybplug/fake_ectrans.c", "hooks/specs.py"} <= names
    assert not [name for name in names if name.startswith(("tests/", "bench/", "examples/"))]
    assert "License-Expression: MIT" in metadata and "Classifier: Typing :: Typed" in metadata
