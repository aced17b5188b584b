"""Optional dependencies: the secondary subpackages' third-party needs live in extras
(``pip install 'attsolver[vision]'``, ``[pruning]``, ``[guidance]``, ``[bench]``, ``[all]``).

Nothing in the core imports them; a feature that needs one calls :func:`require`, which
imports it on first use or raises an ``ImportError`` that names the install to run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "require"]

#: importable module -> (its PyPI distribution, the attsolver extra that pulls it)
EXTRAS: dict[str, tuple[str, str]] = {
    "torch_pruning": ("torch-pruning", "pruning"),
    "sklearn": ("scikit-learn", "vision"),
    "jax": ("jax", "bench"),
    "diffrax": ("diffrax", "bench"),
    "exponax": ("exponax", "bench"),
    "torchode": ("torchode", "bench"),
}


def require(module: str, feature: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` (a top-level or dotted name) for ``feature``; if it is missing, raise
    an ``ImportError`` saying which ``pip install 'attsolver[extra]'`` provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        dist, default_extra = EXTRAS.get(top, (top, "all"))
        extra = extra or default_extra
        raise ImportError(
            f"{feature} needs {dist}, which is not installed: pip install 'attsolver[{extra}]' "
            f"(or pip install {dist})") from err
