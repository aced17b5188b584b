"""The :class:`System` base class and the system registry.

A system is a small dataclass: its fields are the physical parameters (with the usual
defaults), ``__call__(t, y)`` is the right-hand side ``dy/dt`` in torchdiffeq's convention
(batch dimensions first, state last), and :meth:`sample_initial` draws initial
conditions.  ``config()`` is a JSON-serialisable description that data files record, and
``run_defaults`` (a :class:`RunDefaults`) says how its reference data are made by default.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = ["System", "Lattice", "RunDefaults", "register_system", "make_system", "list_systems", "system_class",
           "registered_systems"]


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype of ``dtype`` (``complex128 -> float64``; a real dtype is returned as is)."""
    return torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype


class CachedConstants:
    """Mixin for systems that build per-(dtype, device) constants once and reuse them.

    The cache lives in the instance's ``_cache`` dict (set in ``__post_init__``); it may hold
    closures, so pickling or copying drops it and it is rebuilt lazily.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _cached(self, dtype: torch.dtype, device, build):
        """``build(real_dtype, device)``'s result for this dtype and device, built once."""
        dtype = real_dtype(dtype)
        device = torch.device("cpu") if device is None else torch.device(device)
        key = (dtype, device)
        c = self._cache.get(key)  # type: ignore[attr-defined]
        if c is None:
            c = build(dtype, device)
            self._cache[key] = c  # type: ignore[attr-defined]
        return c


@dataclasses.dataclass(frozen=True)
class Lattice:
    """Where a system's state components sit on a 1-D lattice (a ring or a chain of sites).

    The weight-shared local correctors (:mod:`attsolver.correctors.layouts.lattice`) read it to apply
    one small network at every site.  Along state axis ``axis`` the components form
    ``blocks`` consecutive blocks of equal length, one per channel (the spring chain's
    ``(p_1..p_n, q_1..q_n)``: 2 blocks of ``n`` sites); ``periodic`` says whether the last
    site neighbours the first (a ring) or the chain has fixed ends (zero beyond them).
    """

    axis: int = -1
    periodic: bool = False
    blocks: int = 1


@dataclasses.dataclass(frozen=True)
class RunDefaults:
    """How a system's reference data are made unless the caller says otherwise: the output
    grid ``t = 0, dt, ..., t_final``, the spin-up and the reference step ``dt / refine``.

    Read by ``attsolver data generate NAME`` (each value a flag overrides) and by
    :func:`attsolver.data.generate_trajectories` when it is given no output grid.

    Attributes:
        dt: output interval, in the system's time units; ``None``: no default output grid
            (the caller must give ``dt`` and ``t_final``).
        t_final: last output time, a whole multiple of ``dt``; ``None`` with ``dt``.
        spin_up: time integrated and discarded before ``t = 0`` (chaotic systems: onto the
            attractor).
        refine: reference steps per output interval for fixed-step methods.
    """

    dt: float | None = None
    t_final: float | None = None
    spin_up: float = 0.0
    refine: int = 20

    def as_dict(self) -> dict[str, Any]:
        """``{"dt": ..., "t_final": ..., "spin_up": ..., "refine": ...}``."""
        return dataclasses.asdict(self)


class System:
    """Base class for a differential equation ``dy/dt = f(t, y)``.

    Class attributes:
        name: registry name (``"lorenz63"``...).
        lyapunov_exponent: largest Lyapunov exponent of the default parameters for chaotic
            systems (used for valid-prediction times in Lyapunov units), else ``None``.
        lattice: a :class:`Lattice` if the state's components are sites of a 1-D lattice.
        run_defaults: a :class:`RunDefaults`; the default has no output grid, no spin-up and
            20 reference steps per output interval.
    """

    name: ClassVar[str]
    lyapunov_exponent: ClassVar[float | None] = None
    #: the state's lattice (for local correctors), ``None`` if its components are not sites of one
    lattice: ClassVar[Lattice | None] = None
    #: whether ``f`` ignores ``t`` (``fit`` then steps windows that start at different times in
    #: one batch); a subclass whose ``f`` reads ``t`` (a forcing) sets it to ``False``
    autonomous: ClassVar[bool] = True
    #: how reference data are made by default (output grid, spin-up, reference step)
    run_defaults: ClassVar[RunDefaults] = RunDefaults()

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape of one state (without batch dimensions)."""
        raise NotImplementedError

    @property
    def dim(self) -> int:
        """Number of state components, ``prod(state_shape)``."""
        return math.prod(self.state_shape)

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def sample_initial(self, n: int, *, generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """``n`` initial states, shape ``[n, *state_shape]``."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``; ``make_system(**config)`` rebuilds the system."""
        params = {}
        for fld in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, fld.name)
            params[fld.name] = list(v) if isinstance(v, tuple) else v
        return {"name": self.name, "params": params}

    def _check_y(self, y: Tensor) -> None:
        if tuple(y.shape[-len(self.state_shape):]) != self.state_shape:
            raise ValueError(
                f"{self.name}: state must end in shape {self.state_shape}, got {tuple(y.shape)}"
            )


_SYSTEMS: dict[str, type[System]] = {}


def register_system(cls: type[System]) -> type[System]:
    """Class decorator: make ``cls`` reachable as ``make_system(cls.name)``."""
    if cls.name in _SYSTEMS:
        raise ValueError(f"system {cls.name!r} is already registered")
    _SYSTEMS[cls.name] = cls
    return cls


def list_systems(pattern: str = "*") -> list[str]:
    return sorted(n for n in _SYSTEMS if fnmatch.fnmatchcase(n, pattern))


def registered_systems() -> dict[str, type[System]]:
    """The registered classes by name, in the order they were registered (a copy)."""
    return dict(_SYSTEMS)


def system_class(name: str) -> type[System]:
    """The class registered as ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return _SYSTEMS[name]
    except KeyError:
        raise ValueError(f"unknown system {name!r}; choose one of: {', '.join(list_systems())}") from None


def make_system(name: str, params: dict[str, Any] | None = None, **kwargs: Any) -> System:
    """Build a registered system, e.g. ``make_system("lorenz96", N=40, F=8.0)``.

    ``make_system(**system.config())`` round-trips.  Unknown names or parameters raise
    ``ValueError`` listing the valid ones.
    """
    cls = system_class(name)
    kw = dict(params or {}, **kwargs)
    valid = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    bad = set(kw) - valid
    if bad:
        raise ValueError(f"system {name!r} has no parameter(s) {sorted(bad)}; valid: {sorted(valid)}")
    for k, v in kw.items():
        if isinstance(v, list):
            kw[k] = tuple(v)
    return cls(**kw)
