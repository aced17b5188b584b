"""The committed notebooks are exactly what notebooks/build_notebooks.py writes."""

import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def test_committed_notebooks_match_their_builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "notebooks" / "build_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    built = mod.notebooks()
    assert sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")) == [name for name, _ in built], (
        "every committed notebook has a builder, and every builder's notebook is committed")
    for name, cells in built:
        committed = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in cells], (
            f"run `python notebooks/build_notebooks.py` and commit {name}")
