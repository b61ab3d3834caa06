"""Loading plugins in tox's order: built-ins, then the ``ybplug`` entry points, then the modules
named in the config, then .NET plugins and the host's own, then ``check_pending()`` so a
misspelled hook fails at start-up instead of being silently ignored.

``YBPLUG_PLUGINS=name,name`` limits which plugins load (a name no plugin answers to is an
error); each plugin is registered under a stable name, which the journal's durable
subscriptions and deliveries are keyed by.  Where each came from is recorded as it loads
(:func:`origins`), for ``ybplug plugins``.
"""

from __future__ import annotations

import functools
import importlib
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pluggy

from ybplug.caller import PluginError, check_no_wrappers
from ybplug.config import Config
from ybplug.hooks import PROJECT
from ybplug.privacy import scrub

BUILTIN_PLUGINS = (
    ("ybplug.transport", "ybplug.plugins.transport"),
    ("ybplug.collection", "ybplug.plugins.collection"),
    ("ybplug.void", "ybplug.plugins.void"),
    ("ybplug.realname", "ybplug.plugins.realname"),
    ("ybplug.voucher", "ybplug.plugins.voucher"),
    ("ybplug.alerts", "ybplug.plugins.alerts"),
    ("ybplug.webhook", "ybplug.plugins.webhook"),
)


@dataclass(frozen=True)
class Origin:
    """Where a loaded plugin came from: ``kind`` is ``built-in``, ``entry point``, ``config``,
    ``.NET`` or ``host`` (an object the HIS passed to :class:`~ybplug.host.Host`)."""

    kind: str
    source: str
    distribution: str | None = None
    version: str | None = None


# Filled by load_plugins, per plugin manager (so two hosts in one process keep their own).
_ORIGINS: weakref.WeakKeyDictionary[pluggy.PluginManager, dict[str, Origin]] = weakref.WeakKeyDictionary()


def origins(pm: pluggy.PluginManager) -> dict[str, Origin]:
    """Where each plugin :func:`load_plugins` registered in ``pm`` came from, by stable name."""
    return dict(_ORIGINS.get(pm, {}))


def load_plugins(pm: pluggy.PluginManager, config: Config, extra: Sequence[object], *, entry_points: bool) -> None:
    """Register every plugin this host runs with, in order; raise :class:`PluginError` for any
    that cannot be used as written."""
    allowed = _allowed_plugins()
    offered: list[str] = []
    found = _ORIGINS.setdefault(pm, {})
    for name, module in BUILTIN_PLUGINS:
        offered.append(name)
        if allowed is None or name in allowed:
            _register(pm, importlib.import_module(module).plugin(), name)
            found[name] = Origin("built-in", module)
    if entry_points:
        from importlib.metadata import entry_points as installed

        for entry in installed(group=PROJECT):
            offered.append(entry.name)
            if allowed is not None and entry.name not in allowed:
                continue
            loaded = _imported(f"entry point {entry.name} = {entry.value}", entry.load)
            _register(pm, loaded, entry.name)
            dist = entry.dist
            found[entry.name] = Origin(
                "entry point", entry.value, dist.name if dist else None, dist.version if dist else None
            )
    for module in config.plugins:
        offered.append(module)
        if allowed is not None and module not in allowed:
            continue
        imported = _imported(f"plugin module {module!r} from the config", functools.partial(importlib.import_module, module))
        _register(pm, imported, module)
        if not pm.get_hookcallers(imported):  # `plugins = ["os"]`, or a module whose hooks lack @hookimpl
            raise PluginError(
                f"plugin module {module!r} from the config implements no ybplug hook: is it the module you"
                " meant, and are its functions marked with @ybplug.hookimpl?"
            )
        found[module] = Origin("config", module)
    if config.dotnet is not None and config.dotnet.plugins:
        from ybplug.dotnet import plugins_from_config

        offered.extend(e.plugin_name for e in config.dotnet.plugins)
        entries = [e for e in config.dotnet.plugins if allowed is None or e.plugin_name in allowed]
        assemblies = {e.plugin_name: f"{e.assembly} ({e.type})" for e in entries}
        for name, plugin in plugins_from_config(entries, runtime=config.dotnet):
            _register(pm, plugin, name)
            found[name] = Origin(".NET", assemblies.get(name, ""))
    for plugin in extra:
        offered.append(_stable_name(plugin))
        _register(pm, plugin, _stable_name(plugin))
        found[_stable_name(plugin)] = Origin("host", _stable_name(plugin))
    unknown = sorted((allowed or set()) - set(offered))
    if unknown:
        raise PluginError(
            f"YBPLUG_PLUGINS names {', '.join(unknown)}, which no plugin is called here"
            f" (plugins: {', '.join(offered)})"
        )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(scrub(f"plugin {exc.plugin!r}: {exc}")) from None
    check_no_wrappers(pm)


def _imported(what: str, load: Callable[[], object]) -> object:
    """A plugin, imported; whatever its import raises is a :class:`PluginError` naming it.

    Not only ImportError: a SyntaxError, a module that raises, one that calls ``sys.exit()``
    (which would end ybplug silently with its status).  Ctrl+C stays Ctrl+C.  The message is
    scrubbed: a plugin's error may carry the personal data it was working on."""
    try:
        return load()
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:
        raise PluginError(scrub(f"{what} cannot be imported: it called sys.exit({exc.code!r}) on import")) from None
    except BaseException as exc:
        raise PluginError(scrub(f"{what} cannot be imported: {type(exc).__name__}: {exc}")) from None


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None) -> None:
    try:
        pm.register(plugin, name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise PluginError(scrub(f"plugin {name or plugin!r}: {exc}")) from None


def _stable_name(plugin: object) -> str:
    """Deliveries are journaled per plugin name, so the name must survive a restart: use the
    module of a module plugin, ``module.Class`` of an instance (``ybplug_name`` overrides)."""
    explicit = getattr(plugin, "ybplug_name", None)
    if isinstance(explicit, str):
        return explicit
    if isinstance(plugin, type) or hasattr(plugin, "__file__"):
        return str(getattr(plugin, "__name__", plugin))
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}"


def _allowed_plugins() -> set[str] | None:
    value = os.environ.get("YBPLUG_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}



__all__ = ["BUILTIN_PLUGINS", "Origin", "load_plugins", "origins"]
