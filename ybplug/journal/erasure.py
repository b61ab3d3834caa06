"""Retention: a settled birth's personal data erased when the hospital's policy says so
(``ybplug prune``), its statistics kept (a part of :class:`ybplug.journal.Journal`)."""

from __future__ import annotations

import msgspec

from ybplug.codes import Funid
from ybplug.fields import trusted
from ybplug.journal.base import JournalBase, _decode_birth, _encode
from ybplug.journal.sql import Connection
from ybplug.privacy import scrub

#: Where people's and the centre's words about a birth are kept: (table, birth column, text columns).
_TEXTS_ABOUT_A_BIRTH = (
    ("births", "id", ("reason", "last_error")),
    ("exchanges", "birth_id", ("error",)),
    ("actions", "birth_id", ("detail",)),
    ("replacements", "old_birth_id", ("reason", "error")),
)


class Erasure(JournalBase):
    """Pruning settled births."""

    def prune(self, older_than: float, operator: str) -> int:
        """Erase the personal data of settled births last changed ``older_than`` seconds ago:
        real-named, voided or refused, with every delivery of their events done.

        Kept for the statistics: the state, dates, eligibility, multiple-birth number, sex, birth
        time and HIS serial.  Erased: the names, ID numbers and phones in the record, the event
        payloads, the earlier versions of amended records, the corrected records of their
        replacements, and the requests and replies of their exchanges (and of real-name queries,
        which hold many newborns' identities at once).  Scrubbed of the birth's names, ID numbers
        and phones: what people wrote or the centre said about it (reasons, errors, the causes of
        refusals, people's notes on their actions).  Journaled as an action; returns how many
        births were pruned."""
        cutoff = self.clock() - older_than
        pruned = 0
        with self._write() as db:
            rows = db.execute(
                "SELECT id, record FROM births WHERE state IN ('real_named', 'voided', 'refused')"
                " AND pruned_at IS NULL AND updated_at < ? AND NOT EXISTS (SELECT 1 FROM events e"
                " JOIN deliveries d ON d.event_id = e.id WHERE e.birth_id = births.id AND d.state IN ('pending', 'parked'))",
                (cutoff,),
            ).fetchall()
            now = self.clock()
            for birth_id, record in rows:
                with trusted():
                    birth = _decode_birth(record)
                    kept = msgspec.structs.replace(
                        birth, newborn_name="", mother_id_number="", mother_name="", mother_phone=0,
                        father_id_number=None, father_name=None, father_phone=None,
                    )
                db.execute(
                    "UPDATE births SET record = ?, mother_id = ?, pruned_at = ? WHERE id = ?",
                    (_encode(kept), f"pruned:{birth_id}", now, birth_id),
                )
                db.execute("UPDATE events SET payload = ? WHERE birth_id = ?", (b"", birth_id))
                db.execute("UPDATE exchanges SET request = NULL, reply = NULL WHERE birth_id = ?", (birth_id,))
                db.execute("DELETE FROM record_history WHERE birth_id = ?", (birth_id,))
                self._scrub_texts(db, birth_id, birth.secrets())
                pruned += 1
            db.execute(
                "UPDATE exchanges SET request = NULL, reply = NULL WHERE funid = ? AND started_at < ?",
                (Funid.REALNAME, cutoff),
            )
            self._act(db, operator, "prune", None, f"{pruned} settled births older than {older_than / 86400:g} days")
        return pruned

    def _scrub_texts(self, db: Connection, birth_id: int, secrets: list[str]) -> None:
        """Scrub the texts journaled about a birth of its personal values (see :meth:`prune`)."""
        for table, key, columns in _TEXTS_ABOUT_A_BIRTH:
            for row in db.execute(f"SELECT id, {', '.join(columns)} FROM {table} WHERE {key} = ?", (birth_id,)).fetchall():
                texts = [None if text is None else scrub(str(text), secrets) for text in row[1:]]
                if texts != list(row[1:]):
                    assignments = ", ".join(f"{column} = ?" for column in columns)
                    db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", (*texts, row[0]))
        db.execute("UPDATE replacements SET record = ? WHERE old_birth_id = ?", (b"", birth_id))
