"""Report files: the one non-finite policy and the atomic writes of JSON and figures, shared by
``attsolver compare`` and the benchmark suites (``benchmarks/_suite.py``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ._io import atomic_path, atomic_write_text

__all__ = ["finite", "json_text", "write_json", "save_png"]


def finite(obj: Any) -> Any:
    """``obj`` with every NaN and infinity replaced by ``None`` (dicts, lists and tuples walked;
    tuples become lists, as JSON has no tuples), so that it is valid JSON: ``null``, never the
    ``NaN`` / ``Infinity`` that :mod:`json` would write and other readers refuse."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def json_text(obj: Any, *, indent: int = 1) -> str:
    """``obj`` as standard JSON (:func:`finite` first; ``allow_nan=False`` makes a missed
    non-finite value an error instead of a file other readers reject)."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False, default=str)


def write_json(path: str | Path, obj: Any, *, indent: int = 1) -> None:
    """Replace ``path`` with :func:`json_text` of ``obj``, atomically."""
    atomic_write_text(path, json_text(obj, indent=indent))


def save_png(fig: Any, path: Any, *, dpi: int) -> None:
    """Write a matplotlib figure to ``path`` atomically (a failed plot never replaces a
    committed one) and close it."""
    import matplotlib.pyplot as plt  # lazy: matplotlib is heavy; only a caller that plots pays for it

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
