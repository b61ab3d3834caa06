"""The ``ybplug`` command.

``run`` is the worker beside a HIS; ``demo`` the whole flow on the sandbox; ``sync``, ``retry``
and ``void`` the operator's tools (``status``, ``show``, ``review``, ``amend`` and ``replace``, the
clerk's, are in :mod:`ybplug.clerk`); ``decode`` scans a QR code; ``sandbox`` serves the
simulated centre.  A mistake a person can make (a bad config, an unreachable centre, a wrong
password, an invalid field) ends in one clear line and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import inspect
import json
import logging
import math
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ybplug import clerk
from ybplug.clerk import terminal_safe
from ybplug.errors import Error, UsageError

if TYPE_CHECKING:
    from ybplug.host import Host


def _config(args: argparse.Namespace) -> Any:
    from ybplug.config import Config

    path = getattr(args, "config", None)
    if path:
        return Config.load(path)
    if Path("ybplug.toml").exists():
        return Config.load("ybplug.toml")
    return Config()


def _one_shot(args: argparse.Namespace) -> Host:
    """A host for one command: no schedule or delivery loop; the command does its work itself."""
    from ybplug.host import Host

    return Host(_config(args), background=False)


async def _run(args: argparse.Namespace) -> int:
    from ybplug.config import without_password
    from ybplug.console.command import beside
    from ybplug.host import Host
    from ybplug.system import private_dir, stop_requests

    config = _config(args)
    _log_to_file(config)
    log = logging.getLogger("ybplug")
    with contextlib.suppress(OSError):  # one that cannot be is the journal's clear error below
        if not config.journal_on_server:
            private_dir(Path(config.journal).parent)  # a folder ybplug creates holds personal data: 0700
    # the schedule and deliveries run in the host's task group; the console beside them if asked
    async with Host(config) as host, stop_requests() as stop, beside(host, args.console):
        log.info("worker running: journal %s, upload %s, centre %s", config.journal_shown, config.upload, without_password(config.wire_config().url))
        reason = await stop.wait_or(host.failed)  # a stop request, or the host failing (its journal lost)
        if host.failure is not None:
            raise host.failure  # one line from main, exit 1
        log.info("stopping (%s)", reason or "stop requested")
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from ybplug.demo import run_demo

    return await run_demo(Path(args.dir) if args.dir else None)


def _open_journal(args: argparse.Namespace) -> Any:
    """The configured journal, opened for a local read or an operator's act (no host needed);
    None when there is none yet."""
    from ybplug.journal import Journal
    from ybplug.journal.identity import marker_path

    config = _config(args)
    if config.journal_on_server:  # a database server: opening it says whether it is there
        return Journal(config.journal).open()
    path = Path(config.journal)
    if not path.exists() and not marker_path(path).exists():
        print(f"no journal at {config.journal} yet")
        return None
    return Journal(path).open()


@contextlib.contextmanager
def _journal(args: argparse.Namespace) -> Iterator[Any]:
    """The configured journal for an operator's act, closed afterwards (None when there is none)."""
    journal = _open_journal(args)
    try:
        yield journal
    finally:
        if journal is not None:
            journal.close()


async def _init(args: argparse.Namespace) -> int:
    from ybplug.journal import Journal, start_new_journal

    config = _config(args)
    if args.new_journal:
        journal = start_new_journal(config.journal)
    elif args.restored:  # the operator put an older backup back on purpose: go on with what it holds
        journal = Journal(config.journal, new=not config.journal_on_server).open()
    else:
        journal = Journal(config.journal).open()
    print(f"journal {journal.id} at {config.journal_shown}")
    journal.close()
    return 0


def _prune(args: argparse.Namespace) -> int:
    with _journal(args) as journal:
        pruned = journal.prune(args.older_than * 86400, args.operator) if journal else 0
    print(f"erased the personal data of {pruned} settled births older than {args.older_than:g} days")
    return 0


async def _plugins(args: argparse.Namespace) -> int:
    """``ybplug plugins``: what this config loads, and the journal's durable subscribers (read
    only: listing subscribes nothing and creates no journal)."""
    import pluggy

    from ybplug.hooks import PROJECT, specs
    from ybplug.kit import plugins_report, print_plugins
    from ybplug.loading import load_plugins

    if args.plugins_command == "forget":
        return _forget(args)
    config = _config(args)
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(specs)
    load_plugins(pm, config, (), entry_points=True)
    status: dict[str, Any] = {}
    journal = _open_journal(args) if not args.json else _open_journal_quietly(args)
    if journal is not None:
        try:
            status = journal.status()
        finally:
            journal.close()
    print_plugins(plugins_report(pm, status), as_json=args.json)
    return 0


def _open_journal_quietly(args: argparse.Namespace) -> Any:
    with contextlib.redirect_stdout(sys.stderr):  # --json keeps stdout for the JSON
        return _open_journal(args)


async def _check(args: argparse.Namespace) -> int:
    from ybplug.kit import run_checks

    return await run_checks(args.config or "ybplug.toml")


async def _new_plugin(args: argparse.Namespace) -> int:
    from ybplug.scaffold import new_plugin

    target = new_plugin(args.name, Path(args.dir) if args.dir else None)
    print(f"wrote {target}: `pip install -e {target} 'ybplug[testing]'`, then `pytest {target}`")
    return 0


def _forget(args: argparse.Namespace) -> int:
    with _journal(args) as journal:
        if journal is None:
            return 2  # nothing to forget: the command names no subscriber
        known = sorted(journal.status()["subscribers"])
        if args.name not in known:
            raise UsageError(
                f"no subscriber named {shown(args.name, 200)!r} in journal {journal.name}"
                f" (subscribers: {', '.join(known) or 'none'})"
            )
        hooks, dropped = journal.forget(args.name, args.operator)
    print(f"forgot plugin {args.name}: {hooks} hooks, {dropped} waiting deliveries dropped (journaled as {args.operator})")
    return 0


def _print_summary(summary: dict[str, int]) -> None:
    print(", ".join(f"{key.replace('_', ' ')} {value}" for key, value in summary.items()))


async def _sync(args: argparse.Namespace) -> int:
    async with _one_shot(args) as host:
        summary = await host.sync(args.job)
        failed = await _failed_deliveries(host)
    _print_summary(summary)
    return _failed_work("sync", summary, failed)


async def _retry(args: argparse.Namespace) -> int:
    async with _one_shot(args) as host:
        count = await host.replay(args.event, args.plugin)
        print(f"re-queued {count} parked deliveries; waiting uploads are due now")
        summary = await host.sync("upload")
        failed = await _failed_deliveries(host)
    _print_summary(summary)
    return _failed_work("retry", summary, failed)


async def _failed_deliveries(host: Host) -> tuple[int, int]:
    """How many hook deliveries this command made failed, and how many of them were parked
    (their outcomes committed first: a parked delivery is known once journaled)."""
    await host.deliveries.settled()
    return host.deliveries.failed, host.deliveries.parked


def _failed_work(command: str, summary: dict[str, int], deliveries: tuple[int, int]) -> int:
    """Exit status 1, with one line on stderr, when uploads or hook deliveries failed: a monitor
    or a script running ``sync``/``retry`` must see that the work is not done."""
    failed, parked = deliveries
    trouble = []
    if summary.get("upload_failed"):
        trouble.append(f"{summary['upload_failed']} uploads failed (they are retried)")
    if failed:
        trouble.append(f"{failed} hook deliveries failed ({parked} parked: `ybplug retry` replays them)")
    if not trouble:
        return 0
    print(f"ybplug {command}: " + "; ".join(trouble) + "; see `ybplug status`", file=sys.stderr)
    return 1


async def _void(args: argparse.Namespace) -> int:
    async with _one_shot(args) as host:
        number = await _number_to_void(host, args.baz726)
        with clerk.invalid_input():  # an empty or overlong --reason: the command to fix, exit 2
            result = await host.void(number, args.reason)
    print(terminal_safe(f"voided {result.registration_number}"))
    return 0


async def _number_to_void(host: Host, key: str) -> str:
    """The baz726 ``ybplug void KEY`` sends: KEY itself when it is one (any case), else the number
    of the birth KEY names (``6``, ``#6``, a HIS serial).  Anything else is refused here, before
    it reaches the centre."""
    from ybplug.fields import is_registration_number
    from ybplug.journal.model import BirthNotFound
    from ybplug.naming import echo_key, lookup_key

    if is_registration_number(number := key.strip().upper()):
        return number
    try:
        ids = await host.run_journal(host.journal.find, lookup_key(key), None)
    except BirthNotFound:  # text no birth can answer to
        ids = []
    if not ids:
        raise BirthNotFound(
            f"baz726 新生儿登记流水号 {echo_key(key)}: neither a registration number (XSE and 13 digits)"
            " nor a birth's id (#5) or HIS serial (bke042)"
        )
    births = [await host.birth(birth_id) for birth_id in ids]
    if len({b.birth.multiple_birth_number for b in births}) > 1:
        raise UsageError(
            f"HIS serial {echo_key(key)} names twins (births {', '.join(f'#{b.birth_id}' for b in births)}):"
            " void one by its #id or its baz726"
        )
    birth = births[0]
    if birth.registration_number is None:
        raise UsageError(f"birth #{birth.birth_id} ({birth.state}) has no baz726 新生儿登记流水号: nothing to void")
    return birth.registration_number


async def _decode(args: argparse.Namespace) -> int:
    from ybplug.privacy import mask

    async with _one_shot(args) as host:
        identity = await host.decode_qr(
            business_type=args.business_type, idcode=args.idcode, org_id=args.org_id, district_no=args.district_no
        )
    print(f"name:          {mask(identity.name)}")
    print(f"ID number:     {mask(identity.id_number)} (type {identity.id_type})")
    print(f"insured in:    {identity.insurance_division}")
    print(f"card number:   {mask(identity.card_number)}")
    print(f"personal code: {mask(identity.personal_code)}")
    return 0


async def _console(args: argparse.Namespace) -> int:
    from ybplug.console import command

    if args.console_command == "add-user":
        return command.add_user(args)
    return await command.serve(_config(args), args.listen)


def _days(text: str) -> float:
    """``--older-than``: a number of days, 0 or more.  A negative one (a typo for a positive one)
    would erase every settled birth, as 0 does; NaN or infinity would silently erase none."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not math.isfinite(days) or days < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the number of days must be 0 or more")
    return days


def _listen(text: str) -> str:
    from ybplug.console.command import listen_arg

    return listen_arg(text)


def _operator() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name (a service account without one)
        return "unknown"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ybplug")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "(not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ybplug", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail (personal data stays masked)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Callable[[argparse.Namespace], Awaitable[int] | int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.set_defaults(func=func)
        if name not in ("demo", "new-plugin"):
            p.add_argument("-c", "--config", help="ybplug.toml (default: ./ybplug.toml if present, else built-in defaults)")
        return p

    run = command("run", _run, "run the worker: uploads on schedule, real-name polls, hook deliveries")
    run.add_argument("--console", nargs="?", const="", metavar="HOST:PORT", type=_listen,
                     help="serve the operations console in the same process (default address: [console] listen, else 127.0.0.1:8722)")
    demo = command("demo", _demo, "the whole flow against the embedded sandbox centre")
    demo.add_argument("--dir", help="keep the demo's databases here (default: a new temporary folder)")
    clerk.add_commands(command, open_journal=_open_journal, one_shot=_one_shot, operator=_operator())
    sync = command("sync", _sync, "upload and poll now, then deliver the hooks")
    sync.add_argument("job", nargs="?", default="all", choices=["all", "upload", "realname", "stale"])
    retry = command("retry", _retry, "replay parked deliveries and retry waiting uploads now")
    retry.add_argument("--event", help="only this event id")
    retry.add_argument("--plugin", help="only deliveries to this plugin")
    void = command("void", _void, "void a registration (yb04.13.01.22)")
    void.add_argument("baz726", metavar="KEY",
                      help="baz726 新生儿登记流水号 (any case), or the birth's id (5, #5) or HIS serial")
    void.add_argument("--reason", required=True, help="作废原因")
    decode = command("decode", _decode, "decode a national insurance QR code through EcTrans")
    decode.add_argument("--idcode", default="", help="the scanned code; empty opens the library's scanning window")
    decode.add_argument("--business-type", required=True, help="用码业务类别: 101 挂号, 102 充值, ... 900 其他")
    decode.add_argument("--org-id", help="机构ID (default from [voucher] org_id)")
    decode.add_argument("--district-no", help="参保地行政区划 (default from [voucher] district_no)")
    init = command("init", _init, "create the journal, or start a new empty one where one was lost")
    init.add_argument("--new-journal", action="store_true",
                      help="start a new empty journal where the old one is missing or damaged (never over a readable "
                           "file); on PostgreSQL, take the journal now at the URL (new tables in an empty schema) "
                           "as the one this machine expects")
    init.add_argument("--restored", action="store_true",
                      help="go on with a journal restored from an older backup (the births recorded since it was "
                           "taken are not in it: their HIS must record them again)")
    prune = command("prune", _prune, "erase the personal data of settled births (the journal keeps the statistics)")
    prune.add_argument("--older-than", type=_days, required=True, metavar="DAYS",
                       help="births settled (real-named, voided, refused, every delivery done) this many days ago")
    prune.add_argument("--operator", default=_operator(), help="who does this (journaled; default: the login name)")
    plugins = command("plugins", _plugins, "every plugin loaded, from where, its hooks and what waits for it; `plugins forget NAME`")
    plugins.add_argument("--json", action="store_true", help="one JSON list, for a script")
    plugins_sub = plugins.add_subparsers(dest="plugins_command", required=False)
    forget = plugins_sub.add_parser("forget", help="stop keeping events for a plugin that is gone for good (journaled)")
    forget.add_argument("name", help="the plugin's name, as `ybplug status` shows it")
    forget.add_argument("--operator", default=_operator(), help="who does this (journaled; default: the login name)")
    forget.add_argument("-c", "--config", default=argparse.SUPPRESS,
                        help="ybplug.toml (default: ./ybplug.toml if present, else built-in defaults)")
    command("check", _check, "check a config here: the centre (sign-in), the voucher library (loaded, not called), the plugins")
    new = command("new-plugin", _new_plugin, "write a new plugin distribution: pyproject, hooks stubbed, a test using the kit")
    new.add_argument("name", help="the plugin's name, e.g. st-mary-his (a folder and a Python package are made from it)")
    new.add_argument("--dir", help="where to write it (default: ./NAME)")
    from ybplug.console.command import add_arguments as console_arguments

    console_arguments(command("console", _console, "serve the operations console (browser) on the journal; `console add-user` makes an account"))
    sub.add_parser("sandbox", help="serve the simulated centre (see `ybplug sandbox --help`)", add_help=False)
    return parser


class _JsonLines(logging.Formatter):
    """``log_format = "json"``: one object per line, for a log shipper (no field is ever split)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _log_to_file(config: Any) -> None:
    """``ybplug run``: the configured log file (rotating, 0600) beside stderr, in the configured format."""
    from ybplug.config import ConfigError
    from ybplug.logfile import PrivateRotatingFileHandler

    formatter = _JsonLines() if config.log_format == "json" else logging.Formatter(_TEXT)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(formatter)
    if config.log_file:
        try:
            handler = PrivateRotatingFileHandler(Path(config.log_file), config.log_max_bytes, config.log_backups)
        except OSError as exc:
            raise ConfigError(f"log_file {config.log_file}: cannot open it ({exc.strerror or exc}); check `log_file` in ybplug.toml") from None
        handler.setFormatter(formatter)
        root.addHandler(handler)


#: The most of an error (or of a value it echoes) the CLI prints: a 100 KB argument stays readable.
SHOWN = 2000

#: Exit statuses beyond 0/1/2: 128 + the signal, as a shell shows a command a signal ended.
INTERRUPTED = 130
OUTPUT_CLOSED = 141


def shown(text: str, limit: int = SHOWN) -> str:
    """Text fit for the one line a person reads: ID and phone numbers masked (an echoed argument
    or a plugin's message may hold one), on one line, at most ``limit`` characters."""
    from ybplug.privacy import scrub

    text = terminal_safe(" ".join(scrub(text).splitlines()))
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors echo at most :data:`SHOWN` characters of what was typed."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {shown(message)}\n")


class _Interrupted(Exception):
    """Ctrl+C (or the service manager's stop) ended a one-shot command."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


async def _until_stopped(command: Awaitable[int]) -> int:
    """Run a one-shot command until it ends or a stop is asked (Ctrl+C; SIGTERM on POSIX,
    Ctrl+Break on Windows), then :class:`_Interrupted`.

    The stop cancels the command through anyio, so what is being journaled (shielded) finishes
    and the host closes as after any error.  Without this, asyncio's own Ctrl+C handling
    cancels the main task natively, which the host's shielded work may absorb: the command then
    ran on to its end (a slow centre: 20 s) and exited 0, or waited out a hung library."""
    import anyio

    from ybplug.system import stop_requests

    error: Exception | None = None
    result = INTERRUPTED
    async with stop_requests() as stop:
        with anyio.CancelScope() as scope:

            async def cancel_on_stop() -> None:
                await stop.wait()
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_on_stop)
                try:
                    result = await command
                except Exception as exc:  # raised as itself below, not inside an exception group
                    error = exc
                tg.cancel_scope.cancel()
    if stop.signal_name:  # an error the stop caused (a closed connection...) is the stop
        raise _Interrupted(stop.signal_name)
    if error is not None:
        raise error
    return result


def _exit_status(signal_name: str) -> int:
    import signal

    number = getattr(signal, signal_name, None)
    return 128 + int(number) if number is not None else INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """The ``ybplug`` command; its exit status (README: "Exit status")."""
    command = "ybplug"
    if sys.stdout is None:  # started with stdout closed (`>&-`) or by pythonw: its output is discarded
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (open until exit)
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here rather than at exit
        return code
    except BrokenPipeError:  # `ybplug status | head -1`: the reader has what it wanted
        _stdout_to_devnull()
        return OUTPUT_CLOSED
    except OSError as exc:  # stdout full (`>/dev/full`) or gone: the output cannot be written
        if exc.errno not in _OUTPUT_LOST:
            raise
        _stdout_to_devnull()
        with contextlib.suppress(Exception):
            print(f"{command}: cannot write the output ({exc.strerror or exc})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl+C outside a one-shot command's event loop
        print(f"{command}: interrupted", file=sys.stderr)
        return INTERRUPTED


#: What writing stdout fails with when the output cannot take it: the disk full, the device gone,
#: the descriptor closed.  (A closed pipe is BrokenPipeError: exit 141.)
_OUTPUT_LOST = frozenset(getattr(errno, name, errno.ENOSPC) for name in ("ENOSPC", "EIO", "EBADF", "EDQUOT", "EFBIG"))


def _stdout_to_devnull() -> None:
    """Point stdout at the null device, so the interpreter's last flush at exit does not print
    a BrokenPipeError of its own (Python's documented recipe)."""
    import os

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _main(argv: list[str] | None) -> int:
    from ybplug.system import exit_on_stop_signals, tolerant_console

    tolerant_console()  # a GBK console must not end a command on a name it cannot show
    args_list = sys.argv[1:] if argv is None else argv
    if args_list and args_list[0] == "sandbox":
        from ybplug.sandbox.cli import main as sandbox_main

        return sandbox_main(args_list[1:])
    args = _parser().parse_args(args_list)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=_TEXT, stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if args.command == "run":
        exit_on_stop_signals()  # a service stopped while still starting stops cleanly too
    try:
        outcome = args.func(args)
        if inspect.iscoroutine(outcome):  # a command that talks to the centre or runs the host
            import anyio

            coroutine = outcome
            if args.command in ("run", "console"):  # they wait for a stop request themselves
                outcome = anyio.run(lambda: coroutine)
            else:
                outcome = anyio.run(_until_stopped, coroutine)
        code: int = outcome
        return code
    except (KeyboardInterrupt, _Interrupted) as exc:
        print(f"ybplug {args.command}: interrupted", file=sys.stderr)
        return _exit_status(exc.signal_name) if isinstance(exc, _Interrupted) else INTERRUPTED
    except Error as exc:  # a person's to fix: one line, no traceback
        from ybplug.caller import PluginError
        from ybplug.config import ConfigError

        print(f"ybplug {args.command}: error: {shown(str(exc))}", file=sys.stderr)
        return 2 if isinstance(exc, (ConfigError, PluginError, UsageError)) else 1


if __name__ == "__main__":
    sys.exit(main())
