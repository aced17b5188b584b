"""Integration: the ``solve`` boundary (:mod:`.boundary`), its input checks (:mod:`.checks`),
the step plan and loops (:mod:`.loop`), the compiled loop (:mod:`.compiled`), the error types
(:mod:`.errors`), the cost of a solve (:mod:`.stats`), terminal events (:mod:`.events`,
:mod:`.events_adaptive`), per-sample time grids (:mod:`.per_sample`) and what ``solve`` keeps
between calls (:mod:`.call_cache`). Built on ``steppers`` and
``systems``; sees a corrector only as a callable."""

from .boundary import solve
from .errors import CoarseStepWarning, NonFiniteSolutionError, SolutionBoundError
from .stats import SolveStats

__all__ = ["solve", "SolveStats", "NonFiniteSolutionError", "SolutionBoundError", "CoarseStepWarning"]
