"""The ``ybplug`` commands on a console that encodes in GBK (cp936), as a Chinese Windows console
or a redirected service log does: characters GBK lacks (𠀀, 䶮 in a mother's name) are written
as escapes instead of ending the command in UnicodeEncodeError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from ybplug.config import Config, WireSection
from ybplug.hooks import hookimpl
from ybplug.host import Host
from ybplug.messages import Birth
from ybplug.privacy import mask
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR, Sandbox

from support import make_birth

YBPLUG = str(Path(sys.executable).parent / "ybplug")
NOT_IN_GBK = "䶮"  # U+4DAE: in GB 18030, not in GBK


def gbk_console(*args: str, cwd: Path) -> tuple[int, str, str]:
    """Run a ybplug command whose stdout and stderr encode in GBK; both decoded strictly as GBK."""
    done = subprocess.run(
        [YBPLUG, *args], cwd=cwd, capture_output=True, timeout=120, env={**os.environ, "PYTHONIOENCODING": "gbk"}
    )
    return done.returncode, done.stdout.decode("gbk"), done.stderr.decode("gbk")


def test_the_characters_are_really_outside_gbk() -> None:
    for char in (NOT_IN_GBK, "𠀀"):
        with pytest.raises(UnicodeEncodeError):
            char.encode("gbk")


def test_the_demo_runs_on_a_gbk_console(tmp_path: Path) -> None:
    code, out, err = gbk_console("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert code == 0, err
    assert "eligible=False (母亲未参保)" in out and "collection_voided" in out
    assert "Traceback" not in err


class Refuses:
    """A hospital plugin whose error names the mother, masked as a plugin should."""

    @hookimpl
    def birth_recorded(self, birth: Birth) -> None:
        raise RuntimeError(f"no patient {mask(birth.mother_name)} in the HIS")


@pytest.mark.anyio
async def test_status_shows_a_name_gbk_lacks_on_a_gbk_console(tmp_path: Path, sandbox: Sandbox) -> None:
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\ncharset = "gb18030"\n', encoding="utf-8")
    config = Config(
        journal=str(tmp_path / "journal.db"), charset="gb18030", delivery_attempts=1,
        wire=WireSection(url=sandbox.url, usr=SANDBOX_USR, pwd=SANDBOX_PWD),
    )
    async with Host(config, plugins=[Refuses()], entry_points=False) as host:
        await host.record_birth(make_birth(mother_name=NOT_IN_GBK + "静"))
        with anyio.fail_after(10):
            while not (await host.status())["parked"]:
                await anyio.sleep(0.05)
    code, out, err = await anyio.to_thread.run_sync(lambda: gbk_console("status", "-c", "ybplug.toml", cwd=tmp_path))
    assert code == 0, err
    [parked] = [line for line in out.splitlines() if line.startswith("parked:")]
    assert "birth_recorded" in parked and "no patient \\u4dae* in the HIS" in parked  # masked, escaped
    assert "静" not in out


def test_an_error_line_naming_a_character_gbk_lacks_is_still_one_line(tmp_path: Path) -> None:
    """stderr (where errors and log lines go) must stay escaping as Python sets it up."""
    (tmp_path / "ybplug.toml").write_text('"𠀀" = "x"\n', encoding="utf-8")  # a key nobody spells
    code, out, err = gbk_console("status", "-c", "ybplug.toml", cwd=tmp_path)
    assert code == 2 and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("ybplug status: error: ") and "\\U00020000" in line
