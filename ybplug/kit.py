"""What a hospital's developer or operator asks before trusting a setup: ``ybplug plugins`` (what
is loaded, from where, implementing what, with what waiting for it) and ``ybplug check`` (does
this config work here: the centre, the voucher library, the plugins), one line per answer.

Both read, neither changes the centre: ``check`` signs in and loads the voucher library but never
calls EcTrans (a decode may cost the hospital) nor sends a business transaction.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pluggy

from ybplug.config import Config, ConfigError
from ybplug.errors import Error
from ybplug.hooks import PROJECT, specs
from ybplug.loading import BUILTIN_PLUGINS, load_plugins, origins

__all__ = ["plugins_report", "print_plugins", "run_checks"]


def _hooks_of(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])


def _in_order(pm: pluggy.PluginManager) -> list[tuple[str, object]]:
    """The named plugins of ``pm``, the same order every run (pluggy keeps them in a set): the
    built-ins in their load order, then the others by name."""
    builtin = [name for name, _ in BUILTIN_PLUGINS]
    named = [(name, plugin) for plugin in pm.get_plugins() if (name := pm.get_name(plugin))]
    return sorted(named, key=lambda item: (0, builtin.index(item[0]), "") if item[0] in builtin else (1, 0, item[0]))


def plugins_report(pm: pluggy.PluginManager, status: dict[str, Any]) -> list[dict[str, Any]]:
    """Every plugin loaded in ``pm`` (from where, which hooks) and every durable subscriber in the
    journal's ``status`` (hooks kept for it, deliveries pending and parked), loaded or not."""
    found = origins(pm)
    subscribers: dict[str, dict[str, Any]] = status.get("subscribers", {})
    report: list[dict[str, Any]] = []
    for name, plugin in _in_order(pm):
        origin = found.get(name)
        subscribed = subscribers.get(name)
        report.append({
            "name": name,
            "loaded": True,
            "origin": origin.kind if origin else "unknown",
            "source": origin.source if origin else None,
            "distribution": origin.distribution if origin else None,
            "version": origin.version if origin else None,
            "hooks": _hooks_of(pm, plugin),
            "subscribed": subscribed is not None,
            "pending": (subscribed or {}).get("pending", 0),
            "parked": (subscribed or {}).get("parked", 0),
        })
    loaded = {entry["name"] for entry in report}
    for name, subscribed in sorted(subscribers.items()):
        if name not in loaded:  # a durable subscriber not loaded here: its events wait for it
            report.append({
                "name": name, "loaded": False, "origin": None, "source": None, "distribution": None, "version": None,
                "hooks": list(subscribed.get("hooks", [])), "subscribed": True,
                "pending": subscribed.get("pending", 0), "parked": subscribed.get("parked", 0),
            })
    return report


def print_plugins(report: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return
    for entry in report:
        if entry["loaded"]:
            where = entry["origin"]
            if entry["distribution"]:
                where += f" {entry['distribution']} {entry['version']} ({entry['source']})"
            elif entry["source"]:
                where += f" {entry['source']}"
        else:
            where = "NOT LOADED here (a durable subscriber: its events wait; `ybplug plugins forget` drops it)"
        print(f"{entry['name']}: {where}")
        print(f"    hooks: {', '.join(entry['hooks']) or '(none)'}")
        if entry["subscribed"]:
            print(f"    durable subscription: {entry['pending']} pending, {entry['parked']} parked")


Check = tuple[str, Callable[[], Awaitable[str]]]


async def run_checks(path: str | Path) -> int:
    """``ybplug check -c FILE``: one line per check, ``ok`` or ``FAIL``; 1 when any failed, 2
    when the config itself is missing or invalid (as every command exits for a config error)."""
    from ybplug.cli import shown

    failures = 0

    def line(ok: bool, what: str, detail: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'}  {what:<9} {shown(detail)}", flush=True)

    try:
        config = Config.load(path)
    except ConfigError as exc:
        line(False, "config", str(exc))
        return 2
    line(True, "config", f"{path}: valid")
    for what, check in _checks(config):
        try:
            line(True, what, await check())
        except Error as exc:
            line(False, what, str(exc))
        except (OSError, ValueError) as exc:
            line(False, what, f"{type(exc).__name__}: {exc}")
    return 1 if failures else 0


def _checks(config: Config) -> list[Check]:
    async def centre() -> str:
        from ybplug.wire import HttpTransport

        wire = config.wire_config()
        transport = HttpTransport(wire)
        try:
            await transport.sign_in()
        finally:
            await transport.aclose()
        return f"signed in to {wire.url} as {wire.usr or '(no usr)'}"

    async def voucher() -> str:
        if config.voucher is None:
            return "no [voucher] section: QR decoding is off"
        from ybplug.voucher.front import Voucher

        async with Voucher(config.voucher, dotnet=config.dotnet) as loaded:  # loads it; calls nothing
            name = loaded.backend.name
        return f"library {config.voucher.library} loads ({name} backend; EcTrans not called)"

    async def plugins() -> str:
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(specs)
        load_plugins(pm, config, (), entry_points=True)  # check_pending() included
        names = [name for name, _ in _in_order(pm)]
        return f"{len(names)} loaded, every hook known: {', '.join(names)}"

    async def journal() -> str:
        import anyio

        return await anyio.to_thread.run_sync(_journal_opens, config)

    return [("journal", journal), ("centre", centre), ("voucher", voucher), ("plugins", plugins)]


def _journal_opens(config: Config) -> str:
    """Open the configured journal as ``ybplug status`` does (nothing created where none is yet)
    and close it: a journal the worker could not open is a FAIL here, not at the worker's start."""
    from ybplug.journal import Journal
    from ybplug.journal.identity import marker_path

    if not config.journal_on_server:
        path = Path(config.journal)
        if not path.exists() and not marker_path(path).exists():
            return f"none yet at {config.journal_shown}: `ybplug init` or the worker creates it"
    try:
        Journal(config.journal).open().close()
    except Error as exc:  # the journal's own one line (it names the journal and what to check)
        raise JournalUnusable(str(exc)) from None
    except Exception as exc:  # a driver's own error too (psycopg's): one line, no traceback
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise JournalUnusable(f"{config.journal_shown}: cannot open it ({reason})") from None
    return f"{config.journal_shown} opens"


class JournalUnusable(Error):
    """``ybplug check``: the configured journal cannot be opened."""
