"""Steady-state wall time of competing solvers, measured fairly on a shared machine."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

__all__ = ["interleaved_times"]


def interleaved_times(fns: dict[str, Callable[[], Any]], rounds: int, *, warmup: int = 1,
                      on_round: Callable[[int], None] | None = None) -> dict[str, dict[str, float]]:
    """Steady-state wall time of each function: ``warmup`` untimed calls each, then
    ``rounds`` rounds that call every function once in turn.

    Returns ``{name: {"min_s", "median_s", "rounds"}}`` (seconds).  The minimum is the most
    repeatable estimate of a solver's own cost on a machine shared with other jobs; the
    median shows how noisy the machine was.  Interleaving spreads slow phases of the machine
    evenly over the contenders instead of penalising whichever ran during them.
    """
    for _ in range(max(0, warmup)):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(max(1, rounds)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
        if on_round is not None:
            on_round(r + 1)
    return {k: {"min_s": min(v), "median_s": statistics.median(v), "rounds": len(v)} for k, v in samples.items()}
