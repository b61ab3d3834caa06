"""Shared fixtures: a sandbox centre on a free port, a transport to it, and valid births.

Async tests run on anyio's pytest plugin with the asyncio backend (aiohttp needs asyncio); the
sandbox and the client share the test's event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
import pytest

from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR, NoCompiler, Sandbox, build_fake_ectrans
from ybplug.config import WireConfig
from ybplug.wire import HttpTransport

from support import BirthFactory, make_birth

@pytest.fixture(scope="session", autouse=True)
def state_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A config without ``journal`` means the machine's state folder (/var/lib/ybplug): in tests,
    and in the ``ybplug`` commands they start, a temporary one (``STATE_DIRECTORY``) instead."""
    folder = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STATE_DIRECTORY", str(folder))
        yield folder


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
