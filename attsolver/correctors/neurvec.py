"""NeurVec (Huang et al., Sci. Rep. 2023): a state-only correction with one wide hidden layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Corrector, check_positive_int, mlp, register_corrector

__all__ = ["NeurVec"]


@register_corrector
class NeurVec(Corrector):
    """``C = s ⊙ N(norm(y_n))`` with ``N`` one wide hidden layer ``D -> width -> D``, no h-scaling.

    As in NeurVec's reference code the default activation is the learnable rational
    activation (seven shared scalars, :class:`attsolver.nn.Rational`); ``s`` is the
    per-component output scale (``out_scale``) that ``fit`` sets from the training residuals.
    One model corrects one (method, step size).

    Parameters: ``D*width + width + width*D + D`` (+7 for the rational activation).

    Args:
        state_shape: shape of one state (``D = prod(state_shape)``).
        method, step_size: the classical step it corrects.
        width: hidden units (NeurVec: 1024).
        activation: ``"rational"`` (default) or ``"tanh"``, ``"gelu"``, ...
        dtype: parameter dtype.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float, width: int = 1024,
                 activation: str = "rational", dtype: Any = torch.float32):
        width = check_positive_int("width", width)
        super().__init__(state_shape, method=method, step_size=step_size, features=("y",), dtype=dtype,
                         hparams={"width": width, "activation": activation})
        self.net = mlp([self.state_dim, width, self.state_dim], activation, dtype=self.dtype)

    def network(self, u: Tensor) -> Tensor:
        return self.net(u)
