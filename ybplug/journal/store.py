"""The journal: the single source of truth of what happened, on SQLite or PostgreSQL
(:mod:`ybplug.journal.sql`).

Every birth with its state, every exchange with the centre (request, reply, timing) and every
hook delivery per plugin.  The guarantees the host builds on:

* A birth is durable before ``record_birth`` returns; its idempotency key (mother's ID, birth
  time, multiple-birth number) makes recording it again return the existing row.
* Before a request leaves, an exchange row is committed.  An exchange without an answer (the
  process died, the reply was lost) means the centre *may* have applied it: a later "duplicate"
  answer then sends the birth to ``needs_review``, never to failure or silent success.
* A state change and the events it causes commit together, so a reply is never recorded without
  its hook deliveries, nor the other way round.
* Claims carry a lease: two workers never upload the same birth at once; a worker that died
  (SIGKILL) is detected by its pid on this machine, or its lease runs out (on PostgreSQL the
  claim also skips rows another worker is claiming: ``FOR UPDATE SKIP LOCKED``).
* Subscriptions are durable: an event gets a delivery for every plugin that ever subscribed to
  its hook (until an operator forgets it), whether or not the producing process loaded it.
* An event is emitted only by the transaction that changed the state it reports.
* The journal knows itself (:mod:`ybplug.journal.identity`): a deleted, emptied or replaced
  file is an error, never a silent fresh start.

All methods are synchronous and must be called from one thread at a time; the host runs them
on a worker thread under a limiter of one so the event loop never waits on ``fsync``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from ybplug import events, lifecycle
from ybplug.codes import Funid
from ybplug.errors import Outcome
from ybplug.journal import identity
from ybplug.journal.base import _encode
from ybplug.journal.births import Births
from ybplug.journal.erasure import Erasure
from ybplug.journal.sql import Connection
from ybplug.journal.model import Backoff, BirthRow, Delivery, JournalError
from ybplug.lifecycle import BirthState
from ybplug.messages import CollectionResult, RealNameRecord
from ybplug.privacy import scrub


#: A birth this worker holds the claim on (the ``?`` is the worker's owner string).
_CLAIMED = "(state = 'uploading' AND claimed_by = ?)"
#: A birth the centre's "registered" answer may register, whoever sent it: one with no number yet.
_NUMBERLESS = "(state IN ('uploading', 'pending', 'needs_review') AND registration_number IS NULL)"


class Journal(Births, Erasure):
    """The durable store (SQLite or PostgreSQL): births and their corrections (:class:`Births`), exchanges,
    uploads, real-name answers, voids, deliveries, runs and status; erasure (:class:`Erasure`)."""

    def claim_births(
        self, limit: int, *, recorded_before: float | None = None, only: list[int] | None = None
    ) -> list[BirthRow]:
        """Claim up to ``limit`` births due for upload, with a lease.

        The same commit marks each one's upload as about to leave (an exchange row), saving a
        commit per birth: a worker that dies before sending leaves that mark, and the retry then
        treats a "duplicate" answer with the caution an unknown outcome calls for.

        With ``recorded_before``, new births recorded after that time are left for the next
        scheduled run; births already attempted are retried whenever their backoff allows.
        With ``only``, just those births (a clerk's correction, sent at once in daily mode
        without the day's other births).
        """
        now = self.clock()
        cutoff = now + 1.0 if recorded_before is None else recorded_before
        chosen = "" if only is None else f" AND id IN ({','.join('?' * len(only))})" if only else " AND 0 = 1"
        with self._write() as db:
            self._release_dead_claims(db, "births", now)
            rows = db.execute(
                "SELECT id, record, state, registration_number, reason, attempts FROM births INDEXED BY births_waiting"
                " WHERE state IN ('pending', 'uploading') AND next_attempt_at <= ?"
                " AND (lease_until IS NULL OR lease_until < ?) AND (attempts > 0 OR created_at < ?)" + chosen
                + " ORDER BY id LIMIT ?" + self.backend.skip_locked,
                (now, now, cutoff, *(only or ()), limit),
            ).fetchall()
            if not rows:
                return []
            ids = [r[0] for r in rows]
            marks = ",".join("?" * len(ids))
            db.execute(
                f"UPDATE births SET state = 'uploading', claimed_by = ?, lease_until = ?, updated_at = ? WHERE id IN ({marks})",
                (self.owner, now + self.lease, now, *ids),
            )
            exchanges = [
                int(db.execute(
                    "INSERT INTO exchanges (funid, birth_id, started_at) VALUES (?, ?, ?)", (Funid.COLLECT, birth_id, now)
                ).lastrowid or 0)
                for birth_id in ids
            ]
        return [
            msgspec.structs.replace(self._row(r), exchange_id=exchange_id)
            for r, exchange_id in zip(rows, exchanges, strict=True)
        ]

    def begin_exchange(self, funid: str, request: bytes | None, birth_id: int | None = None) -> int:
        """Commit that a request is about to leave: from here on its outcome may be unknown."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO exchanges (funid, birth_id, request, started_at) VALUES (?, ?, ?, ?)",
                (funid, birth_id, request, self.clock()),
            )
            return int(cursor.lastrowid or 0)

    def record_exchange(
        self, funid: str, request: bytes | None, outcome: Outcome, error: str | None, started_at: float, elapsed: float
    ) -> int:
        """Record a finished exchange in one write (read-only calls such as EcTrans, which need
        no "about to leave" mark because repeating them changes nothing)."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO exchanges (funid, request, outcome, error, started_at, elapsed) VALUES (?, ?, ?, ?, ?, ?)",
                (funid, request, outcome, error, started_at, elapsed),
            )
            return int(cursor.lastrowid or 0)

    def _finish_exchange(
        self, db: Connection, exchange_id: int, outcome: Outcome, reply: bytes | None, error: str | None
    ) -> None:
        db.execute(
            "UPDATE exchanges SET outcome = ?, reply = ?, error = ?, elapsed = ? - started_at WHERE id = ?",
            (outcome, reply, error, self.clock(), exchange_id),
        )

    def finish_exchange(self, exchange_id: int, outcome: Outcome, reply: bytes | None = None, error: str | None = None) -> None:
        with self._write() as db:
            self._finish_exchange(db, exchange_id, outcome, reply, error)

    def upload_answered(
        self, row: BirthRow, exchange_id: int, result: CollectionResult, *, duplicate: bool
    ) -> tuple[BirthState, list[Delivery]]:
        """Record the centre's answer to yb04.13.01.21 and its event, in one commit; returns the
        birth's state and the event's deliveries claimed for this process to make now.

        The state follows :func:`ybplug.lifecycle.after_upload`, and applies only while this
        worker still holds the birth's claim: once its lease ran out and another worker took the
        birth over, the answer is recorded as an exchange only, and the other worker's answer
        decides.  Except a registration: the centre's "registered, number X" is the truth about
        the newborn whoever asked, so it registers a birth that has no number yet (another
        worker's upload in flight, failed, or sent to review on a "duplicate" this very upload
        caused) and emits ``collection_result`` for it; the other worker's answer is then the one
        recorded as an exchange only.
        """
        now = self.clock()
        reply = _encode(result)
        with self._write() as db:
            earlier = [  # since a person last cleared the doubt ("found nothing: send again")
                lifecycle.Answer(r[0], r[1])
                for r in db.execute(
                    "SELECT outcome, error FROM exchanges WHERE birth_id = ? AND funid = ? AND id != ?"
                    " AND id > (SELECT doubt_cleared_at FROM births WHERE id = ?) ORDER BY id",
                    (row.id, Funid.COLLECT, exchange_id, row.id),
                )
            ]
            decision = lifecycle.after_upload(
                ok=result.ok, cause=result.cause, ineligibility=result.ineligibility_reason,
                duplicate=duplicate, earlier=earlier,
            )
            outcome = Outcome.OK if result.ok else Outcome.REFUSED
            # A centre's cause may quote the mother ("母亲王芳信息有误"): what people read (the
            # error, the reason) is kept scrubbed of this birth's personal values; the reply as sent.
            secrets = row.birth.secrets()
            cause = None if result.ok or result.cause is None else scrub(_capped(result.cause), secrets)
            self._finish_exchange(db, exchange_id, outcome, reply, cause)
            changed = db.execute(
                "UPDATE births SET state = ?, registration_number = ?, eligibility = ?, reason = ?,"
                " attempts = attempts + 1, claimed_by = NULL, lease_until = NULL, last_error = NULL, updated_at = ?,"
                " registered_at = ? WHERE id = ? AND " + (_NUMBERLESS if result.ok else _CLAIMED),
                (
                    decision.state,
                    str(result.registration_number) if result.ok else None,
                    str(result.eligibility) if result.ok and str(result.eligibility) in ("0", "1") else None,  # else unknown
                    None if decision.reason is None else scrub(_capped(decision.reason), secrets),
                    now,
                    now if result.ok else None,
                    row.id,
                    *(() if result.ok else (self.owner,)),
                ),
            ).rowcount
            claimed: list[Delivery] = []
            if not changed:
                return self._birth_where(db, "id = ?", (row.id,)).state, claimed
            event: events.Event
            if decision.review:
                event = events.BirthNeedsReviewEvent(birth=row.birth, reason=decision.reason or "", birth_id=row.id)
            else:
                event = events.CollectionResultEvent(birth=row.birth, result=result, birth_id=row.id)
            self._emit(db, event, row.id, claimed)
        return decision.state, claimed

    def upload_failed(
        self, row: BirthRow, error: str, backoff: Backoff, *, unreadable: str | None = None, review_after: int = 0
    ) -> tuple[BirthState, list[Delivery]]:
        """No answer: release the birth for a later attempt after the backoff, if this worker
        still holds its claim (after a lease ran out, another worker's answer decides: a late
        failure here must not undo its registration).

        An answer the centre gave but that could not be read (its exchange's error begins with
        ``unreadable``) counts: ``review_after`` of them in a row, since a person last cleared
        the doubt, send the birth to review with its event (claimed for this process, returned)
        instead of retrying it for ever.  Returns the state this call left the birth in, or
        ``uploading`` when another worker holds it now (this call changed nothing)."""
        now = self.clock()
        attempts = row.attempts + 1
        error = scrub(error, row.birth.secrets())
        claimed: list[Delivery] = []
        with self._write() as db:
            in_a_row = self._unreadable_in_a_row(db, row.id, unreadable, review_after) if unreadable else 0
            if review_after and in_a_row >= review_after:
                decision = lifecycle.after_unreadable(in_a_row, error)
                changed = db.execute(
                    "UPDATE births SET state = ?, reason = ?, attempts = ?, claimed_by = NULL, lease_until = NULL,"
                    " last_error = ?, updated_at = ? WHERE id = ? AND " + _CLAIMED,
                    (decision.state, decision.reason, attempts, error, now, row.id, self.owner),
                ).rowcount
                if changed:
                    event = events.BirthNeedsReviewEvent(birth=row.birth, reason=decision.reason or "", birth_id=row.id)
                    self._emit(db, event, row.id, claimed)
                    return decision.state, claimed
            released = db.execute(
                "UPDATE births SET state = 'pending', attempts = ?, next_attempt_at = ?, claimed_by = NULL,"
                " lease_until = NULL, last_error = ?, updated_at = ? WHERE id = ? AND " + _CLAIMED,
                (attempts, now + backoff.delay(attempts), error, now, row.id, self.owner),
            ).rowcount
            # ``uploading``: the birth is not this worker's any more (another took it over); its state is theirs to tell.
            return (BirthState.PENDING if released else BirthState.UPLOADING), claimed

    def _unreadable_in_a_row(self, db: Connection, birth_id: int, marker: str, most: int) -> int:
        """How many of the birth's latest uploads (since the doubt was last cleared) ended in an
        answer that could not be read, counting back from the latest."""
        errors = db.execute(
            "SELECT error FROM exchanges WHERE birth_id = ? AND funid = ? AND id > (SELECT doubt_cleared_at"
            " FROM births WHERE id = ?) ORDER BY id DESC LIMIT ?",
            (birth_id, Funid.COLLECT, birth_id, most),
        ).fetchall()
        count = 0
        for (text,) in errors:
            if not (text or "").startswith(marker):
                break
            count += 1
        return count

    def keep_claim(self, birth_id: int) -> bool:
        """Renew this worker's lease on a birth it is about to send; False if the claim is no
        longer this worker's (its lease ran out while the birth waited for a free upload slot,
        and another worker took it over): then it must not be sent from here."""
        now = self.clock()
        with self._write() as db:
            return bool(db.execute(
                "UPDATE births SET lease_until = ?, updated_at = ? WHERE id = ? AND " + _CLAIMED,
                (now + self.lease, now, birth_id, self.owner),
            ).rowcount)

    def awaiting_realname(self, after_id: int, limit: int, *, state: str = "registered") -> list[tuple[int, str]]:
        """``(birth id, baz726)`` of newborns in ``state`` (registered, or stale when polled on
        demand), not yet real-named, after ``after_id``.

        Only the numbers: a sweep asks about thousands, and decoding each record would cost more
        than the query (the few that turn out real-named are loaded when recorded).
        """
        rows = self.db.execute(
            "SELECT id, registration_number FROM births WHERE state = ? AND id > ? ORDER BY id LIMIT ?",
            (state, after_id, limit),
        ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def realname_answered(
        self, exchange_id: int, reply: bytes, updates: list[tuple[int, RealNameRecord]]
    ) -> tuple[int, int]:
        """Record a yb04.13.01.24 answer: newly real-named and centre-voided newborns, one commit.

        A birth's event is emitted only if this answer moved it out of ``registered``: two
        pollers asking at once both record their exchange, one of them emits.  A real-named
        identity that cannot be this birth's (:func:`ybplug.lifecycle.realname_mismatch`) sends
        the birth to review instead: another newborn's identity never reaches the HIS.  Returns
        how many births this answer moved to real-named and to voided.
        """
        now = self.clock()
        real_named = voided = 0
        with self._write() as db:
            self._finish_exchange(db, exchange_id, Outcome.OK, reply, None)
            for birth_id, record in updates:
                event: events.Event
                if record.voided:
                    changed = db.execute(
                        "UPDATE births SET state = 'voided', reason = ?, updated_at = ? WHERE id = ?"
                        " AND state IN ('registered', 'stale')",
                        ("voided at the centre", now, birth_id),
                    ).rowcount
                    if changed:
                        self._complete_replacement(db, birth_id)
                    event = events.CollectionVoidedEvent(
                        registration_number=str(record.registration_number), reason="voided at the centre", birth_id=birth_id
                    )
                else:
                    birth = self._birth_where(db, "id = ?", (birth_id,)).birth
                    mismatch = lifecycle.realname_mismatch(birth, record)
                    if mismatch is not None:  # another newborn's number (a person's typo when resolving a review)
                        changed = db.execute(
                            "UPDATE births SET state = 'needs_review', registration_number = NULL, eligibility = NULL,"
                            " reason = ?, updated_at = ? WHERE id = ? AND state IN ('registered', 'stale')",
                            (mismatch, now, birth_id),
                        ).rowcount
                        if changed:
                            self._emit(db, events.BirthNeedsReviewEvent(birth=birth, reason=mismatch, birth_id=birth_id), birth_id)
                        continue
                    changed = db.execute(
                        "UPDATE births SET state = 'real_named', updated_at = ? WHERE id = ?"
                        " AND state IN ('registered', 'stale')",
                        (now, birth_id),
                    ).rowcount
                    event = events.RealnameResolvedEvent(birth=birth, record=record, birth_id=birth_id)
                if changed:
                    voided += int(record.voided)
                    real_named += int(not record.voided)
                    self._emit(db, event, birth_id)
        return real_named, voided

    def birth_id_of(self, registration_number: str) -> int | None:
        """The birth holding ``registration_number`` (the latest, should there be several)."""
        found = self.db.execute(
            "SELECT id FROM births WHERE registration_number = ? ORDER BY id DESC LIMIT 1", (registration_number,)
        ).fetchone()
        return int(found[0]) if found else None

    def secrets_of(self, registration_number: str) -> list[str]:
        """The personal values of the birth holding ``registration_number`` (none if no birth
        does): what the centre's cause for refusing its void is scrubbed of."""
        birth_id = self.birth_id_of(registration_number)
        return [] if birth_id is None else self.birth(birth_id).birth.secrets()

    def void_in_doubt(self, registration_number: str) -> bool:
        """Whether an earlier yb04.13.01.22 for this number has an unknown outcome (its reply was
        lost): the centre may have voided it, so its "already void" now means success."""
        birth_id = self.birth_id_of(registration_number)
        found = self.db.execute(
            "SELECT 1 FROM exchanges WHERE funid = ? AND outcome IN ('sent', 'unknown')"
            " AND (birth_id = ? OR instr(request, ?) > 0) LIMIT 1",
            (Funid.VOID, birth_id, f'"{registration_number}"'.encode()),
        ).fetchone()
        return found is not None

    def voids_in_doubt(self, most: int = 5) -> list[tuple[str, str]]:
        """(registration number, reason) of voids of our births whose outcome is unknown (the reply
        was lost; the centre may have voided it) and not settled since: no void recorded for the
        birth, fewer than ``most`` attempts since, no replacement carrying it.  The host sends them
        again until the centre says done or "already void": an operator's void is never half kept."""
        latest: dict[int, tuple[str, bytes]] = {}  # per birth, its latest void in doubt (in that order)
        for birth_id, number, request in self.db.execute(
            "SELECT b.id, b.registration_number, e.request FROM exchanges e JOIN births b ON b.id = e.birth_id"
            " WHERE e.funid = ? AND e.outcome IN ('sent', 'unknown') AND e.request IS NOT NULL"
            " AND b.state != 'voided' AND b.registration_number IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM replacements r WHERE r.old_birth_id = b.id AND r.state = 'voiding')"
            " AND (SELECT count(*) FROM exchanges later WHERE later.funid = e.funid AND later.birth_id = e.birth_id"
            "      AND later.id > e.id) < ?"
            " ORDER BY e.id",
            (Funid.VOID, most),
        ):
            latest.pop(birth_id, None)
            latest[birth_id] = (number, request)
        found = []
        for number, request in latest.values():
            try:
                reason = str(msgspec.json.decode(request).get("bae016") or "")
            except (msgspec.DecodeError, UnicodeError, AttributeError):
                continue
            if reason:
                found.append((str(number), reason))
        return found

    def voided(self, exchange_id: int, reply: bytes, registration_number: str, reason: str) -> int | None:
        """Record a successful yb04.13.01.22 and its event; returns the birth id if it is ours.

        The event is emitted only when this moves the birth to voided (a repeated void after a
        lost reply, or one the real-name poll already saw, emits nothing twice).
        """
        now = self.clock()
        with self._write() as db:
            self._finish_exchange(db, exchange_id, Outcome.OK, reply, None)
            birth_id = self.birth_id_of(registration_number)
            changed = 1
            if birth_id is not None:
                changed = db.execute(
                    "UPDATE births SET state = 'voided', reason = ?, updated_at = ? WHERE id = ? AND state != 'voided'",
                    (reason, now, birth_id),
                ).rowcount
            if changed:
                event = events.CollectionVoidedEvent(registration_number=registration_number, reason=reason, birth_id=birth_id)
                self._emit(db, event, birth_id)
                if birth_id is not None:
                    self._complete_replacement(db, birth_id)
        return birth_id

    # --- deliveries ---------------------------------------------------------------------------

    def claim_deliveries(self, limit: int, plugins: Iterable[str]) -> list[Delivery]:
        """Claim due deliveries to the plugins loaded in this process, oldest first.

        A plugin gets the events of one birth in the order they happened: a delivery waits
        while an earlier one of the same birth to the same plugin is still pending (a parked
        one does not hold the rest back).
        """
        names = list(plugins)
        if not names:
            return []
        now = self.clock()
        marks = ",".join("?" * len(names))
        with self._write() as db:
            self._release_dead_claims(db, "deliveries", now)
            rows = db.execute(
                "SELECT d.event_id, d.plugin, e.hook, e.payload, d.attempts FROM deliveries d JOIN events e ON e.id = d.event_id"
                f" WHERE d.state = 'pending' AND d.next_attempt_at <= ? AND (d.lease_until IS NULL OR d.lease_until < ?)"
                f" AND d.plugin IN ({marks})"
                " AND NOT EXISTS (SELECT 1 FROM events e2 JOIN deliveries d2 ON d2.event_id = e2.id"
                "   WHERE e2.birth_id = e.birth_id AND e2.rowid < e.rowid AND d2.plugin = d.plugin AND d2.state = 'pending')"
                " ORDER BY d.next_attempt_at, d.rowid LIMIT ?"  # the order of deliveries_due: no sort
                + self.backend.skip_locked_deliveries,
                (now, now, *names, limit),
            ).fetchall()
            db.executemany(
                "UPDATE deliveries SET claimed_by = ?, lease_until = ? WHERE event_id = ? AND plugin = ?",
                [(self.owner, now + self.lease, r[0], r[1]) for r in rows],
            )
        return [Delivery(r[0], r[1], r[2], events.decode(r[3]), r[4]) for r in rows]

    def deliveries_done(self, results: list[tuple[Delivery, str | None]], *, max_attempts: int, backoff: Backoff) -> int:
        """Record delivery attempts (error None = delivered); returns how many were parked."""
        now = self.clock()
        parked = 0
        with self._write() as db:
            for delivery, error in results:
                attempts = delivery.attempts + 1
                if error is None:
                    state, due = "delivered", now
                elif attempts >= max_attempts:
                    state, due = "parked", now
                    parked += 1
                else:
                    state, due = "pending", now + backoff.delay(attempts)
                db.execute(
                    "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?,"
                    " claimed_by = NULL, lease_until = NULL, delivered_at = CASE WHEN ? = 'delivered' THEN ? END"
                    " WHERE event_id = ? AND plugin = ?",
                    (state, attempts, due, error, state, now, delivery.event_id, delivery.plugin),
                )
        return parked

    def replay(self, event_id: str | None = None, plugin: str | None = None) -> int:
        """Put parked deliveries back in the queue, with their attempts reset; returns how many.

        An event id or plugin name no delivery can have (text a database cannot hold, or longer
        than any) re-queues nothing; one that is not text is a TypeError."""
        for value in (event_id, plugin):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"replay takes an event id and a plugin name as str, not {type(value).__name__}")
            if value and (len(value) > 200 or not value.isprintable()):
                return 0
        now = self.clock()
        where, args = "state = 'parked'", []
        if event_id:
            where += " AND event_id = ?"
            args.append(event_id)
        if plugin:
            where += " AND plugin = ?"
            args.append(plugin)
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ? WHERE {where}", (now, *args)
            )
            self.backend.announce(db)
            return cursor.rowcount

    def retry_births(self) -> int:
        """Make every birth waiting for a retry due now."""
        with self._write() as db:
            self.backend.announce(db)
            return db.execute(
                "UPDATE births SET next_attempt_at = 0 WHERE state IN ('pending', 'uploading')"
            ).rowcount

    def next_upload_due(self, *, retries_only: bool) -> float | None:
        """When the earliest waiting upload becomes due (only failed ones if ``retries_only``)."""
        row = self.db.execute(
            "SELECT min(next_attempt_at) FROM births WHERE state IN ('pending', 'uploading') AND attempts >= ?",
            (1 if retries_only else 0,),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def next_delivery_due(self) -> float | None:
        row = self.db.execute("SELECT min(next_attempt_at) FROM deliveries WHERE state = 'pending'").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # --- runs and status ----------------------------------------------------------------------

    def run_finished(self, job: str, summary: dict[str, int], started_at: float) -> None:
        """Remember the last run of a scheduled job (what ``status`` shows, when the next is due)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (job, started_at, finished_at, summary) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (job) DO UPDATE SET started_at = excluded.started_at,"
                " finished_at = excluded.finished_at, summary = excluded.summary",
                (job, started_at, self.clock(), _encode(summary).decode()),
            )

    def status(self) -> dict[str, Any]:
        """Counts by state, deliveries by state, parked deliveries, births in review, durable
        subscribers with what waits for each, and the last run of each job.  Errors and reasons
        are scrubbed of personal data: this is what people and monitors read."""
        db = self.db
        births = dict(db.execute("SELECT state, count(*) FROM births GROUP BY state").fetchall())
        deliveries = dict(db.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall())
        parked = [
            {"event_id": r[0], "plugin": r[1], "hook": r[2], "attempts": r[3], "error": scrub(r[4] or ""), "birth_id": r[5]}
            for r in db.execute(
                "SELECT d.event_id, d.plugin, e.hook, d.attempts, d.last_error, e.birth_id FROM deliveries d"
                " JOIN events e ON e.id = d.event_id WHERE d.state = 'parked' ORDER BY e.created_at LIMIT 50"
            )
        ]
        review = [
            {"birth_id": r[0], "reason": scrub(r[1] or "")}
            for r in db.execute("SELECT id, reason FROM births WHERE state = 'needs_review' ORDER BY id LIMIT 50")
        ]
        subscribers: dict[str, dict[str, Any]] = {}
        for plugin, hook, since, loaded_at in db.execute(
            "SELECT plugin, hook, since, last_loaded_at FROM subscriptions WHERE forgotten_at IS NULL ORDER BY plugin, hook"
        ):
            entry = subscribers.setdefault(plugin, {"hooks": [], "since": since, "last_loaded_at": loaded_at})
            entry["hooks"].append(hook)
            entry["since"] = min(entry["since"], since)
            entry["last_loaded_at"] = max(entry["last_loaded_at"], loaded_at)
        for plugin, state, count in db.execute(
            "SELECT plugin, state, count(*) FROM deliveries WHERE state IN ('pending', 'parked') GROUP BY plugin, state"
        ):
            if plugin in subscribers:
                subscribers[plugin][state] = count
        runs = {
            r[0]: {"started_at": r[1], "finished_at": r[2], "summary": msgspec.json.decode(r[3]) if r[3] else None}
            for r in db.execute("SELECT job, started_at, finished_at, summary FROM runs")
        }
        return {
            "births": births, "deliveries": deliveries, "parked": parked, "needs_review": review, "runs": runs,
            "subscribers": subscribers,
        }


#: The most of a cause from the centre the journal keeps (and people are shown): a 1 MB refusal is
#: no more use than its first lines.
MAX_CAUSE = 2000


def _capped(text: str) -> str:
    return text if len(text) <= MAX_CAUSE else text[: MAX_CAUSE - 1] + "…"


def start_new_journal(path: str | Path) -> Journal:
    """``ybplug init --new-journal``: a new empty journal where one was lost (the marker names
    it) or is damaged; a damaged file is moved aside, never deleted.  A readable journal
    holding births is never replaced (move it away first); an empty one is taken as it is."""
    if str(path).startswith(("postgresql://", "postgres://")):
        raise JournalError(
            "`ybplug init --new-journal` starts a new SQLite journal; a journal on PostgreSQL is new in an"
            " empty schema (DROP SCHEMA ... CASCADE, CREATE SCHEMA, as its owner), restored by the database's backup"
        )
    path = Path(path)
    if identity.holds_a_journal(path):
        try:
            existing = Journal(path, new=True).open()
        except JournalError:
            stamp = time.strftime("%Y%m%d%H%M%S")
            for suffix in ("", "-wal", "-shm"):
                old = path.with_name(path.name + suffix)
                if old.exists():
                    old.rename(old.with_name(f"{old.name}.damaged-{stamp}"))
        else:
            births = int(existing.db.execute("SELECT count(*) FROM births").fetchone()[0])
            if not births:  # an empty journal: it becomes the journal (its marker was rewritten)
                return existing
            existing.close()
            raise JournalError(
                f"journal {path} is readable and holds {births} births: ybplug never starts a new journal "
                "over one; move it away first if you really mean to"
            )
    return Journal(path, new=True).open()

