"""The fixed-step stepper interface that :func:`attsolver.solve` drives.

A stepper advances an internal *state* by one step of size ``h``.  For explicit
Runge–Kutta methods the state is ``y`` itself; a spectral stepper keeps the Fourier
coefficients between output times and converts only when a value is returned, so the
uncorrected loop pays no extra FFTs.  When a learned corrector is attached, ``solve``
instead asks for the physical-space increment ``dy = y_{n+1} - y_n`` of the classical
method and adds the correction to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["Stepper"]


class Stepper:
    """Base class for fixed-step integrators.

    Subclasses set :attr:`order` and :attr:`nodes` and implement :meth:`step`.

    Attributes:
        order: classical order ``p`` of the method (global error ``O(h^p)``).
        nodes: stage times as fractions of the step, ``c_i`` in ``t_n + c_i h``; ``solve``
            precomputes these times once so the step loop does no time arithmetic.
    """

    order: int
    nodes: tuple[float, ...]

    def __init__(self, f: Callable[[Tensor, Tensor], Tensor]):
        self.f = f

    def to_state(self, y: Tensor) -> Tensor:
        """Physical ``y`` -> internal state (identity unless overridden)."""
        return y

    def from_state(self, state: Tensor) -> Tensor:
        """Internal state -> physical ``y`` (identity unless overridden)."""
        return state

    def step(self, ts: Sequence[Tensor], state: Tensor, h: float) -> Tensor:
        """Advance ``state`` from ``ts[0]`` by ``h``; ``ts[i] = t_n + nodes[i] * h``."""
        raise NotImplementedError

    def increment(self, ts: Sequence[Tensor], y: Tensor, h: float) -> Tensor:
        """The classical increment ``h * Phi(t_n, y_n; h)`` in physical space."""
        return self.from_state(self.step(ts, self.to_state(y), h)) - y


def _nonzero(row: Sequence[float]) -> tuple[tuple[int, float], ...]:
    return tuple((j, a) for j, a in enumerate(row) if a != 0.0)


class ExplicitRK(Stepper):
    """One explicit Runge–Kutta step from a :class:`~attsolver.steppers.tableau.ButcherTableau`.

    Zero tableau entries are skipped, so classic RK4 costs four evaluations of ``f`` and
    seven fused ``add`` kernels per step (torchdiffeq's generic loop does more).
    """

    def __init__(self, f, tableau):
        super().__init__(f)
        self.tableau = tableau
        self.order = tableau.order
        self.nodes = tableau.c
        self._a = tuple(_nonzero(row) for row in tableau.a)
        self._b = _nonzero(tableau.b)

    def _stages(self, ts, y, h):
        f = self.f
        k: list[Tensor] = []
        for i, row in enumerate(self._a):
            yi = y
            for j, aij in row:
                yi = torch.add(yi, k[j], alpha=h * aij)
            k.append(f(ts[i], yi))
        return k

    def step(self, ts, state, h):
        k = self._stages(ts, state, h)
        y = state
        for j, bj in self._b:
            y = torch.add(y, k[j], alpha=h * bj)
        return y

    def increment(self, ts, y, h):
        k = self._stages(ts, y, h)
        (j0, b0), *rest = self._b
        dy = torch.mul(k[j0], h * b0)
        for j, bj in rest:
            dy = dy.add_(k[j], alpha=h * bj)
        return dy
