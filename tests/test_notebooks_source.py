"""The committed notebooks are exactly what notebooks/build_notebooks.py writes."""

from pathlib import Path

import nbformat

from _scripts import load_script


ROOT = Path(__file__).resolve().parents[1]


def test_committed_notebooks_match_their_builder():
    mod = load_script("notebooks/build_notebooks.py")
    built = mod.notebooks()
    assert sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")) == [name for name, _ in built], (
        "every committed notebook has a builder, and every builder's notebook is committed")
    for name, cells in built:
        committed = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in cells], (
            f"run `python notebooks/build_notebooks.py` and commit {name}")
