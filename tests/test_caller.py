"""The async hook caller over a real pluggy PluginManager, with a hook spec of the test's own."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import anyio
import pluggy
import pytest

from ybplug.caller import (
    AsyncHookCaller,
    HookError,
    HookTimeout,
    ImplOutcome,
    PluginError,
    check_no_wrappers,
)

hookspec = pluggy.HookspecMarker("ybplug")
hookimpl = pluggy.HookimplMarker("ybplug")

ID_NUMBER = "350204199001010022"


class Spec:
    @hookspec
    def on_event(self, event_id: str, record: Any, extra: Any = None) -> Any:
        """Every plugin hears about an event."""

    @hookspec(firstresult=True)
    def pick(self, event_id: str, record: Any) -> Any:
        """The first plugin with an answer wins."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def pm() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("ybplug")
    manager.add_hookspecs(Spec)
    return manager


def register(pm: pluggy.PluginManager, name: str, **impls: Any) -> object:
    """Register a plugin called ``name`` whose hook implementations are ``impls``."""
    plugin = type(name, (), {})()
    for hook, function in impls.items():
        setattr(plugin, hook, function)
    pm.register(plugin, name=name)
    return plugin


def recorder(calls: list[str], name: str, *, is_async: bool, result: Any = None, **opts: Any) -> Any:
    if is_async:

        @hookimpl(**opts)
        async def impl(event_id: str) -> Any:
            await anyio.sleep(0)
            calls.append(name)
            return result

    else:

        @hookimpl(**opts)
        def impl(event_id: str) -> Any:  # type: ignore[misc]
            calls.append(name)
            return result

    return impl


# -- order and results --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_order_is_pluggys_with_mixed_async_and_sync(pm: pluggy.PluginManager) -> None:
    calls: list[str] = []
    register(pm, "a_sync", on_event=recorder(calls, "a_sync", is_async=False, result="a"))
    register(pm, "b_async", on_event=recorder(calls, "b_async", is_async=True, result="b"))
    register(pm, "c_first", on_event=recorder(calls, "c_first", is_async=True, tryfirst=True))
    register(pm, "d_last", on_event=recorder(calls, "d_last", is_async=False, result="d", trylast=True))
    register(pm, "e_sync", on_event=recorder(calls, "e_sync", is_async=False, result="e"))
    caller = AsyncHookCaller(pm, timeout=5)

    expected = ["c_first", "e_sync", "b_async", "a_sync", "d_last"]
    assert caller.implementations("on_event") == expected
    # pluggy's own call order, for reference: reversed(get_hookimpls())
    assert [i.plugin_name for i in reversed(pm.hook.on_event.get_hookimpls())] == expected

    outcomes = await caller.call_each("on_event", event_id="ev1", record=None)
    assert calls == expected
    assert [o.plugin for o in outcomes] == expected
    assert [o.value for o in outcomes] == [None, "e", "b", "a", "d"]
    assert all(o.ok and o.error is None and o.elapsed >= 0 for o in outcomes)


@pytest.mark.anyio
async def test_call_first_returns_first_non_none_after_awaiting(pm: pluggy.PluginManager) -> None:
    calls: list[str] = []
    register(pm, "later", pick=recorder(calls, "later", is_async=False, result="later value"))
    register(pm, "answer", pick=recorder(calls, "answer", is_async=True, result="answer value"))
    register(pm, "sync_none", pick=recorder(calls, "sync_none", is_async=False))
    register(pm, "async_none", pick=recorder(calls, "async_none", is_async=True, tryfirst=True))
    caller = AsyncHookCaller(pm, timeout=5)

    # pluggy alone would stop at the first async impl: its coroutine is a non-None "result".
    coroutine = pm.hook.pick(event_id="ev", record=None)
    assert hasattr(coroutine, "__await__")
    coroutine.close()

    assert await caller.call_first("pick", event_id="ev", record=None) == "answer value"
    assert calls == ["async_none", "sync_none", "answer"]  # "later" is never called


@pytest.mark.anyio
async def test_call_first_none_when_nobody_answers(pm: pluggy.PluginManager) -> None:
    calls: list[str] = []
    register(pm, "one", pick=recorder(calls, "one", is_async=True))
    register(pm, "two", pick=recorder(calls, "two", is_async=False))
    caller = AsyncHookCaller(pm, timeout=5)
    assert await caller.call_first("pick", event_id="ev", record=None) is None
    assert calls == ["two", "one"]


@pytest.mark.anyio
async def test_call_first_wraps_an_error_naming_the_plugin(pm: pluggy.PluginManager) -> None:
    calls: list[str] = []
    register(pm, "fallback", pick=recorder(calls, "fallback", is_async=False, result="fallback"))

    @hookimpl
    async def broken(event_id: str) -> Any:
        raise ConnectionError("hospital database is down")

    register(pm, "hospital", pick=broken)
    caller = AsyncHookCaller(pm, timeout=5)
    with pytest.raises(HookError) as info:
        await caller.call_first("pick", event_id="ev", record=None)
    assert info.value.plugin == "hospital"
    assert info.value.hook == "pick"
    assert isinstance(info.value.__cause__, ConnectionError)
    assert "hospital" in str(info.value) and "ConnectionError" in str(info.value)
    assert calls == []  # the error is not papered over by a lower-priority answer


@pytest.mark.anyio
async def test_sync_impl_returning_an_awaitable_is_awaited(pm: pluggy.PluginManager) -> None:
    async def later() -> str:
        await anyio.sleep(0)
        return "awaited"

    @hookimpl
    def sync_returns_coroutine(event_id: str) -> Any:
        return later()

    register(pm, "p", pick=sync_returns_coroutine)
    caller = AsyncHookCaller(pm, timeout=5)
    assert await caller.call_first("pick", event_id="ev", record=None) == "awaited"


# -- arguments ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_impls_receive_only_the_arguments_they_declare(pm: pluggy.PluginManager) -> None:
    seen: dict[str, Any] = {}

    @hookimpl
    def nothing() -> None:
        seen["nothing"] = ()

    @hookimpl
    async def only_record(record: Any) -> None:
        seen["only_record"] = (record,)

    @hookimpl
    def both(record: Any, event_id: str) -> None:
        seen["both"] = (record, event_id)

    @hookimpl
    async def with_default(event_id: str, extra: Any = "impl default") -> None:
        seen.setdefault("with_default", []).append((event_id, extra))

    register(pm, "nothing", on_event=nothing)
    register(pm, "only_record", on_event=only_record)
    register(pm, "both", on_event=both)
    register(pm, "with_default", on_event=with_default)
    caller = AsyncHookCaller(pm, timeout=5)

    outcomes = await caller.call_each("on_event", event_id="ev", record={"r": 1})
    assert all(o.ok for o in outcomes), outcomes
    assert seen["nothing"] == ()
    assert seen["only_record"] == ({"r": 1},)
    assert seen["both"] == ({"r": 1}, "ev")
    # the spec's default (None) applies when the caller does not pass it, as in pluggy
    assert seen["with_default"] == [("ev", None)]

    await caller.call_each("on_event", event_id="ev2", record=None, extra="given")
    assert seen["with_default"][-1] == ("ev2", "given")


@pytest.mark.anyio
async def test_missing_argument_is_that_impls_error(pm: pluggy.PluginManager) -> None:
    @hookimpl
    def wants_record(record: Any) -> str:
        return "got it"

    @hookimpl
    def wants_id(event_id: str) -> str:
        return event_id

    register(pm, "wants_record", on_event=wants_record)
    register(pm, "wants_id", on_event=wants_id)
    caller = AsyncHookCaller(pm, timeout=5)
    outcomes = {o.plugin: o for o in await caller.call_each("on_event", event_id="ev")}
    assert outcomes["wants_id"].value == "ev"
    assert isinstance(outcomes["wants_record"].error, pluggy.HookCallError)
    assert "record" in str(outcomes["wants_record"].error)


@pytest.mark.anyio
async def test_unknown_hook_is_a_clear_error(pm: pluggy.PluginManager) -> None:
    caller = AsyncHookCaller(pm, timeout=5)
    with pytest.raises(LookupError, match="no_such_hook"):
        await caller.call_each("no_such_hook")


# -- isolation ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_failing_plugin_does_not_stop_the_others(
    pm: pluggy.PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    register(pm, "first", on_event=recorder(calls, "first", is_async=False, result=1))

    @hookimpl
    async def broken_async(event_id: str) -> None:
        raise RuntimeError("disk full")

    @hookimpl
    def broken_sync(event_id: str) -> None:
        raise KeyError("no such ward")

    register(pm, "broken_async", on_event=broken_async)
    register(pm, "middle", on_event=recorder(calls, "middle", is_async=True, result=2))
    register(pm, "broken_sync", on_event=broken_sync)
    caller = AsyncHookCaller(pm, timeout=5)

    with caplog.at_level(logging.ERROR, logger="ybplug.hooks"):
        outcomes = await caller.call_each("on_event", event_id="ev", record=ID_NUMBER)

    by_name = {o.plugin: o for o in outcomes}
    assert [o.plugin for o in outcomes] == ["broken_sync", "middle", "broken_async", "first"]
    assert calls == ["middle", "first"]
    assert isinstance(by_name["broken_async"].error, RuntimeError)
    assert isinstance(by_name["broken_sync"].error, KeyError)
    assert not by_name["broken_sync"].ok and by_name["broken_sync"].value is None
    assert by_name["middle"].ok and by_name["middle"].value == 2
    assert by_name["first"].value == 1

    logged = [r for r in caplog.records if r.name == "ybplug.hooks"]
    assert len(logged) == 2
    text = "\n".join(r.getMessage() for r in logged)
    assert "broken_async" in text and "RuntimeError" in text and "disk full" in text
    assert "broken_sync" in text and "KeyError" in text and "on_event" in text
    assert ID_NUMBER not in caplog.text  # the arguments are never logged


@pytest.mark.anyio
async def test_hanging_plugins_time_out_while_the_others_complete(pm: pluggy.PluginManager) -> None:
    timeout = 0.3
    calls: list[str] = []
    register(pm, "before", on_event=recorder(calls, "before", is_async=False, result="b"))

    @hookimpl
    async def hangs_async(event_id: str) -> None:
        await anyio.sleep_forever()

    @hookimpl
    def hangs_sync(event_id: str) -> None:
        time.sleep(timeout + 1.0)

    register(pm, "hangs_async", on_event=hangs_async)
    register(pm, "hangs_sync", on_event=hangs_sync)
    register(pm, "after", on_event=recorder(calls, "after", is_async=True, result="a"))
    caller = AsyncHookCaller(pm, timeout=timeout)

    start = time.perf_counter()
    outcomes = await caller.call_each("on_event", event_id="ev", record=None)
    elapsed = time.perf_counter() - start

    by_name = {o.plugin: o for o in outcomes}
    assert calls == ["after", "before"]
    assert by_name["after"].value == "a" and by_name["before"].value == "b"
    for name in ("hangs_async", "hangs_sync"):
        error = by_name[name].error
        assert isinstance(error, HookTimeout) and isinstance(error, TimeoutError)
        assert error.plugin == name and error.hook == "on_event" and error.timeout == timeout
        assert name in str(error) and "on_event" in str(error) and "0.3" in str(error)
        assert timeout * 0.9 <= by_name[name].elapsed < timeout + 0.5
    assert by_name["hangs_sync"].error.abandoned_thread  # type: ignore[union-attr]
    # two timeouts back to back, not the sync impl's full sleep
    assert elapsed < 2 * timeout + 0.8


@pytest.mark.anyio
async def test_a_plugins_own_timeout_error_is_not_ours(pm: pluggy.PluginManager) -> None:
    @hookimpl
    async def db_timeout(event_id: str) -> None:
        raise TimeoutError("database lock wait timeout")

    register(pm, "db", on_event=db_timeout)
    caller = AsyncHookCaller(pm, timeout=5)
    [outcome] = await caller.call_each("on_event", event_id="ev", record=None)
    assert type(outcome.error) is TimeoutError
    assert "lock wait" in str(outcome.error)


# -- threads --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_sync_impls_run_in_a_worker_thread_async_ones_on_the_loop(pm: pluggy.PluginManager) -> None:
    @hookimpl
    def sync_impl(event_id: str) -> int:
        return threading.get_ident()

    @hookimpl
    async def async_impl(event_id: str) -> int:
        return threading.get_ident()

    register(pm, "sync", on_event=sync_impl)
    register(pm, "async", on_event=async_impl)
    caller = AsyncHookCaller(pm, timeout=5)
    loop_thread = threading.get_ident()
    by_name = {o.plugin: o.value for o in await caller.call_each("on_event", event_id="e", record=None)}
    assert by_name["sync"] != loop_thread
    assert by_name["async"] == loop_thread


@pytest.mark.anyio
async def test_thread_limiter_bounds_concurrent_sync_impls(pm: pluggy.PluginManager) -> None:
    lock = threading.Lock()
    state = {"running": 0, "max": 0, "done": 0}

    @hookimpl
    def blocking_write(event_id: str) -> None:
        with lock:
            state["running"] += 1
            state["max"] = max(state["max"], state["running"])
        time.sleep(0.05)
        with lock:
            state["running"] -= 1
            state["done"] += 1

    register(pm, "writer_a", on_event=blocking_write)
    register(pm, "writer_b", on_event=blocking_write)
    caller = AsyncHookCaller(pm, timeout=10, thread_limiter=anyio.CapacityLimiter(2))

    results: list[list[ImplOutcome]] = []

    async def one(i: int) -> None:
        results.append(await caller.call_each("on_event", event_id=f"ev{i}", record=None))

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(one, i)

    assert state["done"] == 16
    assert all(o.ok for r in results for o in r)
    assert state["max"] == 2


@pytest.mark.anyio
async def test_default_thread_limiter_is_the_callers_own(pm: pluggy.PluginManager) -> None:
    caller = AsyncHookCaller(pm)
    assert caller.thread_limiter is not anyio.to_thread.current_default_thread_limiter()
    assert caller.thread_limiter.total_tokens == 8
    assert caller.thread_limiter is caller.thread_limiter
    assert AsyncHookCaller(pm).thread_limiter is not caller.thread_limiter


# -- cancellation ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_outer_timeout_cancels_cleanly(
    pm: pluggy.PluginManager, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    calls: list[str] = []
    register(pm, "never", on_event=recorder(calls, "never", is_async=False, trylast=True))

    if kind == "async":

        @hookimpl
        async def slow(event_id: str) -> None:
            await anyio.sleep(10)

    else:

        @hookimpl
        def slow(event_id: str) -> None:  # type: ignore[misc]
            time.sleep(2.0)

    register(pm, "slow", on_event=slow)
    caller = AsyncHookCaller(pm, timeout=5)
    start = time.perf_counter()
    returned = False
    with caplog.at_level(logging.DEBUG, logger="ybplug"):
        with anyio.move_on_after(0.2) as scope:
            await caller.call_each("on_event", event_id="ev", record=None)
            returned = True
    assert scope.cancelled_caught
    assert not returned
    assert time.perf_counter() - start < 1.2
    assert calls == []
    assert not [r for r in caplog.records if r.name == "ybplug.hooks"]


@pytest.mark.anyio
async def test_cancelled_task_group_is_not_a_plugin_error(
    pm: pluggy.PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    started = anyio.Event()
    register(pm, "never", on_event=recorder(calls, "never", is_async=True, trylast=True))

    @hookimpl
    async def slow(event_id: str) -> None:
        started.set()
        await anyio.sleep(10)

    register(pm, "slow", on_event=slow)
    caller = AsyncHookCaller(pm, timeout=5)
    finished: list[Any] = []

    async def run() -> None:
        try:
            finished.append(await caller.call_each("on_event", event_id="ev", record=None))
        except anyio.get_cancelled_exc_class():
            finished.append("cancelled")
            raise

    with caplog.at_level(logging.DEBUG, logger="ybplug"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await started.wait()
            tg.cancel_scope.cancel()
    assert finished == ["cancelled"]
    assert calls == []
    assert not [r for r in caplog.records if r.name == "ybplug.hooks"]


@pytest.mark.anyio
async def test_a_plugin_swallowing_cancellation_does_not_keep_the_call_going(pm: pluggy.PluginManager) -> None:
    calls: list[str] = []
    register(pm, "never", on_event=recorder(calls, "never", is_async=False, trylast=True))

    @hookimpl
    async def swallower(event_id: str) -> str:
        try:
            await anyio.sleep(10)
        except BaseException:
            return "swallowed"  # bad manners: it eats the cancellation
        return "slept"

    register(pm, "swallower", on_event=swallower)
    caller = AsyncHookCaller(pm, timeout=5)
    with anyio.move_on_after(0.1) as scope:
        await caller.call_each("on_event", event_id="ev", record=None)
    assert scope.cancelled_caught
    assert calls == []


def swallowing(released: list[bool], caught: list[float] | None = None) -> Any:
    """An async implementation that catches every cancellation and awaits again, until released."""

    @hookimpl
    async def swallower(event_id: str) -> str:
        while not released:
            try:
                await anyio.sleep_forever()
            except BaseException:  # bad manners on purpose: it eats the cancellation
                if caught is not None:
                    caught.append(time.monotonic())
        return "released"

    return swallower


async def release(caller: AsyncHookCaller, released: list[bool]) -> None:
    """End the abandoned swallowers: released, they return at their next cancellation."""
    released.append(True)
    for task in list(caller._abandoned):
        task.cancel()
    with anyio.fail_after(2):
        while caller.abandoned:
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_plugin_ignoring_cancellation_is_timed_out_abandoned_and_reported(
    pm: pluggy.PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    timeout = 0.3
    calls: list[str] = []
    released: list[bool] = []
    caught: list[float] = []
    register(pm, "swallower", on_event=swallowing(released, caught))
    register(pm, "after", on_event=recorder(calls, "after", is_async=True, result="a", trylast=True))
    caller = AsyncHookCaller(pm, timeout=timeout)

    start = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="ybplug"):
        outcomes = await caller.call_each("on_event", event_id="ev", record=ID_NUMBER)
    elapsed = time.perf_counter() - start

    by_name = {o.plugin: o for o in outcomes}
    error = by_name["swallower"].error
    assert isinstance(error, HookTimeout) and error.abandoned_task and not error.abandoned_thread
    assert calls == ["after"] and by_name["after"].value == "a"  # the next plugin was called all the same
    assert timeout <= elapsed < timeout + caller.CANCEL_GRACE + 0.5
    [line] = [r.getMessage() for r in caplog.records if r.name == "ybplug.hooks"]
    assert "swallower" in line and "on_event" in line and "ignored cancellation" in line
    assert ID_NUMBER not in caplog.text
    # Left behind, and out of the loop's task list: the loop's shutdown does not wait for it.
    assert caller.abandoned == 1
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("ybplug hook")]
    # and left alone: no cancellation delivered to it again and again, spinning a core
    before = len(caught)
    await anyio.sleep(0.3)
    assert len(caught) == before

    with caplog.at_level(logging.INFO, logger="ybplug"):
        await release(caller, released)
    assert "abandoned call of plugin 'swallower' ended" in caplog.text


@pytest.mark.anyio
async def test_an_honest_plugin_cancelled_at_its_timeout_is_not_abandoned(pm: pluggy.PluginManager) -> None:
    cleaned: list[str] = []

    @hookimpl
    async def tidy(event_id: str) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.05)  # a rollback, within the grace
            cleaned.append("yes")

    register(pm, "tidy", on_event=tidy)
    caller = AsyncHookCaller(pm, timeout=0.2)
    [outcome] = await caller.call_each("on_event", event_id="ev", record=None)
    assert isinstance(outcome.error, HookTimeout) and not outcome.error.abandoned_task
    assert "ignored" not in str(outcome.error)
    assert cleaned == ["yes"] and caller.abandoned == 0


@pytest.mark.anyio
async def test_a_timed_out_plugin_finishes_its_shielded_work(pm: pluggy.PluginManager) -> None:
    """Cancelled through an anyio cancel scope, as when it ran in the caller's task: a built-in
    plugin's shielded journal write is not cut off by the timeout."""
    written: list[str] = []

    @hookimpl
    async def journals(event_id: str) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.2)  # the outcome of an exchange, on its way to the journal
            written.append("yes")
        await anyio.sleep_forever()

    register(pm, "journals", on_event=journals)
    caller = AsyncHookCaller(pm, timeout=0.05)
    [outcome] = await caller.call_each("on_event", event_id="ev", record=None)
    assert isinstance(outcome.error, HookTimeout) and not outcome.error.abandoned_task
    assert written == ["yes"]


@pytest.mark.anyio
async def test_a_caller_cancelled_while_a_plugin_ignores_it_ends_after_the_grace(
    pm: pluggy.PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    released: list[bool] = []
    register(pm, "swallower", on_event=swallowing(released))
    register(pm, "never", on_event=recorder(calls, "never", is_async=False, trylast=True))
    caller = AsyncHookCaller(pm, timeout=30)

    start = time.perf_counter()
    returned = False
    with caplog.at_level(logging.INFO, logger="ybplug"):
        with anyio.move_on_after(0.1) as scope:
            await caller.call_each("on_event", event_id="ev", record=None)
            returned = True
    assert scope.cancelled_caught and not returned  # the cancellation went on, not swallowed by us
    assert time.perf_counter() - start < 0.1 + caller.CANCEL_GRACE + 0.5
    assert calls == []
    [line] = [r.getMessage() for r in caplog.records if r.name == "ybplug.hooks"]
    assert "swallower" in line and "ignored cancellation" in line
    await release(caller, released)


@pytest.mark.anyio
async def test_a_plugins_own_cancellation_is_its_error_not_ours(pm: pluggy.PluginManager) -> None:
    import asyncio

    @hookimpl
    async def confused(event_id: str) -> None:
        raise asyncio.CancelledError

    register(pm, "confused", on_event=confused)
    caller = AsyncHookCaller(pm, timeout=5)
    [outcome] = await caller.call_each("on_event", event_id="ev", record=None)
    assert isinstance(outcome.error, HookError) and "confused" in str(outcome.error)


# -- selection, wrappers, tracing ------------------------------------------------------------------


@pytest.mark.anyio
async def test_only_restricts_to_named_plugins(pm: pluggy.PluginManager) -> None:
    calls: list[str] = []
    for name in ("p1", "p2", "p3"):
        register(pm, name, on_event=recorder(calls, name, is_async=name != "p2", result=name))
    caller = AsyncHookCaller(pm, timeout=5)

    outcomes = await caller.call_each("on_event", only=["p1", "p3", "gone"], event_id="e", record=None)
    assert [o.plugin for o in outcomes] == ["p3", "p1"]
    assert calls == ["p3", "p1"]

    calls.clear()
    outcomes = await caller.call_each("on_event", only="p2", event_id="e", record=None)
    assert [o.plugin for o in outcomes] == ["p2"] and calls == ["p2"]

    assert await caller.call_each("on_event", only=(), event_id="e", record=None) == []


def test_check_no_wrappers(pm: pluggy.PluginManager) -> None:
    register(pm, "plain", on_event=hookimpl(lambda event_id: None))
    check_no_wrappers(pm)  # nothing to complain about

    @hookimpl(wrapper=True)
    def wrapping(event_id: str) -> Any:
        return (yield)

    register(pm, "wrapping_plugin", on_event=wrapping)
    with pytest.raises(PluginError) as info:
        check_no_wrappers(pm)
    assert info.value.plugin == "wrapping_plugin" and info.value.hook == "on_event"
    assert "wrapping_plugin" in str(info.value) and "on_event" in str(info.value)
    assert "wrapper" in str(info.value)


def test_check_no_wrappers_old_style(pm: pluggy.PluginManager) -> None:
    @hookimpl(hookwrapper=True)
    def old_wrapper(event_id: str) -> Any:
        yield

    register(pm, "old_style", pick=old_wrapper)
    with pytest.raises(PluginError, match="old_style.*pick.*hookwrapper"):
        check_no_wrappers(pm)


@pytest.mark.anyio
async def test_a_wrapper_registered_anyway_is_that_plugins_error(pm: pluggy.PluginManager) -> None:
    @hookimpl(wrapper=True)
    def wrapping(event_id: str) -> Any:
        return (yield)

    register(pm, "wrapping_plugin", on_event=wrapping)
    register(pm, "plain", on_event=recorder([], "plain", is_async=True, result="ok"))
    caller = AsyncHookCaller(pm, timeout=5)
    by_name = {o.plugin: o for o in await caller.call_each("on_event", event_id="e", record=None)}
    assert isinstance(by_name["wrapping_plugin"].error, PluginError)
    assert by_name["plain"].value == "ok"


@pytest.mark.anyio
async def test_trace_logs_each_call_without_argument_values(
    pm: pluggy.PluginManager, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    @hookimpl
    async def echo(event_id: str, record: Any) -> Any:
        return record

    @hookimpl
    def failing(record: Any) -> None:
        raise ValueError("no")

    register(pm, "echo", on_event=echo)
    register(pm, "failing", on_event=failing)
    monkeypatch.setenv("YBPLUG_TRACE", "1")
    caller = AsyncHookCaller(pm, timeout=5)
    assert caller.trace

    with caplog.at_level(logging.INFO, logger="ybplug.trace"):
        outcomes = await caller.call_each("on_event", event_id=ID_NUMBER, record={"bkee35": ID_NUMBER})
    assert outcomes[1].value == {"bkee35": ID_NUMBER}  # the value is returned, not logged

    lines = [r for r in caplog.records if r.name == "ybplug.trace"]
    assert len(lines) == 2
    assert all(r.levelno == logging.INFO for r in lines)
    assert "failing" in lines[0].getMessage() and "error=ValueError" in lines[0].getMessage()
    assert "echo" in lines[1].getMessage() and "ok" in lines[1].getMessage()
    assert all("on_event" in r.getMessage() and "elapsed=" in r.getMessage() for r in lines)
    assert ID_NUMBER not in caplog.text
    assert "bkee35" not in caplog.text


@pytest.mark.anyio
async def test_trace_is_off_by_default(
    pm: pluggy.PluginManager, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(pm, "p", on_event=recorder([], "p", is_async=True))
    monkeypatch.delenv("YBPLUG_TRACE", raising=False)
    caller = AsyncHookCaller(pm, timeout=5)
    assert not caller.trace
    monkeypatch.setenv("YBPLUG_TRACE", "0")
    assert not AsyncHookCaller(pm).trace
    assert AsyncHookCaller(pm, trace=True).trace
    with caplog.at_level(logging.INFO, logger="ybplug.trace"):
        await caller.call_each("on_event", event_id="e", record=None)
    assert not [r for r in caplog.records if r.name == "ybplug.trace"]


def test_outcome_repr_hides_values() -> None:
    outcome = ImplOutcome(plugin="p", value={"bkee35": ID_NUMBER}, elapsed=0.01)
    assert outcome.ok
    assert ID_NUMBER not in repr(outcome)
    failed = ImplOutcome(plugin="p", error=HookTimeout("p", "on_event", 1.0))
    assert not failed.ok and "HookTimeout" in repr(failed)


def test_timeout_must_be_positive(pm: pluggy.PluginManager) -> None:
    with pytest.raises(ValueError):
        AsyncHookCaller(pm, timeout=0)
