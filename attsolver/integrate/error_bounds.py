"""Calibrated error bounds that travel with a corrector, and ``solve(..., return_error_bounds=True)``.

:func:`attsolver.calibrate` (split conformal prediction on held-out trajectories,
:mod:`attsolver.evaluate.conformal`) stores an :class:`ErrorBounds` on the corrector
(``corrector.error_bounds``); :meth:`Corrector.save <attsolver.correctors.Corrector.save>` writes
it into the checksummed checkpoint and ``load`` reads it back.  A corrected solve with
``return_error_bounds=True`` then returns, next to the solution, the bound at each output time.

The bounds hold for the solve that was calibrated: the same method, step, guard (a
``"fallback"`` guard changes the solution) and weights (a fingerprint of the corrector's
weights is recorded: retraining after ``calibrate`` makes the bounds stale, and the solve says
so), at output times whose elapsed time ``t - t[0]`` is one of the calibration times.  A time
between two calibration times or beyond the calibrated horizon is refused with the horizon and
spacing named: split conformal gives a guarantee at the calibrated times only, and the error of a
chaotic rollout grows fast past the horizon, so neither is interpolated nor extrapolated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["ErrorBounds", "weights_fingerprint", "solve_with_error_bounds", "bounds_of"]


def weights_fingerprint(module: Any) -> str | None:
    """SHA-256 of a module's parameters and buffers (names, dtypes, shapes, values), or
    ``None`` for something without a ``state_dict``."""
    state = getattr(module, "state_dict", None)
    if state is None:
        return None
    h = hashlib.sha256()
    for name, v in state().items():
        v = v.detach().cpu().contiguous()
        h.update(f"{name}:{v.dtype}:{tuple(v.shape)};".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class ErrorBounds:
    """Calibrated bounds on ``|y_hat(t) - y(t)|`` (Euclidean norm over one trajectory's state)
    per elapsed time ``t - t[0]``.

    Attributes:
        elapsed: times since the solve's start ``[T]`` (float64) at which the bounds hold.
        bound: the bound at each ``[T]`` (float64).
        coverage: the nominal coverage ``1 - alpha``.
        n_calibration: calibration trajectories used.
        method, step_size, guard: the solve that was calibrated (``None`` where unknown).
        fingerprint: :func:`weights_fingerprint` of the corrector when calibrated (``None``:
            not checked).
    """

    elapsed: Tensor
    bound: Tensor
    coverage: float
    n_calibration: int
    method: str | None = None
    step_size: float | None = None
    guard: str | None = None
    fingerprint: str | None = None

    @property
    def horizon(self) -> float:
        return float(self.elapsed[-1])

    def at(self, t: Tensor) -> Tensor:
        """The bounds ``[len(t)]`` at a solve's output times ``t``: each ``t - t[0]`` must be
        a calibration time (to 1e-9 of the calibrated span)."""
        el = (torch.as_tensor(t, dtype=torch.float64) - float(t[0])).abs().cpu().reshape(-1)
        tol = 1e-9 * max(self.horizon, 1.0)
        spacing = float(self.elapsed[1] - self.elapsed[0]) if len(self.elapsed) > 1 else 0.0
        beyond = el > self.horizon + tol
        if bool(beyond.any()):
            raise ValueError(
                f"t reaches an elapsed time {float(el[beyond][0]):g} beyond the calibrated horizon "
                f"{self.horizon:g}; the bounds are not extrapolated: calibrate on trajectories at least as "
                "long as the solve (attsolver.calibrate(model, data, coverage))")
        idx = torch.searchsorted(self.elapsed, el).clamp_max(len(self.elapsed) - 1)
        lower = (idx - 1).clamp_min(0)
        near = torch.where((self.elapsed[lower] - el).abs() < (self.elapsed[idx] - el).abs(), lower, idx)
        off = (self.elapsed[near] - el).abs() > tol
        if bool(off.any()):
            raise ValueError(
                f"t has an elapsed time {float(el[off][0]):g} that the bounds were not calibrated at "
                f"(calibrated: 0 .. {self.horizon:g} every {spacing:g}); the bounds are not interpolated "
                "between calibration times: give output times on that grid, or calibrate on trajectories "
                "with the solve's output grid")
        return self.bound[near]

    def to_dict(self) -> dict[str, Any]:
        """Plain types and tensors (a checkpoint loads it with ``weights_only=True``)."""
        return {"elapsed": self.elapsed, "bound": self.bound, "coverage": self.coverage,
                "n_calibration": self.n_calibration, "method": self.method, "step_size": self.step_size,
                "guard": self.guard, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ErrorBounds:
        try:
            step = d.get("step_size")
            return cls(d["elapsed"].double(), d["bound"].double(), float(d["coverage"]), int(d["n_calibration"]),
                       d.get("method"), None if step is None else float(step), d.get("guard"), d.get("fingerprint"))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"the checkpoint's error bounds are damaged ({e!r})") from None


def bounds_of(corrector: Any, *, method: str, step_size: float | None, guard: str | None) -> ErrorBounds:
    """The corrector's calibrated bounds, checked against the solve about to run; a
    ``ValueError`` naming :func:`attsolver.calibrate` when there are none or they are stale."""
    if corrector is None:
        raise ValueError("return_error_bounds=True needs corrector= (a calibrated corrector); the bounds "
                         "come from attsolver.calibrate(model, data, coverage)")
    bounds = getattr(corrector, "error_bounds", None)
    if bounds is None:
        raise ValueError(
            "return_error_bounds=True needs a calibrated corrector, and this one has no error bounds: call "
            "attsolver.calibrate(corrector, data, coverage=0.9) on held-out trajectories first (then "
            "corrector.save(path) keeps them)")
    problems = []
    if bounds.method is not None and bounds.method != method:
        problems.append(f"method {method!r} (calibrated: {bounds.method!r})")
    solve_step = step_size if step_size is not None else getattr(corrector, "step_size", None)
    if bounds.step_size is not None and solve_step is not None and \
            abs(float(solve_step) - bounds.step_size) > 1e-9 * bounds.step_size:
        problems.append(f"step_size={float(solve_step):g} (calibrated: {bounds.step_size:g})")
    if (guard == "fallback") != (bounds.guard == "fallback"):
        problems.append(f"guard={guard!r} (calibrated with guard={bounds.guard!r}; a fallback changes the solution)")
    if bounds.fingerprint is not None and weights_fingerprint(corrector) != bounds.fingerprint:
        problems.append("the corrector's weights (they changed since calibrate)")
    if problems:
        raise ValueError("the corrector's error bounds were calibrated for another solve: " + "; ".join(problems)
                         + "; calibrate again for this solve: attsolver.calibrate(corrector, data, coverage, "
                         "method=..., step_size=..., guard=...)")
    return bounds


def solve_with_error_bounds(solve: Callable, args: dict[str, Any]):
    """``solve(**args)`` with the bound per output time attached (``args``: ``solve``'s
    arguments, ``return_error_bounds`` among them).  The bounds are checked before the solve.

    Returns:
        ``(solution, bound)``, ``bound`` float64 ``[len(t)]`` on ``y0``'s device; with
        ``return_stats``: ``((solution, bound), stats)``.
    """
    args = dict(args)
    args.pop("return_error_bounds")
    if args.get("event") is not None:
        raise ValueError("return_error_bounds=True and event= do not combine: the bounds hold at fixed output "
                         "times; pass one of them")
    t = args["t"]
    if not isinstance(t, Tensor) or t.ndim != 1:
        raise ValueError("return_error_bounds=True needs t as a 1-D tensor of output times (the bounds are "
                         "per output time, calibrated on one grid)")
    bounds = bounds_of(args["corrector"], method=args["method"], step_size=args["step_size"], guard=args["guard"])
    bound = bounds.at(t.detach())
    out = solve(**args)
    sol, stats = out if args.get("return_stats") else (out, None)
    bound = bound.to(sol.device)
    return ((sol, bound), stats) if args.get("return_stats") else (sol, bound)
