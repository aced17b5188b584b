"""attsolver: classical ODE/PDE integrators with small learned correctors (AttSolver,
NeurVec, Hypersolver), and the attention modules they share with vision models."""

from . import systems
from .solve import NonFiniteSolutionError, solve
from .steppers import get_method, list_methods, register_method

__version__ = "0.1.0"

__all__ = ["solve", "NonFiniteSolutionError", "list_methods", "get_method", "register_method", "systems"]
