"""Terminal events for the adaptive ``dopri5``, ``dopri8`` and ``kvaerno5``: ``solve(f, y0, t, method=..., event=g)``.

The batch is solved by :func:`attsolver.steppers.embedded.erk_solve` (``dopri5``/``dopri8``)
or :func:`attsolver.steppers.implicit.esdirk_solve` (``kvaerno5``) in lock-step: ``t`` is 1-D,
one time for the batch, ``f`` gets a 0-d ``t`` as with torchdiffeq, and the step size is set by
the samples that have not fired; ``options={"per_sample": True}`` gives each sample its own
time and step instead (``f`` then gets ``t`` of the batch shape plus a trailing 1).  After every
accepted step, ``g(t, y)`` at the step's end is compared with its value at the start; a sample
whose value changed sign (or reached zero) fires in that step, and the crossing is located on
the step:

* ``dopri5``: bisection on the step's own 4th-order dense output (local error ``O(h^5)``,
  the size of the step's error estimate, so at ``rtol`` the event time is about as accurate
  as the solution), to ``event_tol`` in time;
* ``dopri8``, ``kvaerno5``: bisection on the cubic Hermite interpolant (``O(h^4)``: too coarse
  for their steps), then Newton's iteration on the step itself, ``G(σ) = g(t_n + σ, Φ_σ(y_n))``
  with ``Φ_σ`` the method's step of length ``σ``, to ``event_tol``: the event time is as
  accurate as the method's steps.

Each sample stops at its own event; its later outputs hold its state at the event, and the
solve ends when every sample has fired or at ``t[-1]`` (``+inf`` for a sample that never
fired).  The event time is differentiable with respect to ``y0`` and the parameters of ``f``
and ``g`` by the implicit function theorem, ``dt*/dθ = -(∂G/∂θ) / (dG/dt)``, with
``dG/dt = ∂g/∂t + ∇_y g · f(t*, y*)``; the state at the event is differentiable through the
step's stages and ``t*``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..steppers.embedded import StepData, erk_solve, get_pair, solver_options
from ..steppers.implicit import esdirk_solve

__all__ = ["EVENT_ADAPTIVE_METHODS", "adaptive_event_solve"]

#: the adaptive methods that take ``event=``
EVENT_ADAPTIVE_METHODS = frozenset({"dopri5", "dopri8", "kvaerno5"})
_MAX_HALVINGS = 100
_NEWTON_ITERS = 8


class _Watcher:
    """The event state of the batch: ``g`` at the last accepted step's end, which samples
    fired, and their event times and states (both with their graphs)."""

    def __init__(self, event: Callable, y0: Tensor, t0: float, tol: float):
        self.event, self.tol = event, tol
        self.batch, self.dtype = y0.shape[:-1], y0.dtype
        self.B = math.prod(self.batch)
        with torch.no_grad():
            self.g_prev = self.g(torch.full((self.B,), t0, dtype=torch.float64, device=y0.device),
                                 y0.reshape(self.B, -1))
        self.fired = torch.zeros(self.B, dtype=torch.bool, device=y0.device)
        self.t_event = torch.full((self.B,), math.inf, dtype=self.dtype, device=y0.device)

    def g(self, time: Tensor, state: Tensor) -> Tensor:
        """``g`` on ``[B]`` times and ``[B, d]`` states, as ``[B]``."""
        tt = time.to(self.dtype).reshape(self.batch)
        return self.event(tt, state.reshape(*self.batch, -1)).reshape(self.B)

    def __call__(self, step: StepData):
        acc = step.accepted & ~self.fired
        if not bool(acc.any()):
            return None
        with torch.no_grad():
            g_new = self.g(step.cur + step.h, step.Yn)
        prev = self.g_prev
        cross = acc & (((prev > 0) & (g_new <= 0)) | ((prev < 0) & (g_new >= 0)))
        self.g_prev = torch.where(acc, g_new, prev)
        if not bool(cross.any()):
            return None
        tau = self._bisect(step, prev, cross)
        if step.pair.dense == "hermite":
            tau = self._polish(step, tau, cross)
        t_star, y_star = self._attach(step, tau, cross)
        self.t_event = torch.where(cross, t_star, self.t_event)
        self.fired = self.fired | cross
        return cross, tau, y_star

    def _bisect(self, step: StepData, g_start: Tensor, cross: Tensor) -> Tensor:
        """The crossing time on the dense output (float64, no graph; meaningful in ``cross``)."""
        lo, hi = torch.zeros_like(step.h), torch.ones_like(step.h)
        sign0 = torch.sign(g_start)
        h_max = float(step.h[cross].abs().max())
        n = min(_MAX_HALVINGS, max(1, math.ceil(math.log2(max(h_max, self.tol) / self.tol)) + 1))
        with torch.no_grad():
            for _ in range(n):
                mid = 0.5 * (lo + hi)
                same = torch.sign(self.g(step.cur + mid * step.h, step.interpolate(mid, detach=True))) == sign0
                lo, hi = torch.where(same, mid, lo), torch.where(same, hi, mid)
        return step.cur + 0.5 * (lo + hi) * step.h

    def _slope(self, tau: Tensor, y: Tensor, fy: Tensor) -> Tensor:
        """``dG/dt = ∂g/∂t + ∇_y g · f`` at ``(tau, y)`` (no graph), 1 where it is 0."""
        with torch.enable_grad():
            tt = tau.to(self.dtype).detach().requires_grad_(True)
            yy = y.detach().requires_grad_(True)
            val = self.event(tt.reshape(self.batch), yy.reshape(*self.batch, -1)).reshape(self.B)
            g_t, g_y = torch.autograd.grad(val.sum(), (tt, yy), allow_unused=True)
        slope = (g_y * fy.detach()).sum(-1) if g_y is not None else torch.zeros_like(tt)
        slope = slope + (g_t if g_t is not None else 0.0)
        return torch.where(slope != 0, slope, torch.ones_like(slope)).detach()

    def _polish(self, step: StepData, tau: Tensor, cross: Tensor) -> Tensor:
        """Newton on ``G(σ) = g(t_n + σ, Φ_σ(y_n))``, the step itself (float64, no graph)."""
        lo, hi = torch.minimum(step.cur, step.cur + step.h), torch.maximum(step.cur, step.cur + step.h)
        with torch.no_grad():
            for _ in range(_NEWTON_ITERS):
                y, fy = step.restep(tau - step.cur, cross)
                val = self.g(tau, y)
                delta = (val / self._slope(tau, y, fy)).double()
                tau = torch.where(cross, (tau - delta).clamp(lo, hi), tau)
                if float(delta[cross].abs().max()) <= self.tol:
                    break
        return tau

    def _attach(self, step: StepData, tau: Tensor, cross: Tensor) -> tuple[Tensor, Tensor]:
        """``(t*, y*)`` at the located times with the implicit-function-theorem derivatives."""
        if step.pair.dense == "hermite":
            y_tau, f_tau = step.restep(tau - step.cur, cross)
        else:
            h = torch.where(step.h == 0, 1.0, step.h)  # finished samples: a harmless step
            theta = (tau - step.cur) / h
            y_tau = step.interpolate(theta)
            f_tau = step.slope(theta)  # the interpolant's own slope
        tau_t = tau.to(self.dtype)
        if not torch.is_grad_enabled():
            return tau_t, y_tau
        slope = self._slope(tau, y_tau, f_tau)
        value = self.g(tau, y_tau)  # differentiable in θ at the fixed time tau
        t_star = tau_t - (value - value.detach()) / slope
        y_star = y_tau + f_tau.detach() * (t_star - tau_t).unsqueeze(1)
        return t_star, y_star


def adaptive_event_solve(name: str, f: Callable, y0: Tensor, t: Tensor, options: dict, event: Callable,
                         tol: float) -> tuple[Tensor, Tensor]:
    """``(event_times, solution)``: event times of ``y0.shape[:-1]`` (``+inf`` where the event
    never fired), the solution ``[len(t), *y0.shape]`` with each sample held at its event
    state after its event (see the module's docstring)."""
    grid = t.detach().cpu().double()
    watcher = _Watcher(event, y0, float(grid[0]), tol)
    if name == "kvaerno5":
        if y0.dim() > 2 or options.get("coupled", False):
            raise ValueError(f"event= with kvaerno5 takes y0 of shape [batch, d] (got {tuple(y0.shape)}) and no "
                             "'coupled' option: reshape y0 to [batch, d], or use dopri5/dopri8")
        sol = esdirk_solve(f, y0, t, options, watch=watcher)
        return watcher.t_event.reshape(y0.shape[:-1]), sol
    opts = solver_options(name, options)
    shared = not options.get("per_sample", False)
    sol = erk_solve(get_pair(name), f, y0, grid, opts, sample_dims=y0.dim() - 1, shared=shared, watch=watcher)
    return watcher.t_event.reshape(y0.shape[:-1]), sol
