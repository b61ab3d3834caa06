"""The birth's state machine, held to its table: every action in every state, on a real journal.

One host against the sandbox puts a birth in each state through the real paths (uploads,
refusals, a lost reply, the real-name poll, a void); then each action is tried on each birth.
An allowed action does what the table says and fires the events it says; an invalid one raises
:class:`InvalidTransition` and changes nothing (every table of the journal compared before and
after).  The README's table is checked against :data:`lifecycle.ALLOWED` too.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ybplug.codes import Funid
from ybplug.fields import with_check_digit
from ybplug.host import Host, Refused
from ybplug.lifecycle import ALLOWED, Action, BirthState, InvalidTransition
from ybplug.sandbox import Fault, Sandbox

from recorder import Recorder
from support import birth_record, host_config

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("births", "events", "deliveries", "actions", "replacements", "record_history", "exchanges")


def snapshot(journal: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the journal's tables a transition could touch."""
    db = sqlite3.connect(journal)
    try:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in TABLES}
    finally:
        db.close()


def hooks_of(journal: Path, birth_id: int) -> list[str]:
    db = sqlite3.connect(journal)
    try:
        return [r[0] for r in db.execute("SELECT hook FROM events WHERE birth_id = ? ORDER BY rowid", (birth_id,))]
    finally:
        db.close()


@dataclass
class Ward:
    host: Host
    sandbox: Sandbox
    journal: Path
    ids: dict[BirthState, int]
    records: dict[BirthState, dict[str, Any]]


@pytest.fixture
async def ward(tmp_path: Path, sandbox: Sandbox) -> AsyncIterator[Ward]:
    """A journal holding one birth in each state, each put there the way it happens in a ward."""
    config = host_config(tmp_path, sandbox)
    records = {state: birth_record(100 + i * 10) for i, state in enumerate(BirthState)}
    async with Host(config, plugins=[Recorder()], entry_points=False, background=False) as host:
        ids: dict[BirthState, int] = {}

        async def record(state: BirthState) -> int:
            ids[state] = (await host.record_birth(records[state])).birth_id
            return ids[state]

        await record(BirthState.STALE)
        await host.sync("upload")
        assert await host.run_journal(host.journal.mark_stale, 0.0) == 1  # only this one is registered yet
        for state in (BirthState.REGISTERED, BirthState.REAL_NAMED, BirthState.VOIDED):
            await record(state)
        await host.sync("upload")
        await record(BirthState.REFUSED)
        sandbox.inject(Fault("refuse", funid=Funid.COLLECT, cause="母亲证件号码与姓名不符"))
        await host.sync("upload")
        await record(BirthState.NEEDS_REVIEW)
        sandbox.inject(Fault("drop_after_commit", funid=Funid.COLLECT))
        await host.sync("upload")  # registered at the centre, the reply lost: in doubt
        await host.replay()
        await host.sync("upload")  # "duplicate": in doubt, so a person must look
        real = (await host.birth(ids[BirthState.REAL_NAMED])).registration_number
        assert real is not None
        sandbox.real_name(real, id_number=with_check_digit("35020320261125001"), name="陈小明")
        await host.sync("realname")
        voided = (await host.birth(ids[BirthState.VOIDED])).registration_number
        assert voided is not None
        await host.void(voided, "录入错误")
        await record(BirthState.UPLOADING)
        [claimed] = await host.run_journal(host.journal.claim_births, 10)
        assert claimed.id == ids[BirthState.UPLOADING]
        await record(BirthState.PENDING)
        for state, birth_id in ids.items():
            assert (await host.birth(birth_id)).state == state, state
        yield Ward(host, sandbox, Path(config.journal), ids, records)


def corrected(record: dict[str, Any]) -> dict[str, Any]:
    """The same newborn, one innocuous field corrected (the medical serial akc190)."""
    return {**record, "akc190": record["akc190"] + "X"}


async def act(ward: Ward, action: Action, state: BirthState) -> Any:
    """Do ``action`` to the birth in ``state`` the way the HIS or the clerk does it."""
    birth_id, host = ward.ids[state], ward.host
    if action is Action.AMEND:
        return await host.amend_birth(birth_id, corrected(ward.records[state]), operator="clerk")
    if action is Action.REPLACE:
        return await host.replace_birth(birth_id, corrected(ward.records[state]), "出生时间录错", operator="clerk")
    if action is Action.RESOLVE:
        return await host.resolve_review(birth_id, operator="clerk", refused="母亲信息不符")
    if action is Action.VOID:
        number = (await host.birth(birth_id)).registration_number
        assert number is not None
        return await host.void(number, "录入错误")
    raise AssertionError(action)


@pytest.mark.anyio
@pytest.mark.parametrize("action", [a for a in Action if a is not Action.POLL_STALE], ids=str)
async def test_every_state_under_each_action_follows_the_table(ward: Ward, action: Action) -> None:
    for state in BirthState:
        birth_id = ward.ids[state]
        before = snapshot(ward.journal)
        hooks_before = hooks_of(ward.journal, birth_id)
        if state not in ALLOWED[action]:
            if action is Action.VOID:
                if (await ward.host.birth(birth_id)).registration_number is None:
                    continue  # a void names a registration number; this birth has none
                # A void goes by number to the centre, which refuses an "already void" one; only
                # that exchange is journaled (an operator may void a number the journal holds voided).
                with pytest.raises(Refused, match="already void"):
                    await act(ward, action, state)
                after = snapshot(ward.journal)
                assert {t: after[t] for t in TABLES if t != "exchanges"} == {t: before[t] for t in TABLES if t != "exchanges"}
                continue
            with pytest.raises(InvalidTransition) as caught:
                await act(ward, action, state)
            assert f"birth #{birth_id}" in str(caught.value) and str(state) in str(caught.value)
            assert snapshot(ward.journal) == before, f"{action} on {state} changed the journal"
            continue
        await act(ward, action, state)
        after = await ward.host.birth(birth_id)
        fired = hooks_of(ward.journal, birth_id)[len(hooks_before):]
        if action is Action.AMEND:
            assert (after.state, fired) == (BirthState.PENDING, []), state
            assert after.birth.medical_serial.endswith("X") and after.actions[-1].action == "amend"
        elif action is Action.REPLACE:
            assert (after.state, fired) == (BirthState.VOIDED, ["collection_voided"]), state
            assert after.replaced_by is not None
            new = await ward.host.birth(after.replaced_by)
            assert new.replaces == birth_id and new.birth.medical_serial.endswith("X")
            assert hooks_of(ward.journal, new.birth_id) == ["birth_recorded"]
        elif action is Action.RESOLVE:
            assert (after.state, fired) == (BirthState.REFUSED, ["collection_result"]), state
            assert after.actions[-1].operator == "clerk"
        elif action is Action.VOID:
            assert (after.state, fired) == (BirthState.VOIDED, ["collection_voided"]), state


@pytest.mark.anyio
async def test_only_stale_births_are_polled_on_demand_and_only_registered_ones_daily(ward: Ward) -> None:
    journal = ward.host.journal
    stale = {b for b, _ in await ward.host.run_journal(journal.awaiting_realname, 0, 100, state="stale")}
    daily = {b for b, _ in await ward.host.run_journal(journal.awaiting_realname, 0, 100)}
    assert stale == {ward.ids[s] for s in ALLOWED[Action.POLL_STALE]}
    assert daily == {ward.ids[BirthState.REGISTERED]}


def test_the_readme_table_is_lifecycle_allowed() -> None:
    """Every action row of the README's state table names exactly the states ALLOWED gives it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## A birth's life", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    found: dict[str, set[str]] = {}
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        states = set(re.findall(r"`([a-z_]+)`", cells[0]))
        action = re.findall(r"`([a-z ]+)`", cells[1])
        if action and action[0] in {a.value for a in Action}:
            found.setdefault(action[0], set()).update(states)
    assert found == {a.value: {s.value for s in allowed} for a, allowed in ALLOWED.items()}
    for state in BirthState:
        assert f"`{state.value}`" in section, f"state {state} missing from the README's table"


def test_an_invalid_transition_says_what_to_do_instead() -> None:
    error = InvalidTransition(Action.AMEND, 7, BirthState.REGISTERED)
    assert "birth #7" in str(error) and "registered" in str(error) and "replace" in str(error)
