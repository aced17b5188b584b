"""What a solve cost: :class:`SolveStats` (``solve(..., return_stats=True)``)."""

from __future__ import annotations

import time

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

__all__ = ["SolveStats", "CountedRHS", "WallBudget", "WallBudgetExceeded"]


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
        guard: with ``solve(..., guard=...)``, the guard's report (flagged steps, fallbacks and
            their ``f`` evaluations: :class:`~attsolver.integrate.guard.GuardReport`); else ``None``.
    """

    method: str
    n_steps: int | None
    n_f_evals: int
    n_corrector_calls: int
    wall_time_s: float
    step_size: float | None = None
    steps_from_grid: bool = False
    guard: Any = None

    @classmethod
    def of_pieces(cls, pieces: Sequence[SolveStats]) -> SolveStats:
        """The stats of a solve run as consecutive pieces (``progress=True``): counts and
        times summed, the largest step."""
        first = pieces[0]
        guards = [st.guard for st in pieces if st.guard is not None]
        return cls(first.method, sum(st.n_steps for st in pieces), sum(st.n_f_evals for st in pieces),
                   sum(st.n_corrector_calls for st in pieces), sum(st.wall_time_s for st in pieces),
                   max(st.step_size for st in pieces), first.steps_from_grid,
                   type(guards[0]).of_pieces(guards) if guards else None)


class CountedRHS:
    """``f`` with a count of its calls (the adaptive methods' ``n_f_evals``)."""

    def __init__(self, f: Callable[[Tensor, Tensor], Tensor]):
        self.f, self.n = f, 0
        twin = getattr(f, "numpy_rhs", None)  # f's NumPy twin (the SciPy steppers call it), counted too
        if callable(twin):
            def numpy_rhs(t, y):
                self.n += 1
                return twin(t, y)
            self.numpy_rhs = numpy_rhs

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        self.n += 1
        return self.f(t, y)


class WallBudgetExceeded(Exception):
    """Raised by :class:`WallBudget` (and turned into a clear error by ``solve``)."""


class WallBudget:
    """``f`` with a wall-time budget: a call after ``limit`` seconds raises
    :class:`WallBudgetExceeded` (an adaptive solver shrinking its step, or a span of 1e300,
    otherwise runs without end).  ``last_t``: the time of the last call."""

    def __init__(self, f, limit: float):
        self.f, self.limit = f, float(limit)
        self.deadline = time.monotonic() + self.limit
        self._t = float("nan")
        twin = getattr(f, "numpy_rhs", None)  # f's NumPy twin (the SciPy steppers call it), under the same budget
        if callable(twin):
            def numpy_rhs(t, y):
                if time.monotonic() > self.deadline:
                    raise WallBudgetExceeded
                self._t = t
                return twin(t, y)
            self.numpy_rhs = numpy_rhs

    def __call__(self, t, y):
        if time.monotonic() > self.deadline:
            raise WallBudgetExceeded
        self._t = t  # kept as given: a float() here would sync a GPU on every call
        return self.f(t, y)

    @property
    def last_t(self) -> float:
        return float(self._t.detach().reshape(-1)[0]) if isinstance(self._t, Tensor) else float(self._t)
