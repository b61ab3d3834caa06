"""Docs that cannot drift: the README's hooks table against the hook specifications (names,
parameters in order, first-result), its config reference against the config structs (every key,
every default), and its "Testing your plugin" example run as a hospital would run it."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

from ybplug.alerts.config import AlertsSection
from ybplug.config import Config, WireConfig
from ybplug.dotnet.config import DotnetPluginEntry, DotnetSection
from ybplug.hooks import specs
from ybplug.voucher.config import VoucherConfig

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The README's text under heading ``title``, up to the next heading of its level or higher
    (a ``#`` comment inside a code block is not a heading)."""
    lines = README.splitlines(keepends=True)
    found: list[str] = []
    level = 0
    fenced = False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"(#+) (.*)", line)
        if level and heading and len(heading.group(1)) <= level:
            break
        if level:
            found.append(line)
        elif heading and heading.group(2).strip() == title:
            level = len(heading.group(1))
    assert level, f"README has no section {title!r}"
    return "".join(found)


def table_rows(text: str) -> list[list[str]]:
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    return rows[1:]  # without the header


def spec_hooks() -> dict[str, Any]:
    return {name: f for name, f in vars(specs).items() if inspect.isfunction(f) and hasattr(f, "ybplug_spec")}


def test_the_hooks_table_matches_the_hook_specs_by_signature() -> None:
    documented: dict[str, tuple[list[str], str]] = {}
    for cell, _when, first in table_rows(section("Hooks")):
        for call in re.findall(r"`(\w+)\(([^)]*)\)`", cell):
            documented[call[0]] = ([p.strip() for p in call[1].split(",") if p.strip()], first)
    hooks = spec_hooks()
    assert sorted(documented) == sorted(hooks)
    for name, spec in hooks.items():
        parameters, first = documented[name]
        assert parameters == list(inspect.signature(spec).parameters), f"{name}: README says {parameters}"
        assert first == ("yes" if spec.ybplug_spec.get("firstresult") else "no"), name


def _default(field: msgspec.structs.FieldInfo) -> Any:
    if field.default is not msgspec.NODEFAULT:
        return field.default
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return "required"


def _is_section(field: msgspec.structs.FieldInfo) -> bool:
    text = str(field.type)
    return any(s.__name__ in text for s in (WireConfig, VoucherConfig, DotnetSection, DotnetPluginEntry, AlertsSection))


def struct_keys() -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for prefix, struct in (("", Config), ("wire.", WireConfig), ("voucher.", VoucherConfig),
                           ("dotnet.", DotnetSection), ("dotnet.plugins[].", DotnetPluginEntry), ("alerts.", AlertsSection)):
        for field in msgspec.structs.fields(struct):
            if not _is_section(field):
                keys[prefix + field.name] = _default(field)
    return keys


def test_every_config_key_is_in_the_reference_with_its_default() -> None:
    rows = {row[0].strip("`"): row[1] for row in table_rows(section("Every key"))}
    keys = struct_keys()
    assert sorted(rows) == sorted(keys)
    for key, default in keys.items():
        cell = rows[key]
        if key == "journal":  # the platform's state folder, computed where it runs
            assert cell == "(the state folder)"
        elif default is None or default == "required":
            assert cell == ("none" if default is None else "required"), key
        else:
            literal = cell.strip("`")
            assert msgspec.toml.decode(f"x = {literal}".encode())["x"] == default, f"{key}: README says {cell}"


def test_the_readme_testing_example_passes_with_pytest(tmp_path: Path) -> None:
    [example] = [b for b in re.findall(r"```python\n(.*?)```", section("Testing your plugin"), flags=re.S)
                 if "def test_" in b]
    (tmp_path / "test_example.py").write_text(example, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(r"\b3 passed\b", done.stdout), done.stdout
