"""What a reader of the committed notebooks and of the API pages sees: no machine's paths or
stray warnings in the notebooks' outputs, and links where the docstrings cross-reference with
Sphinx roles (turned into autorefs by docs/_sphinx_roles.py at build time)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

#: an absolute path of the machine that ran the notebook, a Python warning's report line, or
#: the default repr of an object (its memory address), in any output
_LEAKS = re.compile(r"(?<![\w.])/(?:work|root|home|tmp|Users|opt|usr)/|\w+Warning: |\bat 0x[0-9a-f]+>")


def _texts(cell) -> list[str]:
    out = []
    for o in cell.get("outputs", []):
        if "text" in o:
            out.append(o["text"])
        out += [v for k, v in o.get("data", {}).items() if k.startswith("text/") and isinstance(v, str)]
        out += o.get("traceback", [])
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_outputs_show_no_paths_warnings_or_addresses(path):
    nb = nbformat.read(path, as_version=4)
    leaks = [(i, m.group(0)) for i, c in enumerate(nb.cells) if c.cell_type == "code"
             for text in _texts(c) for m in _LEAKS.finditer(text)]
    assert not leaks, (f"{path.name}: outputs show {leaks[:5]} (cell, text); fix or filter the warning in "
                       f"notebooks/{path.stem}.py, then re-execute it")


def test_sphinx_roles_become_links():
    griffe = pytest.importorskip("griffe")  # the docs extra
    spec = importlib.util.spec_from_file_location("_sphinx_roles", ROOT / "docs" / "_sphinx_roles.py")
    roles = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(roles)
    package = griffe.load("attsolver", search_paths=[str(ROOT)], extensions=griffe.load_extensions(roles.SphinxRoles))
    data = package["data"]
    text = data.docstring.value
    assert ":class:" not in text and ":func:" not in text
    # resolved from the docstring's own scope, as Sphinx does: a bare name in attsolver.data's docstring
    assert '<autoref identifier="attsolver.data.dataset.TrajectoryDataset" optional><code>TrajectoryDataset</code>' \
        in text
    # `~` shows the last part; a name griffe does not know stays a plain code span
    link = roles._link(package, roles._ROLE.search(":func:`~attsolver.solve`"))
    assert link.endswith("<code>solve</code></autoref>") and 'identifier="attsolver.' in link
    assert roles._link(package, roles._ROLE.search(":class:`torch.nn.Module`")) == "<code>torch.nn.Module</code>"
