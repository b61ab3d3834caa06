"""``ybplug console``: serve the console on the configured journal; ``console add-user`` makes an account.

Kept apart from :mod:`ybplug.cli` (one small hook there) and free of aiohttp at import: the
parser is built for every ``ybplug`` command, the web application loads only when served.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ybplug.console.config import ConsoleSection, ConsoleUser, NameTaken, add_user_to_file, split_listen, user_line
from ybplug.console.passwords import hash_password
from ybplug.errors import Error, UsageError

log = logging.getLogger("ybplug.console")


class ConsoleError(Error):
    """The console cannot start or the account cannot be made, for a reason a person can fix."""


class AccountRefused(ConsoleError, UsageError):
    """``console add-user`` was given what makes no account (a short password, a bad name): the
    person fixes the command, exit 2 like any usage error."""


def listen_arg(text: str) -> str:
    """``--listen``/``--console HOST:PORT`` checked as the option is read: a bad one is a usage
    error (exit 2), not a console that fails to start (exit 1)."""
    try:
        split_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", metavar="HOST:PORT", type=listen_arg,
                        help="where to listen (default: [console] listen in ybplug.toml, else 127.0.0.1:8722)")
    sub = parser.add_subparsers(dest="console_command")
    add_user = sub.add_parser(
        "add-user", help="make an operator account: written into the -c config, or printed as a line for [console] users"
    )
    add_user.add_argument("-c", "--config", default=argparse.SUPPRESS,
                          help="the ybplug.toml to add the account to (without it, the line is printed to paste)")
    add_user.add_argument("name", help="the operator's login name (journaled with each action)")
    add_user.add_argument("--role", choices=["operator", "viewer"], required=True,
                          help="operator: sees and acts; viewer: only sees")


def _password() -> str:
    """From the terminal (asked twice, not echoed), or the first line of stdin for a script."""
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise AccountRefused("the two passwords differ")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        raise AccountRefused("the password must have at least 8 characters")
    return password


def add_user(args: argparse.Namespace) -> int:
    password = _password()
    try:
        user = ConsoleUser(name=args.name, role=args.role, password_hash=hash_password(password))
    except ValueError as exc:
        raise AccountRefused(str(exc)) from None
    target = getattr(args, "config", None)
    if target:
        try:
            add_user_to_file(Path(target), user)
        except NameTaken as exc:
            raise AccountRefused(str(exc)) from None
        except OSError as exc:
            raise ConsoleError(f"cannot write the account into {target}: {exc.strerror or exc}") from None
        except ValueError as exc:
            print(f"# {exc}; add this line to users = [...] under [console]:", file=sys.stderr)
            print(user_line(user) + ",")
            return 1
        print(f"console user {user.name} ({user.role}) added to {target}; restart the console to use it", file=sys.stderr)
        return 0
    print("# add to users = [...] under [console] in ybplug.toml:", file=sys.stderr)
    print(user_line(user) + ",")
    return 0


@asynccontextmanager
async def _serving(host: Any, section: ConsoleSection, listen: str | None) -> AsyncIterator[None]:
    """The console's web server over ``host``, listening until the block ends."""
    from aiohttp import web

    from ybplug.console.app import AccessLog, Console

    try:
        address, port = split_listen(listen or section.listen)
    except ValueError as exc:
        raise ConsoleError(str(exc)) from None
    if not section.users:
        log.warning("console: no users under [console] in the config: nobody can log in (`ybplug console add-user`)")
    runner = web.AppRunner(Console(host, section).app(), access_log_class=AccessLog, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, address, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConsoleError(f"cannot listen on {address}:{port} ({exc.strerror or exc})") from None
        for bound in runner.addresses:  # the real port when asked for port 0
            log.info("console at http://%s:%s/ on journal %s", bound[0], bound[1], host.config.journal_shown)
        yield
    finally:
        await runner.cleanup()


@asynccontextmanager
async def beside(host: Any, listen: str | None) -> AsyncIterator[None]:
    """``ybplug run --console [HOST:PORT]``: the console in the worker's process, on the worker's
    host (its actions reach the running schedule at once).  ``listen`` None: no console at all
    (nothing of aiohttp.web is even imported); an empty string: ``[console] listen``."""
    if listen is None:
        yield
        return
    async with _serving(host, host.config.console or ConsoleSection(), listen or None):
        yield


async def serve(config: Any, listen: str | None) -> int:
    """Run the console until a stop request (Ctrl+C, the service manager) or a lost journal."""
    from ybplug.host import Host
    from ybplug.system import stop_requests

    section: ConsoleSection = config.console or ConsoleSection()
    async with Host(config, background=False) as host, stop_requests() as stop, _serving(host, section, listen):
        await stop.wait_or(host.failed)
        if host.failure is not None:
            raise host.failure
    return 0
