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

from ..systems.interpolation_guard import GUARD_MODES
from ..systems.learned_interpolation import LearnedInterpolation

__all__ = ["solve_with_interpolation_guard", "guarded_interpolation"]


def guarded_interpolation(f: Any) -> LearnedInterpolation | None:
    """The learned interpolation of ``f`` (a system built with ``interpolation=``), or ``None``."""
    li = getattr(f, "interpolation", None)
    return li if isinstance(li, LearnedInterpolation) else None


def solve_with_interpolation_guard(solve: Callable, args: dict[str, Any]):
    """``solve(**args)`` with the learned interpolation of ``args["f"]`` guarded by ``args["guard"]``."""
    args = dict(args)
    mode = args.pop("guard")
    if mode not in GUARD_MODES:
        raise ValueError(f"guard must be None, 'warn' or 'fallback', got {mode!r}")
    li = guarded_interpolation(args["f"])
    if li is None:
        raise ValueError(f"guard={mode!r} scores a corrector's steps or a learned interpolation's weights; give "
                         "corrector=, or f a system built with interpolation=, or guard=None")
    if args.get("guard_check_every") is not None:
        raise ValueError("guard_check_every checks a corrector's steps against shadow solves; a learned "
                         "interpolation's guard has no such check: drop guard_check_every")
    if isinstance(args["t"], Tensor) and args["t"].ndim == 2:
        raise ValueError("guard= with per-sample time grids (t of shape [batch, n_t]) is not supported for a learned "
                         "interpolation; solve on one 1-D t, or use guard=None")
    if args.get("event") is not None:
        raise ValueError("guard= and event= do not combine yet: pass one of them")
    if (args.get("options") or {}).get("compile", False):
        raise ValueError("guard= runs the eager loop; drop options={'compile': True} or use guard=None")
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
