"""Periodic stencils read as views of one wrapped copy of a field (the 2-D systems' kernels).

A stencil of ``k`` neighbours built from ``torch.roll`` costs ``k`` copies of the field; a
field wrapped around by ``p`` cells on each side costs one, and every neighbour within ``p``
cells is then a view of it.  ``x`` is the last axis, ``y`` the one before (the layout of
:mod:`attsolver.systems.navier_stokes`).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Halo"]


class Halo:
    """``a[..., ny, nx]`` wrapped around periodically by ``p`` cells on each side;
    ``self(di, dj)`` is the view of the field at ``(i + di, j + dj)`` (``|di|, |dj| <= p``)."""

    def __init__(self, a: Tensor, p: int = 1):
        self.ny, self.nx, self.p = a.shape[-2], a.shape[-1], p
        if not 1 <= p <= min(self.ny, self.nx):
            raise ValueError(f"Halo: p must be in [1, {min(self.ny, self.nx)}] for a field of shape "
                             f"{tuple(a.shape)}, got {p!r}")
        # the circular pad of the last two dims, by concatenation (works for any batch shape)
        a = _wrap(a, p, -2)
        self.a = _wrap(a, p, -1)

    def __call__(self, di: int, dj: int) -> Tensor:
        p = self.p
        if abs(di) > p or abs(dj) > p:
            raise ValueError(f"Halo: offset ({di}, {dj}) is beyond the {p}-cell halo")
        return self.a[..., p + dj:p + dj + self.ny, p + di:p + di + self.nx]


def _wrap(a: Tensor, p: int, dim: int) -> Tensor:
    """``a`` with its last ``p`` slices along ``dim`` before it and its first ``p`` after it."""
    n = a.shape[dim]
    return torch.cat([a.narrow(dim, n - p, p), a, a.narrow(dim, 0, p)], dim=dim)
