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
from .metrics import clamp_blow_ups, normalized_error

__all__ = ["ErrorBounds", "calibrate", "conformal_quantile", "conformal_rank", "min_calibration_size",
           "compare_error_bars", "error_bars_line"]


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


#: ``compare``'s split of its test trajectories: this seed, half of them calibrate
SPLIT_SEED = 0


def _elapsed_index(t_cal: Tensor, t: Tensor) -> Tensor:
    """Indices into ``t_cal`` of ``t``'s elapsed times (``t - t[0]``); a ``ValueError`` naming
    the first one the calibration trajectories were not observed at."""
    el_cal = (t_cal.double() - float(t_cal[0])).abs().cpu()
    el = (t.double() - float(t[0])).abs().cpu()
    idx = torch.searchsorted(el_cal, el).clamp_max(len(el_cal) - 1)
    lower = (idx - 1).clamp_min(0)
    idx = torch.where((el_cal[lower] - el).abs() < (el_cal[idx] - el).abs(), lower, idx)
    off = (el_cal[idx] - el).abs() > 1e-9 * max(float(el.max()), 1.0)
    if bool(off.any()):
        raise ValueError(
            f"calibration= has no observation at elapsed time {float(el[off][0]):g} of the test times (its "
            f"times: 0 .. {float(el_cal[-1]):g}); give calibration trajectories on the test set's time grid "
            "and at least as long")
    return idx


def compare_error_bars(f: Any, pred: Tensor, true: Tensor, t: Tensor, scale: Tensor, coverage: float | None, *,
                       calibration: Any = None, model: Any = None, method: str = "rk4",
                       step_size: float | None = None, limit: float | None = None) -> dict[str, Any] | None:
    """``compare``'s error bars: a split-conformal bound on the corrected solve's normalised
    error ``e(t)`` (:func:`attsolver.evaluate.metrics.normalized_error`, the error-vs-time
    curves' metric) per output time.

    Without ``calibration``, the test trajectories are split at random (seed
    :data:`SPLIT_SEED`): half calibrate, the other half measure the bound's coverage.  With
    ``calibration`` (a :class:`~attsolver.data.TrajectoryDataset` of held-out trajectories with
    clean values), those are solved by the corrected solve and calibrate, and every test
    trajectory measures coverage.  ``pred``, ``true``: ``[n, T, *state]``; ``limit``: the blow-up
    bound (:func:`~attsolver.evaluate.metrics.clamp_blow_ups`: a NaN or diverged prediction
    counts as an error at the bound, as in the error-vs-time curves).

    Returns:
        ``None`` when ``coverage`` is ``None``; else a dict: ``coverage``, ``source``,
        ``n_calibration``, ``n_evaluation``, ``t``, ``bound`` (per time), ``error_median`` (the
        evaluation trajectories' median ``e(t)``), ``held_out_coverage`` (per time) and its mean
        over ``t > t[0]``; or, when there are too few trajectories, ``bound = None`` and ``note``.
    """
    if coverage is None:
        return None
    n_min = min_calibration_size(coverage)
    err = normalized_error(_clamped(pred, limit), true, scale)  # [n, T]
    if calibration is None:
        n = err.shape[0]
        n_cal = n // 2
        base = {"coverage": float(coverage), "t": [float(x) for x in t]}
        if n_cal < n_min:
            return {**base, "bound": None, "source": "split of the test set",
                    "note": f"no error bars: {n} test trajectories, and a split at coverage {coverage:g} needs "
                            f"at least {2 * n_min} (half of them calibrate; at least {n_min}); give more test "
                            "trajectories or calibration="}
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
        cal_err, eval_err = err[perm[:n_cal]], err[perm[n_cal:]]
        source = f"split of the test set: {n_cal} calibrate, {n - n_cal} evaluate (seed {SPLIT_SEED})"
    else:
        cal_err, eval_err = _calibration_errors(f, calibration, t, scale, model, method, step_size, limit), err
        source = f"calibration data: {cal_err.shape[0]} trajectories; all {err.shape[0]} test trajectories evaluate"
    bound = conformal_quantile(cal_err, coverage)
    inside = (eval_err <= bound).double().mean(0)
    return {"coverage": float(coverage), "source": source, "n_calibration": int(cal_err.shape[0]),
            "n_evaluation": int(eval_err.shape[0]), "t": [float(x) for x in t],
            "bound": [float(x) for x in bound], "error_median": [float(x) for x in eval_err.median(0).values],
            "held_out_coverage": [float(x) for x in inside],
            "held_out_coverage_mean": float(inside[1:].mean()) if len(inside) > 1 else float(inside.mean())}


@torch.no_grad()
def _clamped(pred: Tensor, limit: float | None) -> Tensor:
    return pred if limit is None else clamp_blow_ups(pred, limit)


def _calibration_errors(f, calibration, t: Tensor, scale: Tensor, model, method: str, step_size, limit) -> Tensor:
    """``e(t)`` ``[n_cal, T]`` of the corrected solve on the calibration trajectories at ``t``'s elapsed times."""
    if not isinstance(calibration, TrajectoryDataset):
        raise TypeError(f"calibration must be a TrajectoryDataset, got {type(calibration).__name__}")
    idx = _elapsed_index(calibration.t, t)
    try:
        true = calibration.y_true.double()
    except ValueError:
        raise ValueError("calibration= holds noisy observations without clean values; generate it with noise 0"
                         ) from None
    cal_t = calibration.t.to(t.dtype)[: int(idx.max()) + 1]
    pred = solve(f, true[:, 0].to(t.dtype), cal_t, method=method, step_size=step_size, corrector=model,
                 options={"check_finite": False})
    return normalized_error(_clamped(pred.transpose(0, 1)[:, idx], limit), true[:, idx], scale)


def error_bars_line(bars: dict[str, Any] | None) -> str | None:
    """One line for ``compare``'s printed summary (``None`` without error bars)."""
    if bars is None:
        return None
    if bars["bound"] is None:
        return bars["note"]
    b, n = bars["bound"], len(bars["bound"])
    at = ", ".join(f"{name} {b[min(n - 1, round(q * (n - 1)))]:.3g}" for name, q in (("1/4", 0.25), ("1/2", 0.5),
                                                                                      ("end", 1.0)))
    return (f"error bars: {bars['coverage']:.0%} split-conformal bound on the corrected e(t) at {at} of the horizon; "
            f"held-out coverage {bars['held_out_coverage_mean']:.1%} ({bars['source']})")
