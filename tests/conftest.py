"""Shared fixtures: a sandbox centre on a free port, a transport to it, and valid births.

Async tests run on anyio's pytest plugin with the asyncio backend (aiohttp needs asyncio); the
sandbox and the client share the test's event loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ybplug.sandbox import (
    SANDBOX_PWD,
    SANDBOX_USR,
    SEED_MOTHERS,
    UNREGISTERED_MOTHER,
    NoCompiler,
    Sandbox,
    build_fake_ectrans,
)
from ybplug.config import WireConfig
from ybplug.wire import HttpTransport

from support import BirthFactory, make_birth
from pg_support import fresh_schema

@pytest.fixture(scope="session", autouse=True)
def state_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A config without ``journal`` means the machine's state folder (/var/lib/ybplug): in tests,
    and in the ``ybplug`` commands they start, a temporary one (``STATE_DIRECTORY``) instead."""
    folder = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STATE_DIRECTORY", str(folder))
        yield folder


#: The test data's personal values: none may reach a log line in the clear, whatever a test does.
#: (The sandbox's password is the word "sandbox", which log lines name as a component: left out.)
PERSONAL = [
    *SEED_MOTHERS.values(), UNREGISTERED_MOTHER, "13800138000", "王芳", "陈静", "陈小宝", "张三",
    "350204198001010001", "9993604787698063769694000000", "398397485fkjdk9sf92j3mlkf", "wrong-secret",
]


class _Leaks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is the logging call's own problem
            return
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        for value in PERSONAL:
            if value in text:
                self.found.append(f"{record.name} {record.levelname}: ...{value[:3]}... in {text[:200]!r}")


@pytest.fixture(autouse=True)
def no_personal_data_in_logs() -> Iterator[None]:
    """Every test runs with ybplug's loggers at DEBUG and fails if a log line carries the test
    data's ID numbers, names, phones, QR codes, tokens or passwords.  (Hook tracing logs only
    hook and plugin names; the demo's test checks it with ``YBPLUG_TRACE=1``.)"""
    leaks = _Leaks()
    root = logging.getLogger("ybplug")
    level = root.level
    root.addHandler(leaks)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(leaks)
        root.setLevel(level)
    assert not leaks.found, "personal data logged:\n" + "\n".join(leaks.found[:5])


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_at(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a test's journal lives, once per backend: a file for SQLite, a URL to a schema of its
    own for PostgreSQL (dropped after; see pg_support)."""
    if request.param == "sqlite":
        yield str(tmp_path / "journal.db")
        return
    with fresh_schema() as url:
        yield url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def fake_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sandbox's fake EcTrans library, compiled once per session into a temporary folder."""
    try:
        return build_fake_ectrans(tmp_path_factory.mktemp("ectrans"))
    except NoCompiler as exc:
        pytest.skip(str(exc))


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
