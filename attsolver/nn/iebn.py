"""The gate of instance-enhancement batch normalisation (IEBN, Liang et al., arXiv 1908.04008)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .registry import register_attention
from .se import broadcast_gate, pool_channels

__all__ = ["IEBNGate"]


@register_attention("iebn")
class IEBNGate(nn.Module):
    """``a = sigmoid(w ⊙ pool(x) + b)`` per sample and channel; ``w, b in R^C`` start at 0 and
    -1 (IEBN's initialisation), ``2C`` parameters.  Here ``pool`` is the global average of the
    input it is given (IEBN's reference code pools the raw input; the BN wrapping is the
    vision model's business).

    With ``lipschitz_cap = c`` the gate uses ``w * min(1, c / max|w|)``, so it is
    ``c/4``-Lipschitz per channel.
    """

    stateful = False

    def __init__(self, channels: int, *, in_channels: int | None = None, lipschitz_cap: float | None = None,
                 dtype: torch.dtype | None = None, device=None, **unused):
        super().__init__()
        if in_channels is not None and in_channels != channels:
            raise ValueError(
                f"the IEBN gate is per channel: in_channels ({in_channels}) must equal channels ({channels})"
            )
        unknown = set(unused) - {"reduction", "activation"}  # SE options it has no use for
        if unknown:
            raise TypeError(f"IEBNGate got unexpected keyword(s) {sorted(unknown)}")
        kw = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.zeros(channels, **kw))
        self.bias = nn.Parameter(torch.full((channels,), -1.0, **kw))
        self.lipschitz_cap = lipschitz_cap

    def lipschitz_bound(self) -> float | None:
        """An upper bound on the gate's Lipschitz constant (l2, in the pooled input):
        ``min(c, max|w|) / 4`` (the gate is diagonal)."""
        w_max = float(self.weight.detach().abs().max())
        return (w_max if self.lipschitz_cap is None else min(self.lipschitz_cap, w_max)) / 4

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        if self.lipschitz_cap is not None:
            w = w * torch.clamp(self.lipschitz_cap / w.abs().max(), max=1.0)
        return broadcast_gate(torch.sigmoid(w * pool_channels(x) + self.bias), x)
