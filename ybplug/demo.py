"""``ybplug demo``: the whole flow on the embedded default, the sandbox centre.

A demo hospital plugin keeps its own SQLite tables, as a HIS would, and prints what each hook
gave it (personal data masked).  The flow: start the sandbox, record births (twins among them,
and a mother who is not eligible), upload them, have the sandbox real-name one, poll, void one,
and decode a QR code through the fake EcTrans (the C test library, or its pure-Python twin where no C
compiler is).
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from ybplug.config import Config, WireConfig
from ybplug.fields import CHINA_TIME, with_check_digit
from ybplug.hooks import hookimpl
from ybplug.messages import Birth, CollectionResult, QrIdentity, RealNameRecord
from ybplug.privacy import mask


class DemoHospital:
    """A hospital plugin: stores registration numbers and real identities in its own tables."""

    def __init__(self, db: Path, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.heard: list[tuple[int, str]] = []
        self.db = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS newborn (
                birth_id INTEGER PRIMARY KEY, name TEXT, baz726 TEXT, eligible INTEGER,
                real_id_number TEXT, real_name TEXT, voided INTEGER DEFAULT 0);
            CREATE TABLE IF NOT EXISTS seen_events (event_id TEXT PRIMARY KEY);
            """
        )

    def _first_time(self, event_id: str) -> bool:
        """Idempotent writes: a redelivered event (same id) changes nothing."""
        return self.db.execute("INSERT OR IGNORE INTO seen_events VALUES (?)", (event_id,)).rowcount == 1

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def hear(self, birth_id: int | None, text: str) -> None:
        """Hooks run concurrently; keep what they got and print it in birth order after each step."""
        self.heard.append((birth_id or 0, text))

    def tell(self) -> None:
        for _, text in sorted(self.heard):
            self.say(text)
        self.heard.clear()

    @hookimpl
    def birth_recorded(self, birth: Birth, birth_id: int, event_id: str) -> None:
        if self._first_time(event_id):
            self.db.execute("INSERT OR IGNORE INTO newborn (birth_id, name) VALUES (?, ?)", (birth_id, birth.newborn_name))
            self.hear(birth_id, f"  birth_recorded     #{birth_id} {mask(birth.newborn_name)} born {birth.birth_time} (no. {birth.multiple_birth_number})")

    @hookimpl
    def collection_result(self, birth: Birth, result: CollectionResult, birth_id: int, event_id: str) -> None:
        if not self._first_time(event_id):
            return
        if result.ok:
            self.db.execute(
                "UPDATE newborn SET baz726 = ?, eligible = ? WHERE birth_id = ?",
                (result.registration_number, int(result.eligible), birth_id),
            )
            why = "" if result.eligible else f" ({result.ineligibility_reason})"
            self.hear(birth_id, f"  collection_result  #{birth_id} baz726={result.registration_number} eligible={result.eligible}{why}")
        else:
            self.hear(birth_id, f"  collection_result  #{birth_id} refused: {result.cause}")

    @hookimpl
    def birth_needs_review(self, birth_id: int, reason: str, event_id: str) -> None:
        if self._first_time(event_id):
            self.hear(birth_id, f"  birth_needs_review #{birth_id}: {reason}")

    @hookimpl
    def realname_resolved(self, record: RealNameRecord, birth_id: int, event_id: str) -> None:
        if self._first_time(event_id):
            self.db.execute(
                "UPDATE newborn SET real_id_number = ?, real_name = ? WHERE birth_id = ?",
                (record.id_number, record.name, birth_id),
            )
            self.say(
                f"  realname_resolved  #{birth_id} {record.registration_number} -> {mask(record.name)}"
                f" {mask(record.id_number)} personal code {mask(record.personal_code)}"
            )

    @hookimpl
    def collection_voided(self, registration_number: str, reason: str, birth_id: int | None, event_id: str) -> None:
        if self._first_time(event_id):
            self.db.execute("UPDATE newborn SET voided = 1 WHERE baz726 = ?", (registration_number,))
            self.hear(birth_id, f"  collection_voided  {registration_number}: {reason}")

    @hookimpl
    def qr_decoded(self, identity: QrIdentity, event_id: str) -> None:
        self.hear(0, f"  qr_decoded         {mask(identity.name)} {mask(identity.id_number)} insured in {identity.insurance_division}")


def demo_births(mothers: dict[str, str]) -> list[dict[str, Any]]:
    """Births for the seeded mothers: twins of a local mother, one of each other kind."""
    born = (datetime.now(CHINA_TIME) - timedelta(hours=3)).strftime("%Y%m%d%H%M%S")
    base = {"aac006": int(born), "bkee43": "01", "bkee33": 13800138000}
    rows: list[dict[str, Any]] = []
    names = iter(["陈静", "林晓红", "黄丽", "吴敏", "郑芳"])
    for serial, (kind, id_number) in enumerate(mothers.items(), start=1):
        name = next(names)
        births = [("1", 1), ("2", 2)] if serial == 1 else [("2" if serial % 2 else "1", 1)]
        for sex, number in births:
            rows.append({**base, "akc190": f"ZY2026{serial:04d}", "bke042": f"HIS{serial:04d}-{number}",
                         "bme027": number, "aac004": sex, "bkee35": id_number, "bkee37": name})
    return rows


async def run_demo(workdir: Path | None = None, out: TextIO = sys.stdout) -> int:
    from ybplug.host import Host
    from ybplug.config import VoucherSection
    from ybplug.sandbox import (
        FAKE_ECTRANS_FUNCTION, SANDBOX_PWD, SANDBOX_USR, SEED_MOTHERS, NoCompiler, Sandbox, build_fake_ectrans,
    )

    workdir = workdir or Path(tempfile.mkdtemp(prefix="ybplug-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    say = DemoHospital(workdir / "hospital.db", out)
    async with Sandbox(workdir / "sandbox.db") as sandbox:
        say.say(f"sandbox centre listening on {sandbox.url}; journal and hospital tables in {workdir}")
        try:
            voucher = VoucherSection(library=str(build_fake_ectrans(workdir)), org_id="3502001000", district_no="350200")
        except NoCompiler as exc:  # a Windows desk: the same answers from the pure-Python fake
            voucher = VoucherSection(library=FAKE_ECTRANS_FUNCTION, backend="python", org_id="3502001000", district_no="350200")
            say.say(f"(QR codes decoded by the pure-Python fake EcTrans: {exc})")
        config = Config(
            voucher=voucher,
            journal=str(workdir / "journal.db"),
            upload="daily at 02:00",
            wire=WireConfig(url=sandbox.url, usr=SANDBOX_USR, pwd=SANDBOX_PWD),
        )
        async with Host(config, plugins=[say], entry_points=False) as host:
            say.say("\n1. the HIS records births (twins, and a mother who is not eligible):")
            births = demo_births(dict(SEED_MOTHERS))
            recorded = [await host.record_birth(b) for b in births]
            again = await host.record_birth(births[0])
            say.tell()
            say.say(f"   recorded {len(recorded)} births; recording the first again returns #{again.birth_id} (created={again.created})")
            say.say("\n2. the daily upload (yb04.13.01.21), run now with host.sync(), and its hooks:")
            summary = await host.sync("upload")
            say.tell()
            say.say(f"   uploaded {summary['uploaded']}, refused {summary['refused']}, needs review {summary['needs_review']}")
            first = await host.records.birth(recorded[0].birth_id)
            assert first.registration_number
            say.say(f"\n3. the centre real-names {first.registration_number}; the HIS polls (yb04.13.01.24):")
            sandbox.real_name(first.registration_number, id_number=with_check_digit("35020320261125001"), name="陈小宝")
            summary = await host.sync("realname")
            say.tell()
            say.say(f"   asked about {summary['realname_checked']}, real-named {summary['real_named']}")
            second = await host.records.birth(recorded[1].birth_id)
            say.say(f"\n4. the HIS voids {second.registration_number} (yb04.13.01.22):")
            await host.void(second.registration_number or "", "重复上传")
            say.tell()
            say.say("\n5. a parent's national insurance QR code is scanned at registration (EcTrans, business type 101 挂号):")
            await host.decode_qr(business_type="101", idcode="9993604787698063769694000000", operator_name="李明")
            say.tell()
            status = await host.status()
            say.say(f"\nbirths by state: {status['births']}; deliveries: {status['deliveries']}")
            rows = say.db.execute("SELECT count(*), count(baz726), count(real_id_number), sum(voided) FROM newborn").fetchone()
            say.say(f"hospital table: {rows[0]} newborns, {rows[1]} with baz726, {rows[2]} real-named, {rows[3]} voided")
    return 0
