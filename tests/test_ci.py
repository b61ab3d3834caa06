"""CI runs what README.md tells a developer to run, and the floors it holds are real releases."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_test_command_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    marker = "Run the tests (this is what `.ci/run` runs):"
    block = readme.split(marker, 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    [command] = block.strip().splitlines()
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in run
    for step in (".ci/system-setup", ".ci/typecheck", ".ci/lowest"):  # the Windows type check, the floors
        assert step in command


def test_every_dependency_has_a_plain_floor_for_the_lowest_run() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for requirement in project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]:
        # An extra of a dependency (psycopg[binary]) is allowed: .ci/lowest pins the distribution itself.
        assert re.fullmatch(r"[A-Za-z0-9_.-]+(\[[A-Za-z0-9_,.-]+\])?>=[0-9][0-9A-Za-z.]*", requirement), requirement
