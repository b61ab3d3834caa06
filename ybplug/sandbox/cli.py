"""``ybplug sandbox``: serve the simulated centre until SIGINT/SIGTERM, printing its URL on one line.

The accepted password comes from ``$YBPLUG_SANDBOX_PWD`` or ``--pwd-file``, never from the
command line: argv is readable by every user of the machine (``ps``, ``/proc/PID/cmdline``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, NoReturn

from ybplug.sandbox.centre import DEFAULT_PORT, SANDBOX_PWD, SANDBOX_USR
from ybplug.sandbox.faults import FAULT_KINDS, Fault, parse_fault
from ybplug.sandbox.server import Sandbox
from ybplug.system import wait_for_stop
from ybplug.textfile import UnreadableFile, decode_text

#: Environment variable holding the password the sandbox accepts.
PWD_ENV = "YBPLUG_SANDBOX_PWD"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so a bad flag costs one clear line."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


class _RefusePwd(argparse.Action):
    """``--pwd`` is gone: the password would be readable in argv by every user of the machine."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> NoReturn:
        raise _UsageError(f"--pwd would show the password to every user (ps): set {PWD_ENV} or use --pwd-file FILE")


def _fault_argument(spec: str) -> Fault:
    try:
        return parse_fault(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{spec!r}: {exc}") from None


def _port_argument(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def _parser() -> _Parser:
    parser = _Parser(
        prog="ybplug sandbox",
        allow_abbrev=False,  # --pwd must not pass for an abbreviation of --pwd-file
        description="Run the simulated Xiamen centre until SIGINT/SIGTERM; prints its URL on one line.",
        epilog=(
            "Fault SPEC: KIND[:FUNID][,times=N][,seconds=S][,status=N][,cause=TEXT], KIND one of "
            f"{', '.join(FAULT_KINDS)}.  Without times a fault affects every call.  "
            f"The accepted pwd is --pwd-file's first line, else ${PWD_ENV}, else the documented "
            "sandbox one.  Seeded mothers: see ybplug.sandbox.SEED_MOTHERS."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port_argument, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--db", default=None, help="SQLite file holding the state (default: in memory)")
    parser.add_argument("--usr", default=SANDBOX_USR, help=f"accepted usr (default {SANDBOX_USR})")
    parser.add_argument("--pwd-file", type=Path, default=None, metavar="FILE",
                        help=f"file whose first line is the accepted pwd (or set ${PWD_ENV})")
    parser.add_argument("--pwd", nargs="?", action=_RefusePwd, help=argparse.SUPPRESS)
    parser.add_argument("--fault", action="append", default=[], type=_fault_argument, metavar="SPEC",
                        help="inject a fault from the start (repeatable)")
    parser.add_argument("--charset", choices=["gbk", "gb18030"], default="gbk",
                        help="the centre's database charset: byte limits and which characters it holds (default gbk)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every transaction (masked)")
    return parser


def _password(pwd_file: Path | None) -> str:
    """The accepted pwd: ``--pwd-file`` (first line), else ``$YBPLUG_SANDBOX_PWD``, else the default."""
    if pwd_file is not None:
        try:  # as Notepad saves it: a BOM must not become part of the pwd
            lines = decode_text(pwd_file.read_bytes(), f"--pwd-file {pwd_file}").splitlines()
        except OSError as exc:
            raise _UsageError(f"cannot read --pwd-file {pwd_file}: {exc.strerror or exc}") from None
        except UnreadableFile as exc:
            raise _UsageError(str(exc)) from None
        if not lines or not lines[0]:
            raise _UsageError(f"--pwd-file {pwd_file} is empty (its first line is the pwd)")
        return lines[0]
    return os.environ.get(PWD_ENV) or SANDBOX_PWD


async def _serve(sandbox: Sandbox, host: str, port: int) -> int:
    try:
        url = await sandbox.start(host, port)
    except OSError as exc:
        print(f"ybplug sandbox: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        sandbox.close()
        return 1
    print(url, flush=True)
    try:
        await wait_for_stop()  # SIGINT/SIGTERM on POSIX, Ctrl+C/Ctrl+Break on Windows
    finally:
        await sandbox.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``ybplug sandbox``: serve until SIGINT/SIGTERM.  Exit 2 on a bad flag or unusable ``--db``."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
        pwd = _password(args.pwd_file)
    except _UsageError as exc:
        print(f"ybplug sandbox: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        sandbox = Sandbox(args.db or ":memory:", usr=args.usr, pwd=pwd, faults=args.fault, charset=args.charset)
    except (sqlite3.Error, OSError) as exc:
        print(f"ybplug sandbox: error: cannot use --db {args.db}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(sandbox, args.host, args.port))
    except KeyboardInterrupt:
        return 0


__all__ = ["PWD_ENV", "main"]
