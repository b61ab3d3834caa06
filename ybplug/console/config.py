"""``[console]``: where the operations console listens and who may use it.

Example::

    [console]
    listen = "127.0.0.1:8722"        # loopback unless you mean otherwise
    users = [
      {name = "lin", role = "operator", password_hash = "scrypt$16384$8$1$..."},
      {name = "chen", role = "viewer", password_hash = "scrypt$16384$8$1$..."},
    ]

``ybplug console add-user NAME --role operator -c ybplug.toml`` writes the account into the file
(:func:`add_user_to_file`); without ``-c`` it prints the ``users`` line.  Imported by
:mod:`ybplug.config`, so it must not load aiohttp (the clerk's commands stay fast).
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from ybplug.console.passwords import is_password_hash

Role = Literal["operator", "viewer"]


class ConsoleUser(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One operator account: a viewer sees, an operator also acts (resolve, replay)."""

    name: str
    role: Role
    password_hash: str

    def __post_init__(self) -> None:
        if not self.name.strip() or any(c in self.name for c in "<>&\"'\r\n"):
            raise ValueError(f"console user name {self.name!r}: letters, digits, - or _ (no markup, not empty)")
        if not is_password_hash(self.password_hash):
            raise ValueError(
                f"console user {self.name}: password_hash is not a scrypt$... hash; make one with"
                " `ybplug console add-user NAME --role operator|viewer`"
            )

    def __repr__(self) -> str:  # the hash is not a password, but is nobody's business in a log
        return f"ConsoleUser(name={self.name!r}, role={self.role!r}, password_hash='***')"


class ConsoleSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The console's settings; with no users nobody can log in (the console says so)."""

    listen: str = "127.0.0.1:8722"
    users: list[ConsoleUser] = msgspec.field(default_factory=list)
    #: A session unused this long ends (the clerk walked away from the screen).
    session_minutes: float = 30.0
    #: Failed logins from one address within ``login_window`` seconds before it must wait.
    login_attempts: int = 5
    login_window: float = 300.0

    def __post_init__(self) -> None:
        names = [u.name for u in self.users]
        if len(set(names)) != len(names):
            raise ValueError("console users: a name appears twice")
        if self.session_minutes <= 0 or self.login_attempts <= 0 or self.login_window <= 0:
            raise ValueError("console session_minutes, login_attempts and login_window must be positive")
        split_listen(self.listen)

    def user(self, name: str) -> ConsoleUser | None:
        return next((u for u in self.users if u.name == name), None)


def split_listen(listen: str) -> tuple[str, int]:
    """``127.0.0.1:8722`` -> ``("127.0.0.1", 8722)``; ``[::1]:8722`` for IPv6."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536 or not host:
        raise ValueError(f"console listen {listen!r}: expected HOST:PORT, like 127.0.0.1:8722")
    return host.strip("[]"), int(port)


class NameTaken(ValueError):
    """The config already has an account of that name (replacing it is a person's decision)."""


def user_line(user: ConsoleUser) -> str:
    """The account as one inline table, for ``users = [...]``."""
    return (f"{{name = {json.dumps(user.name, ensure_ascii=False)}, role = {json.dumps(user.role)},"
            f" password_hash = {json.dumps(user.password_hash)}}}")


def add_user_to_file(path: Path, user: ConsoleUser) -> None:
    """Add ``user`` to ``[console] users`` in the TOML file at ``path``, leaving every other line
    as the hospital wrote it (comments included).

    A ``users = [...]`` array gets the account before its closing bracket; otherwise a
    ``[[console.users]]`` table is appended.  The edited text must parse to the same settings plus
    this one account, or nothing is written (ValueError saying so): the file is a hospital's,
    and a half-edited config is worse than a line to paste.  :class:`NameTaken` when the file has
    an account of that name.  Written whole through a temporary file: a failure leaves the old one."""
    text = path.read_text(encoding="utf-8")
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML ({exc})") from None
    section = before.get("console", {})
    users = section.get("users", []) if isinstance(section, dict) else []
    if any(isinstance(u, dict) and u.get("name") == user.name for u in users):
        raise NameTaken(f"{path} has a console user named {user.name} already: remove that entry to make it again")
    edited = _inserted(text, user)
    expected = json.loads(json.dumps(before))
    expected.setdefault("console", {}).setdefault("users", []).append(msgspec.to_builtins(user))
    try:
        after = tomllib.loads(edited) if edited is not None else None
    except tomllib.TOMLDecodeError:
        after = None
    if after != expected:
        raise ValueError(f"could not place the account in {path} by itself")
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(edited or "", encoding="utf-8")
    os.replace(temporary, path)


def _inserted(text: str, user: ConsoleUser) -> str | None:
    """``text`` with the account added, or None when its ``users`` array can't be found."""
    lines = text.splitlines(keepends=True)
    table: str | None = None
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            table = stripped.strip("[] \t")
        elif table == "console" and stripped.split("=", 1)[0].strip() == "users" and "=" in stripped:
            rest = "".join(lines[index:])
            found = _array_end(rest, len(line) - len(line.lstrip()))
            if found is None:
                return None
            last, closing = found  # a comma goes after the last item, before any comment
            comma = "" if rest[last] in "[," else ","
            inside = rest[:last + 1] + comma + rest[last + 1:closing].rstrip(" \t")
            newline = "" if inside.endswith("\n") else "\n"
            return f"{''.join(lines[:index])}{inside}{newline}  {user_line(user)},\n{rest[closing:]}"
    tail = "" if text.endswith("\n") or not text else "\n"
    return (f"{text}{tail}\n[[console.users]]\nname = {json.dumps(user.name, ensure_ascii=False)}\n"
            f"role = {json.dumps(user.role)}\npassword_hash = {json.dumps(user.password_hash)}\n")


def _array_end(text: str, start: int) -> tuple[int, int] | None:
    """For the array that opens after ``start``: where its last significant character before the
    closing bracket is (``[`` itself when empty), and where it closes; strings and comments skipped."""
    depth, index, quote, last = 0, text.index("=", start), "", -1
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\" and quote == '"':
                index += 1
            elif char == quote:
                quote = ""
                last = index
        elif char in "\"'":
            quote = char
        elif char == "#":
            newline = text.find("\n", index)
            index = len(text) if newline < 0 else newline
            continue
        elif char == "[":
            depth += 1
            last = index
        elif char == "]":
            depth -= 1
            if depth == 0:
                return last, index
            last = index
        elif depth == 0 and char == "\n":
            return None  # `users = ...` that is not an array
        elif not char.isspace():
            last = index
        index += 1
    return None
