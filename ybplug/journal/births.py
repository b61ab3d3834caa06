"""Recording births and correcting them: conflicts, amendments, replacements, reviews, lookups.

The identity of a birth, as the centre and the HIS know it:

* the centre judges duplicates by mother's ID number + birth time + multiple-birth number (its
  rule: 多胞胎序号+出生时间); the journal keeps at most one live (not voided) birth per such key;
* the HIS knows a newborn by its serial, ``bke042`` + ``bme027``; one serial names one newborn.

Recording a birth whose key or serial matches a live journaled birth with different data is a
:class:`~ybplug.lifecycle.BirthConflict` naming each differing field: never a silent merge.  The
same data again is idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable

from ybplug import events, lifecycle
from ybplug.codes import Funid
from ybplug.fields import trusted
from ybplug.journal.base import JournalBase, _decode_birth, _encode
from ybplug.journal.sql import Connection
from ybplug.journal.model import ActionInfo, BirthNotFound, BirthRow, BirthStatus, Delivery, ExchangeInfo
from ybplug.lifecycle import Action, BirthConflict, BirthState, InvalidTransition, ResolutionError, differences
from ybplug.messages import Birth, CollectionResult
from ybplug.privacy import scrub


#: How a birth matches a live journaled one: (what the message says, the condition).
_MATCHES = (
    ("mother's ID, birth time and multiple-birth number", "mother_id = ? AND birth_time = ? AND multiple_birth_number = ?"),
    ("HIS serial (bke042 his流水号 + bme027 多胞胎序号)", "his_serial = ? AND multiple_birth_number = ?"),
)


class Births(JournalBase):
    """Recording and correcting births."""

    def record_births(self, births: Iterable[Birth]) -> list[tuple[BirthRow, bool]]:
        """Make each birth durable (one commit for all); ``True`` where it is new.

        The same birth again (same data) returns the journaled row.  A refused birth recorded
        again with corrected data is amended and sent again (the advice of ``collection_result``);
        any other difference is a :class:`~ybplug.lifecycle.BirthConflict`.
        """
        out: list[tuple[BirthRow, bool]] = []
        now = self.clock()
        with self._write() as db:
            for birth in births:
                record = _encode(birth)
                self.backend.lock_birth(db, (repr(birth.key), f"serial {birth.his_serial} {birth.multiple_birth_number}"))
                match = self._live_match(db, birth)
                if match is not None:
                    existing, matched_by, existing_record = match
                    if existing_record == record:
                        out.append((existing, False))
                        continue
                    if existing.state == BirthState.REFUSED:
                        out.append((self._amend(db, existing, birth, "HIS (recorded again)"), False))
                        continue
                    raise BirthConflict(existing.id, existing.state, matched_by, differences(existing.birth, birth))
                birth_id = self._insert(db, birth, record, now)
                out.append((BirthRow(birth_id, birth, BirthState.PENDING, None, None, 0), True))
        return out

    def _insert(self, db: Connection, birth: Birth, record: bytes, now: float, replaces: int | None = None) -> int:
        birth_id = int(db.execute(
            "INSERT INTO births (mother_id, birth_time, multiple_birth_number, his_serial, record, created_at,"
            " updated_at, replaces) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*birth.key, birth.his_serial, record, now, now, replaces),
        ).lastrowid or 0)
        self._emit(db, events.BirthRecordedEvent(birth=birth, birth_id=birth_id), birth_id)
        self.backend.announce(db)  # the uploaders, wherever they run
        return birth_id

    def _live_match(
        self, db: Connection, birth: Birth, exclude: int | None = None
    ) -> tuple[BirthRow, str, bytes] | None:
        """The live (not voided) birth sharing the centre's key or the HIS serial, if any (the
        key's first): one query, one round trip to a database server."""
        other = -1 if exclude is None else exclude
        row = db.execute(
            " UNION ALL ".join(
                f"SELECT * FROM (SELECT {n} AS matched, id, record, state, registration_number, reason, attempts"
                f" FROM births WHERE {where} AND state != 'voided' AND id != ? ORDER BY id DESC LIMIT 1) AS m{n}"
                for n, (_, where) in enumerate(_MATCHES)
            ) + " ORDER BY matched LIMIT 1",
            (*birth.key, other, birth.his_serial, birth.multiple_birth_number, other),
        ).fetchone()
        if row is None:
            return None
        return self._row(row[1:]), _MATCHES[row[0]][0], bytes(row[2])

    def _in_doubt(self, db: Connection, birth_id: int) -> bool:
        return db.execute(
            "SELECT 1 FROM exchanges WHERE birth_id = ? AND funid = ? AND outcome IN ('sent', 'unknown')"
            " AND id > (SELECT doubt_cleared_at FROM births WHERE id = ?) LIMIT 1",
            (birth_id, Funid.COLLECT, birth_id),
        ).fetchone() is not None

    # --- amend ----------------------------------------------------------------------------------

    def amend(self, birth_id: int, corrected: Birth, operator: str) -> BirthRow:
        """Replace the record of a birth not yet answered, or refused, and send it again.

        The old record is kept (``record_history``); the action is journaled with ``operator``.
        A birth whose earlier upload may have reached the centre (in doubt) cannot be amended:
        the centre may hold the old record.
        """
        with self._write() as db:
            row = self._birth_where(db, "id = ?", (birth_id,))
            lifecycle.check(Action.AMEND, birth_id, row.state)
            if self._in_doubt(db, birth_id):
                raise InvalidTransition(
                    Action.AMEND, birth_id, row.state,
                    "an earlier upload's answer was lost, so the centre may hold the old record: wait for the"
                    " next answer (a registration, or a review to resolve) instead",
                )
            match = self._live_match(db, corrected, exclude=birth_id)
            if match is not None:
                other, matched_by, _ = match
                raise BirthConflict(other.id, other.state, matched_by, differences(other.birth, corrected))
            return self._amend(db, row, corrected, operator)

    def _amend(self, db: Connection, row: BirthRow, corrected: Birth, operator: str) -> BirthRow:
        now = self.clock()
        old = db.execute("SELECT record FROM births WHERE id = ?", (row.id,)).fetchone()[0]
        db.execute(
            "INSERT INTO record_history (birth_id, record, replaced_at, operator) VALUES (?, ?, ?, ?)",
            (row.id, old, now, operator),
        )
        db.execute(
            "UPDATE births SET record = ?, mother_id = ?, birth_time = ?, multiple_birth_number = ?, his_serial = ?,"
            " state = 'pending', registration_number = NULL, eligibility = NULL, reason = NULL, attempts = 0,"
            " next_attempt_at = 0, last_error = NULL, updated_at = ? WHERE id = ?",
            (_encode(corrected), *corrected.key, corrected.his_serial, now, row.id),
        )
        changed = "; ".join(differences(row.birth, corrected)) or "sent again unchanged"
        self._act(db, operator, "amend", row.id, changed)
        return BirthRow(row.id, corrected, BirthState.PENDING, None, None, 0)

    # --- replace ----------------------------------------------------------------------------------

    def begin_replacement(self, birth_id: int, corrected: Birth, reason: str, operator: str) -> tuple[int, str]:
        """Step one of correcting a registered birth: journal the intent (the corrected record
        and why), so a restart carries it on.  Returns (replacement id, the number to void)."""
        now = self.clock()
        with self._write() as db:
            row = self._birth_where(db, "id = ?", (birth_id,))
            lifecycle.check(Action.REPLACE, birth_id, row.state)
            busy = db.execute(
                "SELECT id FROM replacements WHERE old_birth_id = ? AND state = 'voiding'", (birth_id,)
            ).fetchone()
            if busy is not None:
                raise InvalidTransition(Action.REPLACE, birth_id, row.state, f"replacement #{busy[0]} is under way")
            match = self._live_match(db, corrected, exclude=birth_id)
            if match is not None:
                other, matched_by, _ = match
                raise BirthConflict(other.id, other.state, matched_by, differences(other.birth, corrected))
            replacement = int(db.execute(
                "INSERT INTO replacements (old_birth_id, record, reason, operator, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (birth_id, _encode(corrected), reason, operator, now, now),
            ).lastrowid or 0)
            self._act(db, operator, "replace", birth_id, f"replacement #{replacement}: {reason}")
        assert row.registration_number is not None
        return replacement, row.registration_number

    def replacements_under_way(self) -> list[tuple[int, str, str]]:
        """(replacement id, number to void, reason) of replacements whose void is not known done."""
        return [
            (int(r[0]), str(r[1]), str(r[2]))
            for r in self.db.execute(
                "SELECT r.id, b.registration_number, r.reason FROM replacements r JOIN births b ON b.id = r.old_birth_id"
                " WHERE r.state = 'voiding' ORDER BY r.id"
            )
        ]

    def replacement_failed(self, replacement_id: int, error: str) -> None:
        """The centre refused the void: the old registration stays, the corrected one is dropped."""
        with self._write() as db:
            db.execute(
                "UPDATE replacements SET state = 'failed', error = ?, updated_at = ? WHERE id = ? AND state = 'voiding'",
                (error, self.clock(), replacement_id),
            )

    def _complete_replacement(self, db: Connection, old_birth_id: int) -> int | None:
        """In the commit that records the old registration's void: record the corrected birth."""
        found = db.execute(
            "SELECT id, record FROM replacements WHERE old_birth_id = ? AND state = 'voiding'", (old_birth_id,)
        ).fetchone()
        if found is None:
            return None
        with trusted():
            corrected = _decode_birth(found[1])
        now = self.clock()
        new_id = self._insert(db, corrected, bytes(found[1]), now, replaces=old_birth_id)
        db.execute(
            "UPDATE replacements SET state = 'done', new_birth_id = ?, updated_at = ? WHERE id = ?", (new_id, now, found[0])
        )
        return new_id

    # --- reviews ----------------------------------------------------------------------------------

    def resolve_review(
        self,
        birth_id: int,
        *,
        operator: str,
        registration_number: str | None = None,
        eligible: bool | None = None,
        refused: str | None = None,
        send_again: bool = False,
    ) -> tuple[BirthRow, list[Delivery]]:
        """A person resolved a birth in review: found its ``baz726`` at the centre (registered),
        found it refused (with the cause), or found nothing (send it again, the doubt cleared).
        Journaled with ``operator``; ``collection_result`` says who resolved it."""
        chosen = [registration_number is not None, refused is not None, send_again]
        if sum(chosen) != 1:
            raise ResolutionError("resolve a review one way: registration_number=..., refused=... or send_again=True")
        now = self.clock()
        claimed: list[Delivery] = []
        with self._write() as db:
            row = self._birth_where(db, "id = ?", (birth_id,))
            lifecycle.check(Action.RESOLVE, birth_id, row.state)
            event: events.Event | None = None
            if registration_number is not None:
                if eligible is None:
                    raise ResolutionError("eligible=True or False: what the centre shows as bkee45 是否可预参保")
                holder = db.execute(
                    "SELECT id, state FROM births WHERE registration_number = ? AND id != ? ORDER BY id DESC",
                    (registration_number, birth_id),
                ).fetchone()
                if holder is not None:  # a number typed from another newborn's line (voided ones stay theirs)
                    voided = " (voided: a dead number)" if holder[1] == BirthState.VOIDED else ""
                    raise ResolutionError(
                        f"baz726 {registration_number} is birth #{holder[0]}'s registration{voided};"
                        " check the number at the centre"
                    )
                result = CollectionResult(
                    flag=1, registration_number=registration_number, eligibility="1" if eligible else "0"
                )
                db.execute(
                    "UPDATE births SET state = 'registered', registration_number = ?, eligibility = ?, reason = ?,"
                    " registered_at = ?, updated_at = ? WHERE id = ?",
                    (registration_number, result.eligibility, f"resolved by {operator}", now, now, birth_id),
                )
                event = events.CollectionResultEvent(birth=row.birth, result=result, birth_id=birth_id, resolved_by=operator)
                detail = f"registered as {registration_number} (eligible: {'yes' if eligible else 'no'})"
            elif refused is not None:
                refused = scrub(refused, row.birth.secrets())  # as a centre's cause is kept
                result = CollectionResult(flag=0, cause=refused)
                db.execute(
                    "UPDATE births SET state = 'refused', reason = ?, updated_at = ? WHERE id = ?", (refused, now, birth_id)
                )
                event = events.CollectionResultEvent(birth=row.birth, result=result, birth_id=birth_id, resolved_by=operator)
                detail = f"refused: {refused}"
            else:
                last = db.execute("SELECT coalesce(max(id), 0) FROM exchanges WHERE birth_id = ?", (birth_id,)).fetchone()[0]
                db.execute(
                    "UPDATE births SET state = 'pending', reason = NULL, next_attempt_at = 0, doubt_cleared_at = ?,"
                    " updated_at = ? WHERE id = ?",
                    (last, now, birth_id),
                )
                detail = "found nothing at the centre: send again"
            self._act(db, operator, "resolve review", birth_id, detail)
            if event is not None:
                self._emit(db, event, birth_id, claimed)
            return self._birth_where(db, "id = ?", (birth_id,)), claimed

    # --- lookups and the real-name horizon ---------------------------------------------------------

    def find(self, key: int | str, multiple_birth_number: int | None = None) -> list[int]:
        """Birth ids answering to ``key``: a birth id, a registration number (``XSE...``) or a HIS
        serial (``bke042``, with ``multiple_birth_number`` to pick a twin); newest first.  A
        ``multiple_birth_number`` that is not one digit answers to no birth (never an
        OverflowError from the database)."""
        if multiple_birth_number is not None and (
            isinstance(multiple_birth_number, bool) or not isinstance(multiple_birth_number, int)
            or not 0 <= multiple_birth_number <= 9
        ):
            return []
        db = self.db
        if isinstance(key, int):
            if not 0 < key < 2**63:
                return []
            return [int(r[0]) for r in db.execute("SELECT id FROM births WHERE id = ?", (key,))]
        rows = db.execute(
            "SELECT id FROM births WHERE registration_number = ? ORDER BY id DESC", (key,)
        ).fetchall() or db.execute(
            "SELECT id FROM births WHERE his_serial = ? AND (CAST(? AS INTEGER) IS NULL OR multiple_birth_number = ?)"
            " ORDER BY multiple_birth_number, id DESC",
            (key, multiple_birth_number, multiple_birth_number),
        ).fetchall()
        found = [int(r[0]) for r in rows]
        if key.isdigit() and len(key) < 19:  # text of digits: a HIS serial, or a birth id typed bare
            by_id = [int(r[0]) for r in db.execute("SELECT id FROM births WHERE id = ?", (int(key),))]
            if by_id and found and found != by_id:
                raise BirthNotFound(
                    f"{key} is both birth #{key}'s id and the HIS serial (bke042) of birth #{found[0]}:"
                    f" write #{key} for the id"
                )
            found = found or by_id
        return found

    def lookup(self, birth_id: int) -> BirthStatus:
        """Where a birth stands, with its exchanges with the centre and people's actions on it."""
        db = self.db
        row = db.execute(
            "SELECT id, record, state, registration_number, eligibility, reason, attempts, next_attempt_at,"
            " last_error, created_at, registered_at, replaces FROM births WHERE id = ?",
            (birth_id,),
        ).fetchone()
        if row is None:
            raise BirthNotFound(f"no birth #{birth_id} in journal {self.name}")
        with trusted():
            birth = _decode_birth(row[1])
        replaced_by = db.execute(
            "SELECT new_birth_id FROM replacements WHERE old_birth_id = ? AND state = 'done'", (birth_id,)
        ).fetchone()
        secrets = birth.secrets()  # a centre's cause may quote the mother by name
        exchanges = tuple(
            ExchangeInfo(r[0], r[1], r[2], r[3], scrub(r[4], secrets) if r[4] else None)
            for r in db.execute(
                "SELECT funid, outcome, started_at, elapsed, error FROM exchanges WHERE birth_id = ? ORDER BY id",
                (birth_id,),
            )
        )
        actions = tuple(
            ActionInfo(r[0], r[1], r[2], scrub(r[3], secrets) if r[3] else None)
            for r in db.execute("SELECT at, operator, action, detail FROM actions WHERE birth_id = ? ORDER BY id", (birth_id,))
        )
        state = BirthState(row[2])
        waiting = state in (BirthState.PENDING, BirthState.UPLOADING)
        return BirthStatus(
            birth_id=int(row[0]), birth=birth, state=state, registration_number=row[3],
            eligible=None if row[4] in (None, "") else row[4] == "1", reason=scrub(row[5], secrets) if row[5] else None,
            attempts=int(row[6]), next_attempt_at=float(row[7]) if waiting and row[7] else None,
            last_error=scrub(row[8], secrets) if row[8] else None, recorded_at=float(row[9]),
            registered_at=None if row[10] is None else float(row[10]), replaces=row[11],
            replaced_by=None if replaced_by is None else replaced_by[0], exchanges=exchanges, actions=actions,
        )

    def births_in(
        self, state: BirthState, *, failing: bool = False, limit: int = 50, newest: bool = False
    ) -> list[BirthStatus]:
        """The births in ``state`` (oldest first, or the ``newest``), for the clerk's lists;
        ``failing`` keeps only those whose last upload attempt failed (a last error, a next attempt)."""
        where = "state = ? AND last_error IS NOT NULL" if failing else "state = ?"  # births_failing serves the first
        order = "id DESC" if newest else "id"
        rows = self.db.execute(f"SELECT id FROM births WHERE {where} ORDER BY {order} LIMIT ?", (state, limit)).fetchall()
        return [self.lookup(int(r[0])) for r in rows]

    def mark_stale(self, horizon: float) -> int:
        """Registered births not real-named ``horizon`` seconds after registration become stale:
        the daily sweep stops asking about them (it would grow with the hospital's history)."""
        with self._write() as db:
            return db.execute(
                "UPDATE births SET state = 'stale', updated_at = ? WHERE state = 'registered' AND registered_at < ?",
                (self.clock(), self.clock() - horizon),
            ).rowcount
