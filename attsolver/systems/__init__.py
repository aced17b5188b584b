"""The equations: ODE benchmark systems, periodic 1-D PDEs (Burgers, Kuramoto–Sivashinsky)
and 2-D vorticity Navier–Stokes (Kolmogorov flow; spectral and finite-difference)."""

from .base import Lattice, System, list_systems, make_system, register_system
from .ode import ElasticPendulum, Lorenz63, Lorenz96, LinearSystem, SpringChain
from .navier_stokes import NavierStokes2D, NavierStokes2DFD
from .pde import Burgers, KuramotoSivashinsky, SemilinearPDE

__all__ = [
    "System", "Lattice", "list_systems", "make_system", "register_system",
    "Lorenz63", "Lorenz96", "SpringChain", "ElasticPendulum", "LinearSystem",
    "SemilinearPDE", "Burgers", "KuramotoSivashinsky", "NavierStokes2D", "NavierStokes2DFD",
]
