"""A local simulated Xiamen centre: the peer for the demo, the test suite and hospitals' own tests.

* :mod:`~ybplug.sandbox.centre`: the centre's rules on SQLite (:class:`Centre`, no HTTP): seeds,
  eligibility, duplicates, void, the real-name lifecycle, the admin methods;
* :mod:`~ybplug.sandbox.faults`: faults to commit on purpose (:class:`Fault`, :func:`parse_fault`);
* :mod:`~ybplug.sandbox.parse`: every body read off the network, with size and nesting limits;
* :mod:`~ybplug.sandbox.server`: :class:`Sandbox`, the centre on aiohttp, speaking the vendor
  agent's wire (:mod:`ybplug.envelope`);
* :mod:`~ybplug.sandbox.cli`: ``ybplug sandbox [--port 8721] [--db FILE] [--fault SPEC]...``;
* :mod:`~ybplug.sandbox.ectrans`: the fake EcTrans library (``ybplug/fake_ectrans.c``) and its build.

Names are loaded on first use (module ``__getattr__``), so ``import ybplug.sandbox.centre`` (or
``faults``) does not load aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from ybplug.lazy import exports

if TYPE_CHECKING:
    from ybplug.sandbox.centre import (
        DEFAULT_PORT,
        DUPLICATE_CAUSE,
        MOTHER_KINDS,
        SANDBOX_PWD,
        SANDBOX_USR,
        SEED_MOTHERS,
        UNREGISTERED_MOTHER,
        Centre,
        SandboxError,
    )
    from ybplug.sandbox.cli import main
    from ybplug.sandbox.ectrans import FAKE_ECTRANS_FUNCTION, FAKE_ECTRANS_SOURCE, NoCompiler, build_fake_ectrans, fake_ectrans
    from ybplug.sandbox.faults import FAULT_KINDS, Fault, parse_fault
    from ybplug.sandbox.server import Sandbox

_LAZY = {
    **dict.fromkeys(
        ["DEFAULT_PORT", "DUPLICATE_CAUSE", "MOTHER_KINDS", "SANDBOX_PWD", "SANDBOX_USR", "SEED_MOTHERS",
         "UNREGISTERED_MOTHER", "Centre", "SandboxError"],
        "ybplug.sandbox.centre",
    ),
    "main": "ybplug.sandbox.cli",
    **dict.fromkeys(["FAKE_ECTRANS_FUNCTION", "FAKE_ECTRANS_SOURCE", "NoCompiler", "build_fake_ectrans", "fake_ectrans"], "ybplug.sandbox.ectrans"),
    **dict.fromkeys(["FAULT_KINDS", "Fault", "parse_fault"], "ybplug.sandbox.faults"),
    "Sandbox": "ybplug.sandbox.server",
}

__all__ = [
    "Sandbox", "Centre", "Fault", "SandboxError", "FAULT_KINDS", "MOTHER_KINDS", "SEED_MOTHERS",
    "UNREGISTERED_MOTHER", "SANDBOX_USR", "SANDBOX_PWD", "DEFAULT_PORT", "DUPLICATE_CAUSE", "parse_fault",
    "main", "build_fake_ectrans", "NoCompiler", "FAKE_ECTRANS_SOURCE", "FAKE_ECTRANS_FUNCTION", "fake_ectrans",
]


__getattr__ = exports(__name__, _LAZY)
