"""Per-sample time grids: ``solve(f, y0, t)`` with ``t`` of shape ``[batch, n_t]``.

Each sample ``b`` is solved on its own grid ``t[b]``, from ``y0[b]``; the result is
``[n_t, batch, *y0.shape[1:]]`` (output ``i`` of sample ``b`` at ``t[b, i]``).  Which methods
run the batch at once (``f`` then receives ``t`` of shape ``[batch, 1, ...]``, each sample's
own time, broadcastable against ``y``):

* ``dopri5``, ``dopri8`` (explicit, adaptive) and ``kvaerno5`` (implicit, adaptive): one
  batched loop with a step size, an accept/reject decision and a time per sample; finished
  samples are masked out.  ``dopri5`` interpolates its outputs with its dense output;
  ``dopri8`` and ``kvaerno5`` step onto them.  Each sample's result equals the same method
  on that sample alone (a ``[1, n_t]`` grid) to round-off, and torchdiffeq's separate solve
  to the tolerance.
* The explicit Runge–Kutta methods at fixed steps (``euler``, ``midpoint``, ``heun``,
  ``ssprk3``, ``rk4``, ``rk38``), without a corrector or ``compile``: every sample takes the
  steps of its own grid (``step_size`` splits each of its intervals as a separate solve
  would), all samples in one step call; a sample with fewer steps idles once done.  Equal to
  the separate solves to round-off.  No step-doubling ``CoarseStepWarning`` is given.
* Every other method (spectral, ``kvaerno5_fixed``, a corrector, ``compile``) solves the
  samples one after the other (a batch of one each, ``f`` sees a 0-d ``t``): exactly the
  separate solves, not batched.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..steppers.adaptive import StepSizeUnderflow
from ..steppers.base import ExplicitRK
from ..steppers.registry import MethodSpec
from .checks import DEFAULT_MAX_STEPS, check_f, check_options, check_y0_t, step_grid, time_eps
from .errors import NonFiniteSolutionError, all_finite

__all__ = ["check_grid", "solve_per_sample"]

#: the methods whose runner takes a ``[batch, n_t]`` grid and steps each sample on its own
BATCHED_GRIDS = frozenset({"kvaerno5", "dopri5", "dopri8"})
#: options that keep a fixed-step solve on the one-by-one path
_UNBATCHED_OPTIONS = frozenset({"compile", "compile_chunk", "checkpoint_steps", "adjoint", "adjoint_params"})


def check_grid(y0, t: Tensor) -> None:
    """``t`` is ``[batch, n_t]`` with ``y0``'s batch and each row strictly monotone (the
    error names the first sample that is not)."""
    if not isinstance(y0, Tensor) or y0.dim() < 2 or y0.shape[0] != t.shape[0]:
        shape = tuple(y0.shape) if isinstance(y0, Tensor) else type(y0).__name__
        raise ValueError(
            f"t must be 1-D (one grid for the batch) or [batch, n_t] (one grid per sample, y0 [batch, ...] with "
            f"batch = {t.shape[0]}); got t of shape {tuple(t.shape)} and y0 {shape}")
    if t.shape[1] == 0:
        raise ValueError(f"t must be 1-D with at least one time, or [batch, n_t] with n_t >= 1; got shape "
                         f"{tuple(t.shape)}")
    if t.shape[1] > 1:
        tt = t.detach().double()
        step = (tt[:, 1:] - tt[:, :-1]) * torch.sign(tt[:, -1:] - tt[:, :1])
        bad = (step <= 0).any(1) | ~torch.isfinite(tt).all(1)
        if bool(bad.any()):
            b = int(torch.nonzero(bad)[0, 0])
            raise ValueError(f"t[{b}], the time grid of sample {b}, is not strictly monotone (or not finite): "
                             f"{t[b].tolist()}; sort that row")


def solve_per_sample(solve_one: Callable, spec: MethodSpec, f, y0: Tensor, t: Tensor, *, step_size, corrector,
                     options) -> Tensor:
    """The solve of a ``[batch, n_t]`` grid (see the module's docstring); ``solve_one`` is
    ``attsolver.solve`` itself, for the separate solves."""
    check_grid(y0, t)
    if spec.name in BATCHED_GRIDS:
        return _adaptive_batched(spec, f, y0, t, step_size=step_size, corrector=corrector, options=options)
    if spec.kind == "fixed" and corrector is None and not (set(options or ()) & _UNBATCHED_OPTIONS):
        stepper = spec.build(f, y0)
        if isinstance(stepper, ExplicitRK) and not t.requires_grad:
            return _fixed_batched(spec, stepper, f, y0, t, step_size, options)
    rows = [solve_one(f, y0[b:b + 1], t[b], method=spec.name, step_size=step_size, corrector=corrector,
                      options=options)[:, 0] for b in range(y0.shape[0])]
    return torch.stack(rows, 1)


def _adaptive_batched(spec: MethodSpec, f, y0: Tensor, t: Tensor, *, step_size, corrector, options) -> Tensor:
    if step_size is not None or corrector is not None:
        raise ValueError(f"{spec.name!r} is adaptive: it takes neither step_size nor a corrector")
    if set(options or ()) & _UNBATCHED_OPTIONS:
        raise ValueError(f"{spec.name!r} on a per-sample grid t [batch, n_t] back-propagates through its batched "
                         "loop: options 'adjoint' and 'checkpoint_steps' do not apply; drop them, or solve each "
                         "sample with a 1-D t")
    if t.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"{spec.name!r} on a per-sample grid gives no gradient with respect to t; pass "
                         "t.detach(), or solve each sample with a 1-D t (dopri5/dopri8 differentiate t there)")
    y0, t0 = check_y0_t(y0, t[:, 0][:1])
    opts = check_options(options, spec)
    for key in ("growth_bound", "max_steps", "max_wall_s", "max_output_bytes"):
        opts.pop(key, None)
    opts["per_sample"] = True
    check_f(f, y0, t0.to(y0.dtype), check_finite=bool(opts.get("check_finite", True)), adaptive=True)
    if t.shape[1] == 1:
        return y0.unsqueeze(0)
    try:
        return spec.run(f, y0, t, opts)
    except StepSizeUnderflow as e:  # the same error as a 1-D solve gives
        raise NonFiniteSolutionError(f"{e} (method {spec.name!r}, per-sample grid); check f or shorten that "
                                     "sample's grid", step=None, time=e.time, partial=y0.unsqueeze(0)) from None


def _fixed_batched(spec: MethodSpec, stepper: ExplicitRK, f, y0: Tensor, t: Tensor, step_size, options) -> Tensor:
    """Every sample on its own step grid, the batch in one step call per step (see the module)."""
    y0, t0 = check_y0_t(y0, t[:, 0][:1])
    opts = check_options(options, spec)
    t_f = t.to(y0.real.dtype if y0.is_complex() else y0.dtype)
    check_f(f, y0, t_f[0, :1], check_finite=bool(opts.get("check_finite", True)))
    B, n_t = t.shape
    if n_t == 1:
        return y0.unsqueeze(0)
    t_np = t.detach().cpu().double().numpy()
    budget = int(opts.get("max_steps", DEFAULT_MAX_STEPS))
    starts, steps, outs = [], [], []
    for b in range(B):  # the step plan a separate solve of sample b would make
        n_sub, h_int = step_grid(t_np[b], step_size, time_eps=time_eps(t), max_steps=budget, y0=y0[b:b + 1])
        k = np.concatenate([np.arange(n) for n in n_sub])
        interval = np.repeat(np.arange(len(n_sub)), n_sub)
        starts.append(t_np[b][interval] + h_int[interval] * k)
        steps.append(h_int[interval])
        outs.append(np.where(k == n_sub[interval] - 1, interval + 1, -1))
    n_max = max(len(s) for s in steps)
    pad = lambda rows, fill: np.stack([np.pad(r, (0, n_max - len(r)), constant_values=fill) for r in rows], 1)  # noqa: E731
    starts, steps, outs = pad(starts, 0.0), pad(steps, 0.0), pad(outs, -1)
    nodes = np.asarray(stepper.nodes, dtype=np.float64)
    dev = y0.device
    stage = torch.as_tensor(starts[:, None, :] + nodes[None, :, None] * steps[:, None, :]).to(dev, t_f.dtype)
    tshape = (B,) + (1,) * (y0.dim() - 1)
    h_all = torch.as_tensor(steps).to(dev, y0.real.dtype if y0.is_complex() else y0.dtype)
    live_all = torch.as_tensor(steps != 0.0).to(dev)
    rows, y = [y0] * n_t, y0
    for i in range(n_max):
        ts = [s.reshape(tshape) for s in stage[i].unbind(0)]
        y_new = stepper.step_for_compile(ts, y, h_all[i].reshape(tshape))
        y = torch.where(live_all[i].reshape(tshape), y_new, y)
        for j in np.unique(outs[i][outs[i] >= 0]).tolist():
            rows[j] = torch.where(torch.as_tensor(outs[i] == j).to(dev).reshape(tshape), y, rows[j])
    sol = torch.stack(rows)
    if opts.get("check_finite", True) and not all_finite(sol):
        bad = ~torch.isfinite(sol.reshape(n_t, B, -1)).all(-1)
        i, b = (int(v) for v in torch.nonzero(bad)[0])
        raise NonFiniteSolutionError(
            f"the solution of sample {b} became non-finite by t={float(t[b, i]):.6g} (output {i}) with {spec.name!r}; "
            "take a smaller step_size or check f", step=None, time=float(t[b, i]), partial=sol[:i])
    return sol
