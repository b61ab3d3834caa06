"""Chaos for the proof of "nothing silently lost or wrong": real processes killed at random points,
then the journal compared with the centre's own database and the hospital plugin's.

The pieces are what a hospital runs: two ``ybplug run`` workers on one journal, an operator running
``ybplug sync`` over and over and ``ybplug void BAZ726 --reason ...`` now and then, the HIS recording
births (here the test process, through :class:`ybplug.host.Host`), the example hospital plugin
found through its entry point and writing to its own SQLite database, and the sandbox centre,
whose administrator real-names some newborns.  Every choice (which process dies, when, which birth
is voided, which fault comes next) is drawn from a seeded RNG the test prints.

The comparison reads the three SQLite files directly (they are the ground truth), naming the
columns it needs so that tables and columns added later do not disturb it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.abc

from ybplug.codes import Funid
from ybplug.config import Config
from ybplug.fields import with_check_digit
from ybplug.host import Host
from ybplug.sandbox import FAULT_KINDS, SANDBOX_PWD, SANDBOX_USR, Fault, Sandbox

from support import birth_record

YBPLUG = str(Path(sys.executable).parent / "ybplug")
PLUGIN = "example_hospital"
#: The example plugin's hooks, and the table of the hospital's database each one writes.
PLUGIN_TABLES = {
    "collection_result": "registrations",
    "realname_resolved": "real_names",
    "collection_voided": "voids",
    "birth_needs_review": "reviews",
}
#: Where a birth may stand once everything has settled.
SETTLED = {"registered", "real_named", "voided", "needs_review", "refused"}
#: The journal's exchange outcomes that mean "the centre may have applied it".
IN_DOUBT = ("sent", "unknown")


def write_config(
    tmp_path: Path,
    sandbox: Sandbox,
    *,
    journal: str = "journal.db",
    upload_batch: int = 10,
    read_timeout: float | None = 2.0,
    realname_interval: float | None = 0.5,
) -> Path:
    """Several workers' shared ``ybplug.toml``: immediate uploads, short backoffs; by default real-name
    polls twice a second and a 2 s read timeout (``None``: the default configuration's)."""
    realname = "" if realname_interval is None else f"realname_interval = {realname_interval}\nrealname_batch = 20\n"
    timeout = "" if read_timeout is None else f"read_timeout = {read_timeout}\n"
    path = tmp_path / "ybplug.toml"
    path.write_text(
        f"""
journal = "{journal}"
upload = "immediate"
upload_batch = {upload_batch}
upload_concurrency = 4
{realname}delivery_backoff = 0.05
delivery_backoff_cap = 0.2
upload_backoff = 0.05
upload_backoff_cap = 0.2
hook_timeout = 20
lease = 60

[wire]
url = "{sandbox.url}"
usr = "{SANDBOX_USR}"
pwd = "{SANDBOX_PWD}"
{timeout}""",
        encoding="utf-8",
    )
    return path


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=30)


def _rows(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of one query on a database another process writes (empty if the file or table is not there yet)."""
    if not path.exists():
        return []
    db = _connect(path)
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        db.close()


def _pid_of(owner: str | None) -> int | None:
    """The pid in a claim's owner (``host:pid:tag``)."""
    parts = str(owner or "").split(":")
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


@dataclass
class Figures:
    """What a chaos run did and found; printed for the closing note."""

    seed: int
    kills: Counter[str] = field(default_factory=Counter)
    births: int = 0
    registered: int = 0
    lost: int = 0
    doubled: int = 0
    in_review: int = 0
    refused: int = 0
    voids: int = 0
    void_commands: int = 0
    real_named: int = 0
    sync_runs: int = 0
    his_uploads: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    faults_hit: Counter[str] = field(default_factory=Counter)
    centre_calls: int = 0
    seconds: float = 0.0
    stop_seconds: float = 0.0
    settle_seconds: float = 0.0

    def show(self, title: str) -> str:
        kills = ", ".join(f"{kind} {n}" for kind, n in sorted(self.kills.items()))
        lines = [
            f"{title} (seed {self.seed}, {self.seconds:.0f} s)",
            f"  kills: {sum(self.kills.values())} ({kills})",
            f"  births: {self.births}; registered at the centre (live): {self.registered}; lost: {self.lost};"
            f" doubled: {self.doubled}; in review: {self.in_review}; refused: {self.refused}",
            f"  voids: {self.voids} at the centre ({self.void_commands} `ybplug void` runs);"
            f" real-named: {self.real_named}; `ybplug sync` runs: {self.sync_runs}; centre calls: {self.centre_calls}",
            f"  uploaded by the HIS's own host: {self.his_uploads};"
            f" workers stopped in {self.stop_seconds:.1f} s; final clean run took {self.settle_seconds:.1f} s",
        ]
        if self.faults:
            injected = ", ".join(f"{k} {self.faults[k]}/{self.faults_hit[k]}" for k in FAULT_KINDS)
            lines.append(f"  faults injected/hit: {injected}")
        return "\n".join(lines)


class Chaos:
    """The processes of one run and the random things done to them."""

    def __init__(self, tmp_path: Path, sandbox: Sandbox, seed: int) -> None:
        self.tmp_path = tmp_path
        self.sandbox = sandbox
        self.seed = seed
        self.rng = random.Random(seed)
        self.figures = Figures(seed)
        self.journal = tmp_path / "journal.db"
        self.hospital = tmp_path / "hospital.db"
        self.config = tmp_path / "ybplug.toml"
        self.logs = tmp_path / "logs"
        self.logs.mkdir(exist_ok=True)
        self.workers: list[anyio.abc.Process | None] = [None, None]
        self.sync: anyio.abc.Process | None = None
        self.stopping = False
        self.recorded: list[int] = []
        self.voids_asked: set[str] = set()
        self._next_birth = 0
        self._started = 0
        self._log_files: list[IO[bytes]] = []
        self.log_of: dict[int, Path] = {}
        self._real_name_seq = 0

    # --- processes ------------------------------------------------------------------------------

    async def start(self, *args: str) -> anyio.abc.Process:
        """``ybplug ARGS -c ybplug.toml`` as a real process, its output in ``logs/``."""
        env = {**os.environ, "YBPLUG_EXAMPLE_DB": str(self.hospital)}
        env.pop("YBPLUG_PLUGINS", None)
        self._started += 1
        path = self.logs / f"{self._started:03d}-{args[0]}.log"
        log = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._log_files.append(log)
        process = await anyio.open_process(
            [YBPLUG, *args, "-c", str(self.config)], env=env, cwd=self.tmp_path, stdout=log, stderr=log
        )
        self.log_of[process.pid] = path
        return process

    def output(self, process: anyio.abc.Process) -> str:
        """What a finished process printed (stdout and stderr)."""
        return self.log_of[process.pid].read_text(encoding="utf-8", errors="replace")

    async def start_workers(self) -> None:
        for i, worker in enumerate(self.workers):
            if worker is None or worker.returncode is not None:
                self.workers[i] = await self.start("run")

    async def kill(self, process: anyio.abc.Process, kind: str) -> bool:
        """SIGKILL ``process`` (if it still runs) and count it under ``kind``."""
        if process.returncode is not None:
            return False
        process.kill()
        with anyio.fail_after(30):
            await process.wait()
        self.figures.kills[kind] += 1
        return True

    def alive(self) -> list[anyio.abc.Process]:
        running = [w for w in self.workers if w is not None and w.returncode is None]
        if self.sync is not None and self.sync.returncode is None:
            running.append(self.sync)
        return running

    async def stop_workers(self, *, within: float = 20.0) -> list[int | None]:
        """SIGTERM both workers; each must be gone ``within`` seconds.  Returns their exit
        statuses, None for a worker still running then (it is killed)."""
        codes: list[int | None] = []
        for worker in self.workers:
            if worker is not None and worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        deadline = signalled + within
        for worker in self.workers:
            if worker is None:
                continue
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                await worker.wait()
            if worker.returncode is None:  # hung: note it, then make sure it is gone
                codes.append(None)
                worker.kill()
                await worker.wait()
            else:
                codes.append(worker.returncode)
        self.figures.stop_seconds = time.monotonic() - signalled
        return codes

    def close(self) -> None:
        for log in self._log_files:
            log.close()

    # --- the operator, the HIS and the centre's administrator ------------------------------------

    async def operator_syncs(self) -> None:
        """``ybplug sync`` again and again, as an operator impatient for the day's uploads."""
        rng = random.Random(self.seed + 1)
        while not self.stopping:
            self.sync = await self.start("sync")
            with anyio.fail_after(120):
                await self.sync.wait()
            self.figures.sync_runs += 1
            await anyio.sleep(rng.uniform(0.5, 1.5))

    async def record(self, count: int, *, upload: bool = False) -> None:
        """The HIS records ``count`` births (twins among them) through its own host; with
        ``upload`` it uploads them itself too (``host.sync("upload")``).  Its host loads none of
        the hospital plugin's entry points: the events of its uploads must reach that plugin all
        the same (the workers load it)."""
        config = Config.load(self.config)
        config.upload = "daily at 02:00"  # no schedule of its own
        async with Host(config, entry_points=False, background=False) as host:
            for i in range(count):
                n = self._next_birth // 2
                number = self._next_birth % 2 + 1
                self._next_birth += 1
                recorded = await host.record_birth(birth_record(n, number=number, sex=str(number)))
                assert recorded.created
                self.recorded.append(recorded.birth_id)
            if upload:
                self.figures.his_uploads += (await host.sync("upload")).get("uploaded", 0)
        self.figures.births = self._next_birth

    def real_name_some(self, count: int) -> int:
        """The centre real-names up to ``count`` live, not yet real-named registrations."""
        candidates = [r["baz726"] for r in self.sandbox.registrations() if not r["voided"] and not r["real_named"]]
        done = 0
        for baz726 in self.rng.sample(candidates, min(count, len(candidates))):
            self._real_name_seq += 1
            self.sandbox.real_name(
                baz726, id_number=with_check_digit(f"35020320240101{self._real_name_seq:03d}"), name="陈小宝"
            )
            done += 1
        return done

    def void_candidate(self) -> str | None:
        """A baz726 the journal holds for a registered or real-named birth, not yet voided by us."""
        rows = _rows(
            self.journal,
            "SELECT registration_number FROM births WHERE state IN ('registered', 'real_named')"
            " AND registration_number IS NOT NULL ORDER BY id",
        )
        numbers = [str(r[0]) for r in rows if str(r[0]) not in self.voids_asked]
        return self.rng.choice(numbers) if numbers else None

    def voided_at_centre(self, baz726: str) -> bool:
        return any(r["voided"] for r in self.sandbox.registrations() if r["baz726"] == baz726)

    async def void(self, baz726: str, *, kill_after: float | None = None) -> None:
        """``ybplug void``: killed ``kill_after`` seconds after its request left if given; then
        run again, as an operator whose command died or failed would, until it says the
        registration is voided (exit status 0) or already void (at most six more times)."""
        self.voids_asked.add(baz726)
        baseline = self.max_exchange()
        process = await self.start("void", baz726, "--reason", "母亲证件号录入错误")
        self.figures.void_commands += 1
        if kill_after is not None:
            with anyio.move_on_after(15):
                while process.returncode is None and not self.in_flight(Funid.VOID, baseline):
                    await anyio.sleep(0.01)
            await anyio.sleep(kill_after)
            killed = await self.kill(process, "void")
        else:
            killed = False
        with anyio.fail_after(60):
            await process.wait()
        for _ in range(6):
            if not killed and (process.returncode == 0 or "already void" in self.output(process)):
                return
            killed = False
            process = await self.start("void", baz726, "--reason", "母亲证件号录入错误")
            self.figures.void_commands += 1
            with anyio.fail_after(60):
                await process.wait()

    # --- what the journal says is happening ------------------------------------------------------

    def max_exchange(self) -> int:
        rows = _rows(self.journal, "SELECT max(id) FROM exchanges")
        return int(rows[0][0] or 0) if rows else 0

    def in_flight(self, funid: str, after: int) -> bool:
        """An exchange of ``funid`` newer than ``after`` has left and has no answer yet."""
        return bool(
            _rows(self.journal, "SELECT 1 FROM exchanges WHERE funid = ? AND id > ? AND outcome = 'sent' LIMIT 1", (funid, after))
        )

    def poll_in_flight(self, asked: int, after: int) -> bool:
        """A yb04.13.01.24 query reached the centre after its ``asked``-th and no answer newer than
        exchange ``after`` is journaled: asking changes nothing at the centre, so the poll journals
        its query once, with the answer, and leaves no mark while it waits."""
        return self.sandbox.calls(Funid.REALNAME) > asked and not _rows(
            self.journal, "SELECT 1 FROM exchanges WHERE funid = ? AND id > ? LIMIT 1", (Funid.REALNAME, after)
        )

    def claimants(self, table: str) -> set[int]:
        """Pids holding a live claim on a birth being uploaded (``births``) or a delivery (``deliveries``)."""
        state = "uploading" if table == "births" else "pending"
        rows = _rows(
            self.journal,
            f"SELECT DISTINCT claimed_by FROM {table} WHERE state = ? AND claimed_by IS NOT NULL AND lease_until > ?",
            (state, time.time()),
        )
        return {pid for (owner,) in rows if (pid := _pid_of(owner)) is not None}

    async def victim_claiming(self, table: str, timeout: float) -> anyio.abc.Process | None:
        """A running process (worker or sync) that holds a claim in ``table``, within ``timeout``."""
        with anyio.move_on_after(timeout):
            while True:
                pids = self.claimants(table)
                for process in self.alive():
                    if process.pid in pids:
                        return process
                await anyio.sleep(0.01)
        return None

    # --- the kinds of kill ------------------------------------------------------------------------

    async def kill_uploading(self) -> None:
        """New births arrive; kill whichever process is uploading some, a moment into it."""
        await self.record(self.rng.randint(4, 8))
        victim = await self.victim_claiming("births", 15)
        if victim is None:
            await self.kill_any()
            return
        await anyio.sleep(self.rng.uniform(0.0, 0.2))
        # Counted as an upload kill only if the victim still holds the claim as it dies.
        await self.kill(victim, "upload" if victim.pid in self.claimants("births") else "anytime")
        await self.start_workers()

    async def kill_polling(self) -> None:
        """Real-name a few at the centre; while a real-name poll is in flight, kill every process
        that may be making it (both workers and the sync).  The centre holds the next query a
        moment (a latency fault), so that the kills can land while it is out."""
        self.real_name_some(self.rng.randint(1, 3))
        baseline = self.max_exchange()
        asked = self.sandbox.calls(Funid.REALNAME)
        self.sandbox.inject(Fault(kind="latency", funid=Funid.REALNAME, times=1, seconds=0.3))
        with anyio.move_on_after(15):
            while not self.poll_in_flight(asked, baseline):
                await anyio.sleep(0.01)
        await anyio.sleep(self.rng.uniform(0.0, 0.15))
        # Counted as poll kills only if the poll is still in flight as they die.
        kind = "poll" if self.poll_in_flight(asked, baseline) else "anytime"
        for process in self.alive():
            await self.kill(process, kind)
        await self.start_workers()

    async def kill_voiding(self) -> None:
        baz726 = self.void_candidate()
        if baz726 is None:
            await self.kill_any()
            return
        await self.void(baz726, kill_after=self.rng.uniform(0.0, 0.35))  # the centre commits after 0.3 s

    async def kill_delivering(self) -> None:
        """Hold the hospital's database busy so deliveries wait in the plugin; kill a process
        delivering one, sometimes just after the database is free again (the plugin may have
        written the event, the journal not yet marked it delivered)."""
        lock = sqlite3.connect(self.hospital, isolation_level=None, timeout=30)
        try:
            lock.execute("BEGIN IMMEDIATE")
            self.real_name_some(self.rng.randint(1, 2))
            await self.record(self.rng.randint(2, 4))
            victim = await self.victim_claiming("deliveries", 15)
            await anyio.sleep(self.rng.uniform(0.0, 0.2))
            if self.rng.random() < 0.5:
                lock.execute("ROLLBACK")
                await anyio.sleep(self.rng.uniform(0.0, 0.03))
            if victim is None:
                await self.kill_any()
            else:
                await self.kill(victim, "delivery" if victim.pid in self.claimants("deliveries") else "anytime")
        finally:
            if lock.in_transaction:
                lock.execute("ROLLBACK")
            lock.close()
        await self.start_workers()

    async def stop_with_a_hung_plugin(self, within: float) -> tuple[list[int | None], bool]:
        """SIGTERM the workers while the hospital plugin hangs in a delivery (its database held
        busy by another program).  Returns the exit statuses (None: still running after
        ``within`` seconds) and whether a delivery was indeed hanging when the signal came."""
        lock = sqlite3.connect(self.hospital, isolation_level=None, timeout=30)
        try:
            lock.execute("BEGIN IMMEDIATE")
            self.real_name_some(2)  # the next poll's realname_resolved deliveries will hang
            hanging = await self.victim_claiming("deliveries", 15) is not None
            await anyio.sleep(1.0)  # the claimed delivery reaches the plugin and waits on the database
            return await self.stop_workers(within=within), hanging
        finally:
            if lock.in_transaction:
                lock.execute("ROLLBACK")
            lock.close()

    async def his_uploads(self, count: int) -> None:
        """The operator's ``ybplug sync`` clears what is waiting; then the HIS records ``count``
        births and uploads them through its own host (which does not load the hospital plugin)."""
        process = await self.start("sync")
        with anyio.fail_after(60):
            await process.wait()
        self.figures.sync_runs += 1
        await self.record(count, upload=True)

    async def kill_syncing(self) -> None:
        with anyio.move_on_after(10):
            while self.sync is None or self.sync.returncode is not None:
                await anyio.sleep(0.01)
        await anyio.sleep(self.rng.uniform(0.0, 0.8))
        if self.sync is not None:
            await self.kill(self.sync, "sync")

    async def kill_any(self) -> None:
        """A worker, at a random moment, whatever it is doing."""
        i = self.rng.randrange(2)
        await anyio.sleep(self.rng.uniform(0.0, 0.8))
        worker = self.workers[i]
        if worker is not None:
            await self.kill(worker, "anytime")
        if self.rng.random() < 0.3:  # now and then a plain void, killed by nobody
            baz726 = self.void_candidate()
            if baz726 is not None:
                await self.void(baz726)
        await self.start_workers()

    async def step(self, kind: str) -> None:
        actions: dict[str, Callable[[], Any]] = {
            "upload": self.kill_uploading,
            "poll": self.kill_polling,
            "void": self.kill_voiding,
            "delivery": self.kill_delivering,
            "sync": self.kill_syncing,
            "anytime": self.kill_any,
        }
        await actions[kind]()

    # --- faults ---------------------------------------------------------------------------------

    async def inject_faults(self, rate: float) -> None:
        """Keep about ``rate`` of the centre's calls faulted: for each call seen, arm a fault of a
        random kind (on a random transaction or on any) for the next one with that probability."""
        rng = random.Random(self.seed + 2)
        seen = self.sandbox.calls()
        funids: list[str | None] = [None, Funid.COLLECT, Funid.COLLECT, Funid.VOID, Funid.REALNAME]
        while not self.stopping:
            await anyio.sleep(0.02)
            now = self.sandbox.calls()
            for _ in range(now - seen):
                if rng.random() >= rate:
                    continue
                kind = rng.choice(FAULT_KINDS)
                self.sandbox.inject(
                    Fault(
                        kind=kind,
                        funid=rng.choice(funids),
                        times=1,
                        seconds=rng.uniform(0.1, 3.0),  # beyond read_timeout now and then: a late commit
                        status=rng.choice([500, 502, 503, 504]),
                    )
                )
                self.figures.faults[kind] += 1
            seen = now

    def faults_left(self) -> Counter[str]:
        return Counter(f.kind for f in self.sandbox.faults() if f.times is not None)

    # --- settling -------------------------------------------------------------------------------

    def unsettled(self) -> tuple[int, int]:
        """(births not yet answered, deliveries to the hospital plugin still pending)."""
        births = _rows(self.journal, "SELECT count(*) FROM births WHERE state IN ('pending', 'uploading')")
        deliveries = _rows(
            self.journal, "SELECT count(*) FROM deliveries WHERE plugin = ? AND state = 'pending'", (PLUGIN,)
        )
        return int(births[0][0]) if births else 0, int(deliveries[0][0]) if deliveries else 0

    async def settle(self) -> None:
        """The final clean run: ``ybplug sync`` (a real process, no faults, nobody killed) until
        nothing is waiting, at least twice (the second poll sees what the first one's writes
        left), at most eight times."""
        started = time.monotonic()
        for run in range(8):
            process = await self.start("sync")
            with anyio.fail_after(60):
                await process.wait()
            self.figures.sync_runs += 1
            self.figures.settle_seconds = time.monotonic() - started
            if run >= 1 and self.unsettled() == (0, 0):
                return


# --- the comparison -----------------------------------------------------------------------------


def compare(chaos: Chaos, *, refusals_possible: bool) -> list[str]:
    """Everything wrong between the journal, the centre and the hospital plugin's database, each
    problem naming the births involved; fills ``chaos.figures`` as it goes."""
    figures = chaos.figures
    problems: list[str] = []
    births = {
        int(r[0]): {"key": (str(r[1]), int(r[2]), int(r[3])), "state": str(r[4]), "number": r[5]}
        for r in _rows(
            chaos.journal,
            "SELECT id, mother_id, birth_time, multiple_birth_number, state, registration_number FROM births",
        )
    }
    by_key = {b["key"]: birth_id for birth_id, b in births.items()}
    centre = chaos.sandbox.registrations()
    at_centre: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for r in centre:
        at_centre[(str(r["bkee35"]), int(r["aac006"]), int(r["bme027"]))].append(r)

    figures.births = len(births)
    figures.registered = sum(1 for r in centre if not r["voided"])
    figures.voids = sum(1 for r in centre if r["voided"])
    figures.real_named = sum(1 for r in centre if r["real_named"])
    figures.in_review = sum(1 for b in births.values() if b["state"] == "needs_review")
    figures.refused = sum(1 for b in births.values() if b["state"] == "refused")
    figures.centre_calls = chaos.sandbox.calls()

    missing = sorted(set(chaos.recorded) - set(births))
    if missing:
        problems.append(f"lost: births {missing} were recorded (durable, said the host) but are not in the journal")

    # Every birth answered, and answered as the centre has it.
    lost: set[int] = set()
    for birth_id, b in sorted(births.items()):
        state, number = b["state"], b["number"]
        held = at_centre.get(b["key"], [])
        if state not in SETTLED:
            lost.add(birth_id)
            problems.append(f"lost: birth {birth_id} still {state} after the final clean run (centre holds {[r['baz726'] for r in held]})")
            continue
        if state == "refused" and not refusals_possible:
            problems.append(f"wrong: birth {birth_id} refused, yet nothing in this run refuses a valid birth")
        if state in ("registered", "real_named", "voided"):
            mine = [r for r in held if r["baz726"] == number]
            if not mine:
                lost.add(birth_id)
                problems.append(
                    f"wrong: birth {birth_id} is {state} with baz726 {number} but the centre holds"
                    f" {[r['baz726'] for r in held] or 'nothing'} for it"
                )
        if state == "needs_review" and not refusals_possible and not held:
            problems.append(f"wrong: birth {birth_id} is in needs_review but the centre holds nothing for it (only a duplicate answer leads there here)")
    figures.lost = len(lost)

    # Every registration at the centre known to the journal, as it stands at the centre.
    for key, held in sorted(at_centre.items()):
        owner = by_key.get(key)
        numbers = [r["baz726"] for r in held]
        if len(held) > 1:
            figures.doubled += 1
            problems.append(f"doubled: birth {owner} registered {len(held)} times at the centre: {numbers}")
        if owner is None:
            problems.append(f"wrong: the centre holds {numbers} for a birth the journal does not know")
            continue
        b = births[owner]
        for r in held:
            if b["number"] is not None and r["baz726"] != b["number"] and len(held) == 1:
                problems.append(f"wrong: birth {owner} has baz726 {b['number']} in the journal, {r['baz726']} at the centre")
            if not r["voided"]:
                if b["state"] not in ("registered", "real_named", "needs_review"):
                    problems.append(
                        f"wrong: birth {owner} is live at the centre ({r['baz726']}) but {b['state']} in the journal"
                    )
                elif r["real_named"] and b["state"] == "registered":
                    problems.append(
                        f"wrong: birth {owner} ({r['baz726']}) is real-named at the centre but still registered in the"
                        " journal after the final clean run's poll"
                    )
            elif b["state"] != "voided" and r["baz726"] == b["number"]:
                problems.append(f"void not recorded: birth {owner} ({r['baz726']}) is void at the centre but {b['state']} in the journal")
    for baz726 in sorted(chaos.voids_asked):
        if not chaos.voided_at_centre(baz726):
            problems.append(f"void lost: the operator voided {baz726} (retrying until done) but the centre has it live")

    # The rule of an upload in doubt: after it, only a clear registration or needs_review.
    doubtful = {
        int(r[0]): int(r[1])
        for r in _rows(
            chaos.journal,
            f"SELECT birth_id, min(id) FROM exchanges WHERE funid = ? AND outcome IN ({','.join('?' * len(IN_DOUBT))})"
            " AND birth_id IS NOT NULL GROUP BY birth_id",
            (Funid.COLLECT, *IN_DOUBT),
        )
    }
    for birth_id, b in sorted(births.items()):
        if b["state"] == "refused" and birth_id in doubtful:
            problems.append(
                f"in doubt, then refused: birth {birth_id} is refused though its upload (exchange {doubtful[birth_id]})"
                " had an unknown outcome; it must be in needs_review"
            )

    # Every event reached the hospital plugin, under one id; no event emitted twice.
    events = _rows(chaos.journal, "SELECT id, hook, birth_id, payload FROM events")
    delivered = {
        str(r[0]): str(r[1]) for r in _rows(chaos.journal, "SELECT event_id, state FROM deliveries WHERE plugin = ?", (PLUGIN,))
    }
    seen: dict[str, set[str]] = {
        hook: {str(r[0]) for r in _rows(chaos.hospital, f"SELECT event_id FROM {table}")}
        for hook, table in PLUGIN_TABLES.items()
    }
    per_birth: dict[tuple[int | None, str], list[str]] = defaultdict(list)
    for event_id, hook, birth_id, payload in events:
        if hook not in PLUGIN_TABLES:
            continue
        label = f"{hook} event {event_id} of birth {birth_id}"
        state = delivered.get(event_id)
        if state != "delivered":
            problems.append(f"undelivered: {label}: delivery to {PLUGIN} is {state or 'missing'}")
        elif event_id not in seen[hook]:
            problems.append(f"undelivered: {label} is marked delivered but the hospital's database never saw it")
        if hook == "collection_result":
            result = json.loads(payload).get("result") or {}
            if not result.get("baz726"):
                continue  # a refusal's answer; counted with the refusals
        per_birth[(birth_id, hook)].append(event_id)
    for (event_birth, hook), event_ids in sorted(per_birth.items(), key=lambda item: (item[0][0] or 0, item[0][1])):
        if len(event_ids) > 1:
            problems.append(f"emitted twice: birth {event_birth} has {len(event_ids)} {hook} events: {event_ids}")

    # Each state reached was told to the plugin (an event journaled for it).
    expected = {
        "registered": ["collection_result"],
        "real_named": ["collection_result", "realname_resolved"],
        "voided": ["collection_result", "collection_voided"],
        "needs_review": ["birth_needs_review"],
    }
    untold: dict[tuple[str, str], list[int]] = defaultdict(list)
    for birth_id, b in sorted(births.items()):
        for hook in expected.get(b["state"], []):
            if not per_birth.get((birth_id, hook)):
                untold[(b["state"], hook)].append(birth_id)
    for (state, hook), birth_ids in sorted(untold.items()):
        problems.append(f"never told: births {birth_ids} are {state} but no {hook} event was journaled for the hospital plugin")
    return problems
