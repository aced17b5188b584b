"""The package's architecture, checked from its source: every import (function-level ones
included) goes down the layers, there are no import cycles, an import inside a function is
only for an optional extra or a heavy lazy module and says why, and no function is longer
than one screen.

Layers, bottom to top (an import may only go to the same or a lower rank)::

    _validate _version _io _progress _extras _report      0  helpers, no attsolver imports
    steppers nn                                           1  numerics and building blocks
    systems                                               2  equations (use the steppers' protocols)
    vision guidance pruning optim                         2  side packages over nn
    integrate                                             3  solve
    correctors                                            4  seen by integrate only as a protocol
    data                                                  5  generation (through integrate), files
    training                                              6  fit
    evaluate                                              7  compare, metrics
    cli                                                   8  every command

Run it as a script (``python tests/test_layers.py``) for the counts.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "attsolver"
RANK = {"_validate": 0, "_version": 0, "_io": 0, "_progress": 0, "_extras": 0, "_report": 0,
        "steppers": 1, "nn": 1, "systems": 2, "vision": 2, "guidance": 2, "pruning": 2, "optim": 2,
        "integrate": 3, "correctors": 4, "data": 5, "training": 6, "evaluate": 7, "cli": 8,
        "__main__": 9}
#: the longest function allowed (lines, docstring included); argument tables of the CLI are exempt
MAX_FUNCTION_LINES = 100
LAZY_MARK = "# lazy:"


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The attsolver modules that one import statement loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            pkg = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = ".".join(pkg[: len(pkg) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    found = []
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("attsolver") and name != module:
            found.append(name)
    return found


def _imports() -> list[tuple[str, str, int, bool]]:
    """(importer, imported, line, inside a function) for every attsolver import."""
    rows = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        inner = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(module, path, node):
                    rows.append((module, target, node.lineno, id(node) in inner))
    return sorted(set(rows))


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return out


def import_report() -> dict:
    rows = _imports()
    edges: dict[str, set[str]] = {}
    for a, b, _, _ in rows:
        edges.setdefault(a, set()).add(b)
    upward = []
    for a, b, line, _ in rows:
        la, lb = _layer(a), _layer(b)
        if la is None:
            continue  # the package face imports everything
        if lb is None:
            upward.append(f"{a}:{line} imports the package face {b}")
        elif RANK[lb] > RANK[la]:
            upward.append(f"{a}:{line} ({la}, rank {RANK[la]}) imports {b} ({lb}, rank {RANK[lb]})")
    unexplained = []
    for a, b, line, inner in rows:
        if inner:
            text = MODULES[a].read_text().splitlines()
            if LAZY_MARK not in text[line - 1] and (line < 2 or LAZY_MARK not in text[line - 2]):
                unexplained.append(f"{a}:{line} imports {b} inside a function without a '{LAZY_MARK} <reason>'")
    return {"modules": len(MODULES), "imports": len(rows), "function_level": sum(r[3] for r in rows),
            "cycles": _cycles(edges), "upward": upward, "unexplained_lazy": unexplained}


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    out = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit and not (module.startswith("attsolver.cli") and node.name.startswith("add_")):
                    out.append(f"{module}.{node.name} ({path.name}:{node.lineno}): {n} lines")
    return out


def test_no_import_cycles_counting_function_level_imports():
    assert import_report()["cycles"] == []


def test_every_import_goes_down_the_layers():
    assert RANK.keys() >= {m.split(".")[1] for m in MODULES if "." in m}, "a new top-level module needs a rank"
    assert import_report()["upward"] == []


def test_imports_inside_functions_say_why():
    assert import_report()["unexplained_lazy"] == []


def test_no_function_over_one_screen():
    assert long_functions() == []


if __name__ == "__main__":
    r = import_report()
    print(f"modules {r['modules']}, attsolver imports {r['imports']} ({r['function_level']} inside functions), "
          f"cycles {len(r['cycles'])} (largest {max(map(len, r['cycles']), default=0)}), upward {len(r['upward'])}, "
          f"lazy without a reason {len(r['unexplained_lazy'])}, functions > {MAX_FUNCTION_LINES} lines "
          f"{len(long_functions())}")
    for key in ("cycles", "upward", "unexplained_lazy"):
        for item in r[key]:
            print(key, item)
    for item in long_functions():
        print("long", item)
    sys.exit(0)
