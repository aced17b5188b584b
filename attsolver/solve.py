"""``solve()``: validate once at the boundary, build the stepper, run a lean step loop."""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .steppers import get_method
from .steppers.base import Stepper

__all__ = ["solve", "NonFiniteSolutionError", "SolveStats", "CoarseStepWarning"]

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
) -> Tensor | tuple[Tensor, SolveStats]:
    """Integrate ``dy/dt = f(t, y)`` from ``y(t[0]) = y0`` and return ``y`` at every ``t``.

    The conventions are torchdiffeq's, so the same ``f``/``y0``/``t`` work with
    ``torchdiffeq.odeint``.

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
            becomes NaN/inf), ``compile`` (default ``False``: compile the step with
            ``torch.compile``), ``compile_chunk`` (steps fused per compiled call, default 8).
            Adaptive methods: ``rtol``, ``atol``, ``check_finite`` and a few solver
            pass-throughs.  Unknown keys are an error, not a warning.
        return_stats: also return a :class:`SolveStats` (steps, ``f`` evaluations, corrector
            calls, wall time).

    Returns:
        Tensor of shape ``[len(t), *y0.shape]``; with ``return_stats`` the pair
        ``(solution, stats)``.

    Raises:
        TypeError / ValueError: bad input, naming the argument and the fix.
        NonFiniteSolutionError: the solution became non-finite (unless
            ``options={"check_finite": False}``).
    """
    spec = get_method(method)
    y0, t = _check_y0_t(y0, t)
    options = _check_options(options, spec)
    check_finite = bool(options.get("check_finite", True))
    _check_f(f, y0, t)

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
        counter = _Counter(f) if return_stats else None
        started = time.perf_counter()
        sol = spec.run(counter if counter is not None else f, y0, t, options)
        wall = time.perf_counter() - started
        if check_finite and not _all_finite(sol):
            _raise_if_nonfinite_adaptive(sol, t, method)
        if return_stats:
            return sol, SolveStats(spec.name, None, counter.n, 0, wall)
        return sol

    t_np = t.detach().cpu().double().numpy()
    n_sub, h_int = _step_grid(t_np, step_size)  # validates step_size even when len(t) == 1
    if len(t) == 1:
        out = y0.unsqueeze(0)
        return (out, SolveStats(spec.name, 0, 0, 0, 0.0, None, step_size is None)) if return_stats else out
    stepper = spec.build(f, y0)
    if corrector is not None:
        _check_corrector(corrector, method, h_int, n_sub, y0)
    elif step_size is None:
        _warn_if_coarse(stepper, y0, t, float(h_int[0]), spec)
    started = time.perf_counter()

    if options.get("compile", False):
        from ._compile import compiled_loop

        sol = compiled_loop(stepper, f, corrector, y0, t, t_np, n_sub, h_int,
                            chunk=int(options.get("compile_chunk", 8)))
    else:
        sol = _fixed_loop(stepper, corrector, y0, t, t_np, n_sub, h_int)
    wall = time.perf_counter() - started
    if check_finite and not _all_finite(sol):
        _raise_nonfinite(sol, stepper, corrector, t, t_np, n_sub, h_int, method)
    if return_stats:
        n_steps = int(n_sub.sum())
        return sol, SolveStats(spec.name, n_steps, n_steps * len(stepper.nodes),
                               n_steps if corrector is not None else 0, wall,
                               float(np.abs(h_int).max()), step_size is None)
    return sol


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
        size = y0.abs().amax().clamp(min=torch.finfo(y0.real.dtype if y0.is_complex() else y0.dtype).tiny)
        est = float(((one - two).abs().amax() / size).real) / (1.0 - 2.0 ** (-order))
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


def _stage_times(stepper: Stepper, t: Tensor, t_np: np.ndarray, n_sub: np.ndarray,
                 h_int: np.ndarray, first_interval: int = 0) -> Iterator[list[Tensor]]:
    """Yield, step by step, the stage times ``t_n + c_i h`` as 0-d tensors in ``t``'s dtype.

    Each distinct time is one tensor: stages with equal nodes share it, and inside an
    output interval the ``c = 1`` time of a step is the ``c = 0`` time of the next (classic
    RK4 makes two tensors per step, not four).  The times are computed with NumPy for
    ``_STAGE_CHUNK`` steps at once, so memory stays bounded for very long solves.
    """
    nodes = np.asarray(stepper.nodes, dtype=np.float64)
    inner = np.unique(nodes[nodes != 1.0])  # nodes may lie outside [0, 1] (e.g. c = 2)
    if 0.0 not in inner:
        raise ValueError(f"{type(stepper).__name__}: the nodes must include 0 (the step's start)")
    width = len(inner)
    zero = int(np.searchsorted(inner, 0.0))  # column of the c = 0 time in each row
    pos = [None if c == 1.0 else int(np.searchsorted(inner, c)) for c in nodes]
    n_sub = n_sub[first_interval:]
    interval_of_step = np.repeat(np.arange(len(n_sub)), n_sub) + first_interval
    k_in_interval = np.arange(len(interval_of_step)) - np.repeat(np.cumsum(n_sub) - n_sub, n_sub)
    last_in_interval = k_in_interval == np.repeat(n_sub - 1, n_sub)
    for s0 in range(0, len(interval_of_step), _STAGE_CHUNK):
        idx = interval_of_step[s0:s0 + _STAGE_CHUNK]
        k = k_in_interval[s0:s0 + _STAGE_CHUNK]
        m = len(idx)
        h = h_int[idx]
        starts = t_np[idx] + h * k
        # a step's c = 1 time is the next row's c = 0, except at the end of an interval or chunk
        own_end = last_in_interval[s0:s0 + _STAGE_CHUNK].copy()
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


def _fixed_loop(stepper, corrector, y0, t, t_np, n_sub, h_int):
    times = _stage_times(stepper, t, t_np, n_sub, h_int)
    outputs = [y0]
    if corrector is None:
        step, from_state = stepper.step, stepper.from_state
        state = stepper.to_state(y0)
        for n, h in zip(n_sub.tolist(), h_int.tolist()):
            for _ in range(n):
                state = step(next(times), state, h)
            outputs.append(from_state(state))
    else:
        y = y0
        for n, h in zip(n_sub.tolist(), h_int.tolist()):
            for _ in range(n):
                y = _corrected_step(stepper, corrector, next(times), y, h)
            outputs.append(y)
    return torch.stack(outputs)


# --------------------------------------------------------------------------- validation


def _fixed_methods() -> list[str]:
    from .steppers import list_methods

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
        if not (bool((d > 0).all()) or bool((d < 0).all())):
            raise ValueError(
                "t must be strictly monotone (all increasing or all decreasing, no repeats); "
                "sort it and remove duplicates, e.g. torch.unique(t)"
            )
    return y0, t


def _check_options(options, spec) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    unknown = set(options) - set(spec.options)
    if unknown:
        raise ValueError(
            f"options: unknown key(s) {sorted(unknown)} for method {spec.name!r}; "
            f"it accepts: {', '.join(sorted(spec.options))}"
        )
    if "compile_chunk" in options:
        c = options["compile_chunk"]
        if not isinstance(c, numbers.Integral) or c < 1:
            raise ValueError(f"options['compile_chunk'] must be a positive integer, got {c!r}")
    return dict(options)


def _check_f(f, y0: Tensor, t: Tensor) -> None:
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


def _step_grid(t_np: np.ndarray, step_size) -> tuple[np.ndarray, np.ndarray]:
    """Steps per output interval and the (signed) step in each."""
    dt = np.diff(t_np)
    if step_size is None:
        return np.ones(len(dt), dtype=np.int64), dt
    if isinstance(step_size, Tensor):
        if step_size.numel() != 1:
            raise ValueError("step_size must be a scalar")
        step_size = float(step_size)
    if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real):
        raise TypeError(f"step_size must be a positive number or None, got {type(step_size).__name__}")
    step_size = float(step_size)
    if not math.isfinite(step_size) or step_size <= 0:
        raise ValueError(
            f"step_size must be a positive finite number, got {step_size}; "
            "its sign follows t automatically when t decreases"
        )
    ratio = np.abs(dt) / step_size
    nearest = np.rint(ratio)
    # an interval that is a whole number of steps up to rounding gets exactly that many
    n_sub = np.where(np.abs(ratio - nearest) <= 1e-9 * np.maximum(1.0, ratio), nearest, np.ceil(ratio))
    n_sub = np.maximum(n_sub, 1).astype(np.int64)
    return n_sub, dt / n_sub


def _check_corrector(corrector, method, h_int, n_sub, y0) -> None:
    if not callable(corrector):
        raise TypeError(f"corrector must be callable (an nn.Module), got {type(corrector).__name__}")
    check = getattr(corrector, "check_compatible", None)
    if check is not None:
        check(method=method, step_sizes=np.unique(np.abs(h_int)), y0=y0)


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
    raise NonFiniteSolutionError(
        f"solution became non-finite at step {step} (t={t_step:.6g} -> {t_step + h:.6g}, "
        f"h={h:.3g}, method {method!r}); reduce step_size, check f for overflow, or pass "
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
