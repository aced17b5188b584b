"""attsolver: classical ODE/PDE integrators with small learned correctors (AttSolver,
NeurVec, Hypersolver), and the attention modules they share with vision models."""

from . import correctors, nn, systems
from .correctors import AttSolver, Corrector, Hypersolver, NeurVec, load_corrector
from .solve import NonFiniteSolutionError, solve
from .steppers import get_method, list_methods, register_method
from .systems import SemilinearPDE
from .train import FitHistory, NonFiniteLossError, fit

__version__ = "0.1.0"

__all__ = [
    "solve", "NonFiniteSolutionError", "list_methods", "get_method", "register_method",
    "fit", "FitHistory", "NonFiniteLossError",
    "Corrector", "NeurVec", "Hypersolver", "AttSolver", "load_corrector",
    "systems", "correctors", "nn", "SemilinearPDE",
]
