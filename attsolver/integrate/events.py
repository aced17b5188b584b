"""Terminal events: ``solve(f, y0, t, event=g)`` stops each sample where ``g(t, y)`` crosses zero.

After every step the event function is evaluated at the step's end; a sample whose value
changed sign (strictly, or reached zero) in the step fires there.  The crossing is located by
bisection on the step's dense output, the cubic Hermite interpolant through ``(y_n, f_n)`` and
``(y_{n+1}, f_{n+1})`` (fourth-order accurate, exact for a solution that is a cubic in ``t``),
to ``event_tol`` in time.  Each sample stops at its own event: its later outputs hold the state
at the event, and the solve ends once every sample has fired (or at ``t[-1]``).  A sample whose
event never fires gets the time ``+inf``.  A crossing and a re-crossing inside one step are not
seen (take a smaller step).

The event time is differentiable (with respect to ``y0`` and the parameters of ``f``, of the
corrector and of ``g``) by the implicit function theorem: with ``t*`` the root of
``G(t, θ) = g(t, Y(t; θ))`` on the interpolant ``Y``, ``dt*/dθ = -(∂G/∂θ) / (dG/dt)``, where
``dG/dt = ∂g/∂t + ∇_y g · Y'(t*)`` and ``Y' ≈ f``.  The state returned at the event is
``Y(t*)``, differentiable through both its arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .._validate import positive_number
from .loop import StepPlan, corrected_step, stage_times

__all__ = ["DEFAULT_EVENT_TOL", "check_event", "event_loop"]

#: default tolerance, in time, of the bisection on each step's interpolant
DEFAULT_EVENT_TOL = 1e-12
#: the most bisection halvings per crossing (float64 resolves no more)
_MAX_HALVINGS = 100


def check_event(event: Callable, y0: Tensor, t0: Tensor, tol) -> float:
    """Call ``event(t0, y0)`` once: callable, a real tensor of ``y0``'s batch shape (every
    dimension but the last).  Returns the checked tolerance."""
    if not callable(event):
        raise TypeError(f"event must be callable as event(t, y) -> Tensor, got {type(event).__name__}")
    batch = y0.shape[:-1]
    with torch.no_grad():
        out = event(t0.expand(batch), y0)
    if not isinstance(out, Tensor):
        raise TypeError(f"event(t, y) must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != batch:
        raise ValueError(
            f"event(t, y) returned shape {tuple(out.shape)} but y0 of shape {tuple(y0.shape)} needs one value "
            f"per sample, shape {tuple(batch)} (y's shape without its last, state dimension): e.g. "
            "lambda t, y: y[..., 0] for 'the first component crosses zero'"
        )
    if out.is_complex() or not out.is_floating_point():
        raise TypeError(f"event(t, y) must return real floating values, got {out.dtype}")
    return positive_number("options['event_tol']", tol)


def _hermite(s: Tensor, h: float, y0: Tensor, y1: Tensor, f0: Tensor, f1: Tensor) -> Tensor:
    """The cubic Hermite interpolant at ``s in [0, 1]`` (one per sample, batch-shaped)."""
    s = s.unsqueeze(-1)
    s2, s3 = s * s, s * s * s
    return ((2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * h * f0
            + (3 * s2 - 2 * s3) * y1 + (s3 - s2) * h * f1)


def _bisect(g, t0: float, h: float, parts, g_start: Tensor, tol: float) -> Tensor:
    """The fraction ``s`` of the step where ``g`` on the interpolant crosses zero (no graph)."""
    y0, y1, f0, f1 = (p.detach() for p in parts)
    lo = torch.zeros_like(g_start)
    hi = torch.ones_like(g_start)
    sign0 = torch.sign(g_start)
    halvings = min(_MAX_HALVINGS, max(1, math.ceil(math.log2(max(abs(h), tol) / tol)) + 1))
    with torch.no_grad():
        for _ in range(halvings):
            mid = 0.5 * (lo + hi)
            gm = g(t0 + mid * h, _hermite(mid, h, y0, y1, f0, f1))
            same = torch.sign(gm) == sign0  # the root lies beyond mid
            lo = torch.where(same, mid, lo)
            hi = torch.where(same, hi, mid)
    return 0.5 * (lo + hi)


def _locate(g, f, t0: float, h: float, y0: Tensor, y1: Tensor, g_start: Tensor, cross: Tensor,
            tol: float) -> tuple[Tensor, Tensor]:
    """``(t*, y(t*))`` of the crossing inside the step, differentiable by the implicit function
    theorem (only the samples in ``cross`` are meaningful)."""
    tt = torch.as_tensor(t0, dtype=g_start.dtype, device=y0.device)
    f0, f1 = f(tt, y0), f(tt + h, y1)
    parts = (y0, y1, f0, f1)
    s = _bisect(g, t0, h, parts, g_start, tol)
    tau = t0 + s * h  # the root, no graph
    if not torch.is_grad_enabled():
        return tau, _hermite(s, h, *parts)
    with torch.enable_grad():
        tau_r = tau.detach().requires_grad_(True)
        g_t = g(tau_r, _hermite((tau_r - t0) / h, h, *(p.detach() for p in parts)))
        (dgdt,) = torch.autograd.grad(g_t.sum(), tau_r)  # samples are independent: the diagonal
    dgdt = torch.where(cross & (dgdt != 0), dgdt, torch.ones_like(dgdt))
    value = g(tau, _hermite(s, h, *parts))  # differentiable in θ at the fixed time tau
    t_star = tau - (value - value.detach()) / dgdt  # = tau; d/dθ = -(∂G/∂θ) / (dG/dt)
    return t_star, _hermite((t_star - t0) / h, h, *parts)


def event_loop(plan: StepPlan, f: Callable, event: Callable, tol: float) -> tuple[Tensor, Tensor]:
    """The fixed-step loop with a terminal event: ``(event_times, solution)``, event times of
    ``y0``'s batch shape (``+inf`` where the event never fired) and the solution
    ``[len(t), *y0.shape]`` with each sample held at its event state after its event."""
    stepper, corrector, y = plan.stepper, plan.corrector, plan.y0
    batch, dtype, device = y.shape[:-1], plan.t.dtype, y.device

    def g(time, state):  # event times as a tensor of the batch shape, always
        return event(torch.as_tensor(time, dtype=dtype, device=device).expand(batch), state)

    g_prev = g(float(plan.t_np[0]), y)
    fired = torch.zeros(batch, dtype=torch.bool, device=device)
    t_event = torch.full(batch, math.inf, dtype=dtype, device=device)
    y_event = torch.zeros_like(y)
    outputs, times = [y], stage_times(plan)
    for i, (n, h) in enumerate(zip(plan.n_sub.tolist(), plan.h_int.tolist())):
        for k in range(n):
            y, g_prev, t_event, y_event, fired = _step_and_watch(
                stepper, corrector, g, f, next(times), y, float(plan.t_np[i]) + h * k, h, g_prev,
                (t_event, y_event, fired), tol)
            if bool(fired.all()):  # every sample stopped: the rest of the outputs are the held states
                outputs.extend([y] * (len(plan.t_np) - len(outputs)))
                return t_event, torch.stack(outputs)
        outputs.append(y)
    return t_event, torch.stack(outputs)


def _step_and_watch(stepper, corrector, g, f, ts, y: Tensor, t_start: float, h: float, g_prev: Tensor, found,
                    tol: float):
    """One step and the event check after it: ``(y, g, t_event, y_event, fired)`` updated."""
    t_event, y_event, fired = found
    if corrector is None:
        y_next = stepper.from_state(stepper.step(ts, stepper.to_state(y), h))
    else:
        y_next = corrected_step(stepper, corrector, ts, y, h)
    g_next = g(t_start + h, y_next)
    cross = ~fired & (((g_prev > 0) & (g_next <= 0)) | ((g_prev < 0) & (g_next >= 0)))
    if bool(cross.any()):
        t_star, y_star = _locate(g, f, t_start, h, y, y_next, g_prev, cross, tol)
        t_event = torch.where(cross, t_star, t_event)
        y_event = torch.where(cross.unsqueeze(-1), y_star, y_event)
        fired = fired | cross
    y = torch.where(fired.unsqueeze(-1), y_event, y_next) if bool(fired.any()) else y_next
    return y, g_next, t_event, y_event, fired
