"""What only the PostgreSQL journal has: the URL in the config, its errors, migrations run once by
workers starting together, and the wake-up (LISTEN/NOTIFY) of the other workers."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ybplug.config import Config
from ybplug.journal.pg_schema import MIGRATIONS
from ybplug.journal import Journal, JournalError, start_new_journal

from pg_support import fresh_schema
from support import make_birth

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as journal_url:
        yield journal_url


def test_the_config_takes_a_url_as_it_is_and_never_shows_its_password(tmp_path: Path) -> None:
    path = tmp_path / "ybplug.toml"
    path.write_text('journal = "postgresql://ybplug:s3cret@db.hospital.local/hospital"\n', encoding="utf-8")
    config = Config.load(path)
    assert config.journal == "postgresql://ybplug:s3cret@db.hospital.local/hospital"
    assert config.journal_on_server and config.journal_shown == "postgresql://ybplug:***@db.hospital.local/hospital"


def test_a_server_that_cannot_be_reached_is_one_clear_error_without_the_password() -> None:
    with pytest.raises(JournalError) as caught:
        Journal("postgresql://ybplug:s3cret@127.0.0.1:1/hospital?connect_timeout=2").open()
    assert "s3cret" not in str(caught.value) and "ybplug:***@127.0.0.1:1" in str(caught.value)
    assert "YBPLUG_JOURNAL_PASSWORD" in str(caught.value)
    with pytest.raises(JournalError, match="new SQLite journal"):
        start_new_journal("postgresql://ybplug@127.0.0.1:1/hospital")


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
