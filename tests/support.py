"""Shared test helpers (importable because pytest's ``pythonpath`` holds tests/)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from ybplug.config import Config, WireConfig
from ybplug.fields import CHINA_TIME
from ybplug.messages import Birth, QrIdentity
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR, SEED_MOTHERS, Sandbox

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
    back = next(_seconds_back)
    if birth_time is None:
        moment = _ANCHOR - timedelta(seconds=back)
        birth_time = int(moment.strftime("%Y%m%d%H%M%S"))
    fields: dict[str, Any] = {
        "medical_serial": "ZY2024000123",
        "his_serial": f"HIS-{back:08d}",  # one serial, one newborn: the HIS's own identity
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


_DAY_AGO = datetime.now(CHINA_TIME).replace(microsecond=0) - timedelta(days=1)


def birth_record(n: int = 0, *, mother: str = "local", number: int = 1, sex: str = "1") -> dict[str, Any]:
    """A valid yb04.13.01.21 record as a dict with the spec's field names, as a HIS sends it.

    ``n`` fixes the birth time (a day ago plus ``n`` seconds), so the same ``n`` is the same
    birth; twins share ``n`` and differ in ``number``.
    """
    born = _DAY_AGO + timedelta(seconds=n)
    birth = make_birth(
        mother,
        multiple_birth_number=number,
        newborn_sex=sex,
        birth_time=int(born.strftime("%Y%m%d%H%M%S")),
        medical_serial=f"ZY{n:06d}",
        his_serial=f"HIS{n:06d}-{number}",
        mother_name="陈静",
        newborn_name="",
    )
    record: dict[str, Any] = msgspec.to_builtins(birth)
    del record["bkee30"]  # let ybplug derive 陈静之子 / 陈静之女
    return record


#: The identity in the spec's own EcTrans outData example (section 1.2.3).
SPEC_EXAMPLE_IDENTITY = QrIdentity(
    ec_token="398397485fkjdk9sf92j3mlkf",
    id_number="350204198001010001",
    id_type="01",
    name="张三",
    insurance_division="350000",
    card_number="K001934831",
    personal_code="1010010101001",
)


def host_config(
    tmp_path: Path, sandbox: Sandbox, *, hook_timeout: float = 2.0, read_timeout: float = 2.0, **overrides: Any
) -> Config:
    """A host's config for tests: journal in ``tmp_path``, the sandbox, retries within a second,
    uploads only when a test asks (``daily`` at an hour the test never reaches)."""
    values: dict[str, Any] = {
        "journal": str(tmp_path / "journal.db"),
        "upload": "daily at 02:00",
        "delivery_backoff": 0.05,
        "delivery_backoff_cap": 0.2,
        "upload_backoff": 0.05,
        "upload_backoff_cap": 0.2,
        "hook_timeout": hook_timeout,
        "wire": WireConfig(url=sandbox.url, usr=SANDBOX_USR, pwd=SANDBOX_PWD, read_timeout=read_timeout),
    }
    values.update(overrides)
    return Config(**values)


class CannedCentre:
    """A centre on loopback answering every business call with exactly ``body``."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.url = ""

    async def __aenter__(self) -> CannedCentre:
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(body=self.body, content_type="application/json")

        app = web.Application()
        app.router.add_post("/sieaf/business_handle/", handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
