"""The largest Lyapunov exponent: estimated from a perturbation's growth, or taken from the
system, to express prediction times in Lyapunov times."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from .._validate import is_real
from ..integrate import solve

__all__ = ["estimate_lyapunov_exponent", "lyapunov_for"]


def estimate_lyapunov_exponent(f: Callable[[Tensor, Tensor], Tensor], y0: Tensor, t_span: float, *,
                               step_size: float, method: str = "rk4", renormalise_every: float | None = None,
                               perturbation: float = 1e-8, t0: float = 0.0) -> float:
    """Largest Lyapunov exponent from the growth of a small perturbation (Benettin et al. 1980).

    Each state of ``y0`` (``[n, *state]``) and a copy displaced by ``perturbation`` times its
    norm are integrated side by side; every ``renormalise_every`` (default ``t_span / 50``)
    the displacement's growth is logged and it is scaled back.  The estimate is the mean log
    growth rate over ``t_span`` and the ``n`` states (in 1 / time units) — rough (a few per
    cent for Lorenz-63 over 20 Lyapunov times) but enough to express prediction times in
    Lyapunov units.  A non-positive value means no exponential divergence was seen.
    """
    y = y0.to(torch.float64)
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    flat = d.reshape(len(y), -1)
    norm0 = perturbation * y.reshape(len(y), -1).norm(dim=1).clamp(min=1e-300)
    d = (flat / flat.norm(dim=1, keepdim=True) * norm0[:, None]).reshape(y.shape)
    z = y + d
    tau = renormalise_every if renormalise_every is not None else t_span / 50
    n_int = max(1, int(round(t_span / tau)))
    tau = t_span / n_int
    total = torch.zeros(len(y), dtype=torch.float64)
    t = t0
    with torch.no_grad():
        for _ in range(n_int):
            ts = torch.tensor([t, t + tau], dtype=torch.float64)
            both = solve(f, torch.cat([y, z]), ts, method=method, step_size=min(step_size, tau),
                         options={"check_finite": False})[-1]
            y, z = both[:len(y)], both[len(y):]
            dist = (z - y).reshape(len(y), -1).norm(dim=1)
            total += torch.log(dist / norm0)
            z = y + (z - y) * (norm0 / dist).reshape(-1, *([1] * (y.ndim - 1)))
            t += tau
    lam = total / t_span
    lam = lam[torch.isfinite(lam)]
    return float(lam.mean()) if len(lam) else math.nan


def lyapunov_for(f, y0: Tensor, t: Tensor, lyapunov_exponent: float | str | None, step_size: float, *,
                 method: str) -> tuple[float | None, str]:
    """The exponent ``compare`` uses and where it came from.

    Args:
        f, y0, t: the system, the test states ``[n, *state]`` and times ``[time]``.
        lyapunov_exponent: a finite number (used as given), ``None`` (not used: prediction
            times in time units), ``"auto"`` (``f.lyapunov_exponent`` when it is a finite
            number, else estimated) or ``"estimate"``.
        step_size: the coarse step ``h``; an estimate runs ``method`` at ``h / 8`` on four
            test states over ``max(horizon, 20 h)``.

    Returns:
        ``(exponent or None, source)``; an estimate that comes out non-finite is ``None``.
    """
    if lyapunov_exponent is None:
        return None, "not used"
    if is_real(lyapunov_exponent):
        if not math.isfinite(lyapunov_exponent):
            raise ValueError(f"lyapunov_exponent must be finite, got {lyapunov_exponent!r}")
        return float(lyapunov_exponent), "given"
    if lyapunov_exponent not in ("auto", "estimate"):
        raise ValueError(f"lyapunov_exponent must be a number, None, 'auto' or 'estimate', got {lyapunov_exponent!r}")
    if lyapunov_exponent == "auto":
        lam = getattr(f, "lyapunov_exponent", None)
        if isinstance(lam, numbers.Real) and math.isfinite(lam):  # the system's own value
            return float(lam), "the system's lyapunov_exponent"
    horizon = float(t[-1] - t[0])
    lam = estimate_lyapunov_exponent(f, y0[:4].to(torch.float64), max(horizon, 20 * step_size),
                                     step_size=step_size / 8, method=method, t0=float(t[0]))
    return (lam if math.isfinite(lam) else None), "estimated (Benettin, perturbation growth)"
