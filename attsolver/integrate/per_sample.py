"""Per-sample time grids: ``solve(f, y0, t)`` with ``t`` of shape ``[batch, n_t]``.

Each sample ``b`` is solved on its own grid ``t[b]``, from ``y0[b]``; the result is
``[n_t, batch, *y0.shape[1:]]`` (output ``i`` of sample ``b`` at ``t[b, i]``).

* ``kvaerno5`` (adaptive, implicit) runs the whole batch at once with per-sample step-size
  control (``options["per_sample"]`` is implied): ``f`` receives ``t`` of shape
  ``[batch, 1, ...]``, broadcastable against ``y``.
* Every other method solves the samples one after the other (a batch of one each, ``f`` sees
  a 0-d ``t``), so the result equals the separate solves exactly; it is not batched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..steppers.registry import MethodSpec
from .checks import check_f, check_options, check_y0_t

__all__ = ["check_grid", "solve_per_sample"]

#: the methods whose runner takes a ``[batch, n_t]`` grid and steps each sample on its own
BATCHED_GRIDS = frozenset({"kvaerno5"})


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
    if spec.name not in BATCHED_GRIDS:
        rows = [solve_one(f, y0[b:b + 1], t[b], method=spec.name, step_size=step_size, corrector=corrector,
                          options=options)[:, 0] for b in range(y0.shape[0])]
        return torch.stack(rows, 1)
    if step_size is not None or corrector is not None:
        raise ValueError(f"{spec.name!r} is adaptive: it takes neither step_size nor a corrector")
    y0, t0 = check_y0_t(y0, t[:, 0][:1])
    opts = check_options(options, spec)
    opts.pop("growth_bound", None)
    opts.pop("max_steps", None)
    opts["per_sample"] = True
    check_f(f, y0, t0.to(y0.dtype), check_finite=bool(opts.get("check_finite", True)), adaptive=True)
    if t.shape[1] == 1:
        return y0.unsqueeze(0)
    return spec.run(f, y0, t, opts)
