"""Every plugin and hook the extension declares names something its module defines.

LocalStack loads them by name from the installed entry points and only logs one it cannot
load: a hook renamed in its module but not in pyproject.toml silently stops being applied (a
renamed CloudWatch write patch once ran a benchmark on LocalStack's stock code). The modules
import LocalStack, so they are read, not imported."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

EXTENSION = Path(__file__).resolve().parents[2] / "infra" / "localstack-extension"


def declared_entry_points() -> list[tuple[str, str, str]]:
    project = tomllib.loads((EXTENSION / "pyproject.toml").read_text())["project"]
    return [
        (group, name, target)
        for group, points in project["entry-points"].items()
        for name, target in points.items()
    ]


def top_level_names(module: str) -> set[str]:
    path = EXTENSION.joinpath(*module.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text(), filename=str(path))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


def test_every_declared_entry_point_names_a_definition_of_its_module() -> None:
    points = declared_entry_points()
    assert len(points) > 20, points  # the hooks are all there to check
    missing = []
    for group, name, target in points:
        module, _, attribute = target.partition(":")
        if attribute not in top_level_names(module):
            missing.append(f"{group}: {name} = {target}")
    assert not missing, missing
