"""Activations by name, including NeurVec's learnable rational activation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Rational", "make_activation", "ACTIVATIONS"]


class Rational(nn.Module):
    """Learnable rational activation ``P(x) / Q(x)`` of type (3, 2), seven scalars shared by
    all units of the layer (Boullé, Nakatsukasa & Townsend, "Rational neural networks",
    NeurIPS 2020; used by NeurVec).

    Initialised at their best (3, 2) rational approximation of ReLU on [-1, 1]:
    ``P = 0.0218 + 0.5 x + 1.5957 x^2 + 1.1915 x^3``, ``Q = 1 + 0 x + 2.383 x^2``.
    """

    def __init__(self, dtype: torch.dtype | None = None, device=None):
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        self.numerator = nn.Parameter(torch.tensor([0.0218, 0.5, 1.5957, 1.1915], **kw))
        self.denominator = nn.Parameter(torch.tensor([1.0, 0.0, 2.383], **kw))

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.numerator, self.denominator
        p = ((a[3] * x + a[2]) * x + a[1]) * x + a[0]
        q = (b[2] * x + b[1]) * x + b[0]
        return p / q


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "rational": Rational,
}


def make_activation(name: str | type[nn.Module], *, dtype: torch.dtype | None = None) -> nn.Module:
    """An activation module by name (``tanh``, ``gelu``, ``relu``, ``silu``, ``softplus``,
    ``rational``) or from a module class."""
    if isinstance(name, type) and issubclass(name, nn.Module):
        return name()
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(sorted(ACTIVATIONS))}")
    cls = ACTIVATIONS[name]
    return cls(dtype=dtype) if cls is Rational else cls()
