"""Training samples: the classical step(s) through :func:`attsolver.solve`, the one-step
residual targets or the rollout windows, the normalisation statistics, and batches.

There is one step loop in the library, ``solve``'s: the classical step ``Phi_h`` that the
targets subtract is ``solve`` without a corrector, with ``step_size=h``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..integrate import solve

__all__ = ["classical_steps", "Prepared", "prepare", "batch_of"]

#: what ``solve`` does not check in the targets' inner solves: their finiteness (an overflowing
#: step surfaces as non-finite statistics, with its own message)
_UNCHECKED = {"check_finite": False}


def classical_steps(method: str, f, y: Tensor, t0: np.ndarray, h: float, n_steps: int,
                    autonomous: bool) -> Tensor:
    """``Phi_h^{n_steps}`` applied to ``y [n, m, *state]`` whose column ``j`` starts at time
    ``t0[j]`` (float64 seconds): ``n_steps`` uncorrected steps of ``h`` by ``solve``.

    With ``autonomous`` (``f`` ignores ``t``) every column starts at ``t = 0`` and all go in one
    batched solve; otherwise each column is one solve from its own start time.  A row that is
    already non-finite (a classical rollout that blew up) comes back as NaN.
    """
    n, m = y.shape[:2]
    with torch.no_grad():
        if autonomous:
            flat = y.reshape(n * m, *y.shape[2:])
            return _advance(method, f, flat, 0.0, h, n_steps).reshape(y.shape)
        return torch.stack([_advance(method, f, y[:, j], float(t0[j]), h, n_steps)
                            for j in range(m)], dim=1)


def _advance(method: str, f, y0: Tensor, t_start: float, h: float, n_steps: int) -> Tensor:
    """``n_steps`` steps of ``h`` from ``y0 [b, *state]`` at ``t_start``: one solve over
    ``[t_start, t_start + n_steps h]``.

    ``solve`` steps by ``(t_end - t_start) / n_steps``: exactly ``h`` from ``t_start = 0`` when
    ``n_steps h / n_steps`` rounds back to ``h`` (one step, a power of two, ``h = dt / m``), so the
    targets are those of the classical step itself; otherwise the step is ``h`` up to rounding.
    """
    if not bool(torch.isfinite(y0).all()):  # solve refuses a non-finite start: such rows give NaN
        finite = torch.isfinite(y0.reshape(len(y0), -1)).all(dim=1)
        out = torch.full_like(y0, torch.nan)
        if bool(finite.any()):
            out[finite] = _advance(method, f, y0[finite], t_start, h, n_steps)
        return out
    t = torch.tensor([t_start, t_start + n_steps * h], dtype=torch.float64, device=y0.device)
    return solve(f, y0, t, method=method, step_size=h, options=_UNCHECKED)[-1]


@dataclass
class Prepared:
    """Training or validation samples in the corrector's dtype and device.

    ``kind`` is ``"step"`` (one-step regression: ``tensors`` = flat ``y, dy, r, t_start``) or
    ``"window"`` (rollout through solve: ``tensors`` = the trajectories ``[n, nt, *state]``,
    windows cut from them by :func:`batch_of`).
    """

    kind: str
    tensors: tuple[Tensor, ...]

    def count(self, k: int) -> int:
        """Samples in an epoch whose windows span ``k`` data intervals."""
        if self.kind == "step":
            return self.tensors[0].shape[0]
        n, nt = self.tensors[0].shape[:2]
        return n * (nt - k)


def prepare(corrector, data, f, autonomous: bool, m: int, args: dict[str, Any], *, one_step: bool,
            fit_stats: bool) -> tuple[Prepared, dict[str, Tensor]]:
    """The samples of ``data`` and, with ``fit_stats``, the corrector's normalisation
    statistics (``in_mean``, ``in_std``, ``out_scale``) from them.

    ``m`` is the number of steps per data interval; ``one_step`` selects one-step targets
    (``m == 1`` and no rollout), else rollout windows.
    """
    h = args["step_size"]
    y = data.y.to(torch.float64)
    n, nt = y.shape[:2]
    t = data.t.double().numpy()
    y_step = classical_steps(args["method"], f, y[:, :-1], t[:-1], h, 1, autonomous)
    dy1 = y_step - y[:, :-1]
    t_start = torch.as_tensor(t[:-1], dtype=torch.float64).expand(n, nt - 1)  # each sample's start time
    # residual over one data interval (m steps); for m == 1 the one-step target
    y_interval = y_step if m == 1 else classical_steps(args["method"], f, y[:, :-1], t[:-1], h, m, autonomous)
    r_interval = y[:, 1:] - y_interval
    stats = _normalisation(corrector, y, dy1, r_interval, t_start, h, m) if fit_stats else {}
    dev, dtype = corrector.out_scale.device, corrector.dtype
    if one_step:
        flat = [v.reshape(-1, corrector.state_dim).to(device=dev, dtype=dtype) for v in (y[:, :-1], dy1, r_interval)]
        flat.append(t_start.reshape(-1).to(device=dev, dtype=dtype))
        return Prepared("step", tuple(flat)), stats
    return Prepared("window", (y.to(device=dev, dtype=dtype),)), stats


def _normalisation(corrector, y: Tensor, dy1: Tensor, r_interval: Tensor, t_start: Tensor, h: float,
                   m: int) -> dict[str, Tensor]:
    """Per-component input mean / std of the features and the RMS per-step residual."""
    r = r_interval.reshape(-1, corrector.state_dim)
    u = corrector.compute_features(y[:, :-1].reshape(-1, corrector.state_dim),
                                   dy1.reshape(-1, corrector.state_dim), h, t_start.reshape(-1))
    mean = u.mean(dim=0)
    std = u.std(dim=0, correction=0)
    # a constant feature (e.g. h itself) is centred but not scaled
    std = torch.where(std > 1e-12 * torch.clamp(mean.abs(), min=1.0), std, torch.ones_like(std))
    per_step = r / (m * (h ** corrector.output_order))
    rms = per_step.square().mean(dim=0).sqrt()
    top = float(rms.max())
    floor = 1e-12 * top if top > 0 else 1.0
    rms = torch.where(rms > floor, rms, torch.full_like(rms, top if top > 0 else 1.0))
    return {"in_mean": mean, "in_std": std, "out_scale": rms}


def batch_of(prep: Prepared, idx: Tensor, k: int) -> tuple[str, tuple[Tensor, ...]]:
    """The samples ``idx``: one-step ``(y, dy, r, t_start)``, or windows of ``k`` intervals
    ``(y_start [b, *s], targets [b, k, *s], start index [b])``."""
    if prep.kind == "step":
        return "step", tuple(v[idx] for v in prep.tensors)
    (y,) = prep.tensors
    n_windows = y.shape[1] - k
    traj, start = idx // n_windows, idx % n_windows
    times = start[:, None] + torch.arange(k + 1)
    win = y[traj[:, None], times]  # [b, k+1, *s]
    return "window", (win[:, 0], win[:, 1:], start)
