"""The journal on SQLite (WAL, synchronous=FULL): the embedded default, for one machine.

Writers are serialized by ``BEGIN IMMEDIATE`` (so two workers' claims cannot interleave), a
commit is on disk when it returns, other processes' commits are noticed through
``PRAGMA data_version``, and the file knows itself (:mod:`ybplug.journal.identity`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ybplug.journal import identity
from ybplug.journal.model import JournalError, JournalFull
from ybplug.journal.schema import migrate
from ybplug.journal.sql import Backend, Connection
from ybplug.system import private_dir, private_file


class SqliteBackend(Backend):
    def __init__(self, target: str | Path) -> None:
        super().__init__(target)
        self.path = Path(target)
        self._db: sqlite3.Connection | None = None
        self._watch: identity.FileWatch | None = None
        self._data_version = 0

    def open(self, *, new: bool) -> tuple[Connection, str]:
        """Open (or create) the journal; a path that cannot hold one is a :class:`JournalError`,
        a journal that was there and is gone or replaced a :class:`JournalLost`."""
        expected = identity.check_before_open(self.path, new=new)
        try:
            private_dir(self.path.parent)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise self._cannot_open(exc) from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when record_birth returns, even if the machine loses power.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            migrate(db, str(self.path))
            journal_id = identity.settle(db, self.path, expected)
            if new:  # a person's word (init --new-journal / --restored): what it holds now is what counts
                identity.write_marker(self.path, journal_id, identity.highest_birth(db))
            else:
                identity.check_not_restored(db, self.path, journal_id)
        except BaseException as exc:
            db.close()
            if isinstance(exc, (OSError, sqlite3.Error)):
                raise self._cannot_open(exc) from None
            raise
        for suffix in ("", "-wal", "-shm"):  # personal data: this user's only
            private_file(self.path.with_name(self.path.name + suffix))
        self._db = db
        self._watch = identity.FileWatch(self.path)
        return db, journal_id

    def _cannot_open(self, exc: BaseException) -> JournalError:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and getattr(exc, "sqlite_errorcode", None) in (
            sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT,
        ):
            return JournalError(
                f"journal {self.path} is damaged ({reason}): restore it from a backup, or start a new empty "
                "journal with `ybplug init --new-journal`"
            )
        return JournalError(f"journal {self.path}: cannot open it ({reason}); check `journal` in ybplug.toml")

    def connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("journal is not open")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            try:  # remember the births seen, for the next start to notice an older backup put back
                journal_id = self._db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
                if journal_id is not None and self._watch is not None and self._watch.lost is None:
                    held = identity.highest_birth(self._db)
                    if held > identity.read_high_water(self.path):
                        identity.write_marker(self.path, str(journal_id[0]), held)
            except (OSError, sqlite3.Error):
                pass  # the next start checks against what the marker last said
            finally:
                self._db.close()
                self._db = None

    def begin(self) -> None:
        # The file is checked once a transaction, before its COMMIT (commit): nothing is
        # acknowledged from a file that is gone, and a transaction's reads end with that commit too.
        try:
            self.connection().execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self.translate(exc) from None

    def commit(self) -> None:
        """COMMIT, only while the file is still the journal; SQLite's errors as JournalErrors."""
        try:
            if self._watch is not None:
                self._watch.check()
            self.connection().execute("COMMIT")
        except BaseException as exc:
            self.rollback()
            raise self.translate(exc) from None

    def rollback(self) -> None:
        """ROLLBACK if a transaction is open: SQLite ends some on its own (disk full), and a
        second rollback would hide the real cause behind "no transaction is active"."""
        db = self._db
        if db is not None and db.in_transaction:
            db.execute("ROLLBACK")

    def translate(self, exc: BaseException) -> BaseException:
        if not isinstance(exc, sqlite3.Error):
            return exc
        code = getattr(exc, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL:
            return JournalFull(
                f"journal {self.path}: the disk is full ({exc}); the write was not made and nothing "
                "acknowledged before was lost: free space, then try again"
            )
        return JournalError(f"journal {self.path}: {exc}")

    def changed_elsewhere(self) -> bool:
        """Whether another connection (another process) committed since the last call: how a
        worker notices a birth the HIS recorded in its own process."""
        version = int(self.connection().execute("PRAGMA data_version").fetchone()[0])
        changed, self._data_version = version != self._data_version, version
        return changed
