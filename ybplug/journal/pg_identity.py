"""Knowing that a PostgreSQL journal is still the journal (SQLite's marker, :mod:`ybplug.journal.identity`,
for a journal that lives on a server).

A schema dropped and recreated empty (a bad restore, ``pg_restore`` into the wrong place), or a
role that lost its rights on its schema while ``public`` is writable (the ``search_path`` then
falls through to ``public``), would otherwise look like a first start: ybplug would create new
empty tables and the births the old journal held would silently leave its care.  So each machine
remembers, in its private state folder, the journal id and schema it last found at each journal
location (the URL's server, port, database, user and options, never its password).  At start-up
a location this machine knew, whose journal is missing, in another schema, or has another id,
is an error; ``ybplug init --new-journal`` takes what is there now (creating the tables in an
empty schema) as this machine's journal from then on.  A location this machine never opened is
a first start, as before: nothing to set up.

Several servers on one journal each keep their own marker; one that started a new journal
deliberately leaves the others refusing until each is told (``ybplug init --new-journal``).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from ybplug.journal.model import JournalError
from ybplug.system import private_dir, private_file, private_state_dir

_HEAD = "ybplug journal "


class Known(NamedTuple):
    """What this machine last found at a journal location."""

    journal_id: str
    schema: str


def location(url: str, info: Any) -> str:
    """The journal's place as a marker names it: ``postgresql://user@host:port/db?options=...``,
    what the URL names (filled in from the connection where the URL leaves it to libpq's defaults),
    without its password and without settings that do not move the journal (timeouts, ``application_name``)."""
    import psycopg

    given = psycopg.conninfo.conninfo_to_dict(url)
    part = {key: str(given.get(key) or getattr(info, key, "") or "") for key in ("user", "host", "port", "dbname")}
    place = f"postgresql://{quote(part['user'], safe='')}@{part['host']}:{part['port']}/{quote(part['dbname'], safe='')}"
    options = str(given.get("options") or "")
    return f"{place}?options={quote(options, safe='')}" if options else place


def folder() -> Path:
    """Where the markers are: ``postgresql`` in the state folder (``STATE_DIRECTORY``, else
    ``/var/lib/ybplug`` or ``%PROGRAMDATA%\\ybplug``, else this user's), as the default SQLite journal."""
    return private_state_dir() / "postgresql"


def marker_path(place: str) -> Path:
    return folder() / f"{hashlib.sha256(place.encode('utf-8')).hexdigest()[:32]}.id"


def read(place: str) -> Known | None:
    """What the marker of ``place`` says, or None when this machine never opened a journal there."""
    path = marker_path(place)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise JournalError(f"journal {place}: cannot read this machine's marker {path} ({exc.strerror})") from None
    fields = dict(line.split(" ", 1) for line in lines[1:] if " " in line)
    if not lines or not lines[0].startswith(_HEAD):
        return None
    return Known(lines[0].removeprefix(_HEAD).strip(), fields.get("schema", "").strip())


def remember(place: str, journal_id: str, schema: str) -> None:
    """Write the marker of ``place`` (atomically: workers starting together each write one)."""
    path = marker_path(place)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        private_dir(path.parent)
        tmp.write_text(f"{_HEAD}{journal_id}\nschema {schema}\nat {place}\n", encoding="utf-8")
        private_file(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise JournalError(
            f"journal {place}: cannot write this machine's marker {path} ({exc.strerror or exc}); "
            "check that ybplug's state folder is writable (STATE_DIRECTORY)"
        ) from None


def remedy(known: Known) -> str:
    return (
        f"restore journal {known.journal_id} from the database's backup, or, if a new journal is intended, "
        "start it with `ybplug init --new-journal` (the births the old one held are then not in ybplug's care)"
    )
