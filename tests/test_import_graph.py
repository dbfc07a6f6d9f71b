"""The project's import graph, read from the source (every import, also those inside
functions): no module reaches itself again, and the layers of docs/ARCHITECTURE.md
("Contracts: layers") hold where they can be read off the source."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("diffusion", "export", "repository", "services", "clients", "atelier_cli", "bench")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports: ``from a.b import c`` means a.b.c when that is a module."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a module a.b.c, or its package
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan 1972), iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
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


def test_the_walker_finds_a_cycle_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_through_others():
    assert cycles(graph()) == []


def test_benchmarks_import_no_test_code():
    """Tests may import benchmarks' helpers (bench/tiny_models.py), never the other way round."""
    offenders = []
    for name, path in project_modules().items():
        if name.startswith("bench"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                offenders += [(name, n) for n in names if n == "tests" or n.startswith("tests.")]
    assert offenders == []


def _reaching(sources: str, forbidden: tuple[str, ...]) -> list[tuple[str, str]]:
    """(module, import) pairs where a module of package `sources` imports one under `forbidden`,
    including imports inside functions, which a sys.modules check would not see."""
    return sorted((name, target) for name, targets in graph().items() if name.split(".")[0] == sources
                  for target in targets if target.split(".")[0] in forbidden or target.startswith(forbidden))


def test_export_imports_nothing_of_services():
    assert _reaching("export", ("services", "clients", "atelier_cli")) == []


def test_the_model_repository_imports_nothing_above_it():
    above = ("services", "export", "clients", "atelier_cli", "diffusion.nets", "diffusion.training",
             "diffusion.evaluation")
    assert _reaching("repository", above) == []


def test_the_sdk_imports_nothing_but_itself():
    assert _reaching("clients", tuple(p for p in PACKAGES if p != "clients")) == []


def test_nothing_imports_the_command_line():
    assert [(m, t) for m, targets in graph().items() if not m.startswith(("atelier_cli", "bench"))
            for t in targets if t.startswith("atelier_cli")] == []
