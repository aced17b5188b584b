"""Instance-enhancement batch normalisation (IEBN, Liang, Huang, Liang & Yang, arXiv
1908.04008): its gate, and the BatchNorm layer that uses it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .registry import register_attention
from .se import broadcast_gate, pool_channels

__all__ = ["IEBNGate", "IEBatchNorm"]


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
            # w * min(1, c / max|w|), written c / max(c, max|w|): finite gradient at w = 0 (the init)
            cap = torch.as_tensor(self.lipschitz_cap, dtype=w.dtype, device=w.device)
            w = w * (cap / torch.maximum(w.abs().max(), cap))
        return broadcast_gate(torch.sigmoid(w * pool_channels(x) + self.bias), x)


class IEBatchNorm(_BatchNorm):
    """BatchNorm whose affine weight is recalibrated per sample and channel (IEBN)::

        x_hat = BN(x)                    (batch statistics in training, running ones in eval; no affine)
        a     = sigmoid(w ⊙ GAP(x) + b)  (w, b in R^C, initialised 0 and -1: a = sigmoid(-1) at first)
        y     = x_hat ⊙ (gamma ⊙ a) + beta

    ``GAP`` pools the raw input ``x`` (as the reference code does).  ``gamma``, ``beta`` are
    the usual ``weight``, ``bias`` (1 and 0 at first); the gate (:class:`IEBNGate`) adds
    ``2C`` parameters to a BatchNorm's ``2C``.  Any input ``[B, C, *spatial]`` (``[B, C]``
    included, where ``GAP`` is the identity) is accepted.

    Args:
        num_features: ``C``.
        eps, momentum, track_running_stats: as :class:`torch.nn.BatchNorm2d`.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 track_running_stats: bool = True, dtype: torch.dtype | None = None, device=None):
        super().__init__(num_features, eps, momentum, affine=True,
                         track_running_stats=track_running_stats, dtype=dtype, device=device)
        self.gate = IEBNGate(num_features, dtype=dtype, device=device)

    def _check_input_dim(self, x: Tensor) -> None:
        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"IEBatchNorm({self.num_features}) expects [batch, {self.num_features}, ...], "
                f"got shape {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        # the momentum bookkeeping of nn.BatchNorm*'s forward, for the affine-free normalisation
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        x_hat = F.batch_norm(x, self.running_mean if track else None, self.running_var if track else None,
                             None, None, use_batch_stats, momentum, self.eps)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x_hat * (self.weight.reshape(shape) * self.gate(x)) + self.bias.reshape(shape)
