"""Provenance lines shared by the benchmark reports (``benchmarks/*.py`` → ``results/*.md``)."""

from __future__ import annotations

from typing import Any

from ._io import atomic_path

__all__ = ["provenance_lines", "save_png"]


def provenance_lines(report: dict[str, Any], *, unfinished: str = "setting",
                     software: str = "") -> list[str]:
    """The two lines under a report's title: the command and date (flagging a run that
    stopped before every ``unfinished`` finished), then the machine and the total time.

    ``report`` needs ``command``, ``date``, ``complete``, ``wall_time_s`` and ``machine``
    (``cpus``, ``torch``, ``torch_threads``, ``python``); ``software`` is inserted after
    torch's version (e.g. ``", torch-pruning 1.6.1"``).
    """
    m = report["machine"]
    return [
        f"Produced by `{report['command']}` on {report['date']}"
        + ("" if report["complete"] else f" — **incomplete: the run stopped before every {unfinished} finished**")
        + ".",
        f"Machine: {m['cpus']} CPUs, torch {m['torch']} ({m['torch_threads']} thread){software}, "
        f"Python {m['python']}; total {report['wall_time_s'] / 60:.1f} min.",
    ]


def save_png(fig: Any, path: Any, *, dpi: int) -> None:
    """Write a matplotlib figure to ``path`` atomically (a failed plot never replaces a
    committed one) and close it."""
    import matplotlib.pyplot as plt  # lazy: matplotlib is heavy; only a caller that plots pays for it

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
