"""A corrector that carries a learned interpolation, so that :func:`attsolver.fit` trains it.

The learned interpolation of :class:`attsolver.systems.NavierStokes2DFD` lives *inside* the
right-hand side (every Runge–Kutta stage), not in a post-step correction.  ``fit`` trains the
parameters of a corrector; :class:`InterpolationHost` is a corrector whose correction is zero
and whose only learned part is the interpolation, so ``fit(host, data,
system=host.system(), rollout_schedule=...)`` trains the interpolation by unrolling the solver
(the loss is back-propagated through every step and stage of ``solve``), with ``fit``'s
schedules, validation split, early stopping and checkpoints.  ``fit`` also records the
interpolation's training domain (:meth:`InterpolationHost.record_interpolation_domain`), which
``solve(host.system(), ..., guard="fallback")`` checks against.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..systems.interpolation_domain import record_interpolation_domain
from ..systems.learned_interpolation import LearnedInterpolation
from ..systems.navier_stokes import NavierStokes2DFD
from .base import Corrector

__all__ = ["InterpolationHost"]


class InterpolationHost(Corrector):
    """Zero correction plus a :class:`LearnedInterpolation` to train (module docstring).

    Args:
        interpolation: the learned interpolation (its parameters are the host's).
        method, step_size: the explicit scheme and step the FD solver runs with.
        forcing_amplitude: the system's forcing amplitude (the interpolation records the rest).
    """

    def __init__(self, interpolation: LearnedInterpolation, *, method: str = "ssprk3", step_size: float,
                 forcing_amplitude: float = 1.0, dtype: Any = torch.float32):
        if not isinstance(interpolation, LearnedInterpolation):
            raise TypeError(f"interpolation must be a LearnedInterpolation, got {type(interpolation).__name__}")
        n = interpolation.meta["n"]
        super().__init__((n, n), method=method, step_size=step_size, dtype=dtype,
                         hparams={"interpolation": dict(interpolation.meta),
                                  "forcing_amplitude": float(forcing_amplitude)})
        self.interpolation = interpolation.to(dtype)
        self.forcing_amplitude = float(forcing_amplitude)

    def system(self) -> NavierStokes2DFD:
        """The FD system that runs with this host's interpolation (pass it to ``fit`` and ``solve``)."""
        m = self.interpolation.meta
        return NavierStokes2DFD(n=m["n"], nu=m["nu"], drag=m["drag"], forcing_wavenumber=m["forcing_wavenumber"],
                                forcing_amplitude=self.forcing_amplitude, interpolation=self.interpolation)

    def record_interpolation_domain(self, states: Tensor, **margins: Any) -> Tensor:
        """Record the interpolation's training domain from its training states ``[..., n, n]``
        (``fit`` calls it; :func:`attsolver.systems.record_interpolation_domain`): what
        ``solve(self.system(), ..., guard=...)`` checks against."""
        return record_interpolation_domain(self.interpolation, states, **margins)

    def forward(self, t: Tensor | None, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """No post-step correction: the learned part acts inside the right-hand side."""
        self._check_forward(h)
        return torch.zeros_like(y)
