"""Error metrics for predicted trajectories and fields.

Conventions: ``pred`` and ``true`` are tensors of equal shape ``[batch, time, *state]``
(the layout of :class:`attsolver.data.TrajectoryDataset`; ``attsolver.solve`` returns
``[time, batch, *state]``, so transpose its result first).  Every function returns one value
per trajectory (shape ``[batch]``) unless it says otherwise, so the caller chooses how to
aggregate (mean, median, per seed).  A non-finite prediction gives a non-finite or maximal
error, never a silently small one.

* :func:`mse`, :func:`relative_l2`, :func:`mape` — pointwise-in-time errors over a whole
  trajectory;
* :func:`nrmse` — PDEBench's normalised RMSE, ``‖pred − true‖₂ / ‖true‖₂`` per sample and
  time over space, averaged over time (or per sample and time with ``reduce="none"``);
* :func:`normalized_error` — ``e(t)``, the error in units of the attractor's spread, per
  time;
* :func:`valid_prediction_time` — the first time ``e(t)`` exceeds a threshold, optionally
  in Lyapunov times;
* :func:`blow_up` — which trajectories became non-finite or left a bounded region.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._validate import one_of

__all__ = [
    "mse", "relative_l2", "mape", "nrmse", "normalized_error", "valid_prediction_time", "blow_up",
    "cost_at_accuracy",
]


def _check_pair(pred: Tensor, true: Tensor, min_dim: int = 2) -> None:
    if not isinstance(pred, Tensor) or not isinstance(true, Tensor):
        raise TypeError("pred and true must be torch tensors")
    if pred.shape != true.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but true has {tuple(true.shape)}; they must match")
    if pred.ndim < min_dim:
        raise ValueError(f"expected [batch, time, *state] (at least {min_dim}-D), got shape {tuple(pred.shape)}")


def _flat(x: Tensor) -> Tensor:
    """``[batch, ...] -> [batch, -1]`` in float64."""
    return x.reshape(x.shape[0], -1).to(torch.float64)


def mse(pred: Tensor, true: Tensor) -> Tensor:
    """Mean squared error per trajectory over all times and components, shape ``[batch]``."""
    _check_pair(pred, true, 1)
    return (_flat(pred) - _flat(true)).square().mean(dim=1)


def relative_l2(pred: Tensor, true: Tensor) -> Tensor:
    """``‖pred − true‖₂ / ‖true‖₂`` per trajectory over all times and components, ``[batch]``.

    For ``[batch, time, *state]`` inputs this is the relative error of the whole rollout;
    slice the time axis (``pred[:, :k]``) for the error up to a horizon.
    """
    _check_pair(pred, true, 1)
    p, t = _flat(pred), _flat(true)
    return (p - t).norm(dim=1) / t.norm(dim=1)


def mape(pred: Tensor, true: Tensor, *, floor: Tensor | float = 0.0) -> Tensor:
    """Mean absolute percentage error per trajectory, in percent, ``[batch]``.

    ``100 · mean(|pred − true| / max(|true|, floor))``.  Plain MAPE (``floor = 0``) is
    dominated by components that pass through zero (oscillators); ``floor`` — a number or a
    per-component tensor of the state's shape, e.g. 1 % of each component's spread — bounds
    the denominator from below.
    """
    _check_pair(pred, true, 2)
    floor_t = torch.as_tensor(floor, dtype=torch.float64, device=true.device)
    if floor_t.ndim and tuple(floor_t.shape) != tuple(true.shape[2:]):
        raise ValueError(f"floor must be a number or have the state shape {tuple(true.shape[2:])}, "
                         f"got {tuple(floor_t.shape)}")
    if bool((floor_t < 0).any()):
        raise ValueError("floor must be >= 0")
    denom = torch.maximum(true.to(torch.float64).abs(), floor_t)
    ratio = (pred.to(torch.float64) - true.to(torch.float64)).abs() / denom
    return 100.0 * ratio.reshape(ratio.shape[0], -1).mean(dim=1)


def nrmse(pred: Tensor, true: Tensor, *, reduce: str = "mean") -> Tensor:
    """PDEBench's nRMSE: ``‖pred(t) − true(t)‖₂ / ‖true(t)‖₂`` over the state (space) at each
    time, per sample; inputs ``[batch, time, *state]``, computed in float64.

    Args:
        reduce: ``"mean"``: averaged over time, result ``[batch]``; ``"none"``: one value per
            sample and time, ``[batch, time]`` (the two leading axes are only carried along,
            so a rollout in ``solve``'s layout ``[time, batch, *state]`` gives ``[time, batch]``;
            average it as PDEBench does, over samples and times).
    """
    _check_pair(pred, true, 3)
    one_of("reduce", reduce, ("mean", "none"))
    p = pred.reshape(pred.shape[0], pred.shape[1], -1).to(torch.float64)
    t = true.reshape(true.shape[0], true.shape[1], -1).to(torch.float64)
    e = (p - t).norm(dim=2) / t.norm(dim=2)
    return e.mean(dim=1) if reduce == "mean" else e


def normalized_error(pred: Tensor, true: Tensor, scale: Tensor | float) -> Tensor:
    """``e(t) = sqrt(mean_i ((pred_i − true_i) / s_i)²)`` per trajectory and time, ``[batch, time]``.

    Args:
        scale: ``s``, the spread of each component (e.g. the attractor's per-component
            standard deviation from a reference run): a positive number or a tensor of the
            state's shape.
    """
    _check_pair(pred, true, 3)
    s = torch.as_tensor(scale, dtype=torch.float64, device=true.device)
    if s.ndim and tuple(s.shape) != tuple(true.shape[2:]):
        raise ValueError(f"scale must be a number or have the state shape {tuple(true.shape[2:])}, got {tuple(s.shape)}")
    if not bool((s > 0).all()) or not bool(torch.isfinite(s).all()):
        raise ValueError("scale must be positive and finite")
    d = (pred.to(torch.float64) - true.to(torch.float64)) / s
    return d.square().reshape(d.shape[0], d.shape[1], -1).mean(dim=2).sqrt()


def valid_prediction_time(pred: Tensor, true: Tensor, t: Tensor, scale: Tensor | float, *,
                          threshold: float = 0.5, lyapunov_exponent: float | None = None) -> Tensor:
    """Valid prediction time per trajectory, ``[batch]``.

    The first time ``t_j`` at which :func:`normalized_error` exceeds ``threshold`` (a NaN error
    counts as exceeding), measured from ``t[0]``; ``t[-1] − t[0]`` when it never does (the
    value is then censored at the horizon).  With ``lyapunov_exponent = λ`` the result is in
    Lyapunov times, ``λ · (t_j − t[0])``.

    Args:
        pred, true: ``[batch, time, *state]``.
        t: the times, 1-D of length ``time``.
        scale: per-component spread (see :func:`normalized_error`).
        threshold: the error level (0.5 is common).
        lyapunov_exponent: largest Lyapunov exponent ``λ > 0``, or ``None`` for time units.
    """
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1).to(true.device)
    if len(t) != true.shape[1]:
        raise ValueError(f"t has {len(t)} times but the trajectories have {true.shape[1]}")
    if not (isinstance(threshold, (int, float)) and threshold > 0):
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    if lyapunov_exponent is not None and not (isinstance(lyapunov_exponent, (int, float))
                                              and math.isfinite(lyapunov_exponent) and lyapunov_exponent > 0):
        raise ValueError(f"lyapunov_exponent must be a positive number or None, got {lyapunov_exponent!r}")
    e = normalized_error(pred, true, scale)
    bad = ~(e <= threshold)  # NaN compares False, so it counts as exceeding
    n_t = e.shape[1]
    first = torch.where(bad.any(dim=1), bad.to(torch.int64).argmax(dim=1), torch.full_like(bad[:, 0], n_t - 1,
                                                                                             dtype=torch.int64))
    out = t[first] - t[0]
    return out * lyapunov_exponent if lyapunov_exponent is not None else out


def blow_up(pred: Tensor, limit: float) -> Tensor:
    """Which trajectories blew up: a non-finite value, or any ``|value| > limit``; bool ``[batch]``.

    ``limit`` is an absolute bound, e.g. ``1e3 ×`` the attractor's scale.
    """
    if not (isinstance(limit, (int, float)) and limit > 0):
        raise ValueError(f"limit must be a positive number, got {limit!r}")
    flat = pred.reshape(pred.shape[0], -1)
    return ~(flat.abs() <= limit).all(dim=1)  # NaN fails the comparison


def cost_at_accuracy(errors, costs, target: float) -> tuple[float | None, str]:
    """The cost at which a family of classical runs reaches the error ``target``.

    The points ``(error_i, cost_i)`` are reduced to their Pareto front (cheapest first, each
    more accurate than the previous); between two front points ``log cost`` is linear in
    ``log error``.

    Returns:
        ``(cost, kind)``: ``kind`` is ``"interpolated"``; ``"cheapest"`` when even the
        cheapest run is at least as accurate as ``target`` (then ``cost`` is that run's, an
        upper bound on what the accuracy needs); ``"extrapolated"`` when ``target`` is below
        the most accurate run (the last front segment's slope is extended); or
        ``(None, "unreached")`` when nothing can be said (a front of one point, or no
        finite target).
    """
    pts = sorted((float(c), float(e)) for e, c in zip(errors, costs)
                 if e is not None and c is not None and math.isfinite(e) and e > 0 and math.isfinite(c) and c > 0)
    if not pts or target is None or not math.isfinite(target) or target <= 0:
        return None, "unreached"
    front: list[tuple[float, float]] = []
    for c, e in pts:
        if not front or e < front[-1][1]:
            front.append((c, e))
    if target >= front[0][1]:
        return front[0][0], "cheapest"

    def along(a, b):
        (c0, e0), (c1, e1) = a, b
        w = (math.log(e0) - math.log(target)) / (math.log(e0) - math.log(e1))
        return math.exp(math.log(c0) + w * (math.log(c1) - math.log(c0)))

    for a, b in zip(front, front[1:]):
        if b[1] <= target:
            return along(a, b), "interpolated"
    if len(front) >= 2:
        return along(front[-2], front[-1]), "extrapolated"
    return None, "unreached"
