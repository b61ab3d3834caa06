"""Shared fixtures: a sandbox centre on a free port, a transport to it, and valid births.

Async tests run on anyio's pytest plugin with the asyncio backend (aiohttp needs asyncio); the
sandbox and the client share the test's event loop.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ybplug.fields import CHINA_TIME
from ybplug.messages import Birth
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR, SEED_MOTHERS, Sandbox
from ybplug.wire import HttpTransport, WireConfig

# Every birth made here is a distinct second counted back from a fixed moment two hours before the
# session started: never in the future, never a duplicate of another birth made here, recent enough
# for every seeded mother's rule.
_ANCHOR = datetime.now(CHINA_TIME) - timedelta(hours=2)
_seconds_back = itertools.count(1)

BirthFactory = Callable[..., Birth]


def make_birth(
    mother: str = "local",
    *,
    multiple_birth_number: int = 1,
    birth_time: int | None = None,
    newborn_sex: str = "2",
    **overrides: Any,
) -> Birth:
    """A valid Birth for a seeded mother (a key of SEED_MOTHERS) or for any ID number."""
    if birth_time is None:
        moment = _ANCHOR - timedelta(seconds=next(_seconds_back))
        birth_time = int(moment.strftime("%Y%m%d%H%M%S"))
    fields: dict[str, Any] = {
        "medical_serial": "ZY2024000123",
        "his_serial": "HIS-20240001",
        "multiple_birth_number": multiple_birth_number,
        "newborn_sex": newborn_sex,
        "birth_time": birth_time,
        "mother_certificate_type": "01",
        "mother_id_number": SEED_MOTHERS.get(mother, mother),
        "mother_name": "王芳",
        "mother_phone": 13800138000,
    }
    fields.update(overrides)
    return Birth(**fields)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def birth_for() -> BirthFactory:
    """``birth_for("short_permit", multiple_birth_number=2, birth_time=...)`` -> a valid Birth."""
    return make_birth


@pytest.fixture
async def sandbox(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Sandbox]:
    """A sandbox centre on 127.0.0.1, a free port, its state in ``tmp_path/centre.db``."""
    centre = Sandbox(tmp_path / "centre.db")
    await centre.start()
    try:
        yield centre
    finally:
        await centre.stop()


@pytest.fixture
def wire_config(sandbox: Sandbox) -> WireConfig:
    return WireConfig(url=sandbox.url, usr=SANDBOX_USR, pwd=SANDBOX_PWD)


@pytest.fixture
async def transport(wire_config: WireConfig, anyio_backend: str) -> AsyncIterator[HttpTransport]:
    """The default transport, pointed at the ``sandbox`` fixture with the right usr/pwd."""
    client = HttpTransport(wire_config)
    try:
        yield client
    finally:
        await client.aclose()
