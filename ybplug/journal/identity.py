"""Knowing that the journal is still the journal.

SQLite happily creates an empty database where a file was deleted, and keeps writing into a file
(or a ``-wal``) that someone deleted under it.  Either would make ybplug acknowledge births that
are then gone.  So every journal carries an identity (a random id in its ``meta`` table) and a
marker file beside it (``journal.db.id``) holding the same id:

* at start-up, a marker without its journal (deleted, emptied, truncated) or with another
  journal (replaced) is an error, not a fresh start; a new empty journal where one existed takes
  ``ybplug init --new-journal``;
* at each commit, the journal file and its ``-wal`` must still be the files the connection has
  open (same device and inode), else the host stops with one clear error;
* the marker also keeps the highest birth id this machine has seen in the journal (written when
  the journal is opened and closed): a journal holding fewer was restored from an older backup,
  and the births acknowledged since are not in it, so it is refused until a person says so
  (``ybplug init --restored``), rather than going on as if nothing was lost (and giving the lost
  births' ids to new ones).
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from pathlib import Path

from ybplug.journal.model import JournalError, JournalLost
from ybplug.system import private_file

_MARKER_HEAD = "ybplug journal "


def marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".id")


def read_marker(path: Path) -> str | None:
    """The journal id the marker beside ``path`` names, or None when there is no marker."""
    try:
        text = marker_path(path).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):  # no marker (opening the journal says the rest)
        return None
    except OSError as exc:
        raise JournalError(f"journal {path}: cannot read its marker {marker_path(path).name} ({exc.strerror})") from None
    return text.removeprefix(_MARKER_HEAD).split()[0] if text else ""


def read_high_water(path: Path) -> int:
    """The highest birth id the marker beside ``path`` remembers (0: none, or an older marker)."""
    try:
        words = marker_path(path).read_text(encoding="utf-8").removeprefix(_MARKER_HEAD).split()
    except OSError:
        return 0
    return int(words[1]) if len(words) > 1 and words[1].isdigit() else 0


def write_marker(path: Path, journal_id: str, high_water: int = 0) -> None:
    marker = marker_path(path)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(f"{_MARKER_HEAD}{journal_id} {high_water}\n", encoding="utf-8")
    private_file(tmp)
    os.replace(tmp, marker)


def highest_birth(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT coalesce(max(id), 0) FROM births").fetchone()[0])


def check_not_restored(db: sqlite3.Connection, path: Path, journal_id: str) -> None:
    """Refuse a journal holding fewer births than this machine saw in it (an older backup put
    back), then remember what it holds now."""
    seen, held = read_high_water(path), highest_birth(db)
    if seen > held:
        raise JournalLost(
            f"journal {path} holds births up to #{held}, but this machine saw #{seen} in it: it was"
            f" restored from an older backup, and births #{held + 1} to #{seen} acknowledged since are not"
            " in it (their HIS must record them again). To go on with this journal as it is, run"
            " `ybplug init --restored`"
        )
    if held > seen:
        write_marker(path, journal_id, held)


def holds_a_journal(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def check_before_open(path: Path, *, new: bool) -> str | None:
    """Refuse to start where a journal was and is no more; the id the marker expects."""
    expected = read_marker(path)
    if expected and not new and not holds_a_journal(path):
        raise JournalLost(
            f"journal {path} is missing or empty, but {marker_path(path).name} beside it says journal "
            f"{expected} was there: restore it from a backup, or start a new empty journal with "
            "`ybplug init --new-journal` (the births it held are then not in ybplug's care)"
        )
    return None if new else expected


def settle(db: sqlite3.Connection, path: Path, expected: str | None) -> str:
    """Give the journal an identity (a new one, or one an older ybplug never wrote) and check it
    against the marker; returns the id."""
    row = db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
    if row is None:
        if expected:  # the marker names a journal, and this file has no identity: not that one
            raise JournalLost(
                f"journal {path} is not the journal {expected} that {marker_path(path).name} names "
                "(it was replaced or emptied): restore it from a backup, or start a new empty journal "
                "with `ybplug init --new-journal`"
            )
        journal_id = uuid.uuid4().hex
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('journal_id', ?)", (journal_id,))
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)", (repr(time.time()),))
        db.execute("COMMIT")
        journal_id = str(db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()[0])
    else:
        journal_id = str(row[0])
        if expected and expected != journal_id:
            raise JournalLost(
                f"journal {path} is journal {journal_id}, not the journal {expected} that "
                f"{marker_path(path).name} names: it was replaced; put the right file back, or start a "
                "new empty journal with `ybplug init --new-journal`"
            )
    if expected != journal_id:
        write_marker(path, journal_id)
    return journal_id


class FileWatch:
    """The journal file and its ``-wal`` as the connection opened them; :meth:`check` raises
    :class:`JournalLost` once either was deleted or replaced (and keeps raising)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._wal = path.with_name(path.name + "-wal")
        self._file = self._identity(path)
        self._wal_file = self._identity(self._wal)
        self.lost: str | None = None

    @staticmethod
    def _identity(path: Path) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def check(self) -> None:
        if self.lost is None:
            if self._identity(self.path) != self._file:
                self.lost = "was deleted or replaced"
            else:
                wal = self._identity(self._wal)
                if self._wal_file is None:
                    self._wal_file = wal
                elif wal != self._wal_file:
                    self.lost = "lost its -wal file (deleted or replaced)"
        if self.lost is not None:
            raise JournalLost(
                f"journal {self.path} {self.lost} while ybplug was running: ybplug stops rather than "
                "acknowledge births into a file that is gone; restore the journal from a backup, or start "
                "a new empty one with `ybplug init --new-journal`"
            )
