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

What ``attsolver.compare`` and the ODE benchmark score with the functions above (one code
path for both):

* :func:`reference_scale`, :func:`blow_up_limit`, :func:`clamp_blow_ups` — the reference's
  spread, the blow-up bound, and a prediction with its blow-ups clamped to that bound;
* :func:`score_rollout` — every error of one rollout (relative L2 up to each of
  :data:`HORIZONS`, MAPE, valid prediction time, blow-ups), averaged over the test set;
* :func:`cost_at_accuracy` and :func:`speedups_at_equal_accuracy` — the cost at which the
  classical work-precision front reaches an error, and the speed-up it implies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._validate import one_of

__all__ = [
    "mse", "relative_l2", "mape", "nrmse", "normalized_error", "valid_prediction_time", "blow_up",
    "cost_at_accuracy", "HORIZONS", "reference_scale", "blow_up_limit", "clamp_blow_ups", "score_rollout",
    "speedups_at_equal_accuracy", "BLOW_UP_FACTOR", "VPT_THRESHOLD", "MAPE_FLOOR",
]

#: the error horizons reported: name -> fraction of the test horizon
HORIZONS = (("err_q1", 0.25), ("err_q2", 0.5), ("err_full", 1.0))
#: |y| beyond this multiple of the reference's scale counts as a blow-up
BLOW_UP_FACTOR = 1e3
#: the normalised error at which a prediction stops being valid (see :func:`valid_prediction_time`)
VPT_THRESHOLD = 0.5
#: MAPE's denominator is at least this fraction of each component's spread
MAPE_FLOOR = 0.01


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


# --------------------------------------------------------------------------- scoring a rollout


def reference_scale(true: Tensor) -> Tensor:
    """Per-component spread of a reference ``[batch, time, *state]``: the standard deviation
    over batch and time, of the state's shape; a constant component gets the largest spread
    (or 1 when every component is constant), so dividing by it is always defined."""
    flat = true.reshape(-1, math.prod(true.shape[2:]))
    scale = flat.std(dim=0, correction=0).reshape(true.shape[2:])
    fill = float(scale.max()) if float(scale.max()) > 0 else 1.0
    return torch.where(scale > 0, scale, torch.full_like(scale, fill))


def blow_up_limit(reference: Tensor) -> float:
    """The blow-up bound: ``1e3 x max(|mean| + std)`` of the reference's components."""
    y = reference.reshape(-1, math.prod(reference.shape[2:])).to(torch.float64)
    std, mean = y.std(dim=0, correction=0), y.mean(dim=0)
    return BLOW_UP_FACTOR * float((mean.abs() + std).max())


def clamp_blow_ups(pred: Tensor, limit: float) -> Tensor:
    """``pred`` in float64 with NaN and values beyond ``±limit`` set to the bound, so that a
    blow-up scores as a large error instead of a NaN."""
    return torch.nan_to_num(pred.double(), nan=limit, posinf=limit, neginf=-limit).clamp(-limit, limit)


def score_rollout(pred: Tensor, true: Tensor, t: Tensor, *, scale: Tensor, limit: float,
                  lyapunov_exponent: float | None, match: str = "err_full") -> dict[str, Any]:
    """Error metrics of a rollout against the reference, averaged over the test trajectories.

    Args:
        pred, true: ``[batch, time, *state]``; ``true[:, 0]`` is the initial state (exact for
            every solver, left out of the errors).
        t: the times ``[time]``.
        scale: per-component spread of the reference (state shape), for MAPE's floor and
            the valid prediction time.
        limit: blow-up bound (:func:`blow_up_limit`); a blown-up value is clamped to it so a
            blow-up scores as a large error, not a NaN.
        lyapunov_exponent: valid prediction time in Lyapunov times when given (``vpt``),
            else ``None`` (``vpt`` is then in time units and ``vpt_units`` says so).
        match: the error used for "equal accuracy" (copied to ``err_match``).

    Returns:
        ``err_q1``, ``err_q2``, ``err_full`` (relative L2 up to ¼, ½, all of the horizon),
        ``err_match``, ``mape`` (%), ``vpt``, ``blowup_rate`` and ``blowups`` (a count).
    """
    blown = blow_up(pred, limit)
    p = clamp_blow_ups(pred, limit)
    true = true.to(torch.float64)
    nt = true.shape[1]
    out: dict[str, Any] = {}
    for name, frac in HORIZONS:
        j = int(round(frac * (nt - 1))) + 1  # t_0 .. t_{frac T}; t_0 is exact for every solver
        j = max(j, 2)
        out[name] = float(relative_l2(p[:, 1:j], true[:, 1:j]).mean())
    out["err_match"] = out[match]
    out["mape"] = float(mape(p[:, 1:], true[:, 1:], floor=MAPE_FLOOR * scale).mean())
    out["vpt"] = float(valid_prediction_time(p, true, t, scale, threshold=VPT_THRESHOLD,
                                             lyapunov_exponent=lyapunov_exponent).mean())
    out["blowup_rate"] = float(blown.double().mean())
    out["blowups"] = int(blown.sum())
    return out


def speedups_at_equal_accuracy(entries: Sequence[dict[str, Any]], err: float, time_s: float,
                               match: str) -> dict[str, Any]:
    """Speed-up of a run with error ``err`` and wall time ``time_s`` at equal accuracy.

    ``entries`` are the classical contenders (dicts with ``family``, ``label``, ``time_s``,
    the ``match`` error and, for the same method refined (``family == "same"``), ``k``).
    The cost at which a family reaches ``err`` is read off its work-precision front
    (:func:`cost_at_accuracy`); the speed-up is that cost over ``time_s``.

    Returns:
        ``speedup_same`` (against the same method at ``h/k``) and its kind (interpolated,
        extrapolated, cheapest = an upper bound, unreached), ``k_equiv`` (the refinement
        that would match ``err``), ``speedup_best`` against every classical contender and
        its kind, and ``best_classical_reaching``: the cheapest classical run at least as
        accurate as ``err`` (``None`` when none is).
    """
    same = [e for e in entries if e["family"] == "same"]
    errs = [e[match] for e in same]
    t_same, kind_same = cost_at_accuracy(errs, [e["time_s"] for e in same], err)
    k_equiv, _ = cost_at_accuracy(errs, [e["k"] for e in same], err)
    t_best, kind_best = cost_at_accuracy([e[match] for e in entries], [e["time_s"] for e in entries], err)
    reach = [e for e in entries if e[match] <= err]
    best_label = min(reach, key=lambda e: e["time_s"])["label"] if reach else None
    return {
        "speedup_same": None if t_same is None else t_same / time_s,
        "speedup_same_kind": kind_same,
        "k_equiv": k_equiv,
        "speedup_best": None if t_best is None else t_best / time_s,
        "speedup_best_kind": kind_best,
        "best_classical_reaching": best_label,
    }
