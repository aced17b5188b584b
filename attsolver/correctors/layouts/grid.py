"""The periodic-grid layout: fields of a periodic PDE, seen by translation-equivariant convolutions.

For a field ``u [..., nx]`` (or ``[..., n, n]`` on a periodic square) the correction should be
*translation-equivariant* (shifting the field shifts the correction) and *local*, which is what
a periodic convolution is:

* every convolution pads circularly, so ``C(roll(u, s)) == roll(C(u), s)`` exactly (up to
  floating-point reassociation) for every shift ``s``;
* no layer depends on ``nx``: the parameter count is the same at any grid size and the model
  runs on a field of any length;
* the normalisation is *per channel* (one mean/std per input feature, one output scale), not
  per grid point, which would break the equivariance.

A model still learns a stencil for one grid spacing ``dx = domain_length / nx`` (and one step
``h``): the layout records ``dx`` and ``solve`` refuses a field of another length unless the
usage flag ``allow_other_grid`` is set.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._validate import is_real
from .base import Layout, positive_int

__all__ = ["GridLayout", "PeriodicConv1d", "PeriodicConv2d"]


def _odd_stencil(kernel_size: int) -> int:
    kernel_size = positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (a centred periodic stencil), got {kernel_size}")
    return kernel_size


class _PeriodicConv:
    """The periodic convolutions' common part (mixed in before ``nn.Conv1d`` / ``nn.Conv2d``):
    an odd stencil, the wrap width ``kernel_size // 2``, an optional exact zero, and the
    circular wrap of the last ``_dims`` axes before a 'valid' convolution."""

    _dims = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, zero_init: bool = False,
                 dtype: torch.dtype | None = None):
        super().__init__(in_channels, out_channels, _odd_stencil(kernel_size), padding=0, dtype=dtype)
        self.wrap = self.kernel_size[0] // 2
        if zero_init:
            nn.init.zeros_(self.weight)
            nn.init.zeros_(self.bias)

    def _wrapped(self, x: Tensor) -> Tensor:
        """``x`` extended periodically by ``wrap`` points on each side of its last ``_dims`` axes."""
        p, d = self.wrap, self._dims
        if not p:
            return x
        if p <= min(x.shape[-d:]):
            return F.pad(x, (p, p) * d, mode="circular")
        for dim in range(-d, 0):  # a field shorter than the stencil: index the periodic extension
            n = x.shape[dim]
            x = x.index_select(dim, torch.arange(-p, n + p, device=x.device) % n)
        return x


class PeriodicConv1d(_PeriodicConv, nn.Conv1d):
    """``Conv1d`` on a periodic domain: the input ``[B, C, X]`` is wrapped around by
    ``kernel_size // 2`` points on each side before a 'valid' convolution, so the output has
    the input's length and commutes with ``torch.roll`` along ``X``.

    Any ``X >= 1`` works, also shorter than the padding (the wrap then repeats the field).

    Args:
        in_channels, out_channels: as :class:`torch.nn.Conv1d`.
        kernel_size: odd (a centred stencil).
        zero_init: set weight and bias to zero (an exact zero output).
    """

    _dims = 1

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(self._wrapped(x), self.weight, self.bias)


class PeriodicConv2d(_PeriodicConv, nn.Conv2d):
    """``Conv2d`` on a periodic square: the input ``[B, C, Y, X]`` is wrapped around by
    ``kernel_size // 2`` points on each side before a 'valid' convolution, so the output has
    the input's size and commutes with ``torch.roll`` along ``Y`` and ``X``.

    Args: as :class:`PeriodicConv1d` (a square ``kernel_size x kernel_size`` stencil).
    """

    _dims = 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(self._wrapped(x), self.weight, self.bias)


class GridLayout(Layout):
    """Periodic fields ``[..., nx]`` or ``[..., n, n]`` (a square of side ``domain_length``):
    every feature is one input channel (``y``: the field; ``dy``: the classical increment;
    ``phi``: ``dy / h``; ``h``: a constant channel), normalised by one mean and one standard
    deviation; the network maps ``[B, C_in, X]`` to ``[B, 1, X]``, its linear maps periodic
    convolutions, and one output scale multiplies the result.

    Args:
        state_shape: ``(nx,)`` (or ``nx``), or ``(n, n)`` in 2-D: the grid trained on.
        features: step features, each one input channel.
        domain_length: period of the domain; with ``nx`` it fixes the grid spacing.
        allow_other_grid: let ``solve`` use the model on fields of another length.  A usage
            flag, not saved.
        kernel_size: odd stencil of the network's convolutions (a head may name another for
            one of them).
        who: the corrector class, as a refusal names it.

    Attributes:
        spatial_dims: 1 or 2.
        conv: the periodic convolution class of this dimension.
        in_channels: one per feature (= ``n_in``).
    """

    name = "grid"
    suffix = "-conv"
    params = ("domain_length", "allow_other_grid", "kernel_size")
    feature_layout = "one input channel per feature, [batch, channel, x]; per-channel normalisation"
    pooled_over = "grid-point"

    def __init__(self, state_shape: Any, features: Any = ("y",), *, domain_length: float = 1.0,
                 allow_other_grid: bool = False, kernel_size: int = 5, who: str = "GridLayout"):
        if not is_real(domain_length) or not math.isfinite(domain_length) or domain_length <= 0:
            raise ValueError(f"domain_length must be a positive finite number (the period), got {domain_length!r}")
        super().__init__(state_shape, features)
        if len(self.state_shape) not in (1, 2) or len(set(self.state_shape)) != 1:
            raise ValueError(
                f"{who} corrects periodic fields [..., nx] or [..., n, n] (square); "
                f"state_shape must be (nx,) or (n, n), got {self.state_shape} (use NeurVec/AttSolver "
                "for other states)"
            )
        self.spatial_dims = len(self.state_shape)
        self.conv = PeriodicConv1d if self.spatial_dims == 1 else PeriodicConv2d
        self.domain_length = float(domain_length)
        self.allow_other_grid = bool(allow_other_grid)
        self.kernel_size = kernel_size
        self.in_channels = len(self.features)
        self.n_in, self.n_out = self.in_channels, 1

    @property
    def nx(self) -> int:
        """Grid points of the training grid."""
        return self.state_shape[0]

    @property
    def grid_spacing(self) -> float:
        """``dx = domain_length / nx`` of the training grid."""
        return self.domain_length / self.nx

    # ------------------------------------------------------------------ normalisation

    def stat_sizes(self) -> tuple[int, int]:
        return self.in_channels, 1

    def pool(self, m: nn.Module, stats: list[Tensor]) -> list[Tensor]:
        """Per-grid-point statistics pooled exactly: a channel's mean is the mean of its points'
        means, its variance the mean of their second moments minus the squared mean, and the
        output scale the root-mean-square of the points' scales (equal sample counts)."""
        sizes = tuple(v.numel() for v in stats)
        if sizes != (self.feature_dim, self.feature_dim, self.state_dim) or self.feature_dim == self.in_channels:
            return stats
        means, stds = [], []
        for sl in self.feature_slices().values():
            m_, s_ = stats[0][sl], stats[1][sl]
            mean = m_.mean()
            means.append(mean)
            stds.append(torch.sqrt(torch.clamp((s_.square() + m_.square()).mean() - mean.square(), min=0.0)))
        mean, std = torch.stack(means), torch.stack(stds)
        # a channel that is constant over the data (e.g. h) is centred but not scaled
        std = torch.where(std > 1e-12 * torch.clamp(mean.abs(), min=1.0), std, torch.ones_like(std))
        return [mean, std, stats[2].square().mean().sqrt().reshape(1)]

    def spread_scale(self, m: nn.Module, scale: Tensor) -> Tensor:
        return scale.expand(self.state_dim)

    # ------------------------------------------------------------------ the network's maps and evaluation

    def linear(self, n_in: int, n_out: int, *, dtype: torch.dtype, zero: bool = False,
               kernel: int | None = None) -> nn.Module:
        return self.conv(n_in, n_out, self.kernel_size if kernel is None else kernel, zero_init=zero, dtype=dtype)

    def channels(self, y: Tensor, dy: Tensor, h: float, who: str = "corrector") -> Tensor:
        """Raw input channels ``[B, C_in, X]`` from fields ``[B, X]`` (2-D: ``[B, C_in, Y, X]``)."""
        return torch.stack(self.feature_parts(y, dy, h, tuple(y.shape), None, who), dim=1)

    def forward(self, m: nn.Module, t: Tensor | None, y: Tensor, dy: Tensor, h: float) -> Tensor:
        d = self.spatial_dims
        if y.ndim < d:
            raise ValueError(f"{type(m).__name__} expects fields [..., {', '.join(['n'] * d)}], "
                             f"got shape {tuple(y.shape)}")
        shape = y.shape
        grid = shape[len(shape) - d:]
        u = self.channels(y.reshape(-1, *grid), dy.reshape(-1, *grid), h, type(m).__name__)
        per_channel = (-1,) + (1,) * d
        u = (u - m.in_mean.view(per_channel)) / m.in_std.view(per_channel)
        v = m.network(u)
        return (v * m.channel_scale(h)).reshape(shape)

    # ------------------------------------------------------------------ record and checks

    def record(self) -> dict[str, Any]:
        return {"feature_layout": self.feature_layout, "grid_spacing": self.grid_spacing,
                "domain_length": self.domain_length, "nx": self.nx}

    def shape_problems(self, y0: Tensor) -> list[str]:
        """Fields of another length ``nx'`` on the same domain have the grid spacing
        ``domain_length / nx'``; refused unless :attr:`allow_other_grid` is set."""
        d = self.spatial_dims
        if y0.ndim < d:
            return [f"state shape: y0 has shape {tuple(y0.shape)}, expected fields ending in {d} grid dims"]
        if d == 2 and y0.shape[-2] != y0.shape[-1]:
            return [f"state shape: 2-D fields must be square [..., n, n], got {tuple(y0.shape)}"]
        if y0.shape[-1] != self.nx and not self.allow_other_grid:
            dx = self.domain_length / y0.shape[-1]
            return [
                f"grid spacing {dx:.6g} (fields of {y0.shape[-1]} points on the domain of length "
                f"{self.domain_length:g}; trained for dx={self.grid_spacing:.6g}, nx={self.nx}). The "
                "convolutions run at any nx, but their stencils were learned for one spacing; set "
                "allow_other_grid=True (constructor or attribute) to use it anyway"
            ]
        return []

    def trained_shape(self) -> str:
        return f"grid spacing {self.grid_spacing:.6g} (nx={self.nx})"

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "domain_length": self.domain_length, "kernel_size": self.kernel_size}

    @classmethod
    def from_system(cls, system: Any, kwargs: dict[str, Any], who: str) -> tuple[tuple[int, ...], dict[str, Any]]:
        """The grid of a :class:`~attsolver.systems.SemilinearPDE` (``(system.nx,)``) or a 2-D
        system (``system.grid_shape``), with ``domain_length=system.length``."""
        if "domain_length" in kwargs:  # the system's own: as a second keyword argument would be
            raise TypeError(f"{who}() got multiple values for keyword argument 'domain_length'")
        shape = tuple(system.grid_shape) if hasattr(system, "grid_shape") else (system.nx,)
        return shape, {"domain_length": system.length, **kwargs}
