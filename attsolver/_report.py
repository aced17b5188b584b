"""Figure files for reports (``attsolver compare`` and the benchmark suites in ``benchmarks/``):
written atomically, so a failed plot never replaces a committed one."""

from __future__ import annotations

from typing import Any

from ._io import atomic_path

__all__ = ["save_png"]


def save_png(fig: Any, path: Any, *, dpi: int) -> None:
    """Write a matplotlib figure to ``path`` atomically (a failed plot never replaces a
    committed one) and close it."""
    import matplotlib.pyplot as plt  # lazy: matplotlib is heavy; only a caller that plots pays for it

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
