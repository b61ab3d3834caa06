"""The service recipes in examples/ (systemd, WinSW) start and stop ``ybplug run`` the way ybplug
expects: checked with systemd's own verifier, and against ybplug's command line and promises."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from ybplug import cli

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "examples" / "systemd" / "ybplug.service"
WINSW = ROOT / "examples" / "windows" / "ybplug-service.xml"
YBPLUG = str(Path(sys.executable).parent / "ybplug")
STOPS_WITHIN = 10  # seconds: what ybplug run promises after SIGTERM or Ctrl+C


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read(UNIT, encoding="utf-8")
    return parser


def seconds(text: str) -> float:
    """``30``, ``30s``, ``30 sec``, ``1min`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*(s|sec|secs|min|mins)?\s*", text)
    assert match, f"unreadable duration {text!r}"
    return int(match[1]) * (60 if (match[2] or "").startswith("min") else 1)


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing: .ci/system-setup installs systemd")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd, as .ci/system-setup does)")
    # verify checks that ExecStart's program exists: point it at this installation's ybplug
    text = UNIT.read_text(encoding="utf-8").replace("/opt/ybplug/bin/ybplug", YBPLUG)
    (tmp_path / "ybplug.service").write_text(text, encoding="utf-8")
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / "ybplug.service")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_systemd_unit_runs_the_worker_and_stops_it_the_way_it_listens() -> None:
    service = unit()["Service"]
    program, *arguments = service["ExecStart"].split()
    assert program.endswith("/ybplug")
    args = cli._parser().parse_args(arguments)
    assert args.func is cli._run and args.config == "/etc/ybplug/ybplug.toml"
    assert signal.Signals[service["KillSignal"]] in (signal.SIGTERM, signal.SIGINT)
    assert seconds(service["TimeoutStopSec"]) >= STOPS_WITHIN
    # the journal's folder comes from systemd (STATE_DIRECTORY), private, persistent
    assert service["StateDirectory"] == "ybplug" and service["StateDirectoryMode"] == "0700"
    assert service["UMask"] == "0077"


def test_the_winsw_service_runs_the_worker_and_gives_it_time_to_stop() -> None:
    service = ElementTree.parse(WINSW).getroot()
    assert service.tag == "service" and service.findtext("id") == "ybplug"
    executable = service.findtext("executable") or ""
    assert executable.endswith("\\Scripts\\ybplug.exe")
    arguments = [a.text or "" for a in service.findall("argument")]
    args = cli._parser().parse_args(arguments)
    assert args.func is cli._run and args.config and args.config.endswith("ybplug.toml")
    # WinSW sends Ctrl+C, which ybplug stops on (SIGINT on Windows), then waits this long
    assert seconds(service.findtext("stoptimeout") or "15 sec") >= STOPS_WITHIN
    assert [f.get("action") for f in service.findall("onfailure")] == ["restart", "restart"]
    assert "<executable>" not in (service.findtext("env") or "") and all(
        "PWD" not in (e.get("name") or "") for e in service.findall("env")
    )  # the password is never written in the recipe


def test_the_winsw_recipe_keeps_code_admin_only_and_data_private() -> None:
    # It put the venv, config and logs in C:\ybplug, which inherits Authenticated Users:Modify:
    # code run as LocalSystem that any signed-in user could change.
    text = WINSW.read_text(encoding="utf-8")
    service = ElementTree.parse(WINSW).getroot()
    code = [service.findtext("executable") or ""] + [a.text or "" for a in service.findall("argument") if "\\" in (a.text or "")]
    assert code and all(path.startswith("C:\\Program Files\\ybplug\\") for path in code), code
    for data in (service.findtext("logpath") or "", service.findtext("workingdirectory") or ""):
        assert data.startswith("%ProgramData%\\ybplug"), data
    assert not [e.tag for e in service.iter() if "C:\\ybplug" in (e.text or "")]  # nowhere but the warning
    # the data folder's ACL step: no inheritance, SYSTEM and Administrators only
    assert 'icacls "%ProgramData%\\ybplug" /inheritance:r /grant:r "*S-1-5-18:(OI)(CI)F" "*S-1-5-32-544:(OI)(CI)F"' in text


def test_a_service_started_in_a_system_folder_keeps_its_journal_in_the_state_folder(tmp_path: Path) -> None:
    """As systemd starts it (STATE_DIRECTORY, cwd /) or WinSW (cwd System32 under LocalSystem):
    a config without ``journal`` never puts one in the current directory."""
    (tmp_path / "cwd").mkdir()
    (tmp_path / "ybplug.toml").write_text('[wire]\nurl = "http://127.0.0.1:9"\nusr = "his"\n', encoding="utf-8")
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "state")}
    worker = subprocess.Popen(
        [YBPLUG, "run", "-c", str(tmp_path / "ybplug.toml")],
        cwd=tmp_path / "cwd", env=env, stderr=subprocess.PIPE, text=True,
    )
    assert worker.stderr is not None
    deadline = time.monotonic() + 60
    running = ""
    for line in worker.stderr:
        if "worker running" in line or time.monotonic() > deadline:
            running = line
            break
    worker.send_signal(signal.SIGTERM)
    try:
        assert worker.wait(timeout=STOPS_WITHIN) == 0
    finally:
        worker.kill()
    assert f"journal {tmp_path / 'state' / 'journal.db'}," in running
    assert (tmp_path / "state" / "journal.db").exists()
    assert list((tmp_path / "cwd").iterdir()) == []
