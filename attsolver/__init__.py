"""attsolver: classical ODE/PDE integrators with small learned correctors (AttSolver,
NeurVec, Hypersolver), and the attention modules they share with vision models."""

from . import correctors, nn, systems
from ._version import __version__
from ._io import DiskFullError, IntegrityError
from .data import generate_trajectories
from .correctors import AttSolver, Corrector, Hypersolver, NeurVec, load_corrector
from .evaluate import CompareResult, ErrorBounds, calibrate, compare
from .integrate import CoarseStepWarning, NonFiniteSolutionError, SolutionBoundError, SolveStats, solve
from .steppers import get_method, list_methods, register_method
from .systems import SemilinearPDE
from .training import FitCheckWarning, FitHistory, NonFiniteLossError, fit, record_domain


__all__ = [
    "solve", "NonFiniteSolutionError", "SolutionBoundError", "IntegrityError", "DiskFullError", "SolveStats", "CoarseStepWarning", "list_methods", "get_method",
    "register_method", "compare", "CompareResult", "generate_trajectories",
    "fit", "record_domain", "calibrate", "ErrorBounds", "FitHistory", "NonFiniteLossError", "FitCheckWarning",
    "Corrector", "NeurVec", "Hypersolver", "AttSolver", "load_corrector",
    "systems", "correctors", "nn", "SemilinearPDE",
]
