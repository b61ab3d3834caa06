"""ybplug.dedicated: one thread runs the jobs, the event loop is woken when each is done."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from ybplug.dedicated import DedicatedThread, Job, JobDropped


@pytest.fixture
def worker() -> DedicatedThread:
    thread = DedicatedThread("test-dedicated")
    yield thread  # type: ignore[misc]
    thread.stop(timeout=5)


@pytest.mark.anyio
async def test_jobs_run_in_order_on_the_one_thread_without_blocking_the_loop(anyio_backend: str, worker: DedicatedThread) -> None:
    order: list[int] = []
    idents: list[int] = []

    def job(n: int) -> int:
        time.sleep(0.1)
        order.append(n)
        return threading.get_ident()

    async def jobs() -> None:
        for n in range(6):
            idents.append(await worker.run(job, n))

    async with anyio.create_task_group() as tg:
        tg.start_soon(jobs)
        began = time.monotonic()
        await anyio.sleep(0.1)  # the loop goes on while the thread works (0.6 s)
        slept = time.monotonic() - began
    assert order == list(range(6)) and len(set(idents)) == 1
    assert worker.thread is not None and idents[0] == worker.thread.ident != threading.get_ident()
    assert slept < 0.45  # a blocked loop would have waited for all six jobs


@pytest.mark.anyio
async def test_errors_reach_the_caller_translated(anyio_backend: str) -> None:
    worker = DedicatedThread("test-translate", translate=lambda exc: LookupError(f"translated {exc}"))

    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(LookupError, match="translated boom"):
        await worker.run(fail)
    worker.stop(timeout=5)
    assert worker.thread is None


@pytest.mark.anyio
async def test_call_is_shielded_run_drops_a_job_not_started(anyio_backend: str, worker: DedicatedThread) -> None:
    gate = threading.Event()
    done: list[str] = []
    blocker = worker.submit(gate.wait, 5)
    await anyio.sleep(0.05)
    assert (worker.busy_for() or 0) > 0.03  # how long the current job has run

    # run(): cancelled while queued, the job never runs.
    with anyio.move_on_after(0.05):
        await worker.run(done.append, "dropped")
    # call(): cancelled while queued, the job still runs and the caller waits for it.
    began = time.monotonic()
    with anyio.move_on_after(0.05):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, lambda: (time.sleep(0.2), gate.set()))
            await worker.call(done.append, "kept")
    assert done == ["kept"]
    assert time.monotonic() - began >= 0.15  # it waited for its job, past the deadline
    assert await blocker.result() is True
    assert worker.busy_for() is None


@pytest.mark.anyio
async def test_drop_pending_wakes_every_queued_waiter_at_once(anyio_backend: str, worker: DedicatedThread) -> None:
    gate = threading.Event()
    running = worker.submit(gate.wait, 5)
    queued = [worker.submit(time.sleep, 0) for _ in range(3)]
    await anyio.sleep(0.05)
    assert worker.drop_pending() == 3
    with anyio.fail_after(1):
        for job in queued:
            await job.wait()
            assert job.state == Job.DROPPED
            with pytest.raises(JobDropped):
                job.outcome()
    assert running.state == Job.RUNNING and not running.drop() and running.abandoned
    gate.set()
    await running.wait()
    assert running.outcome() is True


def test_blocking_jobs_for_start_up_work(worker: DedicatedThread) -> None:
    job = worker.submit(lambda: 42, asynchronous=False)
    assert job.wait_blocking(5) and job.outcome() == 42
