"""``ybplug new-plugin NAME``: a ready plugin distribution, as datasette's plugin template makes.

It writes ``NAME/pyproject.toml`` (the ``ybplug`` entry point, a ``test`` extra pulling in
``ybplug[testing]``), ``NAME/<package>/__init__.py`` with every event hook stubbed, and
``NAME/tests/test_plugin.py`` using :mod:`ybplug.testing`.  The stubs are generated from the hook
specifications themselves (signature and documentation), so a new plugin always matches the hooks
of the ybplug that wrote it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
from pathlib import Path

from ybplug import events
from ybplug.errors import UsageError
from ybplug.hooks import specs

__all__ = ["ScaffoldError", "event_hook_stubs", "new_plugin"]

#: Every hook a hospital's plugin is meant to implement: the journaled events, then the live one.
PLUGIN_HOOKS = (*events.EVENT_HOOKS, "qr_decoded")

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
_MESSAGE_TYPES = ("Birth", "CollectionResult", "QrIdentity", "QrRequest", "RealNameRecord")


class ScaffoldError(UsageError):
    """The plugin cannot be written as asked (a bad name, a folder already in use)."""


def event_hook_stubs() -> str:
    """One documented ``@hookimpl`` stub per hook in :data:`PLUGIN_HOOKS`, from its spec."""
    stubs = []
    for hook in PLUGIN_HOOKS:
        spec = getattr(specs, hook)
        doc = inspect.getdoc(spec) or ""
        body = "\n".join(f"    {line}".rstrip() for line in doc.splitlines())
        stubs.append(
            f"@hookimpl\ndef {hook}({_parameters(spec)}) -> None:\n"
            f'    """{body.lstrip()}\n    """\n'
            f"    _remember({hook!r}, event_id)\n"
        )
    return "\n\n".join(stubs)


def _parameters(spec: object) -> str:
    """The spec's parameters as written (its annotations are strings: ``from __future__``)."""
    parameters = inspect.signature(spec).parameters.values()  # type: ignore[arg-type]
    return ", ".join(f"{p.name}: {p.annotation}" if isinstance(p.annotation, str) else p.name for p in parameters)


def new_plugin(name: str, target: Path | None = None) -> Path:
    """Write the distribution for plugin ``name`` into ``target`` (default ``./name``); its path."""
    if not _NAME.fullmatch(name):
        raise ScaffoldError(
            f"plugin name {name[:70]!r}: use letters, digits, - and _, starting with a letter (e.g. st-mary-his)"
        )
    package = name.replace("-", "_").lower()
    if shadowed := _shadowed(package):
        raise ScaffoldError(
            f"plugin name {name!r}: its package {package!r} {shadowed}: installing the plugin would hide or"
            " replace it; choose another name (e.g. st-mary-his)"
        )
    target = target or Path(name)
    if target.exists() and any(target.iterdir()):
        raise ScaffoldError(f"{target} already exists and is not empty: choose another --dir")
    (target / package).mkdir(parents=True, exist_ok=True)
    (target / "tests").mkdir(exist_ok=True)
    (target / "pyproject.toml").write_text(_PYPROJECT.format(name=name, package=package), encoding="utf-8")
    (target / "README.md").write_text(_README.format(name=name, package=package), encoding="utf-8")
    stubs = event_hook_stubs()
    used = sorted(t for t in _MESSAGE_TYPES if re.search(rf"\b{t}\b", stubs))
    module = _MODULE.format(name=name, imports=", ".join(used), stubs=stubs)
    (target / package / "__init__.py").write_text(module, encoding="utf-8")
    (target / "tests" / "test_plugin.py").write_text(_TEST.format(package=package), encoding="utf-8")
    return target


def _shadowed(package: str) -> str | None:
    """What a top-level package of this name would shadow, if anything: ybplug itself (the
    plugin's own ``pip install -e`` would uninstall it), Python's standard library, or a module
    this interpreter already imports (pytest, pluggy, the hospital's own...)."""
    if package == "ybplug":
        return "is ybplug itself"
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution(package)  # pip would replace that distribution (pyyaml's import name is yaml)
        return "names a distribution already installed here"
    if package in sys.stdlib_module_names:
        return "is a module of Python's standard library"
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):  # a broken installed package still holds the name
        return "is already installed here"
    if found is not None:
        return f"is already importable here (from {found.origin or 'a namespace package'})"
    return None


_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
description = "A ybplug plugin: the hospital's side of the newborn registrations"
requires-python = ">=3.11"
dependencies = ["ybplug"]

[project.optional-dependencies]
test = ["ybplug[testing]"]

# This is all it takes for ybplug to find the plugin: an entry point in the `ybplug` group.
[project.entry-points.ybplug]
{package} = "{package}"

[tool.setuptools]
packages = ["{package}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

_README = """\
# {name}

A [ybplug](https://pypi.org/project/ybplug/) plugin.

    pip install -e '.[test]'      # the plugin, and ybplug's testing kit
    pytest                        # its tests, against ybplug's sandbox centre
    ybplug plugins                # lists {package}, found through its entry point
"""

_MODULE = '''\
"""{name}: a ybplug plugin, found through the ``ybplug`` entry point in pyproject.toml.

Each hook below is an event ybplug journals before delivering it: every event arrives at least
once, with the same ``event_id`` on every retry, so write to the hospital's database keyed by
``event_id`` (``INSERT ... ON CONFLICT(event_id) DO NOTHING``) and a redelivery changes nothing.
Raising means "not done, try again later".  Plain functions run on a worker thread (blocking
database calls are fine); ``async def`` hooks run on the event loop.  Delete the hooks you do
not need: ybplug keeps events only for the hooks a plugin implements.
"""

from __future__ import annotations

import threading

from ybplug.hooks import hookimpl
from ybplug.messages import {imports}

#: What this plugin was told, one entry per ``event_id`` (event id -> hook).  Replace it with
#: writes to the hospital's own database, keyed by ``event_id`` in the same way.
RECEIVED: dict[str, str] = {{}}
_lock = threading.Lock()


def _remember(hook: str, event_id: str) -> None:
    with _lock:
        RECEIVED.setdefault(event_id, hook)


{stubs}'''

_TEST = '''\
"""Tests of the plugin, with ybplug's testing kit (``pip install 'ybplug[testing]'``): a sandbox
centre on loopback, a host with this plugin (found through its entry point) and a temporary
journal, valid births; no other setup."""

from __future__ import annotations

import pytest

import {package}

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def nothing_received_yet() -> None:
    {package}.RECEIVED.clear()


async def test_every_upload_answer_reaches_the_plugin(ybplug_host, ybplug_birth, ybplug_plugins):
    assert {package} in ybplug_plugins  # found through its entry point
    births = [*ybplug_birth.twins("local"), ybplug_birth("not_insured")]
    for birth in births:
        await ybplug_host.record_birth(birth)
    summary = await ybplug_host.sync("upload")  # upload to the sandbox, then deliver the hooks
    assert summary["uploaded"] == len(births)
    hooks = sorted({package}.RECEIVED.values())
    assert hooks.count("birth_recorded") == len(births)
    assert hooks.count("collection_result") == len(births)


async def test_a_redelivered_event_changes_nothing(ybplug_host, ybplug_birth, ybplug_redeliver):
    await ybplug_host.record_birth(ybplug_birth("nonlocal"))
    await ybplug_host.sync("upload")
    before = dict({package}.RECEIVED)
    assert await ybplug_redeliver() == len(before)  # every event once more, same event_id
    assert {package}.RECEIVED == before


async def test_a_decoded_qr_code_reaches_the_plugin(ybplug_host):
    identity = await ybplug_host.decode_qr(business_type="101", idcode="QR-TEST-1")  # the fake EcTrans
    assert identity.name and "qr_decoded" in {package}.RECEIVED.values()
'''
