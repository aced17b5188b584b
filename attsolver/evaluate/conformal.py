"""Calibrated error bars on a corrected solve by split conformal prediction.

From ``n`` held-out calibration trajectories, each solved from its first observed state, the
nonconformity score at output time ``t_j`` is the error's Euclidean norm
``s_ij = |y_hat_i(t_j) - y_i(t_j)|``.  For coverage ``1 - alpha`` the bound at ``t_j`` is the
``k``-th smallest of ``s_1j, ..., s_nj`` with ``k = ceil((n + 1)(1 - alpha))``: for a new
trajectory exchangeable with the calibration ones, ``P(|y_hat(t_j) - y(t_j)| <= bound_j) >=
1 - alpha`` at every ``t_j`` (and ``< 1 - alpha + 1 / (n + 1)`` when the scores have no ties;
Vovk et al. 2005, Lei et al. 2018; for surrogate rollouts, Gopakumar et al. 2024).  ``k <= n``
needs ``n >= ceil(1 / alpha) - 1`` calibration trajectories.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validate import finite_number
from ..data import TrajectoryDataset
from ..integrate import solve
from ..integrate.error_bounds import ErrorBounds, weights_fingerprint

__all__ = ["ErrorBounds", "calibrate", "conformal_quantile", "conformal_rank", "min_calibration_size"]


def _alpha(coverage: Any) -> float:
    coverage = finite_number("coverage", coverage, low=0.0, high=1.0, low_open=True, high_open=True)
    return 1.0 - coverage


def min_calibration_size(coverage: float) -> int:
    """The fewest calibration samples for which the bound at ``coverage`` is finite: ``ceil(1/alpha) - 1``."""
    return conformal_rank(0, coverage, check=False)[1]


def conformal_rank(n: int, coverage: float, *, check: bool = True) -> tuple[int, int]:
    """``(k, n_min)``: the rank ``k = ceil((n + 1)(1 - alpha))`` of the bound among ``n``
    sorted scores, and the smallest ``n`` with ``k <= n``; ``check`` raises when ``n < n_min``."""
    alpha = _alpha(coverage)
    # (n + 1)(1 - alpha) in exact decimal steps: 0.9 * 20 must be 18, not 18.000000000000004
    k = math.ceil(round((n + 1) * (1.0 - alpha), 9))
    n_min = math.ceil(round(1.0 / alpha, 9)) - 1
    if check and n < n_min:
        raise ValueError(
            f"a calibration set of {n} is too small for coverage={1 - alpha:g}: split conformal needs "
            f"at least ceil(1/alpha) - 1 = {n_min} calibration trajectories (alpha = {alpha:g}); give "
            "more calibration trajectories or a lower coverage"
        )
    return k, n_min


def conformal_quantile(scores: Tensor, coverage: float) -> Tensor:
    """The split-conformal bound per column of ``scores [n, T]``: the ``k``-th smallest score
    with ``k = ceil((n + 1) coverage)`` (``[T]``)."""
    scores = torch.as_tensor(scores)
    if scores.ndim == 1:
        scores = scores[:, None]
    k, _ = conformal_rank(scores.shape[0], coverage)
    return scores.sort(dim=0).values[k - 1]


@torch.no_grad()
def calibrate(model: Any, data: TrajectoryDataset, coverage: float = 0.9, *, f: Any = None,
              method: str | None = None, step_size: float | None = None, guard: str | None = None
              ) -> ErrorBounds:
    """Split-conformal error bounds of ``solve(..., corrector=model)`` from held-out trajectories.

    Args:
        model: the corrector (``None``: bounds of the classical solve).
        data: calibration trajectories, not used in training, exchangeable with the ones the
            bounds will be used for; each is solved from its first observed state over ``data.t``.
        coverage: nominal coverage in ``(0, 1)``.
        f: the right-hand side (default the data's built-in system).
        method, step_size: default the corrector's.
        guard: passed to ``solve`` (calibrate the solve you will run).

    Returns:
        :class:`~attsolver.integrate.error_bounds.ErrorBounds`; ``bounds.at(t)`` gives them at a
        solve's output times.  They are also stored on the model (``model.error_bounds``, saved
        with its checkpoint), so that ``solve(..., corrector=model, return_error_bounds=True)``
        returns them with the solution.
    """
    n = len(data)
    conformal_rank(n, coverage)
    f = data.make_system() if f is None else f
    method = method or getattr(model, "method", "rk4")
    step_size = step_size if step_size is not None else getattr(model, "step_size", None)
    dtype = getattr(model, "dtype", data.y.dtype)
    y = data.y.to(dtype)
    pred = solve(f, y[:, 0], data.t, method=method, step_size=step_size, corrector=model, guard=guard)
    scores = torch.linalg.vector_norm((pred.transpose(0, 1) - y).reshape(n, len(data.t), -1), dim=-1)
    bound = conformal_quantile(scores.double(), coverage)
    bounds = ErrorBounds((data.t - data.t[0]).double().cpu(), bound.cpu(), float(coverage), n, method,
                         None if step_size is None else float(step_size), guard, weights_fingerprint(model))
    if model is not None:
        model.error_bounds = bounds
    return bounds


def coverage_of(bounds: ErrorBounds, pred: Tensor, truth: Tensor) -> np.ndarray:
    """Empirical coverage per output time of ``pred``, ``truth`` ``[T, n, *state]`` (fraction
    of trajectories whose error norm is within the bound)."""
    err = torch.linalg.vector_norm((pred - truth).reshape(pred.shape[0], pred.shape[1], -1), dim=-1)
    return (err.double().cpu() <= bounds.bound[:, None]).double().mean(1).numpy()
