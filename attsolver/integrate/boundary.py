"""``solve()``: check the input once, plan the steps, run a lean step loop.

The boundary decides; the other modules of :mod:`attsolver.integrate` do one thing each:
:mod:`.checks` (every input check and the step grid), :mod:`.loop` (the step plan and the
eager loops), :mod:`.compiled` (the loop under ``torch.compile``), :mod:`.errors` (what is
raised when a solution goes wrong) and :mod:`.stats` (what a solve cost).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._progress import progress as make_progress
from ..steppers import get_method
from ..steppers.adaptive import StepSizeUnderflow
from ..steppers.registry import MethodSpec
from .checks import (DEFAULT_MAX_STEPS, CheckedCorrector, check_corrector, check_f, check_options,
                     check_result, check_time_gradient, check_y0_t, checked_rhs, fixed_methods, step_grid,
                     time_eps, warn_if_coarse)
from .compiled import DEFAULT_COMPILE_CHUNK, compiled_loop
from .errors import (NonFiniteSolutionError, all_finite, over_whole_solve, raise_if_nonfinite_adaptive,
                     raise_nonfinite)
from .loop import StepPlan, fixed_loop, time_differentiable_loop
from .per_sample import solve_per_sample
from .stats import CountedRHS, SolveStats

__all__ = ["solve"]


def solve(
    f: Callable[[Tensor, Tensor], Tensor],
    y0: Tensor,
    t: Tensor,
    *,
    method: str = "rk4",
    step_size: float | None = None,
    corrector: Callable[..., Tensor] | None = None,
    options: dict[str, Any] | None = None,
    return_stats: bool = False,
    progress: bool = False,
) -> Tensor | tuple[Tensor, SolveStats]:
    """Integrate ``dy/dt = f(t, y)`` from ``y(t[0]) = y0`` and return ``y`` at every ``t``.

    The conventions are torchdiffeq's, so the same ``f``/``y0``/``t`` work with
    ``torchdiffeq.odeint``: ``f`` receives ``t`` in ``y0``'s dtype (its real dtype for a
    complex ``y0``) whatever ``t``'s own dtype, the result has ``y0``'s dtype, and gradients
    flow to ``y0``, to ``f``'s parameters and, for the explicit Runge–Kutta methods, to
    ``t`` (the spectral methods, a corrector and ``compile`` refuse a ``t`` that requires
    grad with an error instead of returning no gradient).

    Args:
        f: right-hand side, ``f(t, y) -> dy/dt`` with ``t`` a 0-d tensor and the result
            of ``y``'s shape and dtype.  For the spectral methods (``etdrk4``, ``ifrk4``)
            ``f`` must be a semilinear PDE system (see :mod:`attsolver.systems`).
        y0: initial state, any shape, batch dimensions first; a floating dtype.
        t: 1-D strictly monotone times (increasing or decreasing), ``t[0]`` is the
            initial time; or ``[batch, n_t]``, one grid per sample of ``y0`` (result
            ``[n_t, batch, ...]``; see :mod:`attsolver.integrate.per_sample`).
        method: a name from :func:`attsolver.list_methods` (default classic ``"rk4"``).
        step_size: fixed-step methods only.  Without it, one step is taken between
            consecutive points of ``t`` — and, when there is no corrector, a step-doubling
            check on the first interval (one step of the grid spacing against two of half
            of it, three extra steps) estimates that step's local error; above
            :data:`~attsolver.integrate.checks.COARSE_STEP_TOLERANCE` of the state's size a
            :class:`CoarseStepWarning` gives the estimate and a ``step_size`` that would
            meet the tolerance.  Passing
            ``step_size`` (even equal to the grid spacing) states the step explicitly and
            skips the check.  With it, each interval ``[t_i, t_{i+1}]`` is split
            into ``n_i = ceil(|t_{i+1}-t_i| / step_size)`` equal steps, so every returned
            value is an actual solver state (no interpolation, unlike torchdiffeq); when
            ``step_size`` divides the intervals the steps are exactly ``step_size``.
        corrector: a learned correction applied after every classical step,
            ``y_{n+1} = y_n + dy_n + corrector(t_n, y_n, dy_n, h)`` where ``dy_n = h Phi`` is
            the classical increment (computed as the classical step minus ``y_n``, so a
            zero correction reproduces the classical solution bit for bit) and ``h`` a
            Python float (negative when ``t`` decreases).  A corrector that records what it was trained for (a
            ``check_compatible`` method) is refused for another method, step or shape.
        options: fixed-step methods: ``check_finite`` (default ``True``: raise
            :class:`NonFiniteSolutionError` naming the step and time if the solution
            becomes NaN/inf), ``compile`` (default ``False``: compile the step loop with
            ``torch.compile``, ``compile_chunk`` steps per compiled call, default 32; each
            configuration is compiled once per process, and where it cannot be compiled or
            would be slower than eager — the spectral methods — a ``RuntimeWarning`` says so
            and the eager loop runs; see :func:`attsolver.integrate.compiled.compile_stats`).
            Adaptive methods: ``rtol``, ``atol``, ``check_finite`` and a few solver
            pass-throughs.  Unknown keys are an error, not a warning.
        return_stats: also return a :class:`SolveStats` (steps, ``f`` evaluations, corrector
            calls, wall time).
        progress: for long fixed-step solves: progress over the output times, a tqdm bar on a
            terminal and log lines (logger ``attsolver.progress``) otherwise.  The output
            intervals are integrated in about 100 consecutive pieces, each starting from the
            previous piece's last state, so the result is the same as without progress.

    Returns:
        Tensor of shape ``[len(t), *y0.shape]``; with ``return_stats`` the pair
        ``(solution, stats)``.

    Raises:
        TypeError / ValueError: bad input, naming the argument and the fix.
        NonFiniteSolutionError: the solution became non-finite (unless
            ``options={"check_finite": False}``).
    """
    spec = get_method(method)
    if progress and spec.kind == "fixed" and isinstance(t, Tensor) and t.ndim == 1 and len(t) > 2:
        return _solve_in_pieces(f, y0, t, method=method, step_size=step_size, corrector=corrector,
                                options=options, return_stats=return_stats)
    if isinstance(t, Tensor) and t.ndim == 2 and not return_stats:  # one time grid per sample
        return solve_per_sample(solve, spec, f, y0, t, step_size=step_size, corrector=corrector, options=options)
    y0, t = check_y0_t(y0, t)
    options = check_options(options, spec)
    check_finite = bool(options.get("check_finite", True))
    # torchdiffeq's rule: f sees t in y0's (real) dtype, whatever t's own dtype
    t_f = t.to(y0.real.dtype if y0.is_complex() else y0.dtype)
    check_f(f, y0, t_f, check_finite=check_finite, adaptive=spec.kind == "adaptive")
    f = checked_rhs(f, compiled=bool(options.get("compile", False)))
    if spec.kind == "adaptive":
        sol, stats = _solve_adaptive(spec, f, y0, t, step_size=step_size, corrector=corrector,
                                     options=options, count=return_stats)
    else:
        sol, stats = _solve_fixed(spec, f, y0, t, t_f, step_size=step_size, corrector=corrector,
                                  options=options, count=return_stats)
    return (sol, stats) if return_stats else sol


def _solve_adaptive(spec: MethodSpec, f, y0: Tensor, t: Tensor, *, step_size, corrector,
                    options: dict[str, Any], count: bool) -> tuple[Tensor, SolveStats | None]:
    """An adaptive solve, delegated to the method's runner (``count``: count ``f``'s calls)."""
    method = spec.name
    if step_size is not None:
        raise ValueError(
            f"step_size is for fixed-step methods; {method!r} is adaptive — control its "
            "accuracy with options={'rtol': ..., 'atol': ...} or pick a fixed-step method"
        )
    if corrector is not None:
        raise ValueError(
            f"a corrector needs a fixed-step method, not the adaptive {method!r}; "
            f"use one of {', '.join(fixed_methods())}"
        )
    growth_bound = options.pop("growth_bound", None)
    options.pop("max_steps", None)
    if len(t) == 1:  # nothing to integrate (SciPy's solve_ivp cannot take an empty span)
        return y0.unsqueeze(0), SolveStats(spec.name, None, 0, 0, 0.0)
    counted = CountedRHS(f) if count else None
    started = time.perf_counter()
    try:
        sol = spec.run(counted if counted is not None else f, y0, t, options)
    except StepSizeUnderflow as e:
        partial = e.partial if e.partial is not None else y0.unsqueeze(0)
        raise NonFiniteSolutionError(
            f"{e} (method {method!r}); check f, shorten t, or use a fixed-step method with "
            "options={'check_finite': False} to see the raw growth",
            step=None, time=e.time, partial=partial,
        ) from None
    wall = time.perf_counter() - started
    if options.get("check_finite", True) and not all_finite(sol):
        raise_if_nonfinite_adaptive(sol, t, method)
    check_result(sol, y0, t, growth_bound, method)
    return sol, (SolveStats(spec.name, None, counted.n, 0, wall) if counted is not None else None)


def _solve_fixed(spec: MethodSpec, f, y0: Tensor, t: Tensor, t_f: Tensor, *, step_size, corrector,
                 options: dict[str, Any], count: bool) -> tuple[Tensor, SolveStats | None]:
    """A fixed-step solve: the step grid, the plan, the loop, the checks of the result
    (``t_f``: ``t`` in the dtype ``f`` sees; ``count``: also return the stats)."""
    growth_bound = options.pop("growth_bound", None)
    max_steps = options.pop("max_steps", DEFAULT_MAX_STEPS)
    t_np = t.detach().cpu().double().numpy()
    # validates step_size even when len(t) == 1
    n_sub, h_int = step_grid(t_np, step_size, time_eps=time_eps(t), max_steps=max_steps, y0=y0)
    if len(t) == 1:
        return y0.unsqueeze(0), SolveStats(spec.name, 0, 0, 0, 0.0, None, step_size is None)
    plan = _plan(spec, f, y0, t, t_f, t_np, n_sub, h_int, corrector=corrector, step_size=step_size)
    started = time.perf_counter()
    sol = _integrate(plan, f, options)
    wall = time.perf_counter() - started
    if options.get("check_finite", True) and not all_finite(sol):
        raise_nonfinite(sol, plan)
    check_result(sol, y0, t_f, growth_bound, spec.name)
    if not count:
        return sol, None
    n_steps = plan.n_steps
    return sol, SolveStats(spec.name, n_steps, n_steps * len(plan.stepper.nodes),
                           n_steps if plan.corrector is not None else 0, wall,
                           float(np.abs(h_int).max()), step_size is None)


def _plan(spec: MethodSpec, f, y0: Tensor, t: Tensor, t_f: Tensor, t_np: np.ndarray, n_sub: np.ndarray,
          h_int: np.ndarray, *, corrector, step_size) -> StepPlan:
    """Build the stepper for this solve and check what depends on it (the system's own step
    limit, the corrector's training, the step-doubling check of a grid-stepped solve)."""
    # with a corrector every step runs one arithmetic (a corrector's parameters would switch a
    # spectral stepper between its NumPy and torch paths mid-solve); a stepper without a fast
    # path is never rebuilt, so a user's build(f, y0) needs no keyword arguments
    stepper = spec.build(f, y0)
    if corrector is not None and stepper.fast_path:
        stepper = spec.build(f, y0, fast_path=False)
    check_step = getattr(f, "check_step_size", None)  # e.g. an explicit scheme's CFL limit
    if check_step is not None:
        check_step(y0, float(np.abs(h_int).max()), spec.name)
    if corrector is not None:
        check_corrector(corrector, spec.name, h_int, y0, t)
        if getattr(corrector, "check_compatible", None) is None:
            corrector = CheckedCorrector(corrector, y0)
    elif step_size is None:
        warn_if_coarse(stepper, y0, t_f, float(h_int[0]), spec)
    return StepPlan(spec.name, stepper, corrector, y0, t_f, t_np, n_sub, h_int)


def _integrate(plan: StepPlan, f, options: dict[str, Any]) -> Tensor:
    """The loop this solve needs: time-differentiable, compiled or eager."""
    if plan.t.requires_grad and torch.is_grad_enabled():
        check_time_gradient(plan, compiling=bool(options.get("compile", False)))
        return time_differentiable_loop(plan)
    if options.get("compile", False):
        return compiled_loop(plan, f, chunk=int(options.get("compile_chunk", DEFAULT_COMPILE_CHUNK)))
    return fixed_loop(plan)


def _solve_in_pieces(f, y0, t, *, method, step_size, corrector, options, return_stats, pieces: int = 100):
    """``solve`` over consecutive slices of ``t`` (shared end points), reporting progress."""
    n = len(t) - 1
    bounds = sorted({round(i * n / min(pieces, n)) for i in range(min(pieces, n) + 1)})
    outs, y, stats = [y0.unsqueeze(0)], y0, []
    bar = make_progress(n, f"solve {method}", unit="interval")
    try:
        for a, b in zip(bounds[:-1], bounds[1:]):
            try:
                sol, st = solve(f, y, t[a:b + 1], method=method, step_size=step_size, corrector=corrector,
                                options=options, return_stats=True)
            except NonFiniteSolutionError as e:  # count the step, output and partial over the whole solve
                raise over_whole_solve(e, outs, sum(s.n_steps or 0 for s in stats), a) from None
            stats.append(st)
            outs.append(sol[1:])
            y = sol[-1]
            bar.update(b - a)
    finally:
        bar.close()
    out = torch.cat(outs)
    return (out, SolveStats.of_pieces(stats)) if return_stats else out
