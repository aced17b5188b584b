"""NeurVec (Huang et al., Sci. Rep. 2023): a state-only correction with one wide hidden layer."""

from __future__ import annotations

from .base import MLPHead, positive_int

__all__ = ["NeurVecHead"]


class NeurVecHead(MLPHead):
    """``N(u)`` with ``u`` the normalised state only: one hidden layer ``n_in -> width -> n_out``,
    no h-scaling.  As in NeurVec's reference code the default activation is the learnable
    rational activation (seven shared scalars, :class:`attsolver.nn.Rational`).

    Args:
        width: hidden units (NeurVec's dense form: 1024).
        activation: ``"rational"`` (default) or ``"tanh"``, ``"gelu"``, ...
    """

    name = "neurvec"
    features = ("y",)

    def __init__(self, *, width: int = 1024, activation: str = "rational"):
        self.width = positive_int("width", width)
        super().__init__([self.width], activation)

    def hparams(self) -> dict:
        return {"width": self.width, "activation": self.activation}
