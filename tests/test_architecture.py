"""Dependencies point one way: the layers of pyproject.toml's [tool.importlinter] contracts, no import
cycle between first-party modules, and no first-party import hidden in a function without a reason."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

from srcroot import REPO_ROOT

CONFIG = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
FIRST_PARTY = CONFIG["root_packages"]


def test_the_layer_contracts_hold():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "platform"), str(REPO_ROOT)])}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_between_first_party_modules():
    # grimp sees imports inside functions too: a cycle dodged by a late import is still a cycle.
    graph = grimp.build_graph(*FIRST_PARTY)

    assert _cycles(graph) == []


def _late_first_party_imports(path) -> list[str]:
    """Imports of first-party modules inside a function, without a comment (that line or the one above)."""
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if not any(name.split(".")[0] in FIRST_PARTY for name in names):
                continue
            said_why = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].strip().startswith("#")
            if not said_why:
                found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return sorted(set(found))


def test_first_party_imports_inside_functions_say_why():
    roots = [
        REPO_ROOT / name
        for name in ("generation", "billing", "recommendations", "experiments", "knowledge", "finetune", "workers")
    ]
    roots += [REPO_ROOT / "platform"]
    files = [
        path for root in roots for path in root.rglob("*.py") if "migrations" not in path.parts
    ]

    assert [line for path in files for line in _late_first_party_imports(path)] == []
