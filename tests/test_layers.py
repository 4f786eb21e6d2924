"""The folders show the layers, and the imports keep to them (docs: README, Layout).

* ``sim/world`` (the model) imports nothing outside itself;
* ``sim/experiments`` (what is run on it) imports the world, never ``analysis``;
* ``analysis`` may import both; only ``sim/cli.py`` imports everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names), at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return found


def ours(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in {"sim", "analysis"}}


@pytest.mark.parametrize("path", sorted((ROOT / "sim" / "world").glob("*.py")), ids=str)
def test_the_world_imports_nothing_outside_itself(path):
    bad = {
        n
        for n in ours(imports(path))
        if not (n.startswith("sim.world") or n in {"sim", "sim.__version__"})
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted((ROOT / "sim" / "experiments").glob("*.py")), ids=str)
def test_experiments_never_import_analysis_or_the_cli(path):
    bad = {n for n in ours(imports(path)) if n.startswith(("analysis", "sim.cli"))}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted((ROOT / "analysis").glob("*.py")), ids=str)
def test_analysis_never_imports_the_cli(path):
    assert not {n for n in ours(imports(path)) if n.startswith("sim.cli")}


def test_the_layers_exist():
    """A guard against the test passing on an empty tree."""
    assert len(list((ROOT / "sim" / "world").glob("*.py"))) > 10
    assert (ROOT / "sim" / "world" / "model.py").is_file()
    assert (ROOT / "sim" / "experiments" / "sweep.py").is_file()
