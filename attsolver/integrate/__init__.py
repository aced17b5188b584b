"""Integration: the ``solve`` boundary (input checks, the step loop, the compiled loop,
the error types). Built on ``steppers`` and ``systems``; sees a corrector only as a
callable."""

from .boundary import CoarseStepWarning, NonFiniteSolutionError, SolutionBoundError, SolveStats, solve

__all__ = ["solve", "SolveStats", "NonFiniteSolutionError", "SolutionBoundError", "CoarseStepWarning"]
