"""The package's layers, as import-linter's contract in pyproject.toml states them, and no import cycles."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other in a circle (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in edges.get(module, ()):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_in_a_circle():
    """Imports inside functions count too: a cycle through a lazy import is still a tangle."""
    import grimp

    graph = grimp.build_graph("gluebox")
    modules = set(graph.modules)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) & modules for m in modules}
    assert cycles(edges) == []


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def test_layers_contract_is_kept():
    """cli > commands > sweep > recipe > training > runs | data > config > tasks | resources > errors."""
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_layers_contract_catches_an_upward_import(tmp_path):
    """A data module that imports the recipe breaks the contract (so the contract can fail)."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "src", copy / "src")
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    examples = copy / "src" / "gluebox" / "data" / "examples.py"
    examples.write_text(examples.read_text() + "\nfrom gluebox.recipe import build  # noqa\n")
    env_path = str(copy / "src")
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=copy,
                            capture_output=True, text=True, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout + result.stderr
    assert "gluebox.data.examples -> gluebox.recipe" in result.stdout


def test_architecture_page_names_every_module():
    """docs/architecture.md's module list has a line for each module of the package, and names no module that is gone."""
    readme = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = readme.split("```\nsrc/gluebox/\n", 1)[1].split("```", 1)[0]
    package = REPO / "src" / "gluebox"
    modules = {str(p.relative_to(package)) for p in package.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    listed, folder = set(), ""
    for line in block.splitlines():
        match = re.match(r"^( +)(\S+)", line)
        if not match:
            continue
        indent, name = len(match.group(1)), match.group(2)
        if indent == 2:
            folder = name if name.endswith("/") else ""
            if not name.endswith("/"):
                listed.add(name)
        elif indent == 4 and name.endswith(".py"):
            listed.add(folder + name)
    assert listed == modules
