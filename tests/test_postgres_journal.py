"""What only the PostgreSQL journal has: the URL in the config, its errors, migrations run once by
workers starting together, and the wake-up (LISTEN/NOTIFY) of the other workers."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ybplug.config import Config, ConfigError
from ybplug.journal.pg_schema import MIGRATIONS
from ybplug.journal import Journal, JournalError, JournalLost, start_new_journal

from pg_support import SERVER, fresh_schema, in_schema, require_server
from support import make_birth

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as journal_url:
        yield journal_url


def test_the_config_takes_a_url_as_it_is_and_never_shows_its_password(tmp_path: Path) -> None:
    path = tmp_path / "ybplug.toml"
    path.write_text('journal = "postgresql://ybplug@db.hospital.local/hospital"\n', encoding="utf-8")
    assert Config.load(path).journal == "postgresql://ybplug@db.hospital.local/hospital"
    # A HIS building its Config in Python may put the password in the URL: never shown.
    config = Config(journal="postgresql://ybplug:s3cret@db.hospital.local/hospital?password=s3cret")
    assert config.journal_on_server and config.journal_shown == "postgresql://ybplug:***@db.hospital.local/hospital?password=***"
    assert "s3cret" not in repr(config) and "s3cret" not in str(config)
    assert "journal='postgresql://ybplug:***@db.hospital.local/hospital?password=***'" in repr(config)


@pytest.mark.parametrize("url", ["postgresql://ybplug:s3cret@db.hospital.local/hospital",
                                 "postgresql://ybplug@db.hospital.local/hospital?password=s3cret"])
def test_a_password_in_the_files_journal_url_is_refused_naming_the_rule(tmp_path: Path, url: str) -> None:
    path = tmp_path / "ybplug.toml"
    path.write_text(f'journal = "{url}"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        Config.load(path)
    said = str(caught.value)
    assert "s3cret" not in said and "carries a password" in said and "YBPLUG_JOURNAL_PASSWORD" in said


def test_a_libpq_keyword_string_is_a_config_error_never_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "ybplug.toml"
    path.write_text('journal = "host=127.0.0.1 password=s3cret dbname=hospital"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        Config.load(path)
    said = str(caught.value)
    assert "s3cret" not in said and "postgresql://user@host/dbname" in said and "\n" not in said
    with pytest.raises(ValueError, match="libpq connection string"):
        Config(journal="dbname=hospital user=ybplug")
    with pytest.raises(JournalError, match="libpq connection string"):
        Journal("host=127.0.0.1 password=s3cret dbname=hospital")
    assert list(tmp_path.iterdir()) == [path]  # no file named after it
    assert Config(journal=str(tmp_path / "journal.db")).journal.endswith("journal.db")  # a path is a path


def test_the_tests_never_show_the_test_servers_password(monkeypatch: pytest.MonkeyPatch) -> None:
    import pg_support

    monkeypatch.setattr(pg_support, "SERVER", "postgresql://postgres:Sekr3tPw@127.0.0.1:1/test?connect_timeout=2")
    monkeypatch.setattr(pg_support, "_unreachable", [])
    with pytest.raises((pytest.skip.Exception, pytest.fail.Exception)) as caught:
        pg_support.require_server()
    said = str(caught.value)
    assert "no PostgreSQL server at postgresql://postgres:***@127.0.0.1:1/test" in said and "Sekr3tPw" not in said


def test_a_server_that_cannot_be_reached_is_one_clear_error_without_the_password() -> None:
    with pytest.raises(JournalError) as caught:
        Journal("postgresql://ybplug:s3cret@127.0.0.1:1/hospital?connect_timeout=2").open()
    assert "s3cret" not in str(caught.value) and "ybplug:***@127.0.0.1:1" in str(caught.value)
    assert "YBPLUG_JOURNAL_PASSWORD" in str(caught.value)
    with pytest.raises(JournalError, match="cannot connect"):
        start_new_journal("postgresql://ybplug@127.0.0.1:1/hospital?connect_timeout=2")


def test_a_url_libpq_cannot_parse_is_one_clear_error_without_the_password() -> None:
    with pytest.raises(JournalError) as caught:
        Journal("postgresql://ybplug:s3%zzcret@127.0.0.1:1/hospital").open()
    assert "cret" not in str(caught.value) and "invalid percent-encoded token" in str(caught.value)


def test_a_database_error_quoting_an_id_number_names_it_masked(url: str) -> None:
    from ybplug.journal.postgres import translate

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE t (x TEXT UNIQUE)")
        conn.execute("INSERT INTO t VALUES ('350204198001010001')")
        with pytest.raises(psycopg.errors.UniqueViolation) as caught:
            conn.execute("INSERT INTO t VALUES ('350204198001010001')")
    said = str(translate(caught.value, "the journal"))
    assert "350204198001010001" not in said and "3502**********0001" in said


def test_workers_starting_together_migrate_once_and_share_one_identity(url: str) -> None:
    opened: list[Journal] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        opened.append(Journal(url).open())

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(opened) == 4 and len({journal.id for journal in opened}) == 1
    with psycopg.connect(url) as conn:
        steps = conn.execute("SELECT step FROM ybplug_schema ORDER BY step").fetchall()
    assert steps == [(n,) for n in range(1, len(MIGRATIONS) + 1)]  # each step once
    for journal in opened:
        journal.close()
    assert Journal(url).open().id == opened[0].id  # reopened: the same journal, no step run again


def test_a_write_wakes_the_other_workers_once_it_commits_and_not_the_writer(url: str) -> None:
    writer, other = Journal(url).open(), Journal(url).open()
    writer.changed_elsewhere(), other.changed_elsewhere()
    writer.record_births([make_birth()])
    deadline = time.monotonic() + 5
    while not other.changed_elsewhere():
        assert time.monotonic() < deadline, "the other worker never heard of the birth"
        time.sleep(0.01)
    assert not writer.changed_elsewhere()  # its own write: it knows already
    assert not other.changed_elsewhere()  # heard once
    writer.close()
    other.close()


class CuttingProxy:
    """A TCP relay to the PostgreSQL server that, once armed, cuts the next connection that sends a
    COMMIT: after the server got it (``after=True``: the write is made, its answer lost) or before
    (the COMMIT never arrives: the server rolls the write back)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed: bool | None = None  # None: relay only; True/False: cut after/before the COMMIT
        self.cuts = 0
        self.holding = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, to_server: bool) -> None:
        try:
            while data := source.recv(65536):
                if not to_server and self.holding:
                    break  # the server's answer to the COMMIT: lost
                if to_server and self.armed is not None and b"COMMIT" in data:
                    after, self.armed = self.armed, None
                    self.cuts += 1
                    if after:
                        self.holding = True
                        target.sendall(data)
                        time.sleep(0.3)  # the server commits; its answer never leaves here
                        self.holding = False
                    break
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


@pytest.mark.parametrize("after", [True, False], ids=["answer-lost", "commit-lost"])
def test_a_commit_cut_off_is_looked_up_never_reported_wrong_nor_made_twice(url: str, after: bool) -> None:
    info = psycopg.conninfo.conninfo_to_dict(url)
    proxy = CuttingProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    journal = Journal(re.sub(r"@[^/]+/", f"@127.0.0.1:{proxy.port}/", url, count=1)).open()
    birth = make_birth()
    proxy.armed = after
    results = journal.run_group([
        lambda: journal.record_births([birth]),
        lambda: journal.begin_exchange("yb04.13.01.21", b"{}"),  # a write that is not idempotent
    ])
    assert proxy.cuts == 1
    assert [ok for ok, _ in results] == [True, True], results
    [(_, created)] = results[0][1]
    assert created  # the first write's own answer, not a second run finding the first
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT his_serial FROM births").fetchall() == [(birth.his_serial,)]
        assert conn.execute("SELECT count(*) FROM exchanges").fetchone() == (1,)
    journal.close()
    proxy.listener.close()


# --- a journal that is gone, replaced, out of reach or newer: never silently a new one ----------------


def _admin(*statements: str) -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _schema_of(url: str) -> str:
    return url.rsplit("%3D", 1)[1]


def test_a_schema_emptied_under_a_journal_is_refused_not_replaced_by_a_new_one(url: str) -> None:
    journal = Journal(url).open()
    journal.record_births([make_birth()])  # pending: in nobody's care but the journal's
    first = journal.id
    journal.close()
    schema = _schema_of(url)
    _admin(f"DROP SCHEMA {schema} CASCADE", f"CREATE SCHEMA {schema}")  # a bad restore
    with pytest.raises(JournalLost) as caught:
        Journal(url).open()
    said = str(caught.value)
    assert f"schema {schema} holds no journal" in said and first in said
    assert "backup" in said and "ybplug init --new-journal" in said and "\n" not in said
    with psycopg.connect(url) as conn:  # refused before anything was created
        assert conn.execute("SELECT to_regclass('births')").fetchone() == (None,)
    with pytest.raises(JournalLost):
        Journal(url).open()  # and again: the refusal does not wear off
    started = start_new_journal(url)  # deliberately
    assert started.id != first
    started.close()
    again = Journal(url).open()
    assert again.id == started.id  # the new one is now the one this machine expects
    again.close()


def test_a_journal_replaced_by_another_is_refused(url: str) -> None:
    journal = Journal(url).open()
    first = journal.id
    journal.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = 'another' WHERE key = 'journal_id'")
    with pytest.raises(JournalLost, match=f"holds journal another, not journal {first}"):
        Journal(url).open()


def test_each_machine_remembers_its_journals_in_its_state_folder(url: str, state_directory: Path) -> None:
    from ybplug.journal import pg_identity

    journal = Journal(url.replace("postgres@", "postgres:s3cret@") + "&connect_timeout=9").open()
    journal.close()
    [marker] = [p for p in (state_directory / "postgresql").iterdir() if _schema_of(url) in p.read_text(encoding="utf-8")]
    assert oct(marker.stat().st_mode & 0o777) == "0o600"
    text = marker.read_text(encoding="utf-8")
    assert text.startswith(f"ybplug journal {journal.id}\nschema {_schema_of(url)}\nat postgresql://postgres@")
    assert "s3cret" not in text and "connect_timeout" not in text  # the place, not how it is reached
    place = text.split("\nat ")[1].strip()
    assert marker == pg_identity.marker_path(place) == pg_identity.marker_path(pg_identity.location(url, None))


@contextlib.contextmanager
def journal_role() -> Iterator[tuple[str, str, str]]:
    """A role of its own owning schema ``a``; schema ``b`` behind it in the search_path, writable
    by it (as ``public`` is on PostgreSQL 14 and older).  Yields (url, a, b)."""
    require_server()
    role = f"ybplug_role_{os.getpid()}"
    a, b = f"{role}_a", f"{role}_b"
    _admin(f"DROP SCHEMA IF EXISTS {a} CASCADE", f"DROP SCHEMA IF EXISTS {b} CASCADE", f"DROP ROLE IF EXISTS {role}")
    _admin(f"CREATE ROLE {role} LOGIN", f"CREATE SCHEMA {a} AUTHORIZATION {role}", f"CREATE SCHEMA {b}",
           f"GRANT USAGE, CREATE ON SCHEMA {b} TO {role}")
    server = psycopg.conninfo.conninfo_to_dict(SERVER)
    url = in_schema(f"postgresql://{role}@{server.get('host') or '127.0.0.1'}:{server.get('port') or 5432}/{server['dbname']}",
                    f"{a},{b}")
    try:
        yield url, a, b
    finally:
        _admin(f"DROP SCHEMA IF EXISTS {a} CASCADE", f"DROP SCHEMA IF EXISTS {b} CASCADE", f"DROP OWNED BY {role}",
               f"DROP ROLE {role}")


def test_a_role_that_lost_its_rights_on_the_journal_is_told_so_not_given_a_new_journal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ybplug.journal import pg_identity

    with journal_role() as (url, a, b):
        journal = Journal(url).open()
        journal.record_births([make_birth()])
        assert journal.backend.schema == a  # type: ignore[attr-defined]
        _admin(f"ALTER SCHEMA {a} OWNER TO postgres", f"REVOKE ALL ON SCHEMA {a} FROM PUBLIC")
        # While running: not "its tables are gone ... restore it from a backup", and not JournalLost
        # (which stops the host and the console): the grants are to be restored, not the journal.
        with pytest.raises(JournalError) as running:
            journal.record_births([make_birth()])
        said = str(running.value)
        assert not isinstance(running.value, JournalLost)
        assert f"permission denied on its schema {a}" in said and "grants" in said and "backup" not in said
        journal.close()
        # At start-up: the search_path now falls through to b, where ybplug could create tables.
        with pytest.raises(JournalError) as starting:
            Journal(url).open()
        said = str(starting.value)
        assert not isinstance(starting.value, JournalLost)
        assert f"permission denied on its schema {a}" in said and f"leads to schema {b} instead" in said
        with psycopg.connect(SERVER) as conn:  # nothing created where it fell through
            assert conn.execute(f"SELECT to_regclass('{b}.births')").fetchone() == (None,)
        with monkeypatch.context() as patch:  # a machine that never opened it: the same, not "create the schema"
            patch.setattr(pg_identity, "folder", lambda: tmp_path / "another-machine")
            with pytest.raises(JournalError, match=f"permission denied on its schema {a} .*check the role's grants"):
                Journal(url.replace(f"{a}%2C{b}", a)).open()
        _admin(f"GRANT USAGE, CREATE ON SCHEMA {a} TO {url.split('://')[1].split('@')[0]}")
        back = Journal(url).open()  # the grants restored: the same journal, its birth still there
        assert back.backend.schema == a and back.status()["births"]["pending"] == 1  # type: ignore[attr-defined]
        back.close()


def test_a_journal_from_a_newer_ybplug_is_refused_naming_both_versions(url: str) -> None:
    from ybplug.journal import NewerJournal

    Journal(url).open().close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO ybplug_schema (step, applied_at) VALUES (%s, 0)", (len(MIGRATIONS) + 1,))
        conn.execute("CREATE TABLE future_table (x INTEGER)")
    with pytest.raises(NewerJournal) as caught:
        Journal(url).open()
    said = str(caught.value)
    assert f"at version {len(MIGRATIONS) + 1}" in said and f"versions up to {len(MIGRATIONS)}" in said
    assert "upgrade ybplug on this machine" in said and "\n" not in said


def test_a_journal_a_step_behind_runs_that_step_and_stays_the_same_journal(url: str) -> None:
    journal = Journal(url).open()
    journal.record_births([make_birth()])
    journal.close()
    with psycopg.connect(url, autocommit=True) as conn:  # as an older ybplug left it
        conn.execute("DELETE FROM ybplug_schema WHERE step = %s", (len(MIGRATIONS),))
        conn.execute("DROP INDEX exchanges_in_doubt")
    again = Journal(url).open()
    assert again.id == journal.id and again.status()["births"] == {"pending": 1}
    again.close()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM ybplug_schema").fetchone() == (len(MIGRATIONS),)
        assert conn.execute("SELECT to_regclass('exchanges_in_doubt') IS NOT NULL").fetchone() == (True,)


def test_a_marker_that_cannot_be_written_is_one_clear_error(url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ybplug.journal import pg_identity

    (tmp_path / "a-file").write_text("", encoding="utf-8")
    monkeypatch.setattr(pg_identity, "folder", lambda: tmp_path / "a-file" / "postgresql")
    with pytest.raises(JournalError, match="cannot write this machine's marker"):
        Journal(url).open()
