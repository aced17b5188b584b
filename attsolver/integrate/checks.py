"""Every check of ``solve``'s input, made once before the first step, and the step grid.

``y0`` and ``t`` (:func:`check_y0_t`), ``options`` (:func:`check_options`, one table of
per-key checks), ``f`` (:func:`check_f` on its first call; :func:`checked_rhs` on every later
one), ``step_size`` and the grid of steps it makes (:func:`step_grid`), the corrector
(:func:`check_corrector`), gradients with respect to ``t`` (:func:`check_time_gradient`),
the step-doubling check of a grid-stepped solve (:func:`warn_if_coarse`), and what the lean
loop does not check per step (:func:`check_result`).  Numbers, integers and flags are
checked by :mod:`attsolver._validate`, so messages read the same at every boundary.
"""

from __future__ import annotations

import functools
import math
import types
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validate import boolean, finite_number, is_real, one_of, positive_int
from ..steppers import get_method, list_methods
from ..steppers.base import Stepper
from ..steppers.registry import MethodSpec
from .call_cache import times_entry
from .compiled import COMPILE_MODES
from .errors import CoarseStepWarning, NonFiniteSolutionError, SolutionBoundError, all_finite, bad_rows
from .loop import StepPlan

__all__ = ["DEFAULT_MAX_STEPS", "DEFAULT_MAX_OUTPUT_BYTES", "DEFAULT_MAX_WALL_S", "SOLVE_OPTIONS",
           "check_dtype", "check_output_size", "COARSE_STEP_TOLERANCE", "check_y0_t", "check_options",
           "check_f", "checked_rhs", "time_eps", "step_grid", "check_corrector", "CheckedCorrector",
           "check_time_gradient", "check_result", "warn_if_coarse", "fixed_methods"]

#: default cap on the number of fixed steps of one solve (``options={"max_steps": ...}``
#: raises it): a ``step_size`` far too small for ``t`` is an error before any work starts.
DEFAULT_MAX_STEPS = 10**9
#: default cap on the bytes of ``solve``'s result (``len(t) * y0.numel() * itemsize``;
#: ``options={"max_output_bytes": ...}`` raises it): refused before any work starts.
DEFAULT_MAX_OUTPUT_BYTES = 8 * 2**30
#: default cap on the wall time of one adaptive solve, seconds (``options={"max_wall_s": ...}``)
DEFAULT_MAX_WALL_S = 600.0
#: options ``solve`` itself handles for every method (not passed on to the stepper)
SOLVE_OPTIONS = frozenset({"max_steps", "growth_bound", "max_output_bytes", "max_wall_s"})
#: no step count can exceed this (NumPy's int64 step counts), whatever ``max_steps`` says
_COUNTABLE_STEPS = 2**62
#: local error (relative to the state's size) above which the step-doubling check warns
COARSE_STEP_TOLERANCE = 1e-3
#: the tightest relative tolerance an adaptive solve can meet in float64 (SciPy's floor too)
_MIN_RTOL = 100 * float(np.finfo(np.float64).eps)


def fixed_methods() -> list[str]:
    """The registered fixed-step methods (the ones that take a ``step_size`` and a corrector)."""
    return list_methods(kind="fixed")


def time_eps(t: Tensor) -> float:
    """Relative resolution of ``t``'s dtype (float32 grids are coarser than float64)."""
    return float(torch.finfo(t.dtype).eps)


# --------------------------------------------------------------------------- y0 and t


def _check_y0(y0) -> None:
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
    if not all_finite(y0):
        raise ValueError("y0 contains NaN or infinite values; clean the initial state first")


def check_y0_t(y0, t) -> tuple[Tensor, Tensor]:
    """``(y0, t)`` checked, with ``t`` made a tensor (in ``y0``'s real dtype) if it was not one.
    A ``t`` of the same values and dtype as one found valid before is not checked again
    (:mod:`.call_cache`)."""
    _check_y0(y0)
    if isinstance(t, Tensor) and t.device == y0.device and times_entry(t, only_known=True) is not None:
        return y0, t
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
    times_entry(t)  # t is valid: later calls with these times skip the checks above
    return y0, t


# --------------------------------------------------------------------------- options


def _opt_bool(name: str, v) -> bool:
    return boolean(f"options[{name!r}]", v)


def _opt_int(name: str, v) -> int:
    return positive_int(f"options[{name!r}]", v)


def _opt_number(name: str, v, *, allow_zero: bool = False, allow_inf: bool = False, tolerance: bool = False):
    """A positive (``allow_zero``: non-negative) number, returned as given; a tolerance may
    also be an array or tensor of such numbers, one per state component."""
    if isinstance(v, Tensor) and v.numel() == 1 and not v.is_complex() and v.dtype != torch.bool:
        finite_number(f"options[{name!r}]", v.item(), low=0.0, low_open=not allow_zero, allow_inf=allow_inf)
        return v
    if tolerance and not is_real(v) and not isinstance(v, (str, bytes, bool)):
        try:
            arr = np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is not None and arr.ndim >= 1 and arr.size:
            if not np.all(np.isfinite(arr)) or np.any(arr < 0) or (not allow_zero and np.any(arr == 0)):
                what = "a non-negative" if allow_zero else "a positive"
                raise ValueError(f"options[{name!r}] must hold {what} finite number per component, got {v!r}")
            return v
    finite_number(f"options[{name!r}]", v, low=0.0, low_open=not allow_zero, allow_inf=allow_inf)
    return v


def _opt_rtol(name: str, v):
    smallest = float(np.min(np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v, dtype=np.float64)))
    if smallest < _MIN_RTOL:
        raise ValueError(
            f"options[{name!r}]={smallest:g} is below what float64 can resolve ({_MIN_RTOL:.3g}, 100 machine "
            "epsilons); the solver would shrink its step without end — use rtol >= 1e-13"
        )
    return v


def _opt_dtype(name: str, v) -> torch.dtype:
    if not isinstance(v, torch.dtype):
        raise TypeError(f"options['dtype'] must be a torch.dtype (e.g. torch.float64), got {v!r}")
    return v


def _opt_compile(name: str, v) -> bool | str:
    """``True``/``False``, or a named mode of :data:`~attsolver.integrate.compiled.COMPILE_MODES`."""
    if isinstance(v, str):
        return one_of(f"options[{name!r}]", v, COMPILE_MODES)
    return boolean(f"options[{name!r}]", v)


# one table of option checks: name -> check(name, value) returning the value to use
_OPTION_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "check_finite": _opt_bool,
    "compile": _opt_compile,
    "compile_chunk": _opt_int,
    "max_steps": _opt_int,
    "max_output_bytes": _opt_int,
    "max_wall_s": _opt_number,
    "growth_bound": _opt_number,
    "rtol": lambda n, v: _opt_rtol(n, _opt_number(n, v, tolerance=True)),
    "atol": lambda n, v: _opt_number(n, v, allow_zero=True, tolerance=True),
    "max_evaluations": _opt_int,
    "max_num_steps": _opt_int,
    "first_step": _opt_number,
    "max_step": lambda n, v: _opt_number(n, v, allow_inf=True),
    "safety": _opt_number,
    "ifactor": _opt_number,
    "dfactor": _opt_number,
    "dtype": _opt_dtype,
}


def check_options(options, spec: MethodSpec) -> dict[str, Any]:
    """A checked copy of ``options``: unknown keys for ``spec``'s method are an error, not a warning."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    accepted = set(spec.options) | SOLVE_OPTIONS
    unknown = set(options) - accepted
    if unknown:
        raise ValueError(
            f"options: unknown key(s) {sorted(unknown, key=repr)} for method {spec.name!r}; "
            f"it accepts: {', '.join(sorted(accepted))}"
        )
    out = {}
    for name, value in options.items():
        check = _OPTION_CHECKS.get(name)
        out[name] = check(name, value) if check is not None else value
    return out


# --------------------------------------------------------------------------- f


def check_returned(call: str, out: Any, ref: str, shape: torch.Size, dtype: torch.dtype, shape_advice: str,
                   dtype_advice: str) -> None:
    """What a user's callable returned (``call``, as the message writes it): a tensor of the
    shape of ``ref`` (``shape``) and of the solve's ``dtype``; the advice ends each message."""
    if not isinstance(out, Tensor):
        raise TypeError(f"{call} must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{call} returned shape {tuple(out.shape)} but {ref} has shape {tuple(shape)}; {shape_advice}")
    if out.dtype != dtype:
        raise TypeError(f"{call} returned dtype {out.dtype} but y0 is {dtype}; {dtype_advice}")


def check_f(f, y0: Tensor, t: Tensor, *, check_finite: bool = False, adaptive: bool = False) -> None:
    """Call ``f(t[0], y0)`` once (no grad): callable, a tensor of ``y0``'s shape and dtype,
    and (``check_finite``) finite for a finite ``y0``."""
    if not callable(f):
        raise TypeError(f"f must be callable as f(t, y), got {type(f).__name__}")
    with torch.no_grad():
        out = f(t[0], y0)
    check_returned("f(t, y)", out, "y0", y0.shape, y0.dtype, "f must return dy/dt with the same shape as y",
                   "make f keep y's dtype (e.g. build its constants with dtype=y.dtype)")
    if check_finite and not all_finite(out) and all_finite(y0):
        raise NonFiniteSolutionError(
            f"f(t, y) returned NaN/inf at t={float(t[0]):.6g} for the finite initial state{bad_rows(out)}, "
            "before any step: f itself produced them, not the step size (a neural f: damaged weights, or "
            "inputs outside the range it was trained on); check f, or pass options={'check_finite': False}",
            step=None if adaptive else 0, time=float(t[0]), partial=y0.unsqueeze(0),
        )


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
    """A subclass of ``cls`` whose ``__call__`` checks every output (see :func:`checked_rhs`)."""
    base_call = cls.__call__

    def __call__(self, t, y):
        out = base_call(self, t, y)
        _check_rhs_output(out, t, y)
        return out

    return type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__, "__slots__": ()})


def checked_rhs(f, *, compiled: bool = False):
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

        if callable(getattr(f, "numpy_rhs", None)):  # a NumPy twin the user attached (the SciPy steppers use it)
            rhs.numpy_rhs = f.numpy_rhs
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


# --------------------------------------------------------------------------- the step grid


def _step_size(step_size) -> float:
    if isinstance(step_size, Tensor):
        if step_size.numel() != 1:
            raise ValueError("step_size must be a scalar")
        step_size = float(step_size)
    if not is_real(step_size):
        raise TypeError(f"step_size must be a positive number or None, got {type(step_size).__name__}")
    step_size = float(step_size)
    if not math.isfinite(step_size) or step_size <= 0:
        raise ValueError(
            f"step_size must be a positive finite number, got {step_size}; "
            "its sign follows t automatically when t decreases"
        )
    return step_size


def step_grid(t_np: np.ndarray, step_size, *, time_eps: float = 0.0, max_steps: int = DEFAULT_MAX_STEPS,
              y0: Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Steps per output interval (int64 ``[len(t) - 1]``) and the signed step in each (float64).

    ``step_size=None``: one step per interval.  The total number of steps is checked against
    ``max_steps`` before any work starts (a ``step_size`` far too small for ``t`` would
    otherwise overflow the step count or run for ages).  ``time_eps`` is the relative
    resolution of the dtype the times came in: an interval that is a whole number of steps
    up to that rounding gets exactly that many.
    """
    dt = np.diff(t_np)
    if step_size is None:
        return np.ones(len(dt), dtype=np.int64), dt
    step_size = _step_size(step_size)
    with np.errstate(over="ignore"):
        ratio = np.abs(dt) / step_size
    total = float(np.sum(np.ceil(ratio))) if len(ratio) else 0.0
    if not math.isfinite(total) or total > min(max_steps, _COUNTABLE_STEPS):
        max_steps = min(max_steps, _COUNTABLE_STEPS)
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
    h_int = dt / n_sub
    _check_steps_advance(t_np, h_int, step_size)
    return n_sub, h_int


def _check_steps_advance(t_np: np.ndarray, h_int: np.ndarray, step_size: float) -> None:
    """A step below float64's resolution at its time would not move time at all (the solve
    would return ``y0`` unchanged): an error whatever ``max_steps`` allows."""
    if not len(h_int):
        return
    scale = np.maximum(np.abs(t_np[1:]), np.abs(t_np[:-1]))
    stuck = np.abs(h_int) <= np.finfo(np.float64).eps * scale
    if bool(stuck.any()):
        i = int(np.argmax(stuck))
        raise ValueError(
            f"step_size={step_size:g} underflows the time grid near t={t_np[i]:.6g}: a step there is below "
            f"float64's resolution ({np.finfo(np.float64).eps * scale[i]:.3g}) and would not advance time; "
            "use a larger step_size (raising options['max_steps'] cannot help)"
        )


# --------------------------------------------------------------------------- size and precision


def check_output_size(n_times: int, y0: Tensor, max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> None:
    """The result, ``[n_times, *y0.shape]`` in ``y0``'s dtype, fits ``max_bytes``: a solve
    asked for 10^9 output times is refused before any work, naming the option."""
    need = int(n_times) * int(y0.numel()) * int(y0.element_size())
    if need > max_bytes:
        raise ValueError(
            f"the result would take {need / 2**30:.3g} GiB ({n_times} output times x {y0.numel()} components x "
            f"{y0.element_size()} bytes), more than the limit of {max_bytes / 2**30:.3g} GiB: ask for fewer "
            "output times (t), or raise options['max_output_bytes'] if you mean it"
        )


#: torch dtype -> its name in a MethodSpec's ``dtypes`` ("float64", ...)
_DTYPE_NAMES: dict[torch.dtype, str] = {}


def check_dtype(spec: MethodSpec, y0: Tensor) -> None:
    """``y0``'s dtype is one ``spec``'s method declares (its registry entry's ``dtypes``): a
    lower precision would be silently wrong or fail inside torch."""
    name = _DTYPE_NAMES.get(y0.dtype)
    if name is None:  # str(dtype) costs ~1 µs: once per dtype
        name = _DTYPE_NAMES[y0.dtype] = str(y0.dtype).replace("torch.", "")
    if name in spec.dtypes:
        return
    ok = [m for m in list_methods() if name in _spec_dtypes(m)]
    raise TypeError(
        f"method {spec.name!r} does not support y0 of dtype {y0.dtype} (it supports "
        f"{', '.join(spec.dtypes)}); convert y0, e.g. y0.float() or y0.double()"
        + (f", or use a method that supports {name}: {', '.join(ok)}" if ok else
           f" — no registered method supports {name}")
    )


def check_no_grad_through(spec: MethodSpec, f, y0: Tensor, t: Tensor) -> None:
    """A method that is not differentiable (SciPy's) is refused when ``y0``, ``t`` or a
    parameter of ``f`` requires grad: its result would silently drop the gradient and a
    later ``backward()`` fail far from the cause."""
    if spec.differentiable or not torch.is_grad_enabled():
        return
    params = f.parameters() if isinstance(f, torch.nn.Module) else ()
    which = ("y0" if y0.requires_grad else "t" if t.requires_grad
             else "f's parameters" if any(p.requires_grad for p in params) else None)
    if which is None:
        return
    grads = [m for m in list_methods() if get_method(m).differentiable]
    raise ValueError(
        f"method {spec.name!r} is not differentiable (SciPy runs outside autograd) but {which} requires grad; "
        f"use a differentiable method such as 'dopri5' (one of: {', '.join(grads)}), or solve under "
        "torch.no_grad() / pass y0.detach() if no gradient is wanted"
    )


def _spec_dtypes(name: str) -> tuple[str, ...]:
    return get_method(name).dtypes


# --------------------------------------------------------------------------- the corrector


def check_corrector(corrector, method: str, h_int: np.ndarray, y0: Tensor, t: Tensor | None = None) -> None:
    """A callable; one that records what it was trained for (``check_compatible``) is asked
    whether it fits this method, these steps (up to ``t``'s time resolution) and ``y0``."""
    if not callable(corrector):
        raise TypeError(f"corrector must be callable (an nn.Module), got {type(corrector).__name__}")
    check = getattr(corrector, "check_compatible", None)
    if check is None:
        return
    steps = np.unique(np.abs(h_int))
    trained = getattr(corrector, "step_size", None)
    if t is not None and t.dtype != torch.float64 and is_real(trained) and trained > 0:
        # times stored in float32 carry rounding of ~eps * |t|: a step equal to the trained
        # one up to that resolution is the trained step
        tmax = float(t.detach().abs().max())
        tol = 4.0 * time_eps(t) * max(tmax, float(trained)) / float(trained)
        steps = np.where(np.abs(steps - trained) <= tol * trained, float(trained), steps)
    check(method=method, step_sizes=steps, y0=y0)


class CheckedCorrector:
    """A plain-callable corrector (one that does not record what it was trained for), with
    every output checked: a correction of another shape would broadcast silently and one of
    another dtype would promote the whole solve."""

    def __init__(self, corrector, y0: Tensor):
        self.corrector = corrector
        self.shape, self.dtype, self.device = y0.shape, y0.dtype, y0.device

    def __call__(self, t, y, dy, h):
        out = self.corrector(t, y, dy, h)
        check_returned("corrector(t, y, dy, h)", out, "y", y.shape, self.dtype,
                       "it must return a correction of y's shape (no broadcasting)", "make it keep y's dtype")
        return out


# --------------------------------------------------------------------------- before and after the loop


def check_time_gradient(plan: StepPlan, *, compiling: bool) -> None:
    """``t.requires_grad``: say plainly where gradients with respect to ``t`` cannot flow."""
    if not plan.stepper.time_differentiable:
        raise ValueError(
            f"t requires grad, but method {plan.method!r} cannot differentiate with respect to t "
            "(its coefficients are precomputed for a numeric step size); pass t.detach(), or use "
            "an explicit Runge-Kutta method such as 'rk4'"
        )
    if plan.corrector is not None:
        raise ValueError(
            "t requires grad, but gradients with respect to t are not supported with a corrector "
            "(the corrector takes h as a number); pass t.detach()"
        )
    if compiling:
        raise ValueError(
            "t requires grad, but options['compile'] runs with precomputed numeric times; pass "
            "t.detach() or drop 'compile' to get gradients with respect to t"
        )


def warn_if_coarse(stepper: Stepper, y0: Tensor, t: Tensor, h: float, spec: MethodSpec) -> bool:
    """Step doubling on the first interval: one step of ``h`` against two of ``h / 2``; the
    difference over ``1 - 2^-p`` estimates the local error of the ``h`` step (Richardson).
    Above :data:`COARSE_STEP_TOLERANCE` of the state's size a :class:`CoarseStepWarning`
    gives the estimate and a step that would meet the tolerance.  Returns whether it was quiet."""
    order = spec.order or stepper.order or 1

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
            # the user's call of solve: solve -> _solve_fixed -> _plan -> warn_if_coarse
            CoarseStepWarning, stacklevel=5,
        )
        return False
    return True


def check_result(sol: Tensor, y0: Tensor, t: Tensor, growth_bound, method: str) -> None:
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
