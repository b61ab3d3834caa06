"""The clerk's and the operator's commands: ``status``, ``show``, ``review``, ``amend``, ``replace``.

Kept apart from :mod:`ybplug.cli` (which runs the worker and the one-shot jobs) so each module
stays one idea.  The read-only commands (``status``, ``show``, ``review`` listing) open the
journal directly, so they stay fast (no aiohttp import) and work while the worker runs; the ones
that change a birth go through a one-shot host, which delivers the hooks a hospital plugin needs
(``collection_result``, ``collection_voided``).  All times are China time (UTC+8), whatever the
server's time zone; ``--json`` gives scripts the same facts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ybplug.errors import Error, UsageError
from ybplug.textfile import decode_text, loads_json

if TYPE_CHECKING:
    from ybplug.host import Host
    from ybplug.journal.model import BirthStatus

#: How the CLI hands the clerk's commands what they need (kept there, passed here: no import cycle).
OpenJournal = Callable[[argparse.Namespace], Any]
OneShot = Callable[[argparse.Namespace], "Host"]
Command = Callable[[str, Callable[[argparse.Namespace], Awaitable[int] | int], str], argparse.ArgumentParser]


class ReplacementUnderWay(Error):
    """A replacement's void got no answer; it is journaled and carried on later."""


class RecordFileError(UsageError):
    """The ``--record`` file cannot be read as one JSON object (exit 2: the command is to fix)."""


class InvalidInput(UsageError):
    """What the command line gave breaks a field rule (a ``--record`` field, ``--reason``): exit 2,
    as for a file that cannot be read, since the person fixes the command either way."""


#: C0 and C1 control characters and DEL: what a terminal may take for a command (ESC sequences).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """``text`` as the CLI prints it: every control character escaped (``\\x1b``, ``\\x00``,
    ``\\n``), so a cause from the centre or a value from the journal cannot move the cursor,
    recolour or clear the clerk's terminal, nor break a line in two."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1] if m.group() in "\n\r\t" else f"\\x{ord(m.group()):02x}", text)


def _say(line: str) -> None:
    """Print one line that holds text from outside (the centre, the journal, a plugin)."""
    print(terminal_safe(line))


def birth_id_arg(text: str) -> int:
    """A birth id on the command line: ``5`` or ``#5``, as every page and line shows it."""
    from ybplug.journal.model import BirthNotFound
    from ybplug.naming import birth_id_of

    digits = text.strip().removeprefix("#")
    if not digits.isascii() or not digits.isdigit() or len(digits) > 19:
        raise argparse.ArgumentTypeError(f"a birth id is a number (5, or #5 as the pages show it), not {_short(text)}")
    try:
        return birth_id_of(int(digits))
    except BirthNotFound as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def twin_arg(text: str) -> int:
    """``--twin``: bme027 多胞胎序号, one digit (0 to 9), as the host's API takes it."""
    if text.strip() not in tuple("0123456789"):
        raise argparse.ArgumentTypeError(f"bme027 多胞胎序号 must be one digit (0 to 9), not {_short(text)}")
    return int(text)


def cause_arg(text: str) -> str:
    """``--refused CAUSE``: the centre's words, not blank (journaled as the birth's reason)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the cause is required: the centre's words, as 定点机构管理系统 shows them")
    if _CONTROL.search(text):
        raise argparse.ArgumentTypeError("the cause must not contain control characters")
    return text


def operator_arg(text: str) -> str:
    """``--operator``: who acts, as the journal records it (checked as the host checks it)."""
    from ybplug.lifecycle import ResolutionError
    from ybplug.naming import operator_of

    try:
        return operator_of(text)
    except ResolutionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def baz726_arg(text: str) -> str:
    """``--baz726``: checked (and masked in the error) before anything is sent or journaled."""
    from ybplug.lifecycle import ResolutionError
    from ybplug.naming import registration_number_of

    try:
        return registration_number_of(text)
    except ResolutionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _short(text: str) -> str:
    from ybplug.naming import echo_key

    return echo_key(text)


def china_time(timestamp: float | None) -> str | None:
    """``YYYY-MM-DD HH:MM:SS`` in China time (UTC+8), whatever the server's time zone."""
    if timestamp is None:
        return None
    from datetime import datetime

    from ybplug.fields import CHINA_TIME

    return datetime.fromtimestamp(timestamp, CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S")


def birth_facts(status: BirthStatus) -> dict[str, Any]:
    """A birth's status as plain data (``--json`` and the printed lines): personal fields never
    appear; the HIS serial is not personal (it names a record in the HIS, not a person)."""
    return {
        "birth_id": status.birth_id,
        "state": str(status.state),
        "his_serial": status.his_serial,
        "multiple_birth_number": status.birth.multiple_birth_number,
        "registration_number": status.registration_number,
        "eligible": status.eligible,
        "reason": status.reason,
        "attempts": status.attempts,
        "next_attempt": china_time(status.next_attempt_at),
        "last_error": status.last_error,
        "recorded": china_time(status.recorded_at),
        "registered": china_time(status.registered_at),
        "replaces": status.replaces,
        "replaced_by": status.replaced_by,
        "exchanges": [
            {"funid": e.funid, "outcome": e.outcome, "time": china_time(e.started_at),
             "elapsed": None if e.elapsed is None else round(e.elapsed, 3), "error": e.error}
            for e in status.exchanges
        ],
        "actions": [
            {"time": china_time(a.at), "operator": a.operator, "action": a.action, "detail": a.detail}
            for a in status.actions
        ],
    }


def _print_json(data: Any) -> None:
    # json escapes C0 controls itself; DEL and the C1 controls (\x9b is a terminal's CSI) it leaves raw
    text = json.dumps(data, ensure_ascii=False, indent=2)
    print(re.sub("[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text))


# --- status ----------------------------------------------------------------------------------------


def _trouble(journal: Any) -> dict[str, Any]:
    from ybplug.journal.console import undelivered
    from ybplug.lifecycle import BirthState

    status: dict[str, Any] = journal.status()
    status["failing"] = [birth_facts(s) for s in journal.births_in(BirthState.PENDING, failing=True)]
    status["review"] = [birth_facts(s) for s in journal.births_in(BirthState.NEEDS_REVIEW)]
    # Refused births wait for the HIS or a clerk to correct them (amend): the latest, with the cause.
    status["refused"] = [birth_facts(s) for s in journal.births_in(BirthState.REFUSED, limit=20, newest=True)]
    status["undelivered"] = undelivered(journal, UNDELIVERED_AFTER)
    return status


#: How long a due delivery may wait before ``status --check`` calls it trouble: a worker that has
#: the plugin makes it within seconds (one that fails is retried later, or parked).
UNDELIVERED_AFTER = 600.0


def _problems(status: dict[str, Any]) -> list[str]:
    """Why ``status --check`` fails: anything parked, in review, stale or failing, or deliveries
    waiting for a plugin no running host has.  (Refused births are listed, not trouble: the HIS
    corrects them.)"""
    problems = [
        f"{count} deliveries waiting for plugin {plugin} (not loaded by any running host?)"
        for plugin, count in status.get("undelivered", {}).items()
    ]
    for what, count in (
        ("deliveries parked", status["deliveries"].get("parked", 0)),
        ("births in needs review", status["births"].get("needs_review", 0)),
        ("births stale (not real-named within the horizon)", status["births"].get("stale", 0)),
        ("uploads failing", len(status["failing"])),
    ):
        if count:
            problems.append(f"{count} {what}")
    return problems


def status(args: argparse.Namespace, *, open_journal: OpenJournal) -> int:
    journal = open_journal(args)
    if journal is None:
        return 1 if args.check else 0
    try:
        status = _trouble(journal)
    finally:
        journal.close()
    problems = _problems(status)
    if args.json:
        runs = {
            job: {"started": china_time(r["started_at"]), "finished": china_time(r["finished_at"]), "summary": r["summary"]}
            for job, r in status["runs"].items()
        }
        subscribers = {
            name: {**sub, "since": china_time(sub["since"]), "last_loaded_at": china_time(sub["last_loaded_at"])}
            for name, sub in status["subscribers"].items()
        }
        _print_json({
            "births": status["births"], "deliveries": status["deliveries"], "failing": status["failing"],
            "needs_review": status["review"], "refused": status["refused"], "parked": status["parked"],
            "subscribers": subscribers, "runs": runs, "undelivered": status["undelivered"],
            "problems": problems,
        })
    else:
        _print_status(status)
    if args.check:
        if problems:
            print(terminal_safe("ybplug status --check: " + "; ".join(problems)), file=sys.stderr)
            return 1
        if not args.json:
            print("check: nothing parked, in review, stale, failing or undelivered")
    return 0


def _print_status(status: dict[str, Any]) -> None:
    _say("births:      " + (", ".join(f"{k} {v}" for k, v in sorted(status["births"].items())) or "none"))
    _say("deliveries:  " + (", ".join(f"{k} {v}" for k, v in sorted(status["deliveries"].items())) or "none"))
    for name, sub in sorted(status["subscribers"].items()):
        waiting = sub.get("pending", 0)
        parked = sub.get("parked", 0)
        if waiting:
            _say(
                f"waiting:     {waiting} deliveries for plugin {name}, last loaded"
                f" {china_time(sub['last_loaded_at'])}: a host that has it delivers them"
            )
        if parked:  # (each is listed below)
            _say(f"plugin:      {name} has {parked} deliveries parked: `ybplug retry` sends them again")
    for item in status["failing"]:
        _say(
            f"failing:     birth #{item['birth_id']} (HIS serial {item['his_serial']}, bme027"
            f" {item['multiple_birth_number']}) after {item['attempts']} attempts: {item['last_error']};"
            f" next attempt {item['next_attempt']}"
        )
    for item in status["review"]:
        _say(f"needs review: birth #{item['birth_id']} (HIS serial {item['his_serial']}): {item['reason']}")
    for item in status["refused"]:
        _say(
            f"refused:     birth #{item['birth_id']} (HIS serial {item['his_serial']}): {item['reason']};"
            f" correct it with `ybplug amend {item['birth_id']} --record FILE`"
        )
    if (refused := status["births"].get("refused", 0)) > len(status["refused"]):
        _say(f"refused:     {refused} in all; the console's 需处理 lists every one")
    if stale := status["births"].get("stale", 0):
        _say(f"stale:       {stale} births not real-named within the horizon: `ybplug sync stale` asks about them")
    for item in status["parked"]:
        _say(
            f"parked:      {item['hook']} of birth #{item['birth_id']} -> {item['plugin']} event {item['event_id']}"
            f" after {item['attempts']} attempts: {item['error']}"
        )
    for job, run in sorted(status["runs"].items()):
        when = china_time(run["finished_at"] or run["started_at"])
        _say(f"last {job}: {when} {run['summary'] or '(running or interrupted)'}")


# --- show and review ---------------------------------------------------------------------------------


def _find(journal: Any, key: str, twin: int | None) -> BirthStatus:
    from ybplug.journal.model import BirthNotFound

    from ybplug.naming import lookup_key, twin_of

    ids = journal.find(lookup_key(key), twin_of(twin))
    if not ids:
        raise BirthNotFound(f"no birth answers to {_short(key)} (a birth id, a HIS serial bke042 or a baz726)")
    statuses = [journal.lookup(i) for i in ids]
    twins = sorted({s.birth.multiple_birth_number for s in statuses})
    if len(twins) > 1:
        raise BirthNotFound(f"HIS serial {_short(key)} names {len(twins)} newborns (bme027 {twins}): add --twin N")
    found: BirthStatus = statuses[0]
    return found


def _print_birth(facts: dict[str, Any]) -> None:
    _say(f"birth #{facts['birth_id']}: {facts['state']}")
    for label, key in (
        ("HIS serial", "his_serial"), ("bme027", "multiple_birth_number"), ("baz726", "registration_number"),
        ("eligible", "eligible"), ("reason", "reason"), ("attempts", "attempts"), ("next attempt", "next_attempt"),
        ("last error", "last_error"), ("recorded", "recorded"), ("registered", "registered"),
        ("replaces", "replaces"), ("replaced by", "replaced_by"),
    ):
        if facts[key] is not None:
            _say(f"  {label + ':':14}{facts[key]}")
    for e in facts["exchanges"]:
        elapsed = "" if e["elapsed"] is None else f" in {e['elapsed']:.3f}s"
        _say(f"  exchange:     {e['time']} {e['funid']} {e['outcome']}{elapsed}{': ' + e['error'] if e['error'] else ''}")
    for a in facts["actions"]:
        _say(f"  action:       {a['time']} {a['operator']}: {a['action']}{': ' + a['detail'] if a['detail'] else ''}")


def show(args: argparse.Namespace, *, open_journal: OpenJournal) -> int:
    journal = open_journal(args)
    if journal is None:
        return 1
    try:
        facts = birth_facts(_find(journal, args.key, args.twin))
    finally:
        journal.close()
    if args.json:
        _print_json(facts)
    else:
        _print_birth(facts)
    return 0


async def review(args: argparse.Namespace, *, open_journal: OpenJournal, one_shot: OneShot) -> int:
    if args.review_command == "resolve":
        return await _resolve(args, one_shot)
    from ybplug.lifecycle import BirthState

    journal = open_journal(args)
    if journal is None:
        return 0
    try:
        births = [birth_facts(s) for s in journal.births_in(BirthState.NEEDS_REVIEW, limit=1000)]
    finally:
        journal.close()
    if args.json:
        _print_json(births)
        return 0
    if not births:
        print("no birth needs review")
    for facts in births:
        _say(f"birth #{facts['birth_id']} (HIS serial {facts['his_serial']}, bme027 {facts['multiple_birth_number']},"
              f" recorded {facts['recorded']}): {facts['reason']}")
    if births:
        print("resolve with: ybplug review resolve BIRTH_ID --baz726 XSE... --eligible yes|no"
              " | --refused CAUSE | --send-again")
    return 0


async def _resolve(args: argparse.Namespace, one_shot: OneShot) -> int:
    if args.baz726 is not None and args.eligible is None:
        raise UsageError("--baz726 needs --eligible yes|no (what the centre shows as bkee45 是否可预参保)")
    if args.baz726 is None and args.eligible is not None:
        raise UsageError("--eligible goes with --baz726")
    async with one_shot(args) as host:
        result = await host.resolve_review(
            args.birth_id, operator=args.operator, registration_number=args.baz726,
            eligible=None if args.eligible is None else args.eligible == "yes",
            refused=args.refused, send_again=args.send_again,
        )
        if args.send_again:
            await host.sync("upload")
            result = await host.birth(args.birth_id)
        await host.deliver_due()
    _print_birth(birth_facts(result))
    return 0


# --- corrections ----------------------------------------------------------------------------------------


def _record(path: str) -> dict[str, Any]:
    """The corrected record: one JSON object with the spec's wire names (``-`` reads stdin), in
    any encoding Notepad saves (:mod:`ybplug.textfile`)."""
    where = f"--record {path}"
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise RecordFileError(f"{where}: cannot read it ({exc.strerror})") from None
    record = loads_json(decode_text(data, where), where)  # (a JSON integer past 4,300 digits too)
    if not isinstance(record, dict):
        raise RecordFileError(f"{where}: expected one JSON object with the spec's wire names (bke042, bme027...)")
    return record


@contextlib.contextmanager
def invalid_input() -> Iterator[None]:
    """A field rule broken by the ``--record`` file or ``--reason``: the command is to fix (exit 2)."""
    from ybplug.fields import InvalidMessage

    try:
        yield
    except InvalidMessage as exc:
        raise InvalidInput(str(exc)) from None


async def amend(args: argparse.Namespace, *, one_shot: OneShot) -> int:
    record = _record(args.record)
    async with one_shot(args) as host:
        with invalid_input():
            await host.amend_birth(args.birth_id, record, operator=args.operator)
        await host.sync("upload")
        result = await host.birth(args.birth_id)
    _print_birth(birth_facts(result))
    return 0 if result.state == "registered" else 1


async def replace(args: argparse.Namespace, *, one_shot: OneShot) -> int:
    record = _record(args.record)
    from ybplug.wire import WireError

    async with one_shot(args) as host:
        try:
            with invalid_input():
                new = await host.replace_birth(args.birth_id, record, args.reason, operator=args.operator)
        except WireError as exc:  # the void's answer is not known: the journaled replacement waits
            raise ReplacementUnderWay(
                f"{exc}; the replacement of birth #{args.birth_id} is journaled: the worker or `ybplug sync`"
                " carries it on (the void, then the corrected registration)"
            ) from None
        await host.sync("upload")
        result = await host.birth(new.birth_id)
    print(f"birth #{args.birth_id} voided; the corrected record is birth #{result.birth_id}")
    _print_birth(birth_facts(result))
    return 0 if result.state == "registered" else 1


def add_commands(command: Command, *, open_journal: OpenJournal, one_shot: OneShot, operator: str) -> None:
    """Add the clerk's commands to the CLI's parser (``command`` makes a sub-command with -c)."""
    p = command("status", partial(status, open_journal=open_journal),
                "births by state, births in trouble, parked deliveries, last runs")
    p.add_argument("--json", action="store_true", help="for scripts: the same facts as JSON")
    p.add_argument("--check", action="store_true",
                   help="for a monitor: exit 1 when anything is parked, in review, stale or failing, or deliveries"
                        " wait for a plugin no running host has")
    p = command("show", partial(show, open_journal=open_journal), "one birth: state, number, exchanges, actions")
    p.add_argument("key", help="birth id, HIS serial (bke042) or registration number (baz726)")
    p.add_argument("--twin", type=twin_arg, help="bme027 多胞胎序号, when a HIS serial names twins")
    p.add_argument("--json", action="store_true", help="for scripts: the same facts as JSON")
    p = command("review", partial(review, open_journal=open_journal, one_shot=one_shot),
                "the births in needs review; `review resolve` resolves one")
    p.add_argument("--json", action="store_true", help="for scripts: the list as JSON")
    p.set_defaults(review_command=None)
    resolve = p.add_subparsers(dest="review_command").add_parser(
        "resolve", help="resolve a review as you found the birth at the centre (journaled)")
    resolve.add_argument("birth_id", type=birth_id_arg, help="5 or #5")
    how = resolve.add_mutually_exclusive_group(required=True)
    how.add_argument("--baz726", type=baz726_arg, help="the registration number found in 定点机构管理系统 (XSE...)")
    how.add_argument("--refused", metavar="CAUSE", type=cause_arg, help="the centre refused it, with this cause")
    how.add_argument("--send-again", action="store_true", help="the centre holds nothing: upload it again")
    resolve.add_argument("--eligible", choices=["yes", "no"], help="with --baz726: bkee45 是否可预参保")
    resolve.add_argument("--operator", default=operator, type=operator_arg, help="who resolves it (journaled; default: the login name)")
    resolve.add_argument("-c", "--config", default=argparse.SUPPRESS, help="ybplug.toml (default: as for review)")
    for name, func, what in (
        ("amend", amend, "correct a birth not yet registered (pending or refused) and upload it again"),
        ("replace", replace, "correct a registered birth: void it and register the corrected record"),
    ):
        p = command(name, partial(func, one_shot=one_shot), what)
        p.add_argument("birth_id", type=birth_id_arg, help="5 or #5")
        p.add_argument("--record", required=True, metavar="FILE.json",
                       help="the corrected record: a JSON object with the spec's wire names; - reads stdin")
        if name == "replace":
            p.add_argument("--reason", required=True, help="作废原因, sent with the void")
        p.add_argument("--operator", default=operator, type=operator_arg, help="who does this (journaled; default: the login name)")
