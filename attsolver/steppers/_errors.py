"""Errors the steppers raise (one home, imported by every solver family)."""

from __future__ import annotations

__all__ = ["StepSizeUnderflow"]


class StepSizeUnderflow(FloatingPointError):
    """An adaptive solver's step shrank to nothing (typically a finite-time blow-up).
    ``time``: the last time ``f`` was evaluated at; ``partial``: the outputs reached, or ``None``."""

    def __init__(self, message: str, *, time: float, partial=None):
        super().__init__(message)
        self.time = time
        self.partial = partial
