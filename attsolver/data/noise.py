"""Observation noise (docs/guide/data.md): ``y_obs = y + sigma * s ⊙ eps``, ``eps ~ N(0, I)``,
with ``s`` the per-component standard deviation of the trajectory set."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validate import nonnegative_number

__all__ = ["add_noise", "component_std"]


def component_std(y: Tensor) -> Tensor:
    """Per-component standard deviation of a trajectory set ``y [n, nt, *state]`` over
    trajectories and times (population std, ``correction=0``), shape ``state``."""
    if y.ndim < 3:
        raise ValueError(f"y must have shape [n_trajectories, n_times, *state], got {tuple(y.shape)}")
    return y.reshape(-1, *y.shape[2:]).std(dim=0, correction=0)


def add_noise(y: Tensor, noise_level: float, *, generator: torch.Generator | None = None,
              scale: Tensor | None = None) -> Tensor:
    """Relative Gaussian observation noise.

    Args:
        y: clean values ``[n_trajectories, n_times, *state]``, floating dtype.
        noise_level: ``sigma >= 0``; e.g. ``0.01`` is noise of 1 % of each component's spread.
        generator: CPU ``torch.Generator`` for reproducible noise (``eps`` is drawn on the CPU
            in ``y``'s dtype and moved to ``y``'s device).
        scale: ``s`` of shape ``state`` to use instead of ``component_std(y)`` (e.g. the
            training set's spread when noising a test set).

    Returns:
        ``y + sigma * s * eps``, a new tensor (``y.clone()`` when ``sigma == 0``, bit-identical
        to ``y``).
    """
    noise_level = nonnegative_number("noise_level", noise_level, type_error=False)
    if not isinstance(y, Tensor) or not y.is_floating_point():
        raise TypeError(f"y must be a floating-point tensor, got {getattr(y, 'dtype', type(y).__name__)}")
    if y.ndim < 3:
        raise ValueError(
            f"y must have shape [n_trajectories, n_times, *state], got {tuple(y.shape)}; "
            "for a single trajectory use y.unsqueeze(0)"
        )
    if noise_level == 0:
        return y.clone()
    if scale is None:
        s = component_std(y)
    else:
        s = torch.as_tensor(scale, dtype=y.dtype, device=y.device)
        if tuple(s.shape) != tuple(y.shape[2:]):
            raise ValueError(f"scale must have the state shape {tuple(y.shape[2:])}, got {tuple(s.shape)}")
        if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
            raise ValueError("scale must be finite and non-negative")
    eps = torch.randn(y.shape, generator=generator, dtype=y.dtype, device="cpu").to(y.device)
    return y + float(noise_level) * s * eps
