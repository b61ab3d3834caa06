"""``replace_birth`` killed between its two steps: a real process, SIGKILLed while its void is in
flight at the centre (which carries the void out after its latency although the client is gone).
A new host carries the replacement on: the newborn ends with exactly one live registration, the
old birth voided, the corrected one registered, each hook fired once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest

from ybplug.codes import Funid
from ybplug.host import Host
from ybplug.lifecycle import BirthState
from ybplug.sandbox import SEED_MOTHERS, Fault, Sandbox

from recorder import FileRecorder, read_file_recorder
from support import birth_record, host_config

HERE = Path(__file__).resolve().parent


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX; on Windows TerminateProcess is the same test")
async def test_replace_killed_while_voiding_is_carried_on_by_the_next_host(tmp_path: Path, sandbox: Sandbox) -> None:
    config = host_config(tmp_path, sandbox)
    hooks = tmp_path / "hooks.jsonl"
    record = birth_record(20)
    async with Host(config, plugins=[FileRecorder(str(hooks))], entry_points=False, background=False) as host:
        birth_id = (await host.record_birth(record)).birth_id
        await host.sync("upload")
        old_number = (await host.birth(birth_id)).registration_number
    assert old_number is not None

    corrected_file = tmp_path / "corrected.json"
    corrected_file.write_text(json.dumps({**record, "aac004": "2"}, ensure_ascii=False), encoding="utf-8")
    sandbox.inject(Fault("latency", funid=Funid.VOID, seconds=1.5))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    worker = subprocess.Popen(
        [sys.executable, str(HERE / "replace_worker.py"), config.journal, sandbox.url, str(hooks), str(birth_id),
         str(corrected_file)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        with anyio.fail_after(30):
            while sandbox.calls(Funid.VOID) == 0:  # the void has reached the centre, which is sleeping on it
                assert worker.poll() is None, worker.communicate()
                await anyio.sleep(0.02)
        worker.kill()  # SIGKILL between the steps: void sent, its answer never heard
        await anyio.to_thread.run_sync(worker.wait)
        with anyio.fail_after(10):  # the centre carries the void out after its latency
            while not any(r["baz726"] == old_number and r["voided"] for r in sandbox.registrations()):
                await anyio.sleep(0.05)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == -9

    async with Host(config, plugins=[FileRecorder(str(hooks))], entry_points=False, background=False) as host:
        # The journal has not heard of the void: the old birth is registered, the replacement under way.
        assert (await host.birth(birth_id)).state == BirthState.REGISTERED
        summary = await host.sync()  # a restart (or `ybplug sync`) carries it on
        assert summary.get("replacements_resumed") == 1
        old = await host.birth(birth_id)
        assert old.state == BirthState.VOIDED and old.replaced_by is not None
        new = await host.birth(old.replaced_by)
        assert new.state == BirthState.REGISTERED and new.birth.newborn_sex == "2" and new.replaces == birth_id

    mother = SEED_MOTHERS["local"]
    newborn = [r for r in sandbox.registrations() if r["bkee35"] == mother and str(r["aac006"]) == str(record["aac006"])]
    assert [r["baz726"] for r in newborn if not r["voided"]] == [new.registration_number]
    assert {r["baz726"]: r["voided"] for r in newborn} == {old_number: True, new.registration_number: False}

    fired = read_file_recorder(hooks)
    counts = Counter((f["hook"], f["birth_id"]) for f in fired)
    assert counts == {
        ("birth_recorded", birth_id): 1, ("collection_result", birth_id): 1,
        ("collection_voided", birth_id): 1, ("birth_recorded", new.birth_id): 1, ("collection_result", new.birth_id): 1,
    }
    assert [f["number"] for f in fired if f["hook"] == "collection_voided"] == [old_number]
    assert len({f["event_id"] for f in fired}) == len(fired)
