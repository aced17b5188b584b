"""Equal accuracy on a ladder of classical grids: where a solver's time-until-threshold falls
among the rungs, what grid it is worth and what that grid costs.

The rules (pure functions; the Kolmogorov benchmark and the learned-interpolation example use
them, so both measure alike):

* :func:`time_until` reads the first time a mean-correlation curve falls below the threshold,
  linear between frames; a curve that never does is *censored* at the horizon (its true value is
  only known to be ``>=`` the horizon).
* :func:`place_on_ladder` brackets a value between *neighbouring measured* rungs (sorted by
  grid size) and interpolates the grid size linearly in the value and the cost log-linearly
  with the same fraction (so the cost is log-linear in the grid size between those two rungs).
  A censored rung is never an upper bracket: a value above the finest measured rung and below
  the horizon lies between that rung and the cheapest censored one (a range, ``"between"``); a
  censored value is only ``>=`` the finest measured rung (``"above"``), even when censored rungs
  exist (their value is unknown, so a tie with them says nothing); a value below the coarsest
  rung is ``"below"`` (``<=`` it).  The point figure of a range is its conservative end.
* :func:`band_limit` keeps the Fourier modes with ``|k| <= kmax`` of a periodic field (the
  low-wavenumber scoring band).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = ["Rung", "time_until", "place_on_ladder", "band_limit"]


class Rung(NamedTuple):
    """One classical solve: its grid size ``n``, time-until-threshold, whether that is censored
    at the horizon, and its cost (any positive unit, the same for every rung)."""

    n: float
    t95: float
    censored: bool
    cost: float


def time_until(t: np.ndarray, curve: np.ndarray, threshold: float = 0.95) -> tuple[float, bool]:
    """First time ``curve`` falls below ``threshold`` (linear between frames): ``(time, False)``;
    ``(t[-1], True)`` when it never does (censored at the horizon)."""
    t, curve = np.asarray(t, dtype=float), np.asarray(curve, dtype=float)
    below = np.flatnonzero(~(curve >= threshold))  # NaN counts as below
    if len(below) == 0:
        return float(t[-1]), True
    i = int(below[0])
    if i == 0:
        return float(t[0]), False
    c0, c1 = curve[i - 1], curve[i]
    if not math.isfinite(c1):
        return float(t[i]), False
    return float(t[i - 1] + (t[i] - t[i - 1]) * (c0 - threshold) / (c0 - c1)), False


def _result(how: str, n: float, cost: float, lo: Rung, hi: Rung | None) -> dict[str, Any]:
    return {"how": how, "n": float(n), "cost": float(cost), "n_lo": float(lo.n), "cost_lo": float(lo.cost),
            "n_hi": None if hi is None else float(hi.n), "cost_hi": None if hi is None else float(hi.cost)}


def place_on_ladder(ladder: list[Rung], t95: float, censored: bool = False) -> dict[str, Any]:
    """Where a solver with this time-until-threshold sits on the ladder (module docstring).

    Returns ``how`` ("interpolated", "between", "above", "below"), the equivalent grid ``n`` and
    its ``cost`` (for "between"/"above": the finest measured rung's, a lower bound; for "below":
    the coarsest rung's, an upper bound), and the bracket ``n_lo``/``cost_lo``, ``n_hi``/
    ``cost_hi`` (``None`` when unbounded above)."""
    if not ladder:
        raise ValueError("place_on_ladder: ladder must hold at least one rung")
    rungs = sorted(ladder, key=lambda r: r.n)
    measured = [r for r in rungs if not r.censored]
    walls = [r for r in rungs if r.censored]
    if not measured:  # every rung reached the horizon: nothing to place against but the coarsest
        return _result("below", rungs[0].n, rungs[0].cost, rungs[0], rungs[0]) if not censored else \
            _result("above", rungs[0].n, rungs[0].cost, rungs[0], None)
    if not censored and t95 <= measured[0].t95:
        return _result("below", measured[0].n, measured[0].cost, measured[0], measured[0])
    for a, b in zip(measured, measured[1:]):
        if not censored and a.t95 <= t95 <= b.t95 and b.t95 > a.t95:
            f = (t95 - a.t95) / (b.t95 - a.t95)
            cost = math.exp(math.log(a.cost) + f * (math.log(b.cost) - math.log(a.cost)))
            return _result("interpolated", a.n + f * (b.n - a.n), cost, a, b)
    best = max(measured, key=lambda r: r.t95)
    above = [r for r in walls if r.n > best.n]
    if not censored and above:
        return _result("between", best.n, best.cost, best, above[0])
    return _result("above", best.n, best.cost, best, None)


def band_limit(w: torch.Tensor, kmax: float) -> torch.Tensor:
    """``w`` (periodic, last two dims) with every Fourier mode of ``|k| > kmax`` removed
    (``|k|`` the Euclidean norm of the integer wavenumber pair); real in, real out."""
    ny, nx = w.shape[-2], w.shape[-1]
    ky = torch.fft.fftfreq(ny, d=1.0 / ny, dtype=torch.float64)
    kx = torch.fft.rfftfreq(nx, d=1.0 / nx, dtype=torch.float64)
    keep = (ky[:, None] ** 2 + kx[None, :] ** 2) <= kmax ** 2
    w_hat = torch.fft.rfft2(w)
    return torch.fft.irfft2(w_hat * keep.to(w_hat.real.dtype), s=(ny, nx))
