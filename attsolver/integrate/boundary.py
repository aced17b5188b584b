"""``solve()``: validate once at the boundary, build the stepper, run a lean step loop."""

from __future__ import annotations

import functools
import itertools
import math
import numbers
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..steppers import get_method
from ..steppers.base import Stepper

#: steps unrolled into one compiled call: Lorenz-63 ran 34 / 21 / 16 / 14 µs a step at
#: 8 / 32 / 64 / 128 (2 loaded cores), while the compile time grows with the chunk; 32 takes
#: most of the gain (the remainder of a solve that does not fill a chunk runs eagerly)
DEFAULT_COMPILE_CHUNK = 32

__all__ = ["solve", "NonFiniteSolutionError", "SolutionBoundError", "DEFAULT_MAX_STEPS",
           "SolveStats", "CoarseStepWarning"]

#: default cap on the number of fixed steps of one solve (``options={"max_steps": ...}``
#: raises it): a ``step_size`` far too small for ``t`` is an error before any work starts.
DEFAULT_MAX_STEPS = 10**9
#: options ``solve`` itself handles for every method (not passed on to the stepper)
_SOLVE_OPTIONS = frozenset({"max_steps", "growth_bound"})

# Stage times are materialised as 0-d tensors this many steps at a time: cheap per step,
# bounded memory for very long solves.
_STAGE_CHUNK = 1024


class NonFiniteSolutionError(FloatingPointError):
    """The numerical solution became NaN or infinite.

    Attributes:
        step: index of the first solver step whose result is non-finite (0-based, counted
            over the whole solve), or ``None`` for adaptive methods.
        time: the time at the start of that step (adaptive methods: the first output time
            whose value is non-finite).
        partial: the solution up to the last finite output, shape ``[k, *y0.shape]``.
    """

    def __init__(self, message: str, *, step: int | None, time: float, partial: Tensor):
        super().__init__(message)
        self.step = step
        self.time = time
        self.partial = partial


class CoarseStepWarning(UserWarning):
    """A fixed-step solve without ``step_size`` stepped once per output interval, and a
    step-doubling check on the first interval found that step too coarse for the problem."""


#: local error (relative to the state's size) above which the step-doubling check warns
COARSE_STEP_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SolveStats:
    """What a solve cost (``solve(..., return_stats=True)``; SciPy's ``nfev``, diffrax's ``stats``).

    Attributes:
        method: the method used.
        n_steps: solver steps taken (fixed-step methods; adaptive: ``None``, the solver does
            not report its accepted steps).
        n_f_evals: evaluations of ``f`` (for the spectral methods, of the nonlinear term;
            one per stage per step for fixed-step methods; counted for adaptive ones).
        n_corrector_calls: corrector evaluations (one per step with a corrector, else 0).
        wall_time_s: seconds spent integrating (validation excluded; the first call of a
            process also pays one-time set-up, e.g. building kernels).
        step_size: the step of a fixed-step solve (the largest when intervals differ).
        steps_from_grid: ``True`` when no ``step_size`` was given and the method stepped
            once per output interval.
    """

    method: str
    n_steps: int | None
    n_f_evals: int
    n_corrector_calls: int
    wall_time_s: float
    step_size: float | None = None
    steps_from_grid: bool = False


class SolutionBoundError(NonFiniteSolutionError):
    """The solution grew past ``options["growth_bound"]`` (finite, but beyond what the caller
    declared plausible); same attributes as :class:`NonFiniteSolutionError`."""


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
            initial time.
        method: a name from :func:`attsolver.list_methods` (default classic ``"rk4"``).
        step_size: fixed-step methods only.  Without it, one step is taken between
            consecutive points of ``t`` — and, when there is no corrector, a step-doubling
            check on the first interval (one step of the grid spacing against two of half
            of it, three extra steps) estimates that step's local error; above
            :data:`COARSE_STEP_TOLERANCE` of the state's size a :class:`CoarseStepWarning`
            gives the estimate and a ``step_size`` that would meet the tolerance.  Passing
            ``step_size`` (even equal to the grid spacing) states the step explicitly and
            skips the check.  With it, each interval ``[t_i, t_{i+1}]`` is split
            into ``n_i = ceil(|t_{i+1}-t_i| / step_size)`` equal steps, so every returned
            value is an actual solver state (no interpolation, unlike torchdiffeq); when
            ``step_size`` divides the intervals the steps are exactly ``step_size``.
        corrector: a learned correction applied after every classical step,
            ``y_{n+1} = y_n + dy_n + corrector(t_n, y_n, dy_n, h)`` where ``dy_n = h Phi`` is
            the classical increment (computed as the classical step minus ``y_n``, so a
            zero correction reproduces the classical solution bit for bit) and ``h`` a Python float (negative when ``t``
            decreases).  A corrector that records what it was trained for (a
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
    y0, t = _check_y0_t(y0, t)
    options = _check_options(options, spec)
    check_finite = bool(options.get("check_finite", True))
    growth_bound = options.pop("growth_bound", None)
    max_steps = options.pop("max_steps", DEFAULT_MAX_STEPS)
    # torchdiffeq's rule: f sees t in y0's (real) dtype, whatever t's own dtype
    t_f = t.to(y0.real.dtype if y0.is_complex() else y0.dtype)
    _check_f(f, y0, t_f, check_finite=check_finite, adaptive=spec.kind == "adaptive")
    f = _checked_rhs(f, compiled=bool(options.get("compile", False)))

    if spec.kind == "adaptive":
        if step_size is not None:
            raise ValueError(
                f"step_size is for fixed-step methods; {method!r} is adaptive — control its "
                "accuracy with options={'rtol': ..., 'atol': ...} or pick a fixed-step method"
            )
        if corrector is not None:
            raise ValueError(
                f"a corrector needs a fixed-step method, not the adaptive {method!r}; "
                f"use one of {', '.join(_fixed_methods())}"
            )
        if len(t) == 1:  # nothing to integrate (SciPy's solve_ivp cannot take an empty span)
            out = y0.unsqueeze(0)
            return (out, SolveStats(spec.name, None, 0, 0, 0.0)) if return_stats else out
        from ..steppers.adaptive import StepSizeUnderflow

        counter = _Counter(f) if return_stats else None
        started = time.perf_counter()
        try:
            sol = spec.run(counter if counter is not None else f, y0, t, options)
        except StepSizeUnderflow as e:
            partial = e.partial if e.partial is not None else y0.unsqueeze(0)
            raise NonFiniteSolutionError(
                f"{e} (method {method!r}); check f, shorten t, or use a fixed-step method with "
                "options={'check_finite': False} to see the raw growth",
                step=None, time=e.time, partial=partial,
            ) from None
        wall = time.perf_counter() - started
        if check_finite and not _all_finite(sol):
            _raise_if_nonfinite_adaptive(sol, t, method)
        _check_result(sol, y0, t, growth_bound, method)
        if return_stats:
            return sol, SolveStats(spec.name, None, counter.n, 0, wall)
        return sol

    t_np = t.detach().cpu().double().numpy()
    # validates step_size even when len(t) == 1
    n_sub, h_int = _step_grid(t_np, step_size, time_eps=_time_eps(t), max_steps=max_steps, y0=y0)
    if len(t) == 1:
        out = y0.unsqueeze(0)
        return (out, SolveStats(spec.name, 0, 0, 0, 0.0, None, step_size is None)) if return_stats else out
    stepper = spec.build(f, y0)
    check_step = getattr(f, "check_step_size", None)  # e.g. an explicit scheme's CFL limit
    if check_step is not None:
        check_step(y0, float(np.abs(h_int).max()), method)
    if corrector is not None:
        if getattr(stepper, "fast_path", False):  # one arithmetic for every step: a corrector's
            stepper.fast_path = False  # parameters would switch a spectral stepper's path mid-solve
        _check_corrector(corrector, method, h_int, n_sub, y0, t)
        if getattr(corrector, "check_compatible", None) is None:
            corrector = _CheckedCorrector(corrector, y0)
    elif step_size is None:
        _warn_if_coarse(stepper, y0, t_f, float(h_int[0]), spec)
    t = t_f
    started = time.perf_counter()

    if t.requires_grad and torch.is_grad_enabled():
        _check_time_gradient(stepper, corrector, options, method)
        sol = _time_differentiable_loop(stepper, y0, t, n_sub)
    elif options.get("compile", False):
        from .compiled import compiled_loop

        sol = compiled_loop(stepper, f, corrector, y0, t, t_np, n_sub, h_int,
                            chunk=int(options.get("compile_chunk", DEFAULT_COMPILE_CHUNK)))
    else:
        sol = _fixed_loop(stepper, corrector, y0, t, t_np, n_sub, h_int)
    wall = time.perf_counter() - started
    if check_finite and not _all_finite(sol):
        _raise_nonfinite(sol, stepper, corrector, t, t_np, n_sub, h_int, method)
    _check_result(sol, y0, t, growth_bound, method)
    if return_stats:
        n_steps = int(n_sub.sum())
        return sol, SolveStats(spec.name, n_steps, n_steps * len(stepper.nodes),
                               n_steps if corrector is not None else 0, wall,
                               float(np.abs(h_int).max()), step_size is None)
    return sol


def _solve_in_pieces(f, y0, t, *, method, step_size, corrector, options, return_stats, pieces: int = 100):
    """``solve`` over consecutive slices of ``t`` (shared end points), reporting progress."""
    from .._progress import progress as make_progress

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
                raise _over_whole_solve(e, outs, sum(s.n_steps or 0 for s in stats), a) from None
            stats.append(st)
            outs.append(sol[1:])
            y = sol[-1]
            bar.update(b - a)
    finally:
        bar.close()
    out = torch.cat(outs)
    if not return_stats:
        return out
    first = stats[0]
    return out, SolveStats(first.method, sum(st.n_steps for st in stats), sum(st.n_f_evals for st in stats),
                           sum(st.n_corrector_calls for st in stats), sum(st.wall_time_s for st in stats),
                           max(st.step_size for st in stats), first.steps_from_grid)


def _over_whole_solve(e: NonFiniteSolutionError, outs: list[Tensor], steps_before: int,
                      outputs_before: int) -> NonFiniteSolutionError:
    """The error of one piece of :func:`_solve_in_pieces`, restated for the whole solve: the
    step and output index counted from the start, the partial solution from ``t[0]``."""
    import re

    message, step = str(e), e.step
    if step is not None:
        message = re.sub(rf"\bstep {step}\b", f"step {step + steps_before}", message, count=1)
        step += steps_before
    message = re.sub(r"\boutput (\d+)\b", lambda m: f"output {int(m.group(1)) + outputs_before}", message,
                     count=1)
    partial = torch.cat([*outs, e.partial[1:]]) if len(e.partial) else torch.cat(outs)
    return type(e)(message, step=step, time=e.time, partial=partial)


class _Counter:
    """``f`` with a count of its calls (for the adaptive methods' statistics)."""

    def __init__(self, f):
        self.f, self.n = f, 0

    def __call__(self, t, y):
        self.n += 1
        return self.f(t, y)


def _warn_if_coarse(stepper: Stepper, y0: Tensor, t: Tensor, h: float, spec) -> None:
    """Step doubling on the first interval: one step of ``h`` against two of ``h / 2``; the
    difference over ``1 - 2^-p`` estimates the local error of the ``h`` step (Richardson)."""
    import warnings

    order = getattr(spec, "order", None) or getattr(stepper, "order", None) or 1

    def steps(y, n, hh):
        state = stepper.to_state(y)
        for k in range(n):
            t0 = t[0] + k * hh
            state = stepper.step([t0 + c * hh for c in stepper.nodes], state, hh)
        return stepper.from_state(state)

    with torch.no_grad():
        one = steps(y0, 1, h)
        two = steps(y0, 2, h / 2)
        # the state's size over the step (a start from rest, y0 = 0, must not divide by ~0)
        size = float(torch.stack([y0.abs().amax(), one.abs().amax(), two.abs().amax()]).amax())
        diff = float((one - two).abs().amax())
        est = 0.0 if diff == 0.0 else (diff / size if size > 0.0 else math.inf) / (1.0 - 2.0 ** (-order))
    if not math.isfinite(est) or est > COARSE_STEP_TOLERANCE:
        factor = (est / COARSE_STEP_TOLERANCE) ** (1.0 / (order + 1)) if math.isfinite(est) else 10.0
        suggest = abs(h) / max(2.0, math.ceil(factor))
        warnings.warn(
            f"solve: no step_size was given, so {spec.name} steps once per output interval (h={abs(h):.3g}); a "
            f"step-doubling check on the first interval estimates a local error of {est:.2g} of the state's size "
            f"(tolerance {COARSE_STEP_TOLERANCE:g}). Pass step_size (e.g. {suggest:.3g}) to refine, or "
            f"step_size={abs(h):.3g} to keep this step knowingly",
            CoarseStepWarning, stacklevel=3,
        )


# --------------------------------------------------------------------------- the loop


def _step_windows(n_sub: np.ndarray, first_step: int = 0, window: int = _STAGE_CHUNK
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Walk the steps ``first_step, ...`` in windows of at most ``window`` steps.

    Yields ``(interval, k)``: for each step of the window the output interval it lies in and
    its index inside that interval.  Memory is ``O(window + len(n_sub))`` whatever the number
    of steps (a full-length ``np.repeat`` would take 8 bytes per step per array, 1.5 GB of
    bookkeeping for 10^8 steps).
    """
    ends = np.cumsum(n_sub)
    total = int(ends[-1]) if len(ends) else 0
    for s0 in range(first_step, total, window):
        steps = np.arange(s0, min(s0 + window, total), dtype=np.int64)
        interval = np.searchsorted(ends, steps, side="right")
        yield interval, steps - (ends[interval] - n_sub[interval])


def _stage_times(stepper: Stepper, t: Tensor, t_np: np.ndarray, n_sub: np.ndarray,
                 h_int: np.ndarray, first_interval: int = 0) -> Iterator[list[Tensor]]:
    """Yield, step by step, the stage times ``t_n + c_i h`` as 0-d tensors in ``t``'s dtype.

    Each distinct time is one tensor: stages with equal nodes share it, and inside an
    output interval the ``c = 1`` time of a step is the ``c = 0`` time of the next (classic
    RK4 makes two tensors per step, not four).  The times are computed in float64 with NumPy
    for ``_STAGE_CHUNK`` steps at once (see :func:`_step_windows`), so memory stays bounded
    for very long solves.
    """
    nodes = np.asarray(stepper.nodes, dtype=np.float64)
    inner = np.unique(nodes[nodes != 1.0])  # nodes may lie outside [0, 1] (e.g. c = 2)
    if 0.0 not in inner:
        raise ValueError(f"{type(stepper).__name__}: the nodes must include 0 (the step's start)")
    width = len(inner)
    zero = int(np.searchsorted(inner, 0.0))  # column of the c = 0 time in each row
    pos = [None if c == 1.0 else int(np.searchsorted(inner, c)) for c in nodes]
    first_step = int(n_sub[:first_interval].sum())
    for idx, k in _step_windows(n_sub, first_step):
        m = len(idx)
        h = h_int[idx]
        starts = t_np[idx] + h * k
        # a step's c = 1 time is the next row's c = 0, except at the end of an interval or window
        own_end = k == n_sub[idx] - 1
        own_end[-1] = True
        extra = np.flatnonzero(own_end)
        one_index = np.arange(1, m + 1) * width + zero
        one_index[extra] = m * width + np.arange(len(extra))
        values = np.concatenate(((starts[:, None] + h[:, None] * inner).ravel(), starts[extra] + h[extra]))
        grid = torch.as_tensor(values, device=t.device).to(t.dtype).unbind(0)
        for r in range(m):
            b = r * width
            yield [grid[b + p] if p is not None else grid[one_index[r]] for p in pos]


def _corrected_step(stepper, corrector, ts, y, h):
    """``y* + C(t, y, y* - y, h)`` with ``y*`` the classical step (exact when ``C = 0``)."""
    y_next = stepper.from_state(stepper.step(ts, stepper.to_state(y), h))
    return y_next + corrector(ts[0], y, y_next - y, h)


def _check_time_gradient(stepper, corrector, options, method) -> None:
    """``t.requires_grad``: say plainly where gradients with respect to ``t`` cannot flow."""
    if not getattr(stepper, "time_differentiable", False):
        raise ValueError(
            f"t requires grad, but method {method!r} cannot differentiate with respect to t "
            "(its coefficients are precomputed for a numeric step size); pass t.detach(), or use "
            "an explicit Runge-Kutta method such as 'rk4'"
        )
    if corrector is not None:
        raise ValueError(
            "t requires grad, but gradients with respect to t are not supported with a corrector "
            "(the corrector takes h as a number); pass t.detach()"
        )
    if options.get("compile", False):
        raise ValueError(
            "t requires grad, but options['compile'] runs with precomputed numeric times; pass "
            "t.detach() or drop 'compile' to get gradients with respect to t"
        )


def _time_differentiable_loop(stepper, y0, t, n_sub):
    """The eager loop with stage times and steps computed from ``t`` by autograd-tracked
    tensor arithmetic, so that ``d y / d t`` flows (as in torchdiffeq's fixed-grid solvers).
    Slower than :func:`_fixed_loop` (a few tensor operations per step for the times)."""
    step = stepper.step_for_compile  # takes a tensor h (no ``alpha=``)
    nodes = [float(c) for c in stepper.nodes]
    outputs = [y0]
    y = y0
    for i, n in enumerate(n_sub.tolist()):
        h = (t[i + 1] - t[i]) / n
        for k in range(n):
            t0 = t[i] + k * h if k else t[i]
            y = step([t0 + c * h if c else t0 for c in nodes], y, h)
        outputs.append(y)
    return torch.stack(outputs)


class _Outputs:
    """The result ``[len(t), *y0.shape]``, each output written once.

    Without autograd the outputs go straight into one preallocated tensor (no list of
    ``len(t)`` tensors kept alive, no final ``torch.stack`` copy: peak memory is the result
    plus a few states).  When the outputs carry a graph (``y0`` or ``f``'s parameters require
    grad) they are stacked at the end instead: in-place writes into one buffer would make
    backward copy the whole buffer's gradient once per output.  The mode is decided on the
    first output, which shows whether a graph is being built.
    """

    __slots__ = ("buf", "rows", "n")

    def __init__(self, y0: Tensor, n: int):
        self.buf: Tensor | None = None
        self.rows: list[Tensor] | None = [y0]
        self.n = n

    def put(self, i: int, y: Tensor) -> None:
        """Store output ``i`` (``i >= 1``, in order)."""
        buf = self.buf
        if buf is not None:
            buf[i] = y
            return
        rows = self.rows
        if i == 1 and not (y.requires_grad or rows[0].requires_grad):
            buf = self.buf = torch.empty((self.n, *y.shape), dtype=y.dtype, device=y.device)
            buf[0] = rows[0]
            buf[1] = y
            self.rows = None
            return
        rows.append(y)

    def put_block(self, i: int, ys: Tensor) -> None:
        """Store outputs ``i, i+1, ...`` from a stacked block ``ys``."""
        if self.buf is None and not (ys.requires_grad or self.rows[0].requires_grad):
            self.put(i, ys[0])
            ys, i = ys[1:], i + 1
        if self.buf is not None:
            self.buf[i:i + len(ys)] = ys
        else:
            self.rows.extend(ys.unbind(0))

    def result(self) -> Tensor:
        return self.buf if self.buf is not None else torch.stack(self.rows)


def _fixed_loop(stepper, corrector, y0, t, t_np, n_sub, h_int):
    if corrector is None and getattr(stepper, "fast_loop", None) is not None:
        sol = stepper.fast_loop(y0, n_sub, h_int)  # e.g. the spectral steppers' NumPy path
        if sol is not None:
            return sol
    if corrector is None and not getattr(stepper, "needs_times", True):
        # an autonomous step that never reads its stage times (e.g. ETDRK4 on Burgers):
        # making one 0-d tensor per stage cost about a quarter of such a step
        times = itertools.repeat([t[0]] * len(stepper.nodes))
    else:
        times = _stage_times(stepper, t, t_np, n_sub, h_int)
    out = _Outputs(y0, len(t_np))
    if corrector is None:
        step, from_state = stepper.step, stepper.from_state
        state = stepper.to_state(y0)
        # once the result is one preallocated tensor (no autograd graph), a stepper that can
        # writes the last step of each interval straight into its row: outputs written once
        into = getattr(stepper, "writes_into", False)
        for i, (n, h) in enumerate(zip(n_sub.tolist(), h_int.tolist()), 1):
            if into and out.buf is not None:
                for _ in range(n - 1):
                    state = step(next(times), state, h)
                state = step(next(times), state, h, into=out.buf[i])
                continue
            for _ in range(n):
                state = step(next(times), state, h)
            out.put(i, from_state(state))
    else:
        y = y0
        for i, (n, h) in enumerate(zip(n_sub.tolist(), h_int.tolist()), 1):
            for _ in range(n):
                y = _corrected_step(stepper, corrector, next(times), y, h)
            out.put(i, y)
    return out.result()


# --------------------------------------------------------------------------- validation


def _fixed_methods() -> list[str]:
    from ..steppers import list_methods

    return list_methods(kind="fixed")


def _check_y0_t(y0, t) -> tuple[Tensor, Tensor]:
    if not isinstance(y0, Tensor):
        raise TypeError(
            f"y0 must be a torch.Tensor, got {type(y0).__name__}; wrap it with "
            "torch.as_tensor(y0, dtype=torch.float64)"
        )
    if not (y0.is_floating_point() or y0.is_complex()):
        raise TypeError(
            f"y0 must have a floating dtype, got {y0.dtype}; convert it with y0.double() or y0.float()"
        )
    if y0.numel() == 0:
        raise ValueError("y0 is empty; give at least one state component")
    if not bool(torch.isfinite(y0).all()):
        raise ValueError("y0 contains NaN or infinite values; clean the initial state first")
    if not isinstance(t, Tensor):
        try:
            t = torch.as_tensor(t, dtype=y0.real.dtype if y0.is_complex() else y0.dtype, device=y0.device)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"t must be a 1-D tensor of times, got {type(t).__name__} ({e})") from None
    if not t.is_floating_point():
        raise TypeError(f"t must have a floating dtype, got {t.dtype}; use torch.linspace(...) or t.double()")
    if t.ndim != 1 or len(t) == 0:
        raise ValueError(
            f"t must be 1-D with at least one time, got shape {tuple(t.shape)}; "
            "pass e.g. torch.linspace(0, 10, 101)"
        )
    if t.device != y0.device:
        raise ValueError(f"t is on {t.device} but y0 on {y0.device}; move t with t.to(y0.device)")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("t contains NaN or infinite values; give finite times")
    if len(t) > 1:
        d = t[1:] - t[:-1]
        if not bool(torch.isfinite(d).all()):
            raise ValueError(
                f"t's intervals overflow {t.dtype} (times as far apart as {float(t[0]):g} .. "
                f"{float(t[-1]):g}); rescale time so the span is representable"
            )
        if not (bool((d > 0).all()) or bool((d < 0).all())):
            raise ValueError(
                "t must be strictly monotone (all increasing or all decreasing, no repeats); "
                "sort it and remove duplicates, e.g. torch.unique(t)"
            )
    return y0, t


def _is_real(v) -> bool:
    if isinstance(v, Tensor):
        return v.numel() == 1 and not v.is_complex() and v.dtype != torch.bool
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _opt_bool(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"options[{name!r}] must be True or False, got {v!r} ({type(v).__name__})")
    return bool(v)


def _opt_int(name, v, lo=1):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"options[{name!r}] must be an integer >= {lo}, got {v!r} ({type(v).__name__})")
    if v < lo:
        raise ValueError(f"options[{name!r}] must be an integer >= {lo}, got {v}")
    return int(v)


def _opt_number(name, v, *, positive=True, allow_zero=False, allow_inf=False, tolerance=False):
    what = "a non-negative" if allow_zero else "a positive"
    if not _is_real(v):
        if tolerance and not isinstance(v, (str, bytes, bool)):
            # a per-component tolerance: an array/tensor of numbers
            try:
                arr = np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v, dtype=np.float64)
            except (TypeError, ValueError):
                arr = None
            if arr is not None and arr.ndim >= 1 and arr.size:
                if not np.all(np.isfinite(arr)) or np.any(arr < 0) or (not allow_zero and np.any(arr == 0)):
                    raise ValueError(f"options[{name!r}] must hold {what} finite number per component, got {v!r}")
                return v
        raise TypeError(f"options[{name!r}] must be {what} number, got {v!r} ({type(v).__name__})")
    x = float(v)
    if math.isnan(x) or (math.isinf(x) and not allow_inf) or x < 0 or (x == 0 and not allow_zero):
        raise ValueError(f"options[{name!r}] must be {what}{'' if allow_inf else ' finite'} number, got {x!r}")
    return v


#: the tightest relative tolerance an adaptive solve can meet in float64 (SciPy's floor too)
_MIN_RTOL = 100 * float(np.finfo(np.float64).eps)


def _opt_rtol(name, v):
    smallest = float(np.min(np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v, dtype=np.float64)))
    if smallest < _MIN_RTOL:
        raise ValueError(
            f"options[{name!r}]={smallest:g} is below what float64 can resolve ({_MIN_RTOL:.3g}, 100 machine "
            "epsilons); the solver would shrink its step without end — use rtol >= 1e-13"
        )
    return v


# one table of option checks: name -> check(name, value) returning the value to use
_OPTION_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "check_finite": _opt_bool,
    "compile": _opt_bool,
    "compile_chunk": _opt_int,
    "max_steps": _opt_int,
    "growth_bound": lambda n, v: _opt_number(n, v),
    "rtol": lambda n, v: _opt_rtol(n, _opt_number(n, v, tolerance=True)),
    "atol": lambda n, v: _opt_number(n, v, allow_zero=True, tolerance=True),
    "max_evaluations": _opt_int,
    "max_num_steps": _opt_int,
    "first_step": lambda n, v: _opt_number(n, v),
    "max_step": lambda n, v: _opt_number(n, v, allow_inf=True),
    "safety": lambda n, v: _opt_number(n, v),
    "ifactor": lambda n, v: _opt_number(n, v),
    "dfactor": lambda n, v: _opt_number(n, v),
}


def _check_options(options, spec) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    accepted = set(spec.options) | _SOLVE_OPTIONS
    unknown = set(options) - accepted
    if unknown:
        raise ValueError(
            f"options: unknown key(s) {sorted(unknown, key=repr)} for method {spec.name!r}; "
            f"it accepts: {', '.join(sorted(accepted))}"
        )
    out = {}
    for name, value in options.items():
        check = _OPTION_CHECKS.get(name)
        if name == "dtype" and not isinstance(value, torch.dtype):
            raise TypeError(f"options['dtype'] must be a torch.dtype (e.g. torch.float64), got {value!r}")
        out[name] = check(name, value) if check is not None else value
    return out


def _check_f(f, y0: Tensor, t: Tensor, *, check_finite: bool = False, adaptive: bool = False) -> None:
    if not callable(f):
        raise TypeError(f"f must be callable as f(t, y), got {type(f).__name__}")
    with torch.no_grad():
        out = f(t[0], y0)
    if not isinstance(out, Tensor):
        raise TypeError(f"f(t, y) must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != y0.shape:
        raise ValueError(
            f"f(t, y) returned shape {tuple(out.shape)} but y0 has shape {tuple(y0.shape)}; "
            "f must return dy/dt with the same shape as y"
        )
    if out.dtype != y0.dtype:
        raise TypeError(
            f"f(t, y) returned dtype {out.dtype} but y0 is {y0.dtype}; make f keep y's dtype "
            "(e.g. build its constants with dtype=y.dtype)"
        )
    if check_finite and not _all_finite(out) and _all_finite(y0):
        raise NonFiniteSolutionError(
            f"f(t, y) returned NaN/inf at t={float(t[0]):.6g} for the finite initial state{_bad_rows(out)}, "
            "before any step: f itself produced them, not the step size (a neural f: damaged weights, or "
            "inputs outside the range it was trained on); check f, or pass options={'check_finite': False}",
            step=None if adaptive else 0, time=float(t[0]), partial=y0.unsqueeze(0),
        )


def _bad_rows(out: Tensor) -> str:
    """`` (batch elements i, j of n)`` naming the non-finite rows of a batched ``[n, ...]`` output."""
    if out.ndim < 2:
        return ""
    bad = (~torch.isfinite(out.reshape(out.shape[0], -1)).all(dim=1)).nonzero().flatten().tolist()
    shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
    return f" (batch element{'s' if len(bad) > 1 else ''} {shown} of {out.shape[0]})"


def _time_eps(t: Tensor) -> float:
    """Relative resolution of ``t``'s dtype (float32 grids are coarser than float64)."""
    return float(torch.finfo(t.dtype).eps)


def _check_rhs_output(out, t, y) -> None:
    if not isinstance(out, Tensor) or out.shape != y.shape or out.dtype != y.dtype:
        what = (type(out).__name__ if not isinstance(out, Tensor)
                else f"shape {tuple(out.shape)}, dtype {out.dtype}")
        raise ValueError(
            f"f(t, y) returned {what} for y of shape {tuple(y.shape)}, dtype {y.dtype} "
            f"(at t={float(t.detach() if isinstance(t, Tensor) else t):.6g}); "
            "f must return dy/dt with y's shape and dtype on every call"
        )


@functools.lru_cache(maxsize=64)
def _checking_class(cls: type) -> type:
    """A subclass of ``cls`` whose ``__call__`` checks every output (see :func:`_checked_rhs`)."""
    base_call = cls.__call__

    def __call__(self, t, y):
        out = base_call(self, t, y)
        _check_rhs_output(out, t, y)
        return out

    return type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__, "__slots__": ()})


def _checked_rhs(f, *, compiled: bool = False):
    """``f`` with every output checked for y's shape and dtype: a later call returning a
    broadcastable shape would otherwise be broadcast silently.

    * A plain Python ``f`` (a function, lambda, bound method or partial) is wrapped.
    * A user-defined instance (a :class:`~attsolver.systems.System` subclass, an
      ``nn.Module``, any object with ``__call__``) becomes a view of the same object: an
      instance of a subclass of its class that shares its ``__dict__``, so ``isinstance``,
      every attribute the steppers read, parameters and buffers are those of ``f`` itself.
    * Attsolver's own systems (tested) and objects without a ``__dict__`` pass unchanged,
      and so does everything under ``options["compile"]`` (the compiled-loop cache is keyed
      by ``f``'s identity; a fresh wrapper per call would recompile every solve).  These are
      still checked on their first call.
    """
    if compiled:
        return f
    plain = isinstance(f, (types.FunctionType, functools.partial)) or (
        isinstance(f, types.MethodType) and not isinstance(f.__self__, torch.nn.Module))
    if plain:
        def rhs(t, y):
            out = f(t, y)
            _check_rhs_output(out, t, y)
            return out

        return rhs
    cls = type(f)
    if (cls.__module__ or "").startswith("attsolver.") or isinstance(f, types.BuiltinFunctionType) \
            or not isinstance(getattr(f, "__dict__", None), dict) or getattr(cls, "__slots__", None):
        return f
    try:
        view = object.__new__(_checking_class(cls))
        object.__setattr__(view, "__dict__", f.__dict__)  # the same dict: not a copy
    except Exception:  # noqa: BLE001 - a class that cannot be subclassed or instantiated this way
        return f
    return view


def _step_grid(t_np: np.ndarray, step_size, *, time_eps: float = 0.0, max_steps: int = DEFAULT_MAX_STEPS,
               y0: Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Steps per output interval and the (signed) step in each.

    The total number of steps is checked against ``max_steps`` before any work starts (a
    ``step_size`` far too small for ``t`` would otherwise overflow the step count or run for
    ages).  ``time_eps`` is the relative resolution of the dtype the times came in: an
    interval that is a whole number of steps up to that rounding gets exactly that many.
    """
    dt = np.diff(t_np)
    if step_size is None:
        return np.ones(len(dt), dtype=np.int64), dt
    if isinstance(step_size, Tensor):
        if step_size.numel() != 1:
            raise ValueError("step_size must be a scalar")
        step_size = float(step_size)
    if isinstance(step_size, (bool, np.bool_)) or not isinstance(step_size, numbers.Real):
        raise TypeError(f"step_size must be a positive number or None, got {type(step_size).__name__}")
    step_size = float(step_size)
    if not math.isfinite(step_size) or step_size <= 0:
        raise ValueError(
            f"step_size must be a positive finite number, got {step_size}; "
            "its sign follows t automatically when t decreases"
        )
    with np.errstate(over="ignore"):
        ratio = np.abs(dt) / step_size
    total = float(np.sum(np.ceil(ratio))) if len(ratio) else 0.0
    if not math.isfinite(total) or total > max_steps:
        span = float(np.sum(np.abs(dt)))
        work = ""
        if y0 is not None:
            work = (f" (about {total * y0.numel():.3g} state-component updates per stage"
                    f"{'' if not math.isfinite(total) else f', {total * 1e-5 / 3600:.3g} h at 10 µs a step'})")
        raise ValueError(
            f"step_size={step_size:g} needs {total:.3g} steps to cover t's span of {span:.6g}{work}, more "
            f"than the limit of {max_steps:.3g}: use a larger step_size (e.g. {span / min(max_steps, 10**6):.3g}), "
            "an adaptive method, or raise options['max_steps'] if you mean it"
        )
    nearest = np.rint(ratio)
    # an interval that is a whole number of steps up to rounding gets exactly that many; the
    # rounding is that of the times' own dtype (a float32 grid is off by ~1e-8 relative)
    scale = np.maximum(np.abs(t_np[1:]), np.abs(t_np[:-1])) / step_size
    tol = 1e-9 * np.maximum(1.0, ratio) + 4.0 * time_eps * np.maximum(scale, 1.0)
    n_sub = np.where(np.abs(ratio - nearest) <= tol, nearest, np.ceil(ratio))
    n_sub = np.maximum(n_sub, 1).astype(np.int64)
    return n_sub, dt / n_sub


def _check_corrector(corrector, method, h_int, n_sub, y0, t=None) -> None:
    if not callable(corrector):
        raise TypeError(f"corrector must be callable (an nn.Module), got {type(corrector).__name__}")
    check = getattr(corrector, "check_compatible", None)
    if check is not None:
        steps = np.unique(np.abs(h_int))
        trained = getattr(corrector, "step_size", None)
        if t is not None and t.dtype != torch.float64 and isinstance(trained, numbers.Real) and trained > 0:
            # times stored in float32 carry rounding of ~eps * |t|: a step equal to the trained
            # one up to that resolution is the trained step
            tmax = float(t.detach().abs().max())
            tol = 4.0 * _time_eps(t) * max(tmax, float(trained)) / float(trained)
            steps = np.where(np.abs(steps - trained) <= tol * trained, float(trained), steps)
        check(method=method, step_sizes=steps, y0=y0)
        return
    return


class _CheckedCorrector:
    """A plain-callable corrector (one that does not record what it was trained for), with
    every output checked: a correction of another shape would broadcast silently and one of
    another dtype would promote the whole solve."""

    def __init__(self, corrector, y0: Tensor):
        self.corrector = corrector
        self.shape, self.dtype, self.device = y0.shape, y0.dtype, y0.device

    def __call__(self, t, y, dy, h):
        out = self.corrector(t, y, dy, h)
        if not isinstance(out, Tensor):
            raise TypeError(f"corrector(t, y, dy, h) must return a torch.Tensor, got {type(out).__name__}")
        if out.shape != y.shape:
            raise ValueError(
                f"corrector(t, y, dy, h) returned shape {tuple(out.shape)} but y has shape {tuple(y.shape)}; "
                "it must return a correction of y's shape (no broadcasting)"
            )
        if out.dtype != self.dtype:
            raise TypeError(
                f"corrector(t, y, dy, h) returned dtype {out.dtype} but y0 is {self.dtype}; make it keep y's dtype"
            )
        return out


def _check_result(sol: Tensor, y0: Tensor, t: Tensor, growth_bound, method: str) -> None:
    """What the lean loop does not check per step: ``f`` (or the corrector) changing the
    solution's dtype after its first call, and the optional growth bound."""
    if sol.dtype != y0.dtype:
        raise TypeError(
            f"the solution came out {sol.dtype} though y0 is {y0.dtype}: f (or the corrector) returned "
            "another dtype after its first call; make it keep y's dtype"
        )
    if growth_bound is None:
        return
    with torch.no_grad():
        peak = sol.detach().abs().reshape(len(sol), -1).amax(dim=1)
    over = (peak > float(growth_bound)).nonzero()
    if len(over):
        i = int(over[0, 0])
        time = float(t[i])
        raise SolutionBoundError(
            f"|y| reached {float(peak[i]):.3g} at output {i} (t={time:.6g}, method {method!r}), beyond "
            f"options['growth_bound']={float(growth_bound):g}; the solution is growing without bound "
            "(check f, reduce the step) or raise the bound",
            step=None, time=time, partial=sol[:i],
        )


# --------------------------------------------------------------------------- failures


def _all_finite(x: Tensor) -> bool:
    """Whether every element is finite, in one reduction pass.

    Any NaN/inf makes the sum non-finite; only then (or if the sum of finite values
    overflowed) is the elementwise check run.  ``torch.isfinite(x).all()`` makes several
    passes over ``x``, which on a batch of 1024 Lorenz-96 states cost more than the
    integration itself.
    """
    with torch.no_grad():
        if bool(torch.isfinite(x.sum())):
            return True
        return bool(torch.isfinite(x).all())



def _raise_nonfinite(sol, stepper, corrector, t, t_np, n_sub, h_int, method):
    finite_rows = torch.isfinite(sol.reshape(len(sol), -1)).all(dim=1)
    i = int((~finite_rows).nonzero()[0, 0])  # first non-finite output, i >= 1
    first_step = int(n_sub[: i - 1].sum())
    # Replay the interval step by step (no grad) to name the exact step.
    times = _stage_times(stepper, t, t_np, n_sub, h_int, first_interval=i - 1)
    h = float(h_int[i - 1])
    k_bad = int(n_sub[i - 1]) - 1
    with torch.no_grad():
        y = sol[i - 1].detach()
        state = y if corrector is not None else stepper.to_state(y)
        for k in range(int(n_sub[i - 1])):
            ts = next(times)
            y_start = y
            if corrector is None:
                state = stepper.step(ts, state, h)
                y = stepper.from_state(state)
            else:
                y = _corrected_step(stepper, corrector, ts, y, h)
            if not bool(torch.isfinite(y).all()):
                k_bad = k
                break
    step = first_step + k_bad
    t_step = float(t_np[i - 1] + k_bad * h)
    cause = "reduce step_size, check f for overflow"
    f_start = None
    if getattr(stepper, "f", None) is not None and _all_finite(y_start):
        try:  # f itself non-finite at the finite state the step started from?
            with torch.no_grad():
                f_start = stepper.f(ts[0], y_start)
        except Exception:  # noqa: BLE001 - only a diagnosis; the blow-up is reported either way
            f_start = None
    if isinstance(f_start, Tensor) and bool(torch.isnan(f_start).any()):
        # NaN from a finite input is f's own doing; inf alone is the overflow of a growing solution
        cause = (f"f itself returned NaN at the finite state the step started from{_bad_rows(f_start)} — "
                 "not a step-size problem (a neural f: inputs outside the range it was trained on, or damaged "
                 "weights); check f")
    raise NonFiniteSolutionError(
        f"solution became non-finite at step {step} (t={t_step:.6g} -> {t_step + h:.6g}, "
        f"h={h:.3g}, method {method!r}); {cause}, or pass "
        "options={'check_finite': False} to get the raw result",
        step=step, time=t_step, partial=sol[:i],
    )


def _raise_if_nonfinite_adaptive(sol, t, method):
    finite_rows = torch.isfinite(sol.reshape(len(sol), -1)).all(dim=1)
    if bool(finite_rows.all()):
        return
    i = int((~finite_rows).nonzero()[0, 0])
    time = float(t[i])
    raise NonFiniteSolutionError(
        f"solution became non-finite by output {i} (t={time:.6g}, method {method!r}); "
        "tighten rtol/atol or check f, or pass options={'check_finite': False}",
        step=None, time=time, partial=sol[:i],
    )
