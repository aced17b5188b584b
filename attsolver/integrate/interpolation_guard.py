"""``solve(system, y0, t, guard=...)`` for a system with a learned interpolation and no corrector.

The guard lives in the model (:mod:`attsolver.systems.interpolation_guard`): this arms it for
the whole call (every piece of a ``progress`` solve included, so a fallback stays on to the
end), runs the plain solve, disarms it and reports: the warning under ``"warn"``, the
:class:`~attsolver.systems.InterpolationGuardReport` as ``SolveStats.guard`` with
``return_stats``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from torch import Tensor

from ..systems.learned_interpolation import LearnedInterpolation
from .guard import check_guard_request

__all__ = ["solve_with_interpolation_guard", "guarded_interpolation"]


def guarded_interpolation(f: Any) -> LearnedInterpolation | None:
    """The learned interpolation of ``f`` (a system built with ``interpolation=``), or ``None``."""
    li = getattr(f, "interpolation", None)
    return li if isinstance(li, LearnedInterpolation) else None


def solve_with_interpolation_guard(solve: Callable, args: dict[str, Any]):
    """``solve(**args)`` with the learned interpolation of ``args["f"]`` (a system with one:
    :func:`guarded_interpolation`) guarded by ``args["guard"]``."""
    args = dict(args)
    mode = args.pop("guard")
    check_guard_request(mode, args.get("options"), args.get("event"))
    if args.get("guard_check_every") is not None:
        raise ValueError("guard_check_every checks a corrector's steps against shadow solves; a learned "
                         "interpolation's guard has no such check: drop guard_check_every")
    if isinstance(args["t"], Tensor) and args["t"].ndim == 2:
        raise ValueError("guard= with per-sample time grids (t of shape [batch, n_t]) is not supported for a learned "
                         "interpolation; solve on one 1-D t, or use guard=None")
    li = guarded_interpolation(args["f"])  # solve calls this only for such an f
    if li._guard is not None:
        raise RuntimeError("this learned interpolation is already in a guarded solve (one at a time per model)")
    run = li.arm_guard(mode)
    try:
        out = solve(**args)
    finally:
        li.disarm_guard()
    if mode == "warn":
        run.warn(stacklevel=4)
    if args.get("return_stats"):
        sol, stats = out
        return sol, replace(stats, guard=run.report)
    return out
