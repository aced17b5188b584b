"""Early stopping on a score of the model (not on ``fit``'s loss): an ``on_epoch_end`` callback.

``fit``'s own early stopping watches the validation *loss*.  What a user wants of a corrected
solver is often another number: how long its rollout stays correlated with a reference
(time-until-0.95), an error at a horizon, a spectrum.  :class:`ScoreStopping` evaluates such a
score every ``every`` epochs, keeps the weights of the best evaluation, and asks ``fit`` to stop
(``on_epoch_end`` returning ``True``) after ``patience`` evaluations without improvement; the
epoch cap is ``fit``'s ``epochs``.  After ``fit``, :meth:`ScoreStopping.restore` puts the best
weights back and :attr:`ScoreStopping.curve` holds ``(epoch, score)`` of every evaluation.

    stop = ScoreStopping(model, lambda m: validation_t95(m), every=2, patience=3)
    fit(model, data, epochs=40, on_epoch_end=stop, restore_best=False)
    stop.restore()
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .._validate import finite_number, integer, one_of, positive_int
from .checkpoint import clone_state

__all__ = ["ScoreStopping"]


class ScoreStopping:
    """Keep the best-scoring weights and stop after ``patience`` evaluations without improvement.

    Args:
        model: the module being trained (its ``state_dict`` is what is kept).
        score: ``score(model) -> float``, called in eval mode under ``torch.no_grad()``; the
            training mode is put back after it.  A non-finite score counts as the worst.
        every: evaluate after every ``every``-th epoch (epochs ``every, 2 every, ...``).
        patience: evaluations in a row without improvement before asking ``fit`` to stop;
            ``None`` never stops (the curve and the best weights are still kept).
        mode: ``"max"`` (a larger score is better, e.g. a time-until-threshold) or ``"min"``.
        min_delta: an improvement must beat the best by more than this (>= 0).
        warmup: evaluations at epochs ``<= warmup`` keep the best weights but never count toward
            ``patience`` (e.g. while a rollout curriculum has not reached its final window, whose
            changes of window move the score for reasons other than over-fitting).

    Attributes:
        curve: ``[(epoch, score), ...]`` of every evaluation (``epoch`` 1-based, as ``fit``).
        best_epoch, best_score: the best evaluation (``0`` and ``None`` before the first).
        stopped_epoch: the epoch after which a stop was asked for, else ``None``.
    """

    def __init__(self, model: nn.Module, score: Callable[[nn.Module], float], *, every: int = 1,
                 patience: int | None = 3, mode: str = "max", min_delta: float = 0.0, warmup: int = 0):
        if not callable(score):
            raise TypeError(f"score must be a callable score(model) -> float, got {type(score).__name__}")
        self.model = model
        self.score = score
        self.every = positive_int("every", every)
        self.patience = None if patience is None else integer("patience", patience, low=1,
                                                              why=" (or None: never stop)")
        self.sign = 1.0 if one_of("mode", mode, ("max", "min")) == "max" else -1.0
        self.min_delta = finite_number("min_delta", min_delta, low=0.0)
        self.warmup = integer("warmup", warmup, low=0)
        self.curve: list[tuple[int, float]] = []
        self.best_epoch = 0
        self.best_score: float | None = None
        self.best_state: dict[str, Tensor] | None = None
        self.bad = 0
        self.stopped_epoch: int | None = None

    def __call__(self, epoch: int, history: Any = None) -> bool:
        """``fit``'s ``on_epoch_end``: evaluate on every ``every``-th epoch; ``True`` asks to stop."""
        if epoch % self.every:
            return False
        value = self._evaluate()
        self.curve.append((epoch, value))
        gain = -math.inf if not math.isfinite(value) else (
            math.inf if self.best_score is None else self.sign * (value - self.best_score))
        if gain > self.min_delta:
            self.best_epoch, self.best_score, self.bad = epoch, value, 0
            self.best_state = clone_state(self.model)
        elif epoch > self.warmup:
            self.bad += 1
        if self.patience is not None and self.bad >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def _evaluate(self) -> float:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                value = float(self.score(self.model))
        finally:
            self.model.train(was_training)
        return value

    def restore(self) -> bool:
        """Put the best evaluation's weights back into the model; ``False`` (nothing changed)
        when no evaluation had a finite score."""
        if self.best_state is None:
            return False
        self.model.load_state_dict(self.best_state)
        return True

    def record(self) -> dict[str, Any]:
        """The curve and the outcome, JSON-ready."""
        return {"curve": [[e, v if math.isfinite(v) else None] for e, v in self.curve], "every": self.every,
                "patience": self.patience, "warmup": self.warmup, "best_epoch": self.best_epoch, "best_score": self.best_score,
                "stopped_epoch": self.stopped_epoch}
