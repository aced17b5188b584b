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
from .._validate import positive_int
from ..steppers import get_method
from ..steppers.adaptive import StepSizeUnderflow
from ..steppers.registry import MethodSpec
from ..systems.learned_interpolation import LearnedInterpolation
from .call_cache import coarse_known, f_known, note_coarse_quiet, note_f, stepper_for, times_entry_again
from .checks import (DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MAX_STEPS, DEFAULT_MAX_WALL_S, CheckedCorrector,
                     check_corrector, check_dtype, check_f, check_no_grad_through, check_options,
                     check_output_size,
                     check_result, check_time_gradient, check_y0_t, checked_rhs, fixed_methods, step_grid,
                     time_eps, warn_if_coarse)
from .adjoint import adjoint_params_of, adjoint_run, checkpointed_loop, split_memory_options
from .compiled import DEFAULT_COMPILE_CHUNK, compiled_loop
from .events import DEFAULT_EVENT_TOL, check_event, event_loop
from .events_adaptive import EVENT_ADAPTIVE_METHODS, adaptive_event_solve
from .errors import (NonFiniteSolutionError, all_finite, over_whole_solve, raise_if_nonfinite_adaptive,
                     raise_nonfinite)
from .error_bounds import solve_with_error_bounds
from .guard import check_guard_request, domain_of, guarded_loop
from .interpolation_guard import guarded_interpolation, solve_with_interpolation_guard
from .loop import StepPlan, fixed_loop, stage_times, time_differentiable_loop
from .per_sample import solve_per_sample
from .stats import CountedRHS, SolveStats, WallBudget, WallBudgetExceeded

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
    guard: str | None = None,
    guard_check_every: int | None = None,
    event: Callable[[Tensor, Tensor], Tensor] | None = None,
    return_error_bounds: bool = False,
) -> Tensor | tuple[Tensor, SolveStats] | tuple[Tensor, Tensor]:
    """Integrate ``dy/dt = f(t, y)`` from ``y(t[0]) = y0`` and return ``y`` at every ``t``.

    The conventions are torchdiffeq's, so the same ``f``/``y0``/``t`` work with
    ``torchdiffeq.odeint``: ``f`` receives ``t`` in ``y0``'s dtype (its real dtype for a
    complex ``y0``) whatever ``t``'s own dtype, the result has ``y0``'s dtype, and gradients
    flow to ``y0``, to ``f``'s parameters and, for the explicit Runge–Kutta methods, to
    ``t`` (the spectral methods, a corrector and ``compile`` refuse a ``t`` that requires
    grad with an error instead of returning no gradient).

    Args:
        f: right-hand side, ``f(t, y) -> dy/dt`` with ``t`` a 0-d tensor and the result of ``y``'s shape and
            dtype; a semilinear PDE system for the spectral methods (see :mod:`attsolver.systems`).
        y0: initial state, any shape, batch dimensions first; a floating dtype.
        t: 1-D strictly monotone times (either way), ``t[0]`` the initial time; or ``[batch, n_t]``,
            one grid per sample, result ``[n_t, batch, ...]`` (:mod:`attsolver.integrate.per_sample`).
        method: a name from :func:`attsolver.list_methods` (default classic ``"rk4"``).
        step_size: fixed-step methods only.  Each interval ``[t_i, t_{i+1}]`` is split into
            ``ceil(|t_{i+1}-t_i| / step_size)`` equal steps, so every returned value is an actual
            solver state (no interpolation, unlike torchdiffeq).  Without it one step is taken
            per interval, and without a corrector a step-doubling check on the first interval
            gives a :class:`CoarseStepWarning` with a ``step_size`` that would meet
            :data:`~attsolver.integrate.checks.COARSE_STEP_TOLERANCE` of the state's size.
        corrector: a learned correction after every classical step, ``y_{n+1} = y_n + dy_n +
            corrector(t_n, y_n, dy_n, h)``, ``dy_n = h Phi`` the classical increment (a zero correction
            reproduces the classical solution bit for bit); one trained for another method, step or shape: refused.
        options: fixed-step methods: ``check_finite`` (default ``True``: raise
            :class:`NonFiniteSolutionError` naming the step and time if the solution becomes
            NaN/inf), ``compile`` (default ``False``: ``torch.compile`` the loop, ``compile_chunk``
            steps per call, default 32, once per configuration; where it cannot be compiled or would be
            slower — the spectral methods — a ``RuntimeWarning`` says so and the eager loop runs;
            ``"cpp_wrapper"``: inductor's C++ wrapper, see :mod:`attsolver.integrate.compiled`).
            Adaptive: ``rtol``, ``atol``, ``check_finite``, solver pass-throughs. Unknown keys: an error.
        return_stats: also return a :class:`SolveStats` (steps, ``f`` evaluations, wall time, ...).
        progress: for long fixed-step solves: a tqdm bar on a terminal, log lines (logger
            ``attsolver.progress``) otherwise; the result is the same as without progress.
        guard: ``None`` (default: the plain loop, bit for bit), ``"warn"`` (score the corrected steps, or a learned
            interpolation's weights, against the training domain; one warning names the first time and trajectory
            outside) or ``"fallback"`` (redo a flagged step at ``h / 4``; an interpolation: its base scheme).
        guard_check_every: with ``guard``, also check a window every this many steps against classical
            and refined shadow solves (:mod:`attsolver.integrate.guard`); ``None``: off.
        event: a terminal event ``event(t, y)``, one value per sample (fixed-step methods, dopri5/8,
            kvaerno5): each sample stops where it crosses zero (:mod:`attsolver.integrate.events`).
        return_error_bounds: also return the bound on each trajectory's error norm per output time
            (``corrector`` calibrated by :func:`attsolver.calibrate`; :mod:`attsolver.integrate.error_bounds`).

    Returns:
        Tensor of shape ``[len(t), *y0.shape]``; with ``return_stats`` the pair
        ``(solution, stats)``.  With ``event``: ``(event_times, solution)``, ``event_times`` of
        shape ``y0.shape[:-1]`` (``+inf`` where the event never fired, differentiable) and the
        solution with each sample's outputs after its event held at its event state (with
        ``return_stats``: ``((event_times, solution), stats)``).  With ``return_error_bounds``:
        ``(solution, bound)``, ``bound`` float64 ``[len(t)]`` (and stats: ``((solution, bound), stats)``).

    Raises:
        TypeError / ValueError: bad input, naming the argument and the fix.
        NonFiniteSolutionError: the solution became non-finite (unless ``options={"check_finite": False}``).
    """
    if return_error_bounds:  # checked before the solve, attached after it
        return solve_with_error_bounds(solve, locals())
    if guard is not None and corrector is None and guarded_interpolation(f) is not None:
        return solve_with_interpolation_guard(solve, locals())  # the guard in the model, armed around the solve
    spec = get_method(method)
    if isinstance(t, Tensor) and t.ndim == 2 and not return_stats and guard is None and event is None:
        return solve_per_sample(solve, spec, f, y0, t, step_size=step_size, corrector=corrector, options=options)
    raw_options = options
    y0, t, options = _validated(spec, f, y0, t, options, corrector=corrector, event=event, guard=guard,
                                guard_check_every=guard_check_every)
    if progress and event is None and spec.kind == "fixed" and len(t) > 2:
        return _solve_in_pieces(f, y0, t, method=method, step_size=step_size, corrector=corrector,
                                options=raw_options, return_stats=return_stats, guard=guard,
                                guard_check_every=guard_check_every)
    check_finite = bool(options.get("check_finite", True))
    # torchdiffeq's rule: f sees t in y0's (real) dtype, whatever t's own dtype
    t_f = _t_for_f(t, y0)
    f_key = _first_call_checked(spec, f, y0, t_f, check_finite)  # the user's f, before wrapping
    f = checked_rhs(f, compiled=bool(options.get("compile", False)))
    if spec.kind == "adaptive":
        sol, stats = _solve_adaptive(spec, f, y0, t, step_size=step_size, corrector=corrector,
                                     options=options, count=return_stats)
    else:
        sol, stats = _solve_fixed(spec, f, y0, t, t_f, step_size=step_size, corrector=corrector,
                                  options=options, count=return_stats, guard=guard,
                                  check_every=guard_check_every, f_key=f_key)
    return (sol, stats) if return_stats else sol


def _t_for_f(t: Tensor, y0: Tensor) -> Tensor:
    """``t`` in ``y0``'s (real) dtype, the one ``f`` sees (``t`` itself where it has it)."""
    dtype = y0.real.dtype if y0.is_complex() else y0.dtype
    return t if t.dtype == dtype else t.to(dtype)


def _first_call_checked(spec: MethodSpec, f, y0: Tensor, t_f: Tensor, check_finite: bool):
    """``check_f`` (returns ``f``).  A fixed-step solve runs it once per ``f`` and state shape,
    dtype and device (:mod:`.call_cache`): a NaN that ``f`` returns at the start of a later
    solve is still named as ``f``'s (``_solve_fixed`` re-runs it before blaming the steps)."""
    if spec.kind != "fixed" or not f_known(f, y0, t_f):
        check_f(f, y0, t_f, check_finite=check_finite, adaptive=spec.kind == "adaptive")
        note_f(f, y0, t_f)
    return f


def _validated(spec: MethodSpec, f, y0, t, options, *, corrector, event, guard, guard_check_every):
    """One validation for every path (progress on or off, fixed or adaptive): ``(y0, t,
    options)`` checked, the result's size, the dtype and gradients included.  (The whole
    solve's step budget: by ``solve`` before its pieces, else by ``_solve_fixed``.)"""
    _check_guard(guard, corrector, options, guard_check_every, event)
    if event is not None and isinstance(t, Tensor) and t.ndim == 2:
        raise ValueError("event= takes a 1-D t (one grid for the batch), not a per-sample grid [batch, n_t]; for "
                         "each sample's own step size use options={'per_sample': True} (dopri5, dopri8, kvaerno5)")
    if isinstance(y0, Tensor) and isinstance(t, Tensor) and t.ndim == 1:  # before t's checks touch it
        check_output_size(t.shape[0], y0, _max_output_bytes(options))  # shape[0]: len(t) costs ~1 µs
    y0, t = check_y0_t(y0, t)
    options = _checked_options(options, spec, f, y0, t, event)
    options.pop("max_output_bytes", None)
    check_dtype(spec, y0)
    check_no_grad_through(spec, f, y0, t)
    return y0, t, options


def _max_output_bytes(options) -> int:
    """``options["max_output_bytes"]`` checked (the size check runs before the other options')."""
    if isinstance(options, dict) and "max_output_bytes" in options:
        return positive_int("options['max_output_bytes']", options["max_output_bytes"])
    return DEFAULT_MAX_OUTPUT_BYTES


def _check_guard(guard, corrector, options, check_every, event) -> None:
    """``guard`` is ``None`` or a mode, needs a corrector with a domain, the eager loop and no event."""
    if guard is None:
        if check_every is not None:
            raise ValueError("guard_check_every needs guard='warn' or 'fallback'")
        return
    if check_every is not None:
        positive_int("guard_check_every", check_every)
    check_guard_request(guard, options, event)
    if corrector is None:
        raise ValueError(f"guard={guard!r} scores a corrector's steps or a learned interpolation's weights; give "
                         "corrector=, or f a system built with interpolation=, or guard=None")
    if isinstance(getattr(corrector, "interpolation", None), LearnedInterpolation):
        raise ValueError(f"guard={guard!r} with an InterpolationHost as corrector= would fall back to the same "
                         "learned right-hand side; guard the interpolation itself: solve(host.system(), y0, t, "
                         f"method=..., step_size=..., guard={guard!r}) without corrector=")
    domain_of(corrector)


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
    params = options.pop("adjoint_params", None)  # set only with options["adjoint"]
    event = options.pop("event", None)
    if params is not None and options.get("per_sample", False):
        raise ValueError("options 'adjoint' and 'per_sample' do not combine: the adjoint is torchdiffeq's lock-step "
                         "solve; drop one of them")
    if len(t) == 1:  # nothing to integrate (SciPy's solve_ivp cannot take an empty span)
        sol = y0.unsqueeze(0)
        sol = sol if event is None else (torch.full(y0.shape[:-1], float("inf"), dtype=y0.dtype), sol)
        return sol, SolveStats(spec.name, None, 0, 0, 0.0)
    counted = CountedRHS(f) if count else None
    started = time.perf_counter()
    timed = WallBudget(counted if counted is not None else f, options.pop("max_wall_s", DEFAULT_MAX_WALL_S))
    try:
        if event is not None:
            event_t, sol = adaptive_event_solve(spec.name, timed, y0, t, options, *event)
        else:
            sol = spec.run(timed, y0, t, options) if params is None else adjoint_run(spec.name, timed, y0, t,
                                                                                    options, params)
    except WallBudgetExceeded:
        raise RuntimeError(
            f"{method} ran past its wall-time budget of {timed.limit:g} s and reached only t={timed.last_t:.6g} of "
            f"[{float(t[0]):.6g}, {float(t[-1]):.6g}]: the span may be far too long for the problem's time "
            "scale, or the problem stiff; shorten t, loosen rtol/atol, or raise options['max_wall_s']"
        ) from None
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
    sol = sol if event is None else (event_t, sol)
    return sol, (SolveStats(spec.name, None, counted.n, 0, wall) if counted is not None else None)


def _solve_fixed(spec: MethodSpec, f, y0: Tensor, t: Tensor, t_f: Tensor, *, step_size, corrector,
                 options: dict[str, Any], count: bool, guard: str | None = None,
                 check_every: int | None = None, f_key=None) -> tuple[Tensor, SolveStats | None]:
    """A fixed-step solve: the step grid, the plan, the loop, the checks of the result
    (``t_f``: ``t`` in the dtype ``f`` sees; ``count``: also return the stats; ``f_key``: the
    user's ``f`` before wrapping, for the checks remembered across calls)."""
    growth_bound = options.pop("growth_bound", None)
    max_steps = options.pop("max_steps", DEFAULT_MAX_STEPS)
    known = times_entry_again(t)  # this t's grids from earlier calls (call_cache), or None
    t_np = t.detach().cpu().double().numpy() if known is None else known.t_np

    def grid():  # validates step_size even when len(t) == 1
        return step_grid(t_np, step_size, time_eps=time_eps(t), max_steps=max_steps, y0=y0)

    cached = None if known is None else known.grid(step_size, max_steps, grid)
    n_sub, h_int = grid() if cached is None else (cached.n_sub, cached.h_int)
    event = options.pop("event", None)
    if t.shape[0] == 1:
        sol = y0.unsqueeze(0)
        sol = sol if event is None else (torch.full(y0.shape[:-1], float("inf"), dtype=t_f.dtype), sol)
        return sol, SolveStats(spec.name, 0, 0, 0, 0.0, None, step_size is None)
    plan = _plan(spec, f, y0, t, t_f, t_np, n_sub, h_int, corrector=corrector, step_size=step_size,
                 guard=guard, f_key=f if f_key is None else f_key,
                 stage_cache=None if cached is None else cached.stages)
    started = time.perf_counter()
    report, event_t = None, None
    if guard is not None:
        if plan.t.requires_grad and torch.is_grad_enabled():
            check_time_gradient(plan, compiling=False)  # a corrector refuses d/dt: the same message
        sol, report = guarded_loop(plan, stage_times(plan), check_every, f=f if f_key is None else f_key)
    elif event is not None:
        event_t, sol = event_loop(plan, f, *event)
    else:
        sol = _integrate(plan, f, options)
    wall = time.perf_counter() - started
    if options.get("check_finite", True) and not all_finite(sol):
        check_f(f, y0, t_f, check_finite=True)  # f's own NaN at the start (a check skipped by call_cache)
        raise_nonfinite(sol, plan)
    check_result(sol, y0, t_f, growth_bound, spec.name)
    if event_t is not None:
        sol = (event_t, sol)
    if not count:
        return sol, None
    n_steps = plan.n_steps
    return sol, SolveStats(spec.name, n_steps, n_steps * len(plan.stepper.nodes),
                           n_steps if plan.corrector is not None else 0, wall,
                           float(np.abs(h_int).max()), step_size is None, report)


def _checked_options(options, spec: MethodSpec, f, y0: Tensor, t: Tensor, event) -> dict[str, Any]:
    """``check_options`` plus what this module adds: the memory options (:mod:`.adjoint`) and
    the event (:mod:`.events`), checked and stored as ``adjoint_params`` / ``checkpoint_steps``
    / ``event`` for the solve below."""
    options, memory = split_memory_options(options, spec)
    event_tol = DEFAULT_EVENT_TOL
    if isinstance(options, dict) and event is not None and "event_tol" in options:
        options = dict(options)
        event_tol = options.pop("event_tol")
    options = check_options(options, spec)
    if event is not None:
        options["event"] = (event, _check_event_solve(event, spec, y0, t, event_tol, options, memory))
    if memory.get("adjoint"):
        options["adjoint_params"] = adjoint_params_of(f, memory)
    if memory.get("checkpoint_steps"):
        options["checkpoint_steps"] = memory["checkpoint_steps"]
    return options


def _check_event_solve(event, spec: MethodSpec, y0: Tensor, t: Tensor, tol, options, memory) -> float:
    """The checks of an event solve (see :mod:`.events`); returns the event tolerance."""
    if spec.kind != "fixed" and spec.name not in EVENT_ADAPTIVE_METHODS:
        raise ValueError(f"event= needs a fixed-step method (e.g. 'rk4' with a step_size) or one of "
                         f"{', '.join(sorted(EVENT_ADAPTIVE_METHODS))}, not {spec.name!r}")
    if t.requires_grad or memory or options.get("compile", False):
        raise ValueError("event= works with the eager loop: t must not require grad, and options 'compile', "
                         "'adjoint' and 'checkpoint_steps' do not apply (the event time is differentiable anyway)")
    return check_event(event, y0, t[0].to(y0.real.dtype if y0.is_complex() else y0.dtype), tol)


def _plan(spec: MethodSpec, f, y0: Tensor, t: Tensor, t_f: Tensor, t_np: np.ndarray, n_sub: np.ndarray,
          h_int: np.ndarray, *, corrector, step_size, guard: str | None = None, f_key=None,
          stage_cache: dict | None = None) -> StepPlan:
    """Build the stepper for this solve and check what depends on it (the system's own step
    limit, the corrector's training, the step-doubling check of a grid-stepped solve: once per
    ``f_key``, method, step and state shape while it is quiet, see :mod:`.call_cache`)."""
    # with a corrector every step runs one arithmetic (a corrector's parameters would switch a
    # spectral stepper between its NumPy and torch paths mid-solve); a stepper without a fast
    # path is never rebuilt, so a user's build(f, y0) needs no keyword arguments
    stepper = stepper_for(f, spec.name, y0, False, lambda: spec.build(f, y0))
    if corrector is not None and stepper.fast_path:
        stepper = stepper_for(f, spec.name, y0, True, lambda: spec.build(f, y0, fast_path=False))
    check_step = getattr(f, "check_step_size", None)  # e.g. an explicit scheme's CFL limit
    if check_step is not None:
        check_step(y0, float(np.abs(h_int).max()), spec.name)
    if corrector is not None:
        check_corrector(corrector, spec.name, h_int, y0, t)
        if getattr(corrector, "check_compatible", None) is None:
            corrector = CheckedCorrector(corrector, y0)
    elif step_size is None:
        key, h, t0 = f if f_key is None else f_key, float(h_int[0]), float(t_np[0])
        if not coarse_known(key, spec.name, h, y0, t0) and warn_if_coarse(stepper, y0, t_f, h, spec):
            note_coarse_quiet(key, spec.name, h, y0, t0)
    return StepPlan(spec.name, stepper, corrector, y0, t_f, t_np, n_sub, h_int, guard, stage_cache)


def _integrate(plan: StepPlan, f, options: dict[str, Any]) -> Tensor:
    """The loop this solve needs: time-differentiable, compiled or eager."""
    segment = options.get("checkpoint_steps")
    if plan.t.requires_grad and torch.is_grad_enabled():
        check_time_gradient(plan, compiling=bool(options.get("compile", False)))
        return time_differentiable_loop(plan) if segment is None else checkpointed_loop(plan, segment, f)
    if segment is not None and torch.is_grad_enabled():  # recompute segments in the backward pass
        return checkpointed_loop(plan, segment, f)
    if options.get("compile", False):
        return compiled_loop(plan, f, chunk=int(options.get("compile_chunk", DEFAULT_COMPILE_CHUNK)),
                             mode=options["compile"])
    return fixed_loop(plan)


def _solve_in_pieces(f, y0, t, *, method, step_size, corrector, options, return_stats, guard=None,
                     guard_check_every=None, pieces: int = 100):
    """``solve`` over consecutive slices of ``t`` (shared end points), reporting progress; the
    whole step grid is checked first."""
    step_grid(t.detach().cpu().double().numpy(), step_size, time_eps=time_eps(t),
              max_steps=(options or {}).get("max_steps", DEFAULT_MAX_STEPS), y0=y0)
    n = len(t) - 1
    bounds = sorted({round(i * n / min(pieces, n)) for i in range(min(pieces, n) + 1)})
    outs, y, stats = [y0.unsqueeze(0)], y0, []
    bar = make_progress(n, f"solve {method}", unit="interval")
    try:
        for a, b in zip(bounds[:-1], bounds[1:]):
            try:
                sol, st = solve(f, y, t[a:b + 1], method=method, step_size=step_size, corrector=corrector,
                                options=options, return_stats=True, guard=guard,
                                guard_check_every=guard_check_every)
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
