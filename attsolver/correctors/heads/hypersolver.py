"""Hypersolver (Poli et al., NeurIPS 2020): a correction scaled by ``h^{p+1}``."""

from __future__ import annotations

from collections.abc import Sequence

from .base import MLPHead, positive_int

__all__ = ["HypersolverHead"]


class HypersolverHead(MLPHead):
    """``h^{p+1} g(u)`` with ``u`` the normalised ``[y_n, Phi_n, h]`` (``Phi_n = dy_n / h``) and
    ``p`` the corrected method's order: ``g`` approximates the leading local-error coefficient,
    so the corrected step keeps the ``h^{p+1}`` scaling of the local error.  ``g`` is an MLP
    ``n_in -> hidden... -> n_out``.

    Args:
        hidden: hidden layer widths of ``g`` (at least one).
        activation: hidden activation (default ``"tanh"``).
    """

    name = "hypersolver"
    features = ("y", "phi", "h")

    def __init__(self, *, hidden: Sequence[int] = (64, 64), activation: str = "tanh"):
        hidden = [positive_int("hidden width", w) for w in hidden]
        if not hidden:
            raise ValueError("hidden needs at least one layer width")
        super().__init__(hidden, activation)

    def hparams(self) -> dict:
        return {"hidden": list(self.hidden), "activation": self.activation}

    def output_order(self, order: int) -> int:
        return order + 1
