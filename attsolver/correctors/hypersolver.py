"""Hypersolver (Poli et al., NeurIPS 2020): a correction scaled by ``h^{p+1}``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Corrector, check_positive_int, mlp, register_corrector

__all__ = ["Hypersolver"]


@register_corrector
class Hypersolver(Corrector):
    """``C = h^{p+1} s ⊙ g(norm([y_n, Phi_n, h]))`` with ``Phi_n = dy_n / h`` and ``p`` the
    method's order (from the method registry).

    ``g`` approximates the leading local-error coefficient, so the corrected step keeps the
    ``h^{p+1}`` scaling of the local error; ``s`` (``out_scale``) is set by ``fit`` from the
    residuals divided by ``h^{p+1}``.  ``g`` is an MLP ``2D+1 -> hidden... -> D``.

    Args:
        state_shape: shape of one state (``D = prod(state_shape)``).
        method, step_size: the classical step it corrects.
        hidden: hidden layer widths of ``g`` (default two of 64).
        activation: hidden activation (default ``"tanh"``).
        dtype: parameter dtype.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float,
                 hidden: tuple[int, ...] | list[int] = (64, 64), activation: str = "tanh",
                 dtype: Any = torch.float32):
        hidden = [check_positive_int("hidden width", w) for w in hidden]
        if not hidden:
            raise ValueError("hidden needs at least one layer width")
        super().__init__(state_shape, method=method, step_size=step_size, features=("y", "phi", "h"),
                         dtype=dtype, hparams={"hidden": hidden, "activation": activation})
        self.output_order = self.order + 1
        self.net = mlp([self.feature_dim, *hidden, self.state_dim], activation, dtype=self.dtype)

    def network(self, u: Tensor) -> Tensor:
        return self.net(u)
