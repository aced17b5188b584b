"""Reference trajectories: sample initial conditions, spin up onto the attractor, solve with a
fine step, sample on the coarse output grid and add observation noise."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._progress import progress as make_progress
from .._validate import integer, is_integer, nonnegative_number, positive_int, positive_number, whole_multiple
from .._version import __version__
from ..integrate import NonFiniteSolutionError, solve
from ..steppers import get_method
from ..steppers.spectral import SpectralSystem
from ..systems import RunDefaults, make_system
from ..systems.base import registered_systems
from .dataset import TrajectoryDataset
from .noise import add_noise

__all__ = ["generate_trajectories", "default_method", "SYSTEM_DEFAULTS"]


class _SystemDefaults(Mapping):
    """``SYSTEM_DEFAULTS[name]``: ``run_defaults.as_dict()`` of each registered system that
    has a default output grid, read from its class at every look-up (the class is the one
    home of these values; this view serves code that looks them up by name)."""

    def _table(self) -> dict[str, dict[str, Any]]:
        return {name: cls.run_defaults.as_dict() for name, cls in registered_systems().items()
                if cls.run_defaults.dt is not None}

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return f"SYSTEM_DEFAULTS({self._table()!r})"


#: Per-system defaults of the output grid (``dt``, ``t_final``), the spin-up time and the
#: refinement of the reference step (``step_size = dt / refine``), by system name: a
#: read-only view of each class's :attr:`~attsolver.systems.System.run_defaults`.
SYSTEM_DEFAULTS: Mapping[str, dict[str, Any]] = _SystemDefaults()


def _is_spectral_1d(system) -> bool:
    """A periodic 1-D semilinear PDE: the spectral steppers' protocol on a 1-D grid."""
    # the one type test of this module; steppers.spectral is to offer a helper for it
    return isinstance(system, SpectralSystem) and len(tuple(system.grid_shape)) == 1


def default_method(system) -> str:
    """``"etdrk4"`` for semilinear PDE systems (1-D), else ``"rk4"``."""
    return "etdrk4" if _is_spectral_1d(system) else "rk4"


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


def _output_grid(t_final: float, dt: float) -> torch.Tensor:
    steps = t_final / dt
    n_steps = whole_multiple(steps, 1e-9)
    if n_steps is None:
        raise ValueError(
            f"t_final ({t_final:g}) must be a positive whole multiple of dt ({dt:g}); "
            f"e.g. t_final={max(round(steps), 1) * dt:g}"
        )
    # i * dt (one rounding each), not a running sum, so t[i] is as exact as it can be
    return torch.arange(n_steps + 1, dtype=torch.float64) * dt


# --------------------------------------------------------------------------- the steps


def _as_rhs(system):
    """A registered name becomes its system; anything else must be callable as ``f(t, y)``."""
    if isinstance(system, str):
        system = make_system(system)
    if not callable(system):
        raise TypeError(
            f"system must be a callable f(t, y), an attsolver System or a registered name, got "
            f"{type(system).__name__}"
        )
    return system


def _check_initial(system, n, sampler, builtin: bool) -> None:
    """``n`` (a count or the initial states) and ``sampler`` fit together and with ``system``."""
    if isinstance(n, Tensor):
        if sampler is not None:
            raise ValueError("give the initial states (a tensor as n) or a sampler, not both")
        if n.ndim < 2 or len(n) == 0 or not n.is_floating_point():
            raise ValueError(
                f"the initial states must be a floating tensor [n_trajectories, *state], got "
                f"{'dtype ' + str(n.dtype) if not n.is_floating_point() else 'shape ' + str(tuple(n.shape))}; "
                "for one trajectory use y0.unsqueeze(0)"
            )
    elif not is_integer(n) or n < 1:
        raise ValueError(f"n must be a positive integer or a tensor of initial states, got {n!r}")
    elif sampler is None and not builtin:
        raise ValueError(
            f"{_describe(system)} has no sample_initial: pass the initial states as a tensor "
            "(generate_trajectories(f, y0, ...)) or a sampler (sampler=lambda n, generator: ...)"
        )
    elif sampler is not None and not callable(sampler):
        raise TypeError(f"sampler must be callable as sampler(n, generator=g), got {type(sampler).__name__}")


@dataclass(frozen=True)
class _Plan:
    """The checked recipe of one data set: output grid, method, reference step, spin-up, noise."""

    t: Tensor  # [nt] float64 output times
    t_final: float
    dt: float
    method: str
    step: float | None  # the effective reference step; None for adaptive methods
    spin_up: float
    noise_level: float


def _defaults_for(system, t_final, dt) -> RunDefaults:
    """What fills the arguments the caller left out: the system's ``run_defaults`` when it gave
    no output grid, else the generic :class:`RunDefaults` (no spin-up, ``refine = 20``)."""
    if t_final is not None and dt is not None:
        return RunDefaults()
    if t_final is not None or dt is not None:
        raise ValueError("give the output grid as both t_final and dt, or neither (the system's run_defaults)")
    defaults = getattr(system, "run_defaults", None)
    if not isinstance(defaults, RunDefaults) or defaults.dt is None or defaults.t_final is None:
        raise ValueError(f"{_describe(system, short=True)} has no default output grid (run_defaults): "
                         "pass t_final and dt")
    return defaults


def _plan(system, *, t_final, dt, method, step_size, refine, spin_up, noise_level) -> _Plan:
    """Check the time arguments and choose the method and the reference step."""
    defaults = _defaults_for(system, t_final, dt)
    t_final = positive_number("t_final", defaults.t_final if t_final is None else t_final, type_error=False)
    dt = positive_number("dt", defaults.dt if dt is None else dt, type_error=False)
    spin_up = nonnegative_number("spin_up", defaults.spin_up if spin_up is None else spin_up, type_error=False)
    noise_level = nonnegative_number("noise_level", noise_level, type_error=False)
    t = _output_grid(t_final, dt)
    method = default_method(system) if method is None else method
    if get_method(method).kind == "adaptive":
        if step_size is not None or refine is not None:
            raise ValueError(
                f"{method!r} is adaptive: it takes no step_size/refine; control its accuracy "
                "with options={'rtol': ..., 'atol': ...}"
            )
        return _Plan(t, t_final, dt, method, None, spin_up, noise_level)
    if step_size is not None and refine is not None:
        raise ValueError("give step_size or refine, not both (step_size = dt / refine)")
    if step_size is None:
        step_size = dt / positive_int("refine", defaults.refine if refine is None else refine, type_error=False)
    step_size = positive_number("step_size", step_size, type_error=False)
    n_sub = max(1, math.ceil(dt / step_size - 1e-9))
    return _Plan(t, t_final, dt, method, dt / n_sub, spin_up, noise_level)


def _initial_states(system, n, sampler, builtin: bool, generator, dtype) -> Tensor:
    """``[n, *state]`` on the CPU: the given states, or ``n`` drawn from ``generator``."""
    if isinstance(n, Tensor):
        y0 = n.detach().to(dtype=dtype, device="cpu")
    elif sampler is not None:
        y0 = _sample(sampler, int(n), generator, dtype, getattr(system, "state_shape", None) if builtin else None)
    else:
        y0 = system.sample_initial(n, generator=generator, dtype=dtype)
    if not bool(torch.isfinite(y0).all()):
        raise ValueError("the initial states contain NaN or infinite values")
    return y0


def _integrate(system, y0: Tensor, plan: _Plan, *, options, batch_size: int, progress: bool,
               label: str) -> Tensor:
    """Spin-up and reference solve in batches: ``[n, nt, *state]``; a blow-up names the batch."""
    step_kw = {} if plan.step is None else {"step_size": plan.step}
    t = plan.t.to(device=y0.device)
    batches = []
    with make_progress(len(y0), f"{label} trajectories", unit="traj", enabled=progress) as bar:
        for start in range(0, len(y0), batch_size):
            yb = y0[start:start + batch_size]
            phase = "spin-up"
            try:
                with torch.no_grad():
                    if plan.spin_up > 0:
                        t_spin = torch.tensor([0.0, plan.spin_up], dtype=torch.float64, device=y0.device)
                        yb = solve(system, yb, t_spin, method=plan.method, options=options, **step_kw)[-1]
                    phase = "reference solve"
                    sol = solve(system, yb, t, method=plan.method, options=options, **step_kw)
            except NonFiniteSolutionError as e:
                raise NonFiniteSolutionError(
                    f"{label}: trajectories {start}..{start + len(yb) - 1}, {phase}: {e}",
                    step=e.step, time=e.time, partial=e.partial,
                ) from None
            batches.append(sol.transpose(0, 1))  # [b, nt, *state]
            bar.update(len(yb))
    return torch.cat(batches)


def _config(plan: _Plan, *, n: int, seed: int, dtype, options, batch_size: int, given: bool,
            rhs: str | None) -> dict[str, Any]:
    """What made the data set, recorded in its ``config`` (``rhs``: where a plain ``f`` came from)."""
    config = {
        "generator": "attsolver.data.generate_trajectories",
        "n": int(n),
        "t_final": plan.t_final,
        "dt": plan.dt,
        "method": plan.method,
        "step_size": plan.step,
        "refine": None if plan.step is None else round(plan.dt / plan.step),
        "spin_up": plan.spin_up,
        "noise_level": plan.noise_level,
        "seed": int(seed),
        "dtype": str(dtype).replace("torch.", ""),
        "options": dict(options or {}),
        "batch_size": int(batch_size),
        "attsolver_version": __version__,
    }
    if given:
        config["initial_states"] = "given"
    if rhs is not None:
        config["rhs"] = rhs
    return config


def _system_record(system, builtin: bool, name: str | None) -> dict[str, Any]:
    """The ``system`` entry of the data set: its config, or the given name for a plain ``f``."""
    sys_config = system.config() if builtin else {"name": name or _describe(system, short=True), "params": {}}
    if name is not None:
        sys_config = {"name": name, "params": dict(sys_config.get("params", {}))}
    return sys_config


def _dataset(system, y_clean: Tensor, y: Tensor, plan: _Plan, sys_config: dict, config: dict,
             dtype) -> TrajectoryDataset:
    """The returned set: values on the CPU, the 1-D grid of a PDE field as ``x``."""
    x = _spatial_grid(system) if _is_spectral_1d(system) else None
    if x is not None and (x.ndim != 1 or len(x) != y.shape[-1]):
        x = None
    return TrajectoryDataset(
        t=plan.t,
        y=y.cpu(),
        system=sys_config,
        y_clean=y_clean.cpu() if plan.noise_level > 0 else None,
        x=None if x is None else x.to(dtype),
        noise_level=plan.noise_level,
        config=config,
    )


# --------------------------------------------------------------------------- the entry point


def generate_trajectories(
    system,
    n,
    *,
    t_final: float | None = None,
    dt: float | None = None,
    method: str | None = None,
    step_size: float | None = None,
    refine: int | None = None,
    spin_up: float | None = None,
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
        t_final, dt: output grid; ``t_final`` must be a whole multiple of ``dt``.  Leave both
            out for the system's standard set: its :attr:`~attsolver.systems.System.run_defaults`
            then give the grid, the spin-up and ``refine`` too (what ``attsolver data
            generate NAME`` makes).
        method: integrator name; default ``"etdrk4"`` for semilinear PDE systems, else ``"rk4"``.
            Adaptive methods (``"scipy_dop853"``, ``"dopri8"``...) take ``options`` instead
            of a step.
        step_size: the reference step; default ``dt / refine``.  Each output interval is
            split into ``ceil(dt / step_size)`` equal steps.
        refine: fine steps per output interval when ``step_size`` is not given (default 20).
        spin_up: time integrated and discarded before ``t = 0`` (``>= 0``; default 0).
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
    system = _as_rhs(system)
    builtin = hasattr(system, "sample_initial") and hasattr(system, "config")
    _check_initial(system, n, sampler, builtin)
    batch_size = positive_int("batch_size", batch_size, type_error=False)
    seed = integer("seed", seed)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
    plan = _plan(system, t_final=t_final, dt=dt, method=method, step_size=step_size, refine=refine,
                 spin_up=spin_up, noise_level=noise_level)
    generator = torch.Generator().manual_seed(seed)
    y0 = _initial_states(system, n, sampler, builtin, generator, dtype)
    y0 = y0.to(device) if device is not None else y0
    label = name or (system.name if builtin else _describe(system, short=True))
    y_clean = _integrate(system, y0, plan, options=options, batch_size=batch_size, progress=progress,
                         label=label).to(dtype)
    y = add_noise(y_clean, plan.noise_level, generator=generator) if plan.noise_level > 0 else y_clean
    config = _config(plan, n=len(y0), seed=seed, dtype=dtype, options=options, batch_size=batch_size,
                     given=isinstance(n, Tensor), rhs=None if builtin else _describe(system))
    return _dataset(system, y_clean, y, plan, _system_record(system, builtin, name), config, dtype)
