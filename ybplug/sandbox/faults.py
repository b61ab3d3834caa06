"""Faults the sandbox centre can be told to commit, and the book of those still armed.

A test (or ``ybplug sandbox --fault``) arms faults so that the client under test meets, on
purpose and reproducibly, what a real centre does now and then: it is slow, answers HTTP 5xx,
commits and then loses the reply, answers garbage, or refuses.  No aiohttp here: the bookkeeping is
plain data that the HTTP face (:mod:`ybplug.sandbox.server`) consults once per business call.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

log = logging.getLogger("ybplug.sandbox")

#: ``latency``: sleep ``seconds`` before answering (the call is then processed normally, even if
#: the client gave up meanwhile, as a slow centre would).  ``http_error``: answer HTTP ``status``
#: before processing (nothing committed).  ``drop_after_commit``: process and commit, then close
#: the connection without a reply.  ``malformed``: process and commit, then answer 200 with a
#: truncated, unparseable body.  ``refuse``: answer flag 0 with ``cause``, nothing committed.
FAULT_KINDS = ("latency", "http_error", "drop_after_commit", "malformed", "refuse")


class Fault(msgspec.Struct):
    """One injected fault; see :data:`FAULT_KINDS` for what each ``kind`` does.

    ``funid`` restricts it to one transaction (``None``: every business call); ``times`` is how many
    of the next matching calls it affects (``None``: all of them).  ``seconds`` is for ``latency``,
    ``status`` for ``http_error``, ``cause`` for ``refuse``.  Latencies add up; of the other kinds,
    a call meets only the first armed one that matches it, so faults queue in injection order.
    """

    kind: str
    funid: str | None = None
    times: int | None = 1
    seconds: float = 0.0
    status: int = 503
    cause: str = "refused by fault injection"

    def __post_init__(self) -> None:
        if self.funid is not None and not isinstance(self.funid, str):
            raise TypeError(
                f"funid must be a function id such as 'yb04.13.01.21' (Funid.COLLECT), got {self.funid!r}"
            )
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind[:40]!r} (expected one of {', '.join(FAULT_KINDS)})")
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be 1 or more (or None for every call), got {self.times}")
        if not 0 <= self.seconds <= 3600:
            raise ValueError(f"seconds must be between 0 and 3600, got {self.seconds}")
        if not 400 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {self.status}")

    def matches(self, funid: str) -> bool:
        return self.funid is None or self.funid == funid


class _Armed:
    """A fault and how many more calls it affects (the caller's ``Fault`` is never mutated)."""

    __slots__ = ("fault", "left")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.left = fault.times

    def use(self) -> None:
        if self.left is not None:
            self.left -= 1

    @property
    def spent(self) -> bool:
        return self.left is not None and self.left <= 0


class FaultBook:
    """The faults still armed, in injection order.

    The server asks :meth:`take` once per business call; with nothing armed (every benchmark run)
    that is one truth test of an empty list.
    """

    __slots__ = ("_armed",)

    def __init__(self) -> None:
        self._armed: list[_Armed] = []

    def __bool__(self) -> bool:
        return bool(self._armed)

    def arm(self, *faults: Fault) -> None:
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"inject() takes Fault objects, got {type(fault).__name__}")
            self._armed.append(_Armed(fault))
            log.info("fault armed: %s on %s for %s", fault.kind, fault.funid or "every funid",
                     "every call" if fault.times is None else f"{fault.times} call(s)")

    def clear(self) -> None:
        self._armed.clear()

    def armed(self) -> list[Fault]:
        """The faults still armed, ``times`` being what is left of each."""
        return [msgspec.structs.replace(a.fault, times=a.left) for a in self._armed]

    def take(self, funid: str) -> tuple[float, Fault | None]:
        """Consume what applies to this call: every matching latency, and the first other fault."""
        delay = 0.0
        chosen: Fault | None = None
        for armed in self._armed:
            fault = armed.fault
            if not fault.matches(funid):
                continue
            if fault.kind == "latency":
                delay += fault.seconds
                armed.use()
            elif chosen is None:
                chosen = fault
                armed.use()
        if delay or chosen is not None:
            self._armed = [a for a in self._armed if not a.spent]
        return delay, chosen


def parse_fault(spec: str) -> Fault:
    """``KIND[:FUNID][,times=N|all][,seconds=S][,status=N][,cause=TEXT]`` as a :class:`Fault`.

    On the command line a fault without ``times`` affects every call (a per-run setting); ``cause``
    must come last, since it may hold commas.  Raises ``ValueError`` with a readable reason.
    """
    head, _, rest = spec.partition(",")
    kind, _, funid = head.partition(":")
    options: dict[str, Any] = {"kind": kind.strip(), "funid": funid.strip() or None, "times": None}
    while rest:
        item, _, remainder = rest.partition(",")
        name, sep, value = item.partition("=")
        name = name.strip()
        if name == "cause" and sep:
            options["cause"] = rest.partition("=")[2]
            break
        rest = remainder
        if not sep:
            raise ValueError(f"option {item!r} must be NAME=VALUE")
        value = value.strip()
        try:
            if name == "times":
                options["times"] = None if value in ("all", "every", "none", "None") else int(value)
            elif name == "seconds":
                options["seconds"] = float(value)
            elif name == "status":
                options["status"] = int(value)
            else:
                raise ValueError(f"unknown option {name!r} (times, seconds, status, cause)")
        except ValueError as exc:
            if "unknown option" in str(exc):
                raise
            raise ValueError(f"{name}={value!r} is not a number") from None
    try:
        return Fault(**options)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


__all__ = ["FAULT_KINDS", "Fault", "FaultBook", "parse_fault"]
