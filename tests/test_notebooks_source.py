"""Every notebook is a jupytext py:percent source ``notebooks/NN_name.py`` paired with an
executed ``notebooks/NN_name.ipynb``: the two hold the same cells, and the committed
``.ipynb`` carries its outputs, figures included (so a reader browsing it sees them)."""

from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def test_every_notebook_has_a_source_and_every_source_a_notebook():
    assert SOURCES, "no notebooks/NN_name.py sources"
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == [p.stem for p in SOURCES], (
        "pair each notebooks/NN_name.py with its executed .ipynb: "
        "jupytext --to ipynb --execute notebooks/NN_name.py")


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_notebook_is_in_sync_with_its_source(source):
    paired = source.with_suffix(".ipynb")
    text = jupytext.read(source)
    assert text.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent", (
        f"{source.name}: pair it with `jupytext --set-formats ipynb,py:percent {source.name}`")
    nb = nbformat.read(paired, as_version=4)
    assert _cells(nb) == _cells(text), (
        f"{paired.name} differs from {source.name}: re-execute it with "
        f"`jupytext --to ipynb --execute notebooks/{source.name}` (or `make notebooks`)")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{paired.name} is committed without running every cell"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{paired.name} was committed with an error output"
    if "plt." in source.read_text():
        figures = [o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
        assert figures, f"{paired.name} plots but shows no figure"
