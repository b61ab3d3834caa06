"""ybplug's testing kit: pytest fixtures for a hospital's own plugin, found through ``pytest11``.

Install ``ybplug[testing]`` and every fixture below is there, no conftest needed::

    import pytest

    pytestmark = pytest.mark.anyio                       # the tests are async (anyio, asyncio)

    async def test_registration_kept(ybplug_host, ybplug_birth, ybplug_deliver):
        await ybplug_host.record_birth(ybplug_birth("local"))
        await ybplug_host.sync("upload")                   # upload to the sandbox, deliver the hooks
        ...

* ``ybplug_sandbox``: the simulated centre on 127.0.0.1 (a free port), its state in ``tmp_path``;
  ``ybplug_sandbox.inject(Fault("http_error", funid=Funid.COLLECT))`` commits a fault on purpose;
* ``ybplug_voucher``: a fake EcTrans (:class:`~ybplug.voucher.VoucherConfig`): the C test library
  where a C compiler is, else the pure-Python fake (a Windows desk);
* ``ybplug_plugins``: the plugins under test; by default every plugin installed through the
  ``ybplug`` entry-point group (override it to test an object of your own);
* ``ybplug_config``: the host's :class:`~ybplug.config.Config`: the sandbox, the fake voucher, a
  temporary journal, retries within a second; override it to change a setting;
* ``ybplug_host``: a running :class:`~ybplug.host.Host` with those plugins, nothing in the
  background: the test says when to upload (``sync``) and deliver (``ybplug_deliver``);
* ``ybplug_birth``: valid births (check digits, twins, every kind of mother the sandbox knows);
* ``ybplug_deliver``: ``await ybplug_deliver()`` delivers every event due now;
* ``ybplug_redeliver``: ``await ybplug_redeliver()`` delivers every event already delivered a
  second time, same ``event_id``: a plugin that is idempotent changes nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ybplug import events
from ybplug.config import Config, WireConfig
from ybplug.fields import CHINA_TIME
from ybplug.hooks import PROJECT
from ybplug.host import Host
from ybplug.messages import Birth
from ybplug.sandbox import (
    FAKE_ECTRANS_FUNCTION,
    SANDBOX_PWD,
    SANDBOX_USR,
    SEED_MOTHERS,
    UNREGISTERED_MOTHER,
    NoCompiler,
    Sandbox,
    build_fake_ectrans,
)
from ybplug.voucher.config import VoucherConfig

__all__ = ["BirthMaker", "fake_voucher", "pytest_configure"]


def _asyncio_backend() -> str:
    return "asyncio"


def pytest_configure(config: pytest.Config) -> None:
    """``anyio_backend``: asyncio (aiohttp needs it), registered once every plugin is loaded so it
    wins over anyio's every-backend default; a conftest's own ``anyio_backend`` still wins."""
    if not config.pluginmanager.has_plugin("ybplug.testing.anyio"):
        holder = ModuleType("ybplug.testing.anyio")  # pytest reads a plugin's fixtures off a module or a class
        holder.anyio_backend = pytest.fixture(scope="module", name="anyio_backend")(_asyncio_backend)  # type: ignore[attr-defined]
        config.pluginmanager.register(holder, "ybplug.testing.anyio")


class BirthMaker:
    """Makes valid births: ``ybplug_birth("short_permit")``, ``ybplug_birth.twins()``.

    ``mother`` is a kind of mother seeded in every sandbox (:attr:`mothers`: ``local`` and
    ``nonlocal`` are eligible; ``short_permit``, ``expired_permit`` and ``not_insured`` are
    registered but not eligible, each for its own reason), ``"unregistered"`` (a valid ID number
    in no register) or any ID number.  Each birth is a distinct second in the recent past, with
    its own HIS serial, so two calls never make the same birth.
    """

    mothers = tuple(SEED_MOTHERS)

    def __init__(self, charset: str = "gbk") -> None:
        #: What the births are checked against: the host's ``charset`` (gb18030 holds names gbk cannot).
        self.charset = charset
        self._anchor = datetime.now(CHINA_TIME).replace(microsecond=0) - timedelta(hours=2)
        self._count = itertools.count(1)

    def __call__(
        self, mother: str = "local", *, multiple_birth_number: int = 1, newborn_sex: str = "2", **overrides: Any
    ) -> Birth:
        n = next(self._count)
        return self._birth(n, mother, multiple_birth_number, newborn_sex, overrides)

    def twins(self, mother: str = "local", count: int = 2, **overrides: Any) -> list[Birth]:
        """``count`` newborns of one mother, born the same second, numbered 1, 2, ..."""
        n = next(self._count)
        return [self._birth(n, mother, number, "1" if number % 2 else "2", overrides) for number in range(1, count + 1)]

    def _birth(self, n: int, mother: str, number: int, sex: str, overrides: dict[str, Any]) -> Birth:
        born = self._anchor - timedelta(seconds=n)
        id_number = UNREGISTERED_MOTHER if mother == "unregistered" else SEED_MOTHERS.get(mother, mother)
        fields: dict[str, Any] = {
            "medical_serial": f"ZY{n:08d}",
            "his_serial": f"HIS-{n:08d}-{number}",
            "multiple_birth_number": number,
            "newborn_sex": sex,
            "birth_time": int(born.strftime("%Y%m%d%H%M%S")),
            "mother_certificate_type": "01",
            "mother_id_number": id_number,
            "mother_name": "王芳",
            "mother_phone": 13800138000,
        }
        fields.update(overrides)
        birth = Birth(**fields)
        birth.check(self.charset)
        return birth


def fake_voucher(directory: Path) -> VoucherConfig:
    """The fake EcTrans: the C test library built in ``directory`` (thread backend), or, where
    no C compiler is, the pure-Python fake (``backend = "python"``); both answer alike."""
    common: dict[str, Any] = {"org_id": "3502001000", "district_no": "350200", "timeout": 5.0}
    try:
        return VoucherConfig(library=str(build_fake_ectrans(directory)), backend="thread", **common)
    except NoCompiler:
        return VoucherConfig(library=FAKE_ECTRANS_FUNCTION, backend="python", **common)


@pytest.fixture(scope="session")
def ybplug_voucher(tmp_path_factory: pytest.TempPathFactory) -> VoucherConfig:
    """The fake EcTrans as a ``[voucher]`` section (built once per session)."""
    return fake_voucher(tmp_path_factory.mktemp("ybplug-ectrans"))


@pytest.fixture
async def ybplug_sandbox(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Sandbox]:
    """The simulated centre on loopback; ``.inject(Fault(...))`` for faults, ``.real_name(...)``
    to real-name a newborn, ``.calls(funid)`` to count what arrived."""
    async with Sandbox(tmp_path / "ybplug-centre.db") as sandbox:
        yield sandbox


@pytest.fixture
def ybplug_plugins() -> list[object]:
    """The plugins under test: every one installed in the ``ybplug`` entry-point group."""
    return [entry.load() for entry in entry_points(group=PROJECT)]


@pytest.fixture
def ybplug_config(tmp_path: Path, ybplug_sandbox: Sandbox, ybplug_voucher: VoucherConfig) -> Config:
    """A host's config: the sandbox, the fake voucher, the journal in ``tmp_path``, short retries,
    uploads only when the test calls ``sync``."""
    return Config(
        journal=str(tmp_path / "ybplug-journal.db"),
        upload="daily at 02:00",
        delivery_backoff=0.05,
        delivery_backoff_cap=0.2,
        upload_backoff=0.05,
        upload_backoff_cap=0.2,
        hook_timeout=5.0,
        wire=WireConfig(url=ybplug_sandbox.url, usr=SANDBOX_USR, pwd=SANDBOX_PWD, read_timeout=5.0),
        voucher=ybplug_voucher,
    )


@pytest.fixture
async def ybplug_host(ybplug_config: Config, ybplug_plugins: list[object], anyio_backend: str) -> AsyncIterator[Host]:
    """A running host with the plugins under test and the built-ins, no background work."""
    async with Host(ybplug_config, plugins=ybplug_plugins, entry_points=False, background=False) as host:
        yield host


@pytest.fixture
def ybplug_birth(request: pytest.FixtureRequest) -> BirthMaker:
    """Valid births, checked in the charset of the test's ``ybplug_config`` when the test has one
    (through ``ybplug_host`` too), else in GBK; a test of births alone starts no sandbox."""
    if "ybplug_config" in request.fixturenames:
        return BirthMaker(request.getfixturevalue("ybplug_config").charset)
    return BirthMaker()


@pytest.fixture
def ybplug_deliver(ybplug_host: Host) -> Callable[[], Awaitable[int]]:
    """``await ybplug_deliver()``: deliver every event due now; how many deliveries succeeded."""
    return ybplug_host.deliver_due


@pytest.fixture
def ybplug_redeliver(ybplug_host: Host) -> Callable[[], Awaitable[int]]:
    """``await ybplug_redeliver()``: every event already delivered, delivered again to the same
    plugin with the same ``event_id``, as after a crash between the hook and its journal entry;
    returns how many; a plugin's error fails the test."""
    return lambda: redeliver(ybplug_host)


async def redeliver(host: Host) -> int:
    """Deliver each delivered event once more to its plugin; raise the first plugin error."""

    def delivered() -> list[tuple[str, str, str, bytes]]:
        return host.journal.db.execute(
            "SELECT d.event_id, d.plugin, e.hook, e.payload FROM deliveries d JOIN events e ON e.id = d.event_id"
            " WHERE d.state = 'delivered' ORDER BY e.rowid"
        ).fetchall()

    loaded = set(host.plugin_names())
    count = 0
    for event_id, plugin, hook, payload in await host.run_journal(delivered):
        if plugin not in loaded:
            continue
        arguments = events.decode(payload).arguments()
        for outcome in await host.caller.call_each(hook, only=[plugin], event_id=event_id, **arguments):
            if outcome.error is not None:
                raise AssertionError(f"{plugin}.{hook} failed on a redelivered event: {outcome.error!r}")
        count += 1
    return count
