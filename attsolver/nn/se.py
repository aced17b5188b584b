"""Squeeze-and-excitation gate (Hu, Shen & Sun, CVPR 2018), usable on vectors and feature maps."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .activations import make_activation
from .lipschitz import spectral_cap
from .registry import register_attention

__all__ = ["SEGate", "SqueezeExcitation", "pool_channels", "broadcast_gate"]

# sup |act'|: SiLU's is about 1.0998, GELU's about 1.1289
_ACT_LIPSCHITZ = {nn.ReLU: 1.0, nn.Tanh: 1.0, nn.SiLU: 1.1, nn.GELU: 1.13}


def gate_in_channels(channels: int, in_channels: int | None, reduction: int) -> int:
    """A gate's input channels (default ``channels``), after checking its bottleneck ratio
    ``reduction`` (a positive ``int``; the gates' one check of it)."""
    if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
        raise ValueError(f"reduction must be a positive integer, got {reduction!r}")
    return channels if in_channels is None else in_channels


def pool_channels(x: Tensor) -> Tensor:
    """``[B, C]`` stays, ``[B, C, *spatial]`` is averaged over the spatial dimensions (GAP)."""
    if x.ndim < 2:
        raise ValueError(f"a gate input must be [batch, channels, ...], got shape {tuple(x.shape)}")
    return x if x.ndim == 2 else x.mean(dim=tuple(range(2, x.ndim)))


def broadcast_gate(a: Tensor, like: Tensor) -> Tensor:
    """Reshape a ``[B, C]`` gate to broadcast against ``like`` (``[B, C, 1, ...]`` for maps)."""
    return a if like.ndim == 2 else a.reshape(*a.shape, *([1] * (like.ndim - 2)))


@register_attention("se")
class SEGate(nn.Module):
    """``a = sigmoid(W2 act(W1 pool(x) + b1) + b2)``, a bottleneck MLP ``C_in -> C/r -> C``.

    With ``lipschitz_cap = c`` the spectral norms of ``W1`` and ``W2`` are capped at ``c``, so
    (act 1-Lipschitz, sigmoid' <= 1/4) the gate is ``c^2/4``-Lipschitz in the pooled input.

    Args:
        channels: gate entries per sample ``C``.
        in_channels: input channels (default ``channels``).
        reduction: bottleneck ratio ``r``; hidden width ``max(1, C // r)``.
        activation: hidden activation name (default ``"relu"``, as SE).
        lipschitz_cap: ``None`` (no cap) or the spectral-norm bound ``c``.
    """

    stateful = False

    def __init__(self, channels: int, *, in_channels: int | None = None, reduction: int = 4,
                 activation: str = "relu", lipschitz_cap: float | None = None,
                 dtype: torch.dtype | None = None, device=None):
        super().__init__()
        in_channels = gate_in_channels(channels, in_channels, reduction)
        hidden = max(1, channels // reduction)
        kw = {"dtype": dtype, "device": device}
        self.fc1 = nn.Linear(in_channels, hidden, **kw)
        self.act = make_activation(activation, dtype=dtype)
        self.fc2 = nn.Linear(hidden, channels, **kw)
        self.lipschitz_cap = lipschitz_cap
        if lipschitz_cap is not None:
            spectral_cap(self.fc1, lipschitz_cap)
            spectral_cap(self.fc2, lipschitz_cap)

    def lipschitz_bound(self) -> float | None:
        """An upper bound on the gate's Lipschitz constant (l2, in the pooled input):
        ``c^2 Lip(act) / 4``; ``None`` without a cap or for an activation of unknown constant."""
        lip_act = _ACT_LIPSCHITZ.get(type(self.act))
        if self.lipschitz_cap is None or lip_act is None:
            return None
        return self.lipschitz_cap ** 2 * lip_act / 4

    def forward(self, x: Tensor) -> Tensor:
        a = torch.sigmoid(self.fc2(self.act(self.fc1(pool_channels(x)))))
        return broadcast_gate(a, x)


class SqueezeExcitation(nn.Module):
    """The SE block itself: ``x ⊙ a(x)`` with ``a`` an :class:`SEGate` (``[B, C]`` vectors or
    ``[B, C, *spatial]`` maps; same shape out).  Keyword arguments go to :class:`SEGate`;
    Hu et al. use ``reduction=16`` in their ResNets."""

    def __init__(self, channels: int, **gate_kwargs):
        super().__init__()
        self.gate = SEGate(channels, **gate_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)
