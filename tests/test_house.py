"""The house holds: no import cycle (type-only imports included), no room over 600 lines, and the
light modules stay light (``ybplug.config`` and ``ybplug status`` load no HTTP stack)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ((ROOT / "ybplug", "ybplug"), (ROOT / "hooks", "ybplug.hooks"), (ROOT / "plugins", "ybplug.plugins"))


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for base, package in PACKAGES:
        for path in base.rglob("*.py"):
            parts = [p for p in path.relative_to(base).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts]) if parts else package] = path
    return found


def module_level_imports(path: Path, known: dict[str, Path]) -> set[str]:
    """What a module imports when it is imported, or when it is type-checked (``if TYPE_CHECKING``)."""
    body: list[ast.stmt] = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        body.extend(node.body if isinstance(node, ast.If) else [node])
    edges: set[str] = set()
    for node in body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & known.keys()
            edges |= submodules
            if len(submodules) < len(node.names) and node.module in known:
                edges.add(node.module)
        elif isinstance(node, ast.Import):
            edges |= {a.name for a in node.names} & known.keys()
    return edges


def test_no_import_cycle_type_only_included() -> None:
    known = modules()
    graph = {name: module_level_imports(path, known) - {name} for name, path in known.items()}
    cycles = []

    def visit(name: str, trail: list[str]) -> None:
        for following in graph[name]:
            if following in trail:
                cycles.append(trail[trail.index(following):] + [following])
            elif following not in done:
                visit(following, trail + [following])
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_no_module_over_600_lines() -> None:
    big = {name: n for name, path in modules().items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > 600}
    assert not big, big


def test_the_config_and_the_status_command_load_no_http_stack() -> None:
    code = (
        "import sys, ybplug.config, ybplug.journal, ybplug.clerk\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'clr', 'pythonnet')"
        " or m.startswith(('ybplug.dotnet.runtime', 'ybplug.voucher.process', 'ybplug.wire', 'ybplug.host'))]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
