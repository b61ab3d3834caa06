"""The journal's tables, as numbered migrations (``PRAGMA user_version`` says which ran).

A journal written by an older ybplug is brought up to date when it is opened; a step never
changes once released, a change is a new step.
"""

from __future__ import annotations

import sqlite3

from ybplug.journal.model import NewerJournal

MIGRATIONS: tuple[str, ...] = (
    # 1: births, exchanges, events, deliveries, runs.
    """
CREATE TABLE IF NOT EXISTS births (
    id INTEGER PRIMARY KEY,
    mother_id TEXT NOT NULL,
    birth_time INTEGER NOT NULL,
    multiple_birth_number INTEGER NOT NULL,
    record BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    registration_number TEXT,
    eligibility TEXT,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    claimed_by TEXT,
    lease_until REAL,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (mother_id, birth_time, multiple_birth_number)
);
CREATE INDEX IF NOT EXISTS births_state ON births (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS births_registration ON births (registration_number);
CREATE INDEX IF NOT EXISTS births_sweep ON births (state, id);
-- The births waiting for upload in id order, so a claim reads its batch instead of sorting the
-- whole backlog (a week of births after an outage).
CREATE INDEX IF NOT EXISTS births_waiting ON births (id) WHERE state IN ('pending', 'uploading');
CREATE TABLE IF NOT EXISTS exchanges (
    id INTEGER PRIMARY KEY,
    funid TEXT NOT NULL,
    birth_id INTEGER,
    request BLOB,
    reply BLOB,
    outcome TEXT NOT NULL DEFAULT 'sent',
    error TEXT,
    started_at REAL NOT NULL,
    elapsed REAL
);
CREATE INDEX IF NOT EXISTS exchanges_birth ON exchanges (birth_id, funid);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    hook TEXT NOT NULL,
    birth_id INTEGER,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_birth ON events (birth_id);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id TEXT NOT NULL REFERENCES events (id),
    plugin TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    claimed_by TEXT,
    lease_until REAL,
    last_error TEXT,
    delivered_at REAL,
    PRIMARY KEY (event_id, plugin)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_claimed ON deliveries (claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX IF NOT EXISTS births_claimed ON births (claimed_by) WHERE claimed_by IS NOT NULL;
CREATE TABLE IF NOT EXISTS runs (
    job TEXT PRIMARY KEY,
    started_at REAL,
    finished_at REAL,
    summary TEXT
);
""",
    # 2: the journal's identity, durable subscriptions, and the operators' actions.
    """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Which plugin (by its stable name) receives which event hook, from the first time a host
-- loaded it until an operator forgets it: events get a delivery for every subscriber, loaded
-- in the producing process or not.
CREATE TABLE subscriptions (
    plugin TEXT NOT NULL,
    hook TEXT NOT NULL,
    since REAL NOT NULL,
    last_loaded_at REAL NOT NULL,
    forgotten_at REAL,
    PRIMARY KEY (plugin, hook)
);
INSERT OR IGNORE INTO subscriptions (plugin, hook, since, last_loaded_at)
    SELECT d.plugin, e.hook, min(e.created_at), max(e.created_at)
    FROM deliveries d JOIN events e ON e.id = d.event_id GROUP BY d.plugin, e.hook;
CREATE TABLE actions (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    operator TEXT NOT NULL,
    action TEXT NOT NULL,
    birth_id INTEGER,
    detail TEXT
);
CREATE INDEX actions_birth ON actions (birth_id);
CREATE INDEX deliveries_plugin ON deliveries (plugin, state);
""",
    # 3: a birth's whole life.  (SQLite cannot drop a constraint, so the births table is rebuilt:
    # its columns repeat step 1's, which `duplicates` pairs; a released step never changes.)  One live birth per centre key (a voided birth no longer holds
    # it, so the newborn can be recorded again), the HIS serial and registration time as
    # columns, the earlier versions of amended records, and replacements in progress.
    """
CREATE TABLE births_v3 (
    id INTEGER PRIMARY KEY,
    mother_id TEXT NOT NULL,
    birth_time INTEGER NOT NULL,
    multiple_birth_number INTEGER NOT NULL,
    his_serial TEXT NOT NULL DEFAULT '',
    record BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    registration_number TEXT,
    eligibility TEXT,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    claimed_by TEXT,
    lease_until REAL,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    registered_at REAL,
    -- Upload exchanges up to this id were cleared by a person ("found nothing: send again").
    doubt_cleared_at INTEGER NOT NULL DEFAULT 0,
    replaces INTEGER,
    -- When its personal fields were erased (ybplug prune): the row stays for the statistics.
    pruned_at REAL
);
INSERT INTO births_v3 (id, mother_id, birth_time, multiple_birth_number, his_serial, record, state,
    registration_number, eligibility, reason, attempts, next_attempt_at, claimed_by, lease_until, last_error,
    created_at, updated_at, registered_at)
    SELECT id, mother_id, birth_time, multiple_birth_number, coalesce(json_extract(record, '$.bke042'), ''), record,
        state, registration_number, eligibility, reason, attempts, next_attempt_at, claimed_by, lease_until,
        last_error, created_at, updated_at,
        CASE WHEN state IN ('registered', 'real_named') THEN updated_at END
    FROM births;
DROP TABLE births;
ALTER TABLE births_v3 RENAME TO births;
CREATE UNIQUE INDEX births_key ON births (mother_id, birth_time, multiple_birth_number) WHERE state != 'voided';
CREATE INDEX births_serial ON births (his_serial, multiple_birth_number);
CREATE INDEX births_state ON births (state, next_attempt_at);
CREATE INDEX births_registration ON births (registration_number);
CREATE INDEX births_sweep ON births (state, id);
CREATE INDEX births_waiting ON births (id) WHERE state IN ('pending', 'uploading');
CREATE INDEX births_claimed ON births (claimed_by) WHERE claimed_by IS NOT NULL;
-- The clerk's list of failing uploads, without reading the backlog.
CREATE INDEX births_failing ON births (state, id) WHERE last_error IS NOT NULL;
CREATE TABLE record_history (
    birth_id INTEGER NOT NULL,
    record BLOB NOT NULL,
    replaced_at REAL NOT NULL,
    operator TEXT NOT NULL
);
CREATE INDEX record_history_birth ON record_history (birth_id);
-- A correction of a registered birth: void the old registration, then record the new one.
-- 'voiding' until the void is known to have happened (a restart carries it on), then 'done'
-- (new_birth_id recorded in the same commit as the void) or 'failed' (the void was refused).
CREATE TABLE replacements (
    id INTEGER PRIMARY KEY,
    old_birth_id INTEGER NOT NULL,
    record BLOB NOT NULL,
    reason TEXT NOT NULL,
    operator TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'voiding',
    new_birth_id INTEGER,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX replacements_state ON replacements (state);
""",
    # 4: alert incidents (ybplug.alerts): one row per incident, from the first alert until it
    # cleared, so a restart neither repeats an alert nor forgets one that is still open.
    """
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    opened_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    notified_at REAL,
    reminders INTEGER NOT NULL DEFAULT 0,
    resolved_at REAL
);
CREATE UNIQUE INDEX incidents_open ON incidents (key) WHERE resolved_at IS NULL;
-- The voucher library's recent calls (its crashes), found without reading every exchange.
CREATE INDEX exchanges_ectrans ON exchanges (started_at) WHERE funid = 'EcTrans';
""",
    # 5: the exchanges whose outcome is unknown, so that looking for voids in doubt (each upload
    # run) reads those few instead of every exchange of the journal's history.
    """
CREATE INDEX exchanges_in_doubt ON exchanges (funid, birth_id) WHERE outcome IN ('sent', 'unknown');
""",
)


def migrate(db: sqlite3.Connection, name: str = "") -> None:
    """Run the steps this journal has not run yet, each in its own transaction.  A journal at a
    step this ybplug does not know (a newer ybplug wrote it; ``name`` in the message) is a
    :class:`~ybplug.journal.model.NewerJournal`, left as it is."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise NewerJournal(name, version, len(MIGRATIONS))
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            if int(db.execute("PRAGMA user_version").fetchone()[0]) >= number:  # another process ran it
                db.execute("ROLLBACK")
                continue
            for statement in _statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _statements(script: str) -> list[str]:
    """The script's statements (``executescript`` would commit the migration's transaction)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
