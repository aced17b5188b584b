"""The DIA unit (Dense-and-Implicit Attention, Huang, Liang, Liang & Yang, arXiv 1905.10671):
a modified LSTM cell that one stage of a ResNet shares across all its blocks."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .activations import make_activation
from .lipschitz import spectral_cap
from .registry import register_attention
from .se import _ACT_LIPSCHITZ, broadcast_gate, gate_in_channels, pool_channels

__all__ = ["DIAUnit", "DIAState"]

#: ``(h, c)``, each ``[B, C]``: the hidden output (the last gate) and the cell state.
DIAState = tuple[Tensor, Tensor]


def _bottleneck_mlp(n_in: int, hidden: int, n_out: int, activation: str, cap: float | None,
                    dtype, device) -> nn.Sequential:
    first = nn.Linear(n_in, hidden, dtype=dtype, device=device)
    last = nn.Linear(hidden, n_out, dtype=dtype, device=device)
    if cap is not None:
        spectral_cap(first, cap)
        spectral_cap(last, cap)
    return nn.Sequential(first, make_activation(activation, dtype=dtype), last)


@register_attention("dia")
class DIAUnit(nn.Module):
    """One step of DIA's modified LSTM: for the pooled input ``m = GAP(x)`` (``[B, C_in]``)
    and the previous state ``(h, c)``::

        [i, f, g, o] = split4(Φ_ih(m) + Φ_hh(h))       Φ: Linear C->C/r, act, Linear C/r->4C
        i, f, o = sigmoid(.),  g = tanh(.)
        c' = f ⊙ c + i ⊙ g
        h' = o ⊙ sigmoid(c')                             (sigmoid, not tanh: h' in (0, 1))

    ``h'`` is the gate.  A ResNet stage calls the *same* unit once per block, carrying the
    state, so its parameter count ``2 (C·C/r + C/r + C/r·4C + 4C)`` (for ``C_in = C``) does
    not depend on the depth; the state starts at zero (``state=None``) at each stage.

    The reference code's LSTM has a dropout on the output of each layer that only feeds a
    further layer; with its single layer it is inert, so there is none here.

    Args:
        channels: gate entries per sample ``C`` (= the hidden size).
        in_channels: input channels ``C_in`` (default ``channels``); ``Φ_ih``'s hidden width
            is ``max(1, C_in // r)``, ``Φ_hh``'s ``max(1, C // r)``.
        reduction: ``r`` (4 on CIFAR in the paper).
        activation: hidden activation of both MLPs (``"relu"``).
        lipschitz_cap: ``None``, or a cap on the spectral norm of each of the four linear maps.
    """

    stateful = True

    def __init__(self, channels: int, *, in_channels: int | None = None, reduction: int = 4,
                 activation: str = "relu", lipschitz_cap: float | None = None,
                 dtype: torch.dtype | None = None, device=None):
        super().__init__()
        in_channels = gate_in_channels(channels, in_channels, reduction)
        self.channels = channels
        self.in_channels = in_channels
        self.lipschitz_cap = lipschitz_cap
        self.input_map = _bottleneck_mlp(in_channels, max(1, in_channels // reduction), 4 * channels,
                                         activation, lipschitz_cap, dtype, device)
        self.hidden_map = _bottleneck_mlp(channels, max(1, channels // reduction), 4 * channels,
                                          activation, lipschitz_cap, dtype, device)

    def initial_state(self, batch: int, *, dtype=None, device=None) -> DIAState:
        """Zeros ``(h, c)`` for a new sequence (a new stage)."""
        w = self.hidden_map[0].weight
        z = torch.zeros(batch, self.channels, dtype=dtype or w.dtype, device=device or w.device)
        return z, z

    def lipschitz_bound(self, cell_bound: float = 0.0) -> float | None:
        """An upper bound on the Lipschitz constant (l2) of the gate ``h'`` in the pooled input,
        with the state held fixed and ``|c| <= cell_bound`` (0 for a new sequence).

        ``h'_k`` depends on the four pre-activations of channel ``k`` with partial derivatives
        bounded by 1/4 (o), 1/16 (i), 1/4 (g) and ``|c_k|/16`` (f); the rows of that
        ``C x 4C`` Jacobian have disjoint supports, so its norm is the largest row norm,
        ``sqrt(33 + c^2) / 16``.  ``Φ_ih`` adds ``cap^2 Lip(act)``.  ``None`` without a cap.
        """
        lip_act = _ACT_LIPSCHITZ.get(type(self.input_map[1]))
        if self.lipschitz_cap is None or lip_act is None:
            return None
        return self.lipschitz_cap ** 2 * lip_act * math.sqrt(33.0 + cell_bound ** 2) / 16.0

    def forward(self, x: Tensor, state: DIAState | None = None) -> tuple[Tensor, DIAState]:
        """``x``: ``[B, C_in]`` or ``[B, C_in, *spatial]``; returns the gate ``h'`` shaped to
        broadcast against ``x`` and the new state ``(h', c')``."""
        m = pool_channels(x)
        if state is None:
            state = self.initial_state(m.shape[0], dtype=m.dtype, device=m.device)
        h, c = state
        i, f, g, o = (self.input_map(m) + self.hidden_map(h)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.sigmoid(c)
        return broadcast_gate(h, x), (h, c)
