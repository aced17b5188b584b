"""The equations: ODE benchmark systems and periodic 1-D PDEs (Burgers, Kuramoto–Sivashinsky)."""

from .base import Lattice, System, list_systems, make_system, register_system
from .ode import ElasticPendulum, Lorenz63, Lorenz96, LinearSystem, SpringChain
from .pde import Burgers, KuramotoSivashinsky, SemilinearPDE

__all__ = [
    "System", "Lattice", "list_systems", "make_system", "register_system",
    "Lorenz63", "Lorenz96", "SpringChain", "ElasticPendulum", "LinearSystem",
    "SemilinearPDE", "Burgers", "KuramotoSivashinsky",
]
