"""``[console]``: where the operations console listens and who may use it.

Example::

    [console]
    listen = "127.0.0.1:8722"        # loopback unless you mean otherwise
    users = [
      {name = "lin", role = "operator", password_hash = "scrypt$16384$8$1$..."},
      {name = "chen", role = "viewer", password_hash = "scrypt$16384$8$1$..."},
    ]

``ybplug console add-user NAME --role operator`` prints a ``users`` line.  Imported by
:mod:`ybplug.config`, so it must not load aiohttp (the clerk's commands stay fast).
"""

from __future__ import annotations

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
