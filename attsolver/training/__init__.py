"""Training a corrector: ``fit`` (targets through the integrator, checkpoint / resume,
distributed data parallel, the end-of-fit check) and its history."""

from .trainer import FitCheckWarning, FitHistory, NonFiniteLossError, fit

__all__ = ["fit", "FitHistory", "NonFiniteLossError", "FitCheckWarning"]
