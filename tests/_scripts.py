"""Import the repository's scripts (``benchmarks/*.py``, ``notebooks/build_notebooks.py``),
which are not part of the installed package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relpath: str) -> ModuleType:
    """The module at ``ROOT / relpath`` (e.g. ``"benchmarks/ode.py"``), imported once per process
    under the dotted name of its path, as ``attsolver bench`` imports it; registered in
    ``sys.modules`` before it runs, since dataclasses look their module up while a class is built."""
    name = relpath.removesuffix(".py").replace("/", ".")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / relpath)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]
