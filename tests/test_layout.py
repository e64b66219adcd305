"""The layout the docs describe, held against the code: packages import each other in one direction
(no cycle between them), the lowest layers import nothing above them, and no module grows past 400
lines (a module that size holds more than one job)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "weighbridge"
MAX_LINES = 400


def package_imports() -> dict[str, set[str]]:
    """Which top-level packages of weighbridge each package imports (relative imports, as the code uses)."""
    edges: dict[str, set[str]] = {}
    for f in SRC.rglob("*.py"):
        rel = f.relative_to(SRC).parts
        if len(rel) == 1:
            continue  # the package root: __init__ and __main__
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = list(rel[:-1])[: len(rel) - node.level]
                target = base + (node.module.split(".") if node.module else [])
                if target and target[0] != rel[0] and (SRC / target[0]).is_dir():
                    edges.setdefault(rel[0], set()).add(target[0])
    return edges


def test_packages_import_each_other_in_one_direction():
    edges = package_imports()

    def reaches(a: str, b: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in edges.get(a, ()))

    cycles = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if reaches(b, a)})
    assert cycles == [], f"packages that import each other: {cycles}"
    assert edges.get("core", set()) == set(), "core imports nothing above it"
    assert edges.get("wire", set()) <= {"core"} and edges.get("storage", set()) <= {"core"}
    assert edges.get("scorers", set()) <= {"core"}, "scorers see answers through core's types only"


def test_no_module_is_over_400_lines():
    sizes = {str(p.relative_to(SRC)): len(p.read_text(encoding="utf-8").splitlines()) for p in SRC.rglob("*.py")}
    assert len(sizes) > 100  # the whole tree was read
    over = {p: n for p, n in sizes.items() if n > MAX_LINES}
    assert over == {}, f"split these by job: {over}"
