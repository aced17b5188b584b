"""Evaluation: ``compare`` (the verdict: does a corrector pay at equal accuracy?), its
result type, and the metrics every comparison uses."""

from .comparison import CompareResult, compare

__all__ = ["compare", "CompareResult"]
