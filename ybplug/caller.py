"""The async hook caller: pluggy's order and argument passing, awaited, isolated and bounded.

pluggy calls hook implementations synchronously.  An ``async def`` implementation returns a
coroutine, which pluggy treats as a result: a ``firstresult`` hook would stop at the first async
implementation whatever it eventually returns, and nothing would ever await the others.  So the
host does not call ``pm.hook.<name>(...)``; it calls hooks through :class:`AsyncHookCaller`,
which walks ``hook.get_hookimpls()`` itself, the way pluggy's ``_multicall`` does:

* **Order** is pluggy's: ``reversed(hook.get_hookimpls())``, so ``tryfirst`` / ``trylast`` are
  honoured and, among equals, the plugin registered last runs first.
* **Arguments**: each implementation gets only the arguments it declares (``impl.argnames``,
  plus those of ``impl.kwargnames`` that the call provides), so a plugin written against an
  older hook signature keeps working when the host passes more.
* **Async and sync**: an ``async def`` implementation is awaited on the event loop.  A plain
  function runs in a worker thread because hospital code blocks (a database write, a file
  share); the threads are bounded by a :class:`anyio.CapacityLimiter` of the caller's own, so
  plugins cannot exhaust the thread pool the rest of the process uses.  They are daemon
  threads of the caller's own (:class:`ybplug.hookthreads.DaemonThreads`), not anyio's worker threads, which the
  interpreter joins at exit: a hung implementation must not keep ``ybplug run`` alive after
  it was told to stop.  A sync function that returns an awaitable has it awaited.
* **Timeout**: each implementation runs in a task of its own and the caller waits for it at
  most ``timeout`` seconds.  Then the implementation is cancelled through a cancel scope of its
  task (its shielded sections are honoured) and given :attr:`AsyncHookCaller.CANCEL_GRACE` to
  end; the outcome is a :class:`HookTimeout`.  A hung
  sync implementation's thread cannot be killed, so it is abandoned (it keeps running in the
  background and its limiter token is returned).  An async implementation that ignores the
  cancellation (``except BaseException: pass`` around an await, then awaits again) is
  abandoned too: its task is left behind, no longer cancelled, logged once as ignoring
  cancellation, and taken out of the event loop's task list so that the loop's shutdown does
  not wait for it either.
* **Isolation** (:meth:`AsyncHookCaller.call_each`): one plugin failing or hanging never stops
  the others; every implementation yields an :class:`ImplOutcome`.  Because the plugin runs
  in its own task, whatever it does with a cancellation cannot hold its caller: the caller's
  own cancellation ends the call after at most the grace, whatever the plugin does.
* **Cancellation** of the caller (an outer timeout, a cancelled task group, shutdown) is always
  re-raised, never reported as a plugin error: the implementation is cancelled too and given the
  grace to end (its cleanup runs before the host goes on closing), then the cancellation
  propagates.  Only :class:`Exception` from the plugin becomes its outcome.

Wrappers (``wrapper=True`` / ``hookwrapper=True``) need pluggy's synchronous generator protocol
and are not supported; :func:`check_no_wrappers` rejects them at registration time.

Personal data: hook arguments and results hold ID numbers and names, so nothing here ever logs
them.  Errors are logged on ``ybplug.hooks`` with the plugin, the hook and the exception; with
``YBPLUG_TRACE=1`` each call is traced on ``ybplug.trace`` (hook, plugin, elapsed, outcome).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
import traceback
from collections.abc import Collection, Mapping
from types import EllipsisType
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pluggy

__all__ = [
    "AsyncHookCaller",
    "HookError",
    "HookTimeout",
    "ImplOutcome",
    "PluginError",
    "check_no_wrappers",
]

from ybplug.errors import Error
from ybplug.fields import Message
from ybplug.hookthreads import DaemonThreads, keep_abandoned
from ybplug.privacy import scrub

log = logging.getLogger("ybplug.hooks")
trace_log = logging.getLogger("ybplug.trace")

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})


class PluginError(Error):
    """A plugin is not usable as written (for example it implements a hook as a wrapper)."""

    def __init__(self, message: str, *, plugin: str | None = None, hook: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.hook = hook


class HookError(Error):
    """An implementation of ``hook`` in ``plugin`` failed; the original error is ``__cause__``."""

    def __init__(self, message: str, *, plugin: str, hook: str) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.hook = hook


class HookTimeout(Error, TimeoutError):
    """An implementation did not finish within the caller's timeout."""

    def __init__(
        self, plugin: str, hook: str, timeout: float, *, abandoned_thread: bool = False, abandoned_task: bool = False
    ) -> None:
        message = f"plugin {plugin!r} did not finish hook {hook!r} within {timeout:g} s"
        if abandoned_thread:
            message += " (its worker thread was abandoned and may still be running)"
        elif abandoned_task:
            message += " and ignored cancellation (it was abandoned and may still be running)"
        super().__init__(message)
        self.plugin = plugin
        self.hook = hook
        self.timeout = timeout
        self.abandoned_thread = abandoned_thread
        #: The async implementation caught the cancellation and went on: its task was left behind.
        self.abandoned_task = abandoned_task


class ImplOutcome(msgspec.Struct, frozen=True):
    """What one plugin's implementation of a hook did."""

    plugin: str
    """The plugin's registered name (``pm.get_name(plugin)``)."""
    value: Any = None
    """The awaited return value (``None`` when it failed)."""
    error: BaseException | None = None
    """The exception it raised, or :class:`HookTimeout`."""
    elapsed: float = 0.0
    """Seconds it took (up to the timeout when it hung)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        # The value may hold personal data: show its type only.
        shown = "error=" + type(self.error).__name__ if self.error is not None else (
            "value=" + type(self.value).__name__
        )
        return f"ImplOutcome(plugin={self.plugin!r}, {shown}, elapsed={self.elapsed:.3f})"


def secrets_of(arguments: Mapping[str, Any]) -> list[str]:
    """The personal values in a hook call's arguments (its messages' personal fields)."""
    return [secret for value in arguments.values() if isinstance(value, Message) for secret in value.secrets()]


def _is_wrapper(impl: pluggy.HookImpl) -> bool:
    return bool(impl.wrapper or impl.hookwrapper)


def check_no_wrappers(pm: pluggy.PluginManager) -> None:
    """Raise :class:`PluginError` if any registered plugin implements a hook as a wrapper.

    Call it after registering plugins: the async caller cannot drive pluggy's generator-based
    wrappers (they would see coroutines, not results), so they are refused up front, naming the
    plugin and the hook.
    """
    for plugin in pm.get_plugins():
        for caller in pm.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and _is_wrapper(impl):
                    name = pm.get_name(plugin) or impl.plugin_name
                    kind = "wrapper=True" if impl.wrapper else "hookwrapper=True"
                    raise PluginError(
                        f"plugin {name!r} implements hook {caller.name!r} with {kind}; "
                        "ybplug calls hooks asynchronously and does not support wrappers: "
                        "implement it as a plain (async) function",
                        plugin=name,
                        hook=caller.name,
                    )


def _env_trace() -> bool:
    return os.environ.get("YBPLUG_TRACE", "").strip().lower() in _TRUE


class AsyncHookCaller:
    """Calls the implementations of a pluggy hook, awaiting each, in pluggy's order.

    :param pm: the plugin manager holding the hook specifications and the plugins.
    :param timeout: seconds each implementation may take.
    :param thread_limiter: bounds how many sync implementations run in threads at once; by
        default a ``CapacityLimiter(8)`` of this caller's own (not anyio's default limiter, which
        the rest of the process shares).
    :param trace: log each implementation call on ``ybplug.trace``; by default on when the
        environment variable ``YBPLUG_TRACE`` is set to a true value (``1``, ``true``, ``yes``).
    """

    DEFAULT_THREADS = 8

    #: Seconds an implementation gets to end once it is cancelled (it timed out, or its caller was
    #: cancelled) before it is abandoned as one that ignores cancellation.  Enough for an honest
    #: plugin's cleanup (a rollback, a closed connection); short, because the host's exit waits
    #: for it.
    CANCEL_GRACE = 0.5

    def __init__(
        self,
        pm: pluggy.PluginManager,
        *,
        timeout: float = 30.0,
        thread_limiter: anyio.CapacityLimiter | None = None,
        trace: bool | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.pm = pm
        self.timeout = timeout
        self._thread_limiter = thread_limiter
        self._threads = DaemonThreads()
        # Per hook: its implementations when last looked at, and their names in call order
        # (pm.get_name walks every plugin: too slow for each of thousands of calls a second).
        self._cache: dict[str, tuple[list[pluggy.HookImpl], list[tuple[str, pluggy.HookImpl]]]] = {}
        self.trace = _env_trace() if trace is None else trace
        #: Tasks of async implementations that ignored cancellation, until they end (if ever):
        #: the loop no longer knows them, and a task nobody references may be collected mid-await.
        self._abandoned: set[asyncio.Task[Any]] = set()

    @property
    def abandoned(self) -> int:
        """How many async implementations ignored cancellation and are still running, abandoned."""
        return len(self._abandoned)

    @property
    def thread_limiter(self) -> anyio.CapacityLimiter:
        """The limiter of sync implementations' threads (created on first use if not given)."""
        if self._thread_limiter is None:
            # Created lazily: older anyio versions need a running event loop for this.
            self._thread_limiter = anyio.CapacityLimiter(self.DEFAULT_THREADS)
        return self._thread_limiter

    # -- introspection ------------------------------------------------------------------------

    def _hook(self, hook: str) -> pluggy.HookCaller:
        caller = getattr(self.pm.hook, hook, None)
        if not isinstance(caller, pluggy.HookCaller):
            raise LookupError(
                f"no hook named {hook!r} in plugin manager {self.pm.project_name!r} "
                "(is its specification added?)"
            )
        return caller

    def _name(self, impl: pluggy.HookImpl) -> str:
        return self.pm.get_name(impl.plugin) or impl.plugin_name

    def _impls(self, hook: str, only: Collection[str] | None = None) -> list[tuple[str, pluggy.HookImpl]]:
        current = self._hook(hook).get_hookimpls()
        cached = self._cache.get(hook)
        if cached is None or cached[0] != current:  # registered or unregistered since: look again
            cached = current, [(self._name(impl), impl) for impl in reversed(current)]
            self._cache[hook] = cached
        impls = cached[1]
        if only is not None:
            wanted = {only} if isinstance(only, str) else set(only)
            impls = [(name, impl) for name, impl in impls if name in wanted]
        return impls

    def implementations(self, hook: str) -> list[str]:
        """The names of the plugins implementing ``hook``, in the order they are called."""
        return [name for name, _ in self._impls(hook)]

    # -- calling ------------------------------------------------------------------------------

    def _kwargs(self, hook: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        spec = self._hook(hook).spec
        defaults: Mapping[str, Any] | None = getattr(spec, "kwargdefaults", None) if spec else None
        return {**defaults, **kwargs} if defaults else dict(kwargs)

    async def _invoke(self, impl: pluggy.HookImpl, kwargs: Mapping[str, Any]) -> Any:
        """Call one implementation with the arguments it declares; await what needs awaiting."""
        try:
            args = [kwargs[name] for name in impl.argnames]
        except KeyError as exc:
            raise pluggy.HookCallError(f"hook call must provide argument {exc.args[0]!r}") from None
        extra = {name: kwargs[name] for name in impl.kwargnames if name in kwargs}
        function = impl.function
        if inspect.iscoroutinefunction(function):
            result = await function(*args, **extra)
        else:

            def run() -> Any:
                return function(*args, **extra)

            async with self.thread_limiter:
                result = await self._threads.run(run)
        while inspect.isawaitable(result):
            result = await result
        return result

    async def _bounded(
        self, hook: str, name: str, impl: pluggy.HookImpl, kwargs: Mapping[str, Any], timeout: float | None
    ) -> Any:
        """Run one implementation in a task of its own and wait for it at most ``timeout``.

        Its own task, so that what the plugin does with a cancellation cannot hold the caller: the
        caller only waits on an event, and that wait always ends when the caller is cancelled or
        the timeout passes.  The plugin is then cancelled the anyio way, through a cancel scope
        of its task (``stop``), so that its shielded sections (the built-in plugins' journal
        writes) are honoured as they were when it ran in the caller's own scope; it is given the
        grace, and abandoned if it ignores the cancellation (:meth:`_stop`).
        """
        stop, keep_out = anyio.CancelScope(), anyio.CancelScope()
        task = asyncio.get_running_loop().create_task(
            self._run_in(stop, keep_out, impl, kwargs), name=f"ybplug hook {hook} {name}"
        )
        ended = anyio.Event()
        task.add_done_callback(lambda _: ended.set())
        try:
            with anyio.move_on_after(timeout):
                await ended.wait()
        except BaseException:  # our caller is cancelled: cancel the plugin too, then go on cancelling
            await self._stop(task, ended, stop, keep_out, hook, name, log_abandoned=True)
            raise
        if not task.done():  # our own deadline
            ended_in_grace = await self._stop(task, ended, stop, keep_out, hook, name, log_abandoned=False)
            sync = not inspect.iscoroutinefunction(impl.function)
            raise HookTimeout(
                name, hook, timeout or 0.0, abandoned_thread=sync, abandoned_task=not sync and not ended_in_grace
            )
        if task.cancelled():  # not by us: a CancelledError of the plugin's own must not cancel our caller
            raise HookError(
                f"plugin {name!r} ended hook {hook!r} with a cancellation of its own (not ybplug's)", plugin=name, hook=hook
            )
        return task.result()

    async def _run_in(
        self, stop: anyio.CancelScope, keep_out: anyio.CancelScope, impl: pluggy.HookImpl, kwargs: Mapping[str, Any]
    ) -> Any:
        """The implementation's task: ``stop`` is what the caller cancels; ``keep_out``, inside
        it, is what the caller shields once it abandons the task.

        A cancelled anyio scope cancels its task again on every turn of the event loop for as long
        as the task stays in it and waits: a plugin that swallows each cancellation would make it
        spin a core for ever.  Shielding the inner scope stops that (the outer one then has no
        task of its own left to cancel), and the abandoned plugin just waits, harmlessly.
        """
        with stop, keep_out:
            return await self._invoke(impl, kwargs)
        return None  # the caller's cancellation, caught by ``stop``: the caller reports it

    async def _stop(
        self,
        task: asyncio.Task[Any],
        ended: anyio.Event,
        stop: anyio.CancelScope,
        keep_out: anyio.CancelScope,
        hook: str,
        name: str,
        *,
        log_abandoned: bool,
    ) -> bool:
        """Cancel an implementation and wait :attr:`CANCEL_GRACE` for it to end, shielded (our
        caller may be cancelled already); abandon it if it does not.  Returns whether it ended.

        ``log_abandoned``: log the abandonment here (when our caller was cancelled; a timeout is
        reported with its :class:`HookTimeout`, which says so).
        """
        stop.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.CANCEL_GRACE):
            await ended.wait()
        if task.done():
            if not task.cancelled():
                task.exception()  # an error in its cleanup: the outcome is the timeout or the cancellation
            return True
        keep_out.shield = True  # no more cancellations for it: see _run_in
        self._abandon(task, hook, name)
        if log_abandoned:
            log.error(
                "hook %s: plugin %r ignored cancellation; its call was abandoned and may still be running", hook, name
            )
        return False

    def _abandon(self, task: asyncio.Task[Any], hook: str, name: str) -> None:
        """Leave a task that ignores cancellation behind, and let the process exit without it.

        ``asyncio.run`` and ``anyio.run`` cancel every task the loop knows when they finish and
        wait for all of them: a plugin that catches that cancellation too would keep ``ybplug run``
        alive for ever after it was told to stop.  So the task is taken off the loop's list of
        tasks (``_unregister_task``, which asyncio provides for task implementations of other
        libraries) and kept until it ends, if it ever does: here, for :attr:`abandoned`, and by
        :func:`_keep`, for as long as the process lives.
        """
        asyncio.tasks._unregister_task(task)
        self._abandoned.add(task)
        keep_abandoned(task)
        abandoned_at = time.perf_counter()

        def finally_ended(task: asyncio.Task[Any]) -> None:
            self._abandoned.discard(task)
            keep_abandoned(task, release=True)
            if task.cancelled():
                how = "cancelled"
            else:
                error = task.exception()  # retrieved: its text may hold personal data, its type does not
                how = "ok" if error is None else type(error).__name__
            log.warning(
                "hook %s: the abandoned call of plugin %r ended %.1f s after it was abandoned (%s)",
                hook, name, time.perf_counter() - abandoned_at, how,
            )

        task.add_done_callback(finally_ended)

    async def _call_one(
        self,
        hook: str,
        name: str,
        impl: pluggy.HookImpl,
        kwargs: Mapping[str, Any],
        *,
        timeout: float | None,
        log_errors: bool = True,
    ) -> ImplOutcome:
        """Run one implementation, isolated: its errors and its timeout become the outcome.

        Cancellation from outside is not an ``Exception`` and passes straight through.
        ``log_errors`` is off where the error is raised to the caller anyway (``call_first``).
        """
        start = time.perf_counter()
        error: BaseException | None = None
        value: Any = None
        if _is_wrapper(impl):
            error = PluginError(
                f"plugin {name!r} implements hook {hook!r} as a wrapper, which ybplug does not support",
                plugin=name,
                hook=hook,
            )
        else:
            try:
                value = await self._bounded(hook, name, impl, kwargs, timeout)
            except Exception as exc:  # the plugin's error or our HookTimeout; cancellation passes
                error = exc
                value = None
        elapsed = time.perf_counter() - start
        if error is not None and log_errors:
            if isinstance(error, HookTimeout):
                log.error("hook %s: %s", hook, error)
            else:
                # Scrubbed of the call's own personal values (a mother's name, her ID number) and
                # of anything shaped like an ID or phone number: a plugin's error text may quote them.
                secrets = secrets_of(kwargs)
                log.error(
                    "hook %s: plugin %r failed: %s: %s", hook, name, type(error).__name__, scrub(str(error), secrets)
                )
                if not isinstance(error, PluginError) and log.isEnabledFor(logging.DEBUG):
                    log.debug("%s", scrub("".join(traceback.format_exception(error)), secrets))
        if self.trace:
            trace_log.info(
                "hook=%s plugin=%s elapsed=%.3fs %s",
                hook, name, elapsed, "ok" if error is None else f"error={type(error).__name__}",
            )
        return ImplOutcome(plugin=name, value=value, error=error, elapsed=elapsed)

    async def call_each(
        self,
        hook: str,
        /,
        *,
        only: Collection[str] | None = None,
        timeout: float | None | EllipsisType = ...,
        log_errors: bool = True,
        **kwargs: Any,
    ) -> list[ImplOutcome]:
        """Call every implementation of ``hook`` (or only those of the plugins named in ``only``).

        Implementations run one after another in pluggy's order, each isolated and bounded by the
        timeout: one that fails or hangs never stops the others.  Returns one
        :class:`ImplOutcome` per implementation called, in call order.  Names in ``only`` that
        implement nothing are ignored (compare the outcomes' plugins to notice them).
        Cancellation of the caller propagates, leaving the remaining implementations uncalled.
        ``timeout`` overrides the caller's (None: unbounded, for the host's own long jobs);
        ``log_errors`` off leaves reporting to a caller that raises the errors itself.
        """
        call_kwargs = self._kwargs(hook, kwargs)
        limit = self.timeout if timeout is ... else timeout
        outcomes: list[ImplOutcome] = []
        for name, impl in self._impls(hook, only):
            # A plugin may swallow our caller's cancellation; make sure it still ends the call.
            await anyio.lowlevel.checkpoint_if_cancelled()
            outcomes.append(
                await self._call_one(hook, name, impl, call_kwargs, timeout=limit, log_errors=log_errors)
            )
        return outcomes

    async def call_first(self, hook: str, /, *, timeout: float | None | EllipsisType = ..., **kwargs: Any) -> Any:
        """``firstresult`` semantics, after the await: the first non-``None`` awaited result.

        Implementations are called in pluggy's order until one returns (after awaiting) something
        other than ``None``; the rest are not called.  Returns ``None`` when none does.

        An implementation that raises or times out stops the call with :class:`HookError`
        (naming the plugin; the original error is ``__cause__``), as pluggy itself propagates
        errors.  Skipping it instead would silently let a lower-priority plugin's answer win
        (a hospital's override fails and the default quietly takes over), which is worse for a
        first-result hook than a clear failure the host can journal and retry.
        """
        call_kwargs = self._kwargs(hook, kwargs)
        limit = self.timeout if timeout is ... else timeout
        for name, impl in self._impls(hook):
            await anyio.lowlevel.checkpoint_if_cancelled()
            outcome = await self._call_one(hook, name, impl, call_kwargs, timeout=limit, log_errors=False)
            if outcome.error is not None:
                raise HookError(
                    f"plugin {name!r} failed in hook {hook!r}: {type(outcome.error).__name__}: {outcome.error}",
                    plugin=name,
                    hook=hook,
                ) from outcome.error
            if outcome.value is not None:
                return outcome.value
        return None
