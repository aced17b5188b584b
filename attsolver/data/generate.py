"""Reference trajectories: sample initial conditions, spin up onto the attractor, solve with a
fine step, sample on the coarse output grid and add observation noise."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from collections.abc import Callable

from torch import Tensor

from .._progress import progress as make_progress
from .._version import __version__
from .dataset import TrajectoryDataset
from .noise import add_noise

__all__ = ["generate_trajectories", "default_method", "SYSTEM_DEFAULTS", "library_version"]

#: Per-system defaults of the output grid (``dt``, ``t_final``), the spin-up time and the
#: refinement of the reference step (``step_size = dt / refine``).  Used by the CLI and
#: benchmarks; ``generate_trajectories`` itself takes every value explicitly.
SYSTEM_DEFAULTS: dict[str, dict[str, float]] = {
    "lorenz63": {"dt": 0.01, "t_final": 10.0, "spin_up": 10.0, "refine": 20},
    "lorenz96": {"dt": 0.05, "t_final": 10.0, "spin_up": 5.0, "refine": 20},
    "spring_chain": {"dt": 0.2, "t_final": 20.0, "spin_up": 0.0, "refine": 20},
    "elastic_pendulum": {"dt": 0.1, "t_final": 10.0, "spin_up": 0.0, "refine": 20},
    "linear": {"dt": 0.1, "t_final": 10.0, "spin_up": 0.0, "refine": 20},
    # PDEBench 1-D Burgers: t in [0, 2], 201 frames
    "burgers": {"dt": 0.01, "t_final": 2.0, "spin_up": 0.0, "refine": 10},
    # Kassam–Trefethen: h = 1/4 is already accurate for ETDRK4; the reference takes h = 1/16
    "kuramoto_sivashinsky": {"dt": 0.25, "t_final": 50.0, "spin_up": 0.0, "refine": 4},
}

DEFAULT_REFINE = 20


def library_version() -> str:
    """The version string written into every file the library makes."""
    return __version__


def _is_semilinear_pde(system) -> bool:
    try:
        from ..systems import SemilinearPDE
    except ImportError:  # pragma: no cover
        return False
    return isinstance(system, SemilinearPDE)


def default_method(system) -> str:
    """``"etdrk4"`` for semilinear PDE systems, else ``"rk4"``."""
    return "etdrk4" if _is_semilinear_pde(system) else "rk4"


def _describe(f, short: bool = False) -> str:
    """``module:qualname`` of a function (its ``__name__`` with ``short``), else the type's name."""
    qual = getattr(f, "__qualname__", None) or type(f).__name__
    if short:
        return getattr(f, "__name__", None) or type(f).__name__
    mod = getattr(f, "__module__", None)
    return f"{mod}:{qual}" if mod else qual


def _sample(sampler, n: int, generator, dtype, state_shape) -> Tensor:
    """Call ``sampler(n, generator=generator)`` and check what it returns."""
    y0 = sampler(n, generator=generator)
    if not isinstance(y0, Tensor):
        try:
            y0 = torch.as_tensor(y0)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"sampler must return a tensor [n, *state], got {type(y0).__name__}") from None
    if y0.ndim < 2 or y0.shape[0] != n:
        raise ValueError(
            f"sampler(n={n}, generator=g) returned shape {tuple(y0.shape)}; it must return n initial states, "
            f"shape [n, *state] (e.g. torch.randn(n, 2, generator=generator))"
        )
    if state_shape is not None and tuple(y0.shape[1:]) != tuple(state_shape):
        raise ValueError(
            f"sampler returned states of shape {tuple(y0.shape[1:])} but the system's state shape is "
            f"{tuple(state_shape)}"
        )
    return y0.to(dtype)


def _spatial_grid(system) -> torch.Tensor | None:
    grid = getattr(system, "grid", None)
    if grid is None or not callable(grid):
        return None
    return grid(torch.float64, None).detach().cpu().reshape(-1)


def _positive_number(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _output_grid(t_final: float, dt: float) -> torch.Tensor:
    steps = t_final / dt
    n_steps = round(steps)
    if n_steps < 1 or abs(steps - n_steps) > 1e-9 * max(1.0, steps):
        raise ValueError(
            f"t_final ({t_final:g}) must be a positive whole multiple of dt ({dt:g}); "
            f"e.g. t_final={max(n_steps, 1) * dt:g}"
        )
    # i * dt (one rounding each), not a running sum, so t[i] is as exact as it can be
    return torch.arange(n_steps + 1, dtype=torch.float64) * dt


def generate_trajectories(
    system,
    n,
    *,
    t_final: float,
    dt: float,
    method: str | None = None,
    step_size: float | None = None,
    refine: int | None = None,
    spin_up: float = 0.0,
    noise_level: float = 0.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = True,
    batch_size: int = 256,
    sampler: Callable[..., Tensor] | None = None,
    name: str | None = None,
) -> TrajectoryDataset:
    """Reference trajectories of ``system`` on the grid ``t = 0, dt, ..., t_final``.

    Initial conditions are ``n`` itself when it is a tensor of initial states, else they
    come from ``sampler(n, generator=g)`` or ``system.sample_initial(n, generator=g)`` with
    ``g = torch.Generator().manual_seed(seed)``; each is integrated for ``spin_up`` time
    units and that part is discarded (so chaotic systems start on their attractor).  The
    reference solve uses :func:`attsolver.solve` with a fine step and is sampled at the
    output times; then observation noise of relative level ``noise_level`` is added with
    :func:`add_noise` (drawn from the same generator, after the initial conditions, so one
    seed fixes everything and the clean trajectories do not depend on the noise level).

    A plain right-hand side works as well as a built-in system::

        def duffing(t, y):                      # y = [..., 2]: position, velocity
            x, v = y[..., 0], y[..., 1]
            return torch.stack([v, -0.2 * v + x - x**3 + 0.3 * torch.cos(1.2 * t)], -1)

        data = generate_trajectories(duffing, torch.randn(32, 2, dtype=torch.float64),
                                     t_final=20.0, dt=0.1)

    Args:
        system: the right-hand side: a :class:`attsolver.systems.System`, a registered
            system name, or any callable ``f(t, y) -> dy/dt`` (torchdiffeq's convention).
        n: the number of trajectories (an int), or the initial states themselves, a tensor
            ``[n, *state]``.
        t_final, dt: output grid; ``t_final`` must be a whole multiple of ``dt``.
        method: integrator name; default ``"etdrk4"`` for semilinear PDE systems, else ``"rk4"``.
            Adaptive methods (``"scipy_dop853"``, ``"dopri8"``...) take ``options`` instead
            of a step.
        step_size: the reference step; default ``dt / refine``.  Each output interval is
            split into ``ceil(dt / step_size)`` equal steps.
        refine: fine steps per output interval when ``step_size`` is not given (default 20).
        spin_up: time integrated and discarded before ``t = 0`` (``>= 0``).
        noise_level: relative observation noise sigma (``>= 0``).
        seed: seed for initial conditions and noise.
        dtype: dtype of the solve and of the returned values.
        device: where to solve (initial conditions and noise are drawn on the CPU).
        options: passed to :func:`attsolver.solve` (``rtol``/``atol`` for adaptive methods).
        progress: progress over trajectory batches: a tqdm bar on a terminal, log lines
            (logger ``attsolver.progress``) otherwise.
        batch_size: trajectories integrated together.
        sampler: for a plain ``f`` with an integer ``n``: ``sampler(n, generator=g)`` returns
            ``n`` initial states ``[n, *state]``.
        name: the system's name recorded in the data (default: the system's own, or the
            function's ``__name__``).

    Returns:
        A :class:`TrajectoryDataset`; ``y_clean`` holds the reference values when
        ``noise_level > 0`` (else ``None`` and ``y`` is clean); ``config`` records every
        argument, the effective step and the library version (and, for a plain ``f``, where
        it came from under ``"rhs"``).
    """
    from ..integrate.boundary import NonFiniteSolutionError, solve
    from ..steppers import get_method
    from ..systems import make_system

    if isinstance(system, str):
        system = make_system(system)
    if not callable(system):
        raise TypeError(
            f"system must be a callable f(t, y), an attsolver System or a registered name, got "
            f"{type(system).__name__}"
        )
    builtin = hasattr(system, "sample_initial") and hasattr(system, "config")
    given = isinstance(n, Tensor)
    if given:
        if sampler is not None:
            raise ValueError("give the initial states (a tensor as n) or a sampler, not both")
        if n.ndim < 2 or len(n) == 0 or not n.is_floating_point():
            raise ValueError(
                f"the initial states must be a floating tensor [n_trajectories, *state], got "
                f"{'dtype ' + str(n.dtype) if not n.is_floating_point() else 'shape ' + str(tuple(n.shape))}; "
                "for one trajectory use y0.unsqueeze(0)"
            )
    elif isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be a positive integer or a tensor of initial states, got {n!r}")
    elif sampler is None and not builtin:
        raise ValueError(
            f"{_describe(system)} has no sample_initial: pass the initial states as a tensor "
            "(generate_trajectories(f, y0, ...)) or a sampler (sampler=lambda n, generator: ...)"
        )
    elif sampler is not None and not callable(sampler):
        raise TypeError(f"sampler must be callable as sampler(n, generator=g), got {type(sampler).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
    t_final = _positive_number("t_final", t_final)
    dt = _positive_number("dt", dt)
    spin_up = _positive_number("spin_up", spin_up, allow_zero=True)
    noise_level = _positive_number("noise_level", noise_level, allow_zero=True)
    t = _output_grid(t_final, dt)

    if method is None:
        method = default_method(system)
    spec = get_method(method)
    if spec.kind == "adaptive":
        if step_size is not None or refine is not None:
            raise ValueError(
                f"{method!r} is adaptive: it takes no step_size/refine; control its accuracy "
                "with options={'rtol': ..., 'atol': ...}"
            )
        effective_step = None
    else:
        if step_size is not None and refine is not None:
            raise ValueError("give step_size or refine, not both (step_size = dt / refine)")
        if step_size is None:
            refine = DEFAULT_REFINE if refine is None else refine
            if isinstance(refine, bool) or not isinstance(refine, numbers.Integral) or refine < 1:
                raise ValueError(f"refine must be a positive integer, got {refine!r}")
            step_size = dt / int(refine)
        step_size = _positive_number("step_size", step_size)
        n_sub = max(1, math.ceil(dt / step_size - 1e-9))
        effective_step = dt / n_sub

    generator = torch.Generator().manual_seed(int(seed))
    if given:
        y0 = n.detach().to(dtype=dtype, device="cpu")
        n = len(y0)
    elif sampler is not None:
        y0 = _sample(sampler, int(n), generator, dtype, getattr(system, "state_shape", None) if builtin else None)
    else:
        y0 = system.sample_initial(n, generator=generator, dtype=dtype)
    if not bool(torch.isfinite(y0).all()):
        raise ValueError("the initial states contain NaN or infinite values")
    sys_name = name or (system.name if builtin else _describe(system, short=True))
    sys_config = system.config() if builtin else {"name": sys_name, "params": {}}
    if name is not None:
        sys_config = {"name": name, "params": dict(sys_config.get("params", {}))}
    y0 = y0.to(device) if device is not None else y0
    t_dev = t.to(device=y0.device)

    step_kw = {} if effective_step is None else {"step_size": effective_step}
    batches = []
    with make_progress(n, f"{sys_name} trajectories", unit="traj", enabled=progress) as bar:
        for start in range(0, n, batch_size):
            yb = y0[start:start + batch_size]
            phase = "spin-up"
            try:
                with torch.no_grad():
                    if spin_up > 0:
                        t_spin = torch.tensor([0.0, spin_up], dtype=torch.float64, device=y0.device)
                        yb = solve(system, yb, t_spin, method=method, options=options, **step_kw)[-1]
                    phase = "reference solve"
                    sol = solve(system, yb, t_dev, method=method, options=options, **step_kw)
            except NonFiniteSolutionError as e:
                raise NonFiniteSolutionError(
                    f"{sys_name}: trajectories {start}..{start + len(yb) - 1}, {phase}: {e}",
                    step=e.step, time=e.time, partial=e.partial,
                ) from None
            batches.append(sol.transpose(0, 1))  # [b, nt, *state]
            bar.update(len(yb))
    y_clean = torch.cat(batches).to(dtype)

    y = add_noise(y_clean, noise_level, generator=generator) if noise_level > 0 else y_clean

    x = _spatial_grid(system) if _is_semilinear_pde(system) else None
    if x is not None and (x.ndim != 1 or len(x) != y.shape[-1]):
        x = None
    config = {
        "generator": "attsolver.data.generate_trajectories",
        "n": int(n),
        "t_final": t_final,
        "dt": dt,
        "method": method,
        "step_size": effective_step,
        "refine": None if effective_step is None else round(dt / effective_step),
        "spin_up": spin_up,
        "noise_level": noise_level,
        "seed": int(seed),
        "dtype": str(dtype).replace("torch.", ""),
        "options": dict(options or {}),
        "batch_size": int(batch_size),
        "attsolver_version": library_version(),
    }
    if given:
        config["initial_states"] = "given"
    if not builtin:
        config["rhs"] = _describe(system)
    return TrajectoryDataset(
        t=t,
        y=y.cpu(),
        system=sys_config,
        y_clean=y_clean.cpu() if noise_level > 0 else None,
        x=None if x is None else x.to(dtype),
        noise_level=noise_level,
        config=config,
    )
