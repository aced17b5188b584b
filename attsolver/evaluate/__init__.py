"""Evaluation: ``compare`` (the verdict: does a corrector pay at equal accuracy?), its
result type, and the metrics every comparison uses.

``comparison`` (the ``compare`` orchestrator), ``contenders`` (the classical ladders from the
method registry, the test set and its reference), ``metrics`` (every error and the
equal-accuracy speed-up), ``stiffness`` (whether the implicit ladder joins), ``timing``, ``lyapunov``, ``result`` (``CompareResult``, the verdict
line, JSON) and ``plots``.
"""

from .comparison import compare
from .conformal import ErrorBounds, calibrate
from .result import CompareResult

__all__ = ["compare", "CompareResult", "calibrate", "ErrorBounds"]
