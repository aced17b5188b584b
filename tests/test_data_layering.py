"""The data and systems layers, read from their source: imports at module top and only
downwards, no h5 <-> pdebench loop, and one home for grid transfer and for nrmse."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "attsolver"
LAYERS = ("data", "systems")


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).glob("*.py"))


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(dotted target, at module top)`` of every import in ``path``, resolved to ``attsolver.*``."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out += [(n, id(node) in top) for n in names]
    return out


@pytest.mark.parametrize("folder", LAYERS)
def test_imports_are_at_module_top(folder):
    late = [(p.name, n) for p in _modules(folder) for n, at_top in _imports(p) if not at_top]
    assert not late, f"imports inside functions: {late}"


def test_the_data_layer_imports_only_downwards():
    """data/ imports nothing above it; systems/ imports only itself, the argument checks and the
    Butcher tableaus (a learned interpolation with weights once per step reads a method's stage
    nodes from them; steppers/ never import systems/, so there is no loop)."""
    above = ("attsolver.training", "attsolver.evaluate", "attsolver.cli", "attsolver.vision")
    bad = [(p.name, n) for p in _modules("data") for n, _ in _imports(p) if n.startswith(above)]
    assert not bad, bad
    bad = [(p.name, n) for p in _modules("systems") for n, _ in _imports(p)
           if n.startswith("attsolver.") and not n.startswith(("attsolver.systems", "attsolver._validate",
                                                               "attsolver.steppers.tableau"))]
    assert not bad, bad


def test_hdf5_readers_do_not_import_each_other():
    h5 = {n for n, _ in _imports(PACKAGE / "data" / "h5.py")}
    pdebench = {n for n, _ in _imports(PACKAGE / "data" / "pdebench.py")}
    assert not any(n.startswith(("attsolver.data.pdebench", "attsolver.data.inspect")) for n in h5)
    assert not any(n.startswith("attsolver.data.inspect") for n in pdebench)


def test_grid_transfer_and_nrmse_have_one_home():
    defined: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                defined.setdefault(node.name, []).append(str(path.relative_to(PACKAGE)))
    assert defined["nrmse"] == ["evaluate/metrics.py"]
    for name in ("restrict", "prolong", "restrict_2d", "prolong_2d"):
        assert defined[name] == ["systems/grid.py"], (name, defined[name])
    assert "spectral_restrict" not in defined
