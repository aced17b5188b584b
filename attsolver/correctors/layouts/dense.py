"""The dense layout: the network reads the whole flattened state."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .base import Layout

__all__ = ["DenseLayout"]


class DenseLayout(Layout):
    """Every feature is the flattened state (C order), the features concatenated in order:
    one vector of ``feature_dim`` numbers per sample, normalised per component, mapped to the
    ``D`` components of the correction.  The network's size grows with the state's.

    Args:
        state_shape: shape of one state (``D = prod(state_shape)``).
        features: step features (see :data:`~attsolver.correctors.FEATURES`).
    """

    name = "dense"
    suffix = ""
    feature_layout = "flattened state (C order) per feature, concatenated in this order"

    def __init__(self, state_shape: Any, features: Any = ("y",)):
        super().__init__(state_shape, features)
        self.n_in, self.n_out = self.feature_dim, self.state_dim

    def stat_sizes(self) -> tuple[int, int]:
        return self.feature_dim, self.state_dim

    def gate_sources(self) -> dict[str, slice]:
        return {"features": slice(0, self.feature_dim), **self.feature_slices()}

    def forward(self, m: nn.Module, t: Tensor | None, y: Tensor, dy: Tensor, h: float) -> Tensor:
        shape = y.shape
        k = len(self.state_shape)
        if tuple(shape[len(shape) - k:]) != self.state_shape:
            raise ValueError(f"{type(m).__name__} expects states ending in shape {self.state_shape}, got {tuple(shape)}")
        yb = y.reshape(-1, self.state_dim)
        if self.uses_time and t is not None and t.ndim and t.numel() != yb.shape[0]:
            t = t.reshape(-1).expand(yb.shape[0]) if t.numel() == 1 else t
        u = self.compute_features(yb, dy.reshape(-1, self.state_dim), h, t, type(m).__name__)
        v = m.network((u - m.in_mean) / m.in_std)
        return (v * m.channel_scale(h)).reshape(shape)
