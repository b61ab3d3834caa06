"""The proof of ybplug's central promise: a newborn's registration is never lost, never doubled and
never silently wrong, whatever is killed and whatever the centre does.

Two ``ybplug run`` workers on one journal, an operator's ``ybplug sync`` in a loop and
``ybplug void`` now and then (all real processes, with the example hospital plugin found through
its entry point), the HIS recording births, the centre real-naming some: then SIGKILLs at random
points (seeded, printed), chosen to land during uploads, real-name polls, voids and hook deliveries.
After a final clean run the journal, the centre's database and the hospital's are compared.

``pytest -m chaos -s`` shows the figures; ``YBPLUG_CHAOS_SEED`` replays another draw.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import pytest

from ybplug.codes import Funid
from ybplug.sandbox import FAULT_KINDS, Fault, Sandbox

from chaos_support import Chaos, compare, write_config

pytestmark = [pytest.mark.chaos, pytest.mark.anyio]

SEED = int(os.environ.get("YBPLUG_CHAOS_SEED", "20261130"))
#: How long ``ybplug run`` may take to stop on SIGTERM while a plugin hook hangs.
STOP_WITHIN = 10.0


async def chaos_run(
    tmp_path: Path,
    sandbox: Sandbox,
    seed: int,
    plan: dict[str, int],
    *,
    births: int,
    fault_rate: float = 0.0,
    hang_on_stop: bool = False,
) -> tuple[Chaos, list[str]]:
    """Record ``births``, run the workers and the operator, do the ``plan``'s kills in a seeded
    random order (faulting ``fault_rate`` of the centre's calls meanwhile), stop the workers
    (``hang_on_stop``: while the hospital plugin hangs in a delivery), settle, compare."""
    write_config(tmp_path, sandbox)
    chaos = Chaos(tmp_path, sandbox, seed)
    # Every transaction takes a moment, so a kill can land while one is in flight.
    sandbox.inject(
        Fault(kind="latency", funid=Funid.COLLECT, times=None, seconds=0.1),
        Fault(kind="latency", funid=Funid.REALNAME, times=None, seconds=0.2),
        Fault(kind="latency", funid=Funid.VOID, times=None, seconds=0.3),
    )
    steps = [kind for kind, count in plan.items() for _ in range(count)]
    chaos.rng.shuffle(steps)
    started = time.monotonic()
    problems: list[str] = []
    try:
        await chaos.record(births)
        await chaos.start_workers()
        async with anyio.create_task_group() as tg:
            tg.start_soon(chaos.operator_syncs)
            if fault_rate:
                tg.start_soon(chaos.inject_faults, fault_rate)
            for kind in steps:
                await chaos.step(kind)
            chaos.stopping = True  # the operator's last sync ends on its own
        await chaos.his_uploads(4)
        left = chaos.faults_left()
        for kind in FAULT_KINDS:
            chaos.figures.faults_hit[kind] = chaos.figures.faults[kind] - left[kind]
        sandbox.clear_faults()
        if hang_on_stop:
            codes, hanging = await chaos.stop_with_a_hung_plugin(within=STOP_WITHIN)
            assert hanging, "no delivery was hanging in the plugin when the workers were told to stop"
            if codes != [0, 0]:
                problems.append(
                    f"stuck: with a plugin hook hung, the workers' exit statuses {STOP_WITHIN:.0f} s after SIGTERM"
                    f" were {codes} (None: still running, then killed)"
                )
        else:
            codes = await chaos.stop_workers()
            if codes != [0, 0]:
                problems.append(f"stuck: the workers' exit statuses on SIGTERM were {codes} (None: still running after 20 s)")
        await chaos.settle()
        problems += compare(chaos, refusals_possible=bool(fault_rate))
    finally:
        chaos.stopping = True
        for process in chaos.alive():
            process.kill()
            await process.wait()
        chaos.close()
        chaos.figures.seconds = time.monotonic() - started
    return chaos, problems


def report(chaos: Chaos, problems: list[str], title: str) -> str:
    text = chaos.figures.show(title)
    print("\n" + text)
    for problem in problems:
        print("  " + problem)
    return text


@pytest.mark.timeout(300)
async def test_kills_at_random_points_lose_nothing_double_nothing_and_tell_every_plugin(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    plan = {"upload": 5, "poll": 3, "void": 4, "delivery": 4, "sync": 2, "anytime": 2}
    chaos, problems = await chaos_run(tmp_path, sandbox, SEED, plan, births=30, hang_on_stop=True)
    report(chaos, problems, "chaos: kills")
    kills = chaos.figures.kills
    # The premise: the kills landed where they were meant to (else this test proves less than it says).
    assert sum(kills.values()) >= 20, f"only {sum(kills.values())} kills ({dict(kills)}), seed {SEED}"
    for kind in ("upload", "poll", "void", "delivery"):
        assert kills[kind] >= 1, f"no kill landed during a {kind} ({dict(kills)}), seed {SEED}"
    assert chaos.figures.voids >= 2 and chaos.figures.real_named >= 3, "too few voids or real-namings to prove anything"
    assert not problems, f"seed {SEED}:\n" + "\n".join(problems)


@pytest.mark.timeout(300)
async def test_faults_of_every_kind_with_kills_lose_nothing_and_refuse_nothing_in_doubt(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    plan = {"upload": 3, "poll": 2, "void": 3, "delivery": 2, "sync": 2, "anytime": 2}
    seed = SEED + 1
    chaos, problems = await chaos_run(tmp_path, sandbox, seed, plan, births=30, fault_rate=0.3)
    report(chaos, problems, "chaos: faults (30% of calls) and kills")
    hit = chaos.figures.faults_hit
    for kind in FAULT_KINDS:
        assert hit[kind] >= 1, f"no call met a {kind} fault ({dict(hit)}), seed {seed}"
    assert sum(chaos.figures.kills.values()) >= 10, f"only {dict(chaos.figures.kills)} kills, seed {seed}"
    assert not problems, f"seed {seed}:\n" + "\n".join(problems)
