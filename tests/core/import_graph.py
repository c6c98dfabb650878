"""The import graph of the installed sources, for the layering tests (and `python tests/core/import_graph.py`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "percepiano_parity"
FOLDERS = {"parity": PACKAGE, "replica": f"{PACKAGE}.replica", "reports": f"{PACKAGE}.reports",
           "original_adapter": f"{PACKAGE}.original_adapter"}
# Stages in data-flow order; a module may import its own stage or an earlier one, never a later one.
STAGES: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("batches",),
    ("replica",),
    ("subjects", "original_adapter"),
    ("compare",),
    ("checks",),
    ("diagnosis",),
    ("reports",),
    ("commands", "integrations"),
)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([FOLDERS[parts[0]], *parts[1:]])


def sources() -> dict[str, Path]:
    out = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            out[module_name(path)] = path
    return out


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Our modules `name` imports, at any depth of the file (function-level imports count too)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    files = sources()
    known = set(files)
    return {name: imports(path, name, known) for name, path in files.items()}


def stage_of(module: str) -> int | None:
    rest = module.removeprefix(PACKAGE).lstrip(".")
    head = rest.split(".")[0] if rest else ""
    for i, names in enumerate(STAGES):
        if head in names:
            return i
    return None


def upward_imports(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    bad = []
    for module, targets in g.items():
        s = stage_of(module)
        for t in targets:
            st = stage_of(t)
            if s is not None and st is not None and st > s:
                bad.append((module, t))
    return sorted(bad)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), ignoring a package's own __init__
    importing its submodules back (re-exports)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def edges(v: str) -> set[str]:
        return {w for w in g.get(v, ()) if w in g and not v.startswith(w + ".")}

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    g = graph()
    for a, b in upward_imports(g):
        print(f"upward: {a} -> {b}")
    for c in cycles(g):
        print("cycle:", " ".join(c))
    for name, path in sources().items():
        n = len(path.read_text().splitlines())
        if n > 800:
            print(f"long: {name} {n}")
