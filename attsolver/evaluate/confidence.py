"""A verdict a busy machine cannot flip: CPU-time timing, adaptive interleaved rounds, a
bootstrap interval on the speed-up and a three-way outcome.

* Every timed call records its wall time and the process's CPU time
  (:func:`time.process_time`, which counts torch's intra-op threads too).  Other processes
  on the machine stretch wall time (the solver waits for a core) but barely touch the CPU
  time the solve itself consumes, so the verdict reads CPU time unless the caller asks for
  wall time (:data:`CLOCKS`), and says which it used.
* Rounds are interleaved (every contender once per round) and continue until the speed-up's
  95 % interval is within ``±ci_width`` of its point estimate, or ``max_rounds`` / the time
  budget is reached.
* The interval is a paired bootstrap over timing rounds *and* test trajectories: each
  resample draws rounds (the same for every contender, they ran side by side) and
  trajectories (the same for every contender, they solved the same states); a contender's
  time is the median of its drawn rounds, its error the mean of its drawn trajectories, and
  the speed-up at equal accuracy is read off the resampled work-precision front.
* :func:`outcome`: ``"pays"`` when the whole interval is above 1x, ``"does not pay"`` when
  it is below, ``"inconclusive"`` when it contains 1x.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .metrics import HORIZONS, clamp_blow_ups, relative_l2, speedups_at_equal_accuracy

__all__ = ["CLOCKS", "machine_load", "timed_call", "per_trajectory_error", "choose_clock", "point_speedup",
           "bootstrap_speedup", "outcome", "narrow_enough", "run_rounds", "relative_spread"]

#: the clocks the verdict can read: ``"cpu"`` (process CPU time), ``"wall"``, or ``"auto"``
CLOCKS = ("auto", "cpu", "wall")
#: a CPU-time reading below this many clock ticks, or below ``_MIN_CPU_S`` (the clock is read by a
#: system call, ~1 us), is too coarse: ``"auto"`` falls back to wall time
_MIN_TICKS = 200
_MIN_CPU_S = 1e-4


def machine_load() -> dict[str, Any]:
    """The 1-minute load average and the cores this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return {"load_1min": load, "cores": cores}


def timed_call(fn: Callable[[], Any]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one call of ``fn``."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    w1, c1 = time.perf_counter(), time.process_time()
    return w1 - w0, c1 - c0


def per_trajectory_error(pred: Tensor, true: Tensor, limit: float, match: str) -> np.ndarray:
    """The ``match`` error of each test trajectory (``[batch]``), as
    :func:`~attsolver.evaluate.metrics.score_rollout` averages it (blow-ups clamped)."""
    frac = dict(HORIZONS)[match]
    nt = true.shape[1]
    j = max(int(round(frac * (nt - 1))) + 1, 2)
    p = clamp_blow_ups(pred, limit)
    return relative_l2(p[:, 1:j], true.to(torch.float64)[:, 1:j]).numpy()


def relative_spread(values: Sequence[float]) -> float:
    """``(max - min) / median`` of a contender's timing rounds."""
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med > 0 else math.inf


def choose_clock(clock: str, samples: dict[str, dict[str, list[float]]]) -> tuple[str, str]:
    """The clock the verdict reads and why: ``clock`` itself when ``"cpu"`` or ``"wall"``;
    for ``"auto"`` the CPU time, unless the shortest contender's CPU reading is under
    :data:`_MIN_TICKS` ticks of the CPU clock or 0.1 ms (then wall time)."""
    if clock == "wall":
        return "wall", "wall time (asked for)"
    if clock == "cpu":
        return "cpu", "process CPU time (asked for)"
    tick = max(time.get_clock_info("process_time").resolution, 1e-9)
    shortest = min(statistics.median(s["cpu"]) for s in samples.values())
    if shortest < max(_MIN_TICKS * tick, _MIN_CPU_S):
        return "wall", f"wall time (the shortest solve, {shortest:.2g} s, is too short for the CPU clock)"
    return "cpu", "process CPU time (other processes stretch wall time, not the CPU time a solve uses)"


def _times(samples, clock: str, labels: Sequence[str], rounds: np.ndarray | None = None) -> dict[str, float]:
    out = {}
    for lab in labels:
        v = np.asarray(samples[lab][clock])
        out[lab] = float(np.median(v if rounds is None else v[rounds]))
    return out


def point_speedup(classical: list[dict[str, Any]], corrected_label: str, times: dict[str, float],
                  errors: dict[str, float], match: str) -> dict[str, Any]:
    """:func:`~attsolver.evaluate.metrics.speedups_at_equal_accuracy` with the given time
    (seconds, or any cost) and ``match`` error per label."""
    entries = [dict(e, time_s=times[e["label"]], **{match: errors[e["label"]]}) for e in classical]
    return speedups_at_equal_accuracy(entries, errors[corrected_label], times[corrected_label], match)


def bootstrap_speedup(classical: list[dict[str, Any]], corrected_label: str,
                      samples: dict[str, dict[str, list[float]]], traj_errors: dict[str, np.ndarray], match: str,
                      clock: str, *, n_boot: int = 300, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """The speed-up against the best classical contender: the point estimate (median times,
    mean errors) and its ``level`` bootstrap interval over rounds and trajectories.

    Returns ``{"point", "low", "high", "n_boot", "unreached"}``; ``low``/``high`` are
    ``None`` when more than half the resamples reach no classical cost."""
    labels = [e["label"] for e in classical] + [corrected_label]
    n_rounds = len(samples[corrected_label][clock])
    n_traj = len(traj_errors[corrected_label])
    point = point_speedup(classical, corrected_label, _times(samples, clock, labels),
                          {k: float(np.mean(traj_errors[k])) for k in labels}, match)["speedup_best"]
    rng = np.random.default_rng(seed)
    errs = np.stack([traj_errors[k] for k in labels])  # [contender, traj]
    values = []
    for _ in range(n_boot):
        r = rng.integers(0, n_rounds, n_rounds)
        tr = rng.integers(0, n_traj, n_traj)
        e = errs[:, tr].mean(axis=1)
        s = point_speedup(classical, corrected_label, _times(samples, clock, labels, r),
                          dict(zip(labels, map(float, e))), match)["speedup_best"]
        values.append(math.nan if s is None else s)
    v = np.asarray(values)
    unreached = int(np.isnan(v).sum())
    if unreached > n_boot / 2:
        return {"point": point, "low": None, "high": None, "n_boot": n_boot, "unreached": unreached}
    lo, hi = np.nanquantile(v, [(1 - level) / 2, (1 + level) / 2])
    return {"point": point, "low": float(lo), "high": float(hi), "n_boot": n_boot, "unreached": unreached}


def outcome(low: float | None, high: float | None) -> str:
    """``"pays"`` (interval above 1x), ``"does not pay"`` (below) or ``"inconclusive"``."""
    if low is None or high is None:
        return "inconclusive"
    if low > 1.0:
        return "pays"
    if high < 1.0:
        return "does not pay"
    return "inconclusive"


def narrow_enough(interval: dict[str, Any], ci_width: float) -> bool:
    """Whether the interval lies within ``±ci_width`` (relative) of its point estimate."""
    p, lo, hi = interval["point"], interval["low"], interval["high"]
    if p is None or lo is None or hi is None or p <= 0:
        return False
    return (hi - lo) / 2 <= ci_width * p


def run_rounds(fns: dict[str, Callable[[], Any]], *, min_rounds: int, max_rounds: int, budget_s: float,
               enough: Callable[[dict[str, dict[str, list[float]]]], bool] | None = None,
               on_round: Callable[[int], None] | None = None) -> tuple[dict[str, dict[str, list[float]]], str]:
    """Interleaved rounds (every function once per round, in turn): at least ``min_rounds``,
    then until ``enough(samples)`` holds, ``max_rounds`` are done or ``budget_s`` seconds of
    wall time have passed.  Returns ``({name: {"wall": [...], "cpu": [...]}}, why it stopped)``."""
    samples: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in fns}
    start = time.perf_counter()
    r = 0
    while True:
        for name, fn in fns.items():
            w, c = timed_call(fn)
            samples[name]["wall"].append(w)
            samples[name]["cpu"].append(c)
        r += 1
        if on_round is not None:
            on_round(r)
        if r < min_rounds:
            continue
        if enough is None:
            return samples, f"{r} rounds"
        if enough(samples):
            return samples, f"interval narrow enough after {r} rounds"
        if r >= max_rounds:
            return samples, f"max_rounds={max_rounds} reached"
        per_round = (time.perf_counter() - start) / r
        if time.perf_counter() - start + per_round > budget_s:
            return samples, f"time budget of {budget_s:g} s spent after {r} rounds"
