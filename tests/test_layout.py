"""The tree's promises: dependencies point one way, with no cycle between packages.

wire (``sync.wire``) at the bottom; the device (``edge`` without its CLI and dev tools) and the
central server (``sync.server``) beside each other on top of it, never importing each other;
CLI and dev tools on top, imported by nothing but tests. Read from the source's own imports,
including the ones inside functions.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP_TOOLS = ("edge.cli", "edge.devtools")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Every first-party module -> the first-party modules it imports (anywhere in its body)."""
    graph: dict[str, set[str]] = {}
    for path in sorted([*ROOT.glob("edge/**/*.py"), *ROOT.glob("sync/**/*.py")]):
        name = _module_name(path)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m.split(".")[0] in ("edge", "sync")}
    return graph


GRAPH = _imports()


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _violations(importers: str, forbidden: tuple[str, ...], exempt: tuple[str, ...] = ()) -> list[str]:
    return [f"{module} imports {target}" for module, targets in GRAPH.items()
            if _within(module, importers) and not any(_within(module, e) for e in exempt)
            for target in sorted(targets) if any(_within(target, f) for f in forbidden)]


def test_the_graph_was_read():
    assert "edge.device.appliance" in GRAPH and "sync.wire.envelope" in GRAPH["edge.passes.trust"]


def test_device_never_imports_the_server_the_cli_or_dev_tools():
    assert _violations("edge", ("sync.server", *TOP_TOOLS), exempt=TOP_TOOLS) == []


def test_server_never_imports_the_device():
    assert _violations("sync.server", ("edge",)) == []


def test_wire_imports_only_the_wire():
    assert _violations("sync.wire", ("edge", "sync.server")) == []


def test_dev_tools_are_imported_only_by_the_cli():
    assert _violations("edge", ("edge.devtools",), exempt=TOP_TOOLS) == []
    assert _violations("edge.devtools", ("edge.cli",)) == []


def _package(module: str) -> str:
    """The package a module belongs to (a package's ``__init__`` belongs to the package itself)."""
    is_package = (ROOT / Path(*module.split(".")) / "__init__.py").exists()
    return module if is_package else module.rpartition(".")[0]


def _existing(module: str) -> str | None:
    """``pkg.mod.Name`` -> ``pkg.mod``: the longest prefix that is a module or package of ours."""
    parts = module.split(".")
    while parts:
        if ".".join(parts) in GRAPH:
            return ".".join(parts)
        parts.pop()
    return None


def _package_graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        for target in targets:
            resolved = _existing(target)
            if resolved is None:
                continue
            src, dst = _package(module), _package(resolved)
            # a package may use its own subpackages, and a subpackage its parent's modules only upward
            if src != dst and not _within(dst, src):
                edges[src].add(dst)
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycle_between_packages():
    assert _cycle(_package_graph()) is None, " -> ".join(_cycle(_package_graph()) or [])


@pytest.mark.parametrize("edges, cyclic", [({"a": {"b"}, "b": {"a"}}, True), ({"a": {"b"}, "b": {"c"}}, False)])
def test_cycle_finder_finds_cycles(edges, cyclic):
    assert (_cycle(edges) is not None) == cyclic
