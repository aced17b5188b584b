"""The equations: ODE benchmark systems, periodic 1-D PDEs (Burgers, Kuramoto–Sivashinsky)
and 2-D vorticity Navier–Stokes (Kolmogorov flow; spectral and finite-difference); grid
transfer between periodic grids in :mod:`attsolver.systems.grid`."""

from .base import Lattice, RunDefaults, System, list_systems, make_system, register_system, system_class
from .ode import ElasticPendulum, Lorenz63, Lorenz96, LinearSystem, SpringChain
from .learned_interpolation import LearnedInterpolation
from .interpolation_guard import InterpolationDomainWarning, InterpolationGuardReport
from .navier_stokes import NavierStokes2D, NavierStokes2DFD
from .pde import Burgers, KuramotoSivashinsky, SemilinearPDE
from .interpolation_domain import record_interpolation_domain

__all__ = [
    "System", "Lattice", "RunDefaults", "list_systems", "make_system", "register_system", "system_class",
    "Lorenz63", "Lorenz96", "SpringChain", "ElasticPendulum", "LinearSystem",
    "SemilinearPDE", "Burgers", "KuramotoSivashinsky", "NavierStokes2D", "NavierStokes2DFD", "LearnedInterpolation",
    "record_interpolation_domain", "InterpolationDomainWarning", "InterpolationGuardReport",
]
