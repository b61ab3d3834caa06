"""Who is logged in, and who may try again: kept in the console's memory, never in the cookie.

The cookie carries only a random token; the session behind it (the operator's name and role,
the CSRF token of its forms) lives here and ends when unused for ``idle`` seconds, at logout,
or when the console stops.  A failed login counts against the address it came from.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Session:
    """One logged-in operator."""

    name: str
    role: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_used: float = 0.0
    #: One message for the next page shown (the outcome of an action), then gone.
    flash: list[tuple[str, str]] = field(default_factory=list)

    @property
    def may_act(self) -> bool:
        return self.role == "operator"

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf.encode(), (token or "").encode())


class Sessions:
    """Token -> :class:`Session`, each ending after ``idle`` seconds unused."""

    def __init__(self, idle: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle = idle
        self.clock = clock
        self._by_token: dict[str, Session] = {}

    def start(self, name: str, role: str) -> tuple[str, Session]:
        self._expire()
        token = secrets.token_urlsafe(32)
        session = Session(name, role, last_used=self.clock())
        self._by_token[token] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        self._expire()
        session = self._by_token.get(token)
        if session is not None:
            session.last_used = self.clock()
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def _expire(self) -> None:
        cutoff = self.clock() - self.idle
        for token in [t for t, s in self._by_token.items() if s.last_used < cutoff]:
            del self._by_token[token]


class LoginLimiter:
    """At most ``attempts`` failed logins per address within ``window`` seconds."""

    def __init__(self, attempts: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def wait(self, address: str) -> float:
        """Seconds ``address`` must wait before trying again (0: it may try now)."""
        failures = self._failures.get(address)
        if not failures:
            return 0.0
        now = self.clock()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < self.attempts:
            return 0.0
        return failures[0] + self.window - now

    def failed(self, address: str) -> None:
        self._failures.setdefault(address, deque()).append(self.clock())
        if len(self._failures) > 10000:  # a flood of addresses must not grow memory without end
            oldest = min(self._failures, key=lambda a: self._failures[a][-1] if self._failures[a] else 0.0)
            del self._failures[oldest]

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
