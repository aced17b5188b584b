"""A flatness measure: how much the loss rises under random weight perturbations.

For a radius ``r``, every parameter tensor ``W`` gets ``δ = r‖W‖_F · z/‖z‖`` with ``z``
standard Gaussian (a random direction, scaled to a fixed fraction of the tensor's norm, so
layers of different scale are perturbed alike and the measure does not change when a
ReLU network's layers are rescaled against each other).  The measure is the mean of
``L(w + δ) − L(w)`` over ``samples`` draws.  Near a minimum it is about
``½ Σ_W (r‖W‖)²/n_W · tr(H_WW)``: a flatter minimum (smaller Hessian trace) rises less.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["perturbed_loss_increase"]


@torch.no_grad()
def perturbed_loss_increase(model: nn.Module, loss_fn: Callable[[nn.Module], Tensor], radii: Sequence[float], *,
                            samples: int = 10, seed: int = 0) -> dict[float, float]:
    """Mean loss increase under random relative perturbations of every trainable parameter.

    Args:
        model: the network; its parameters are restored exactly afterwards.
        loss_fn: ``loss_fn(model)`` -> scalar loss on a fixed batch (evaluated without grad).
        radii: relative radii ``r`` (each >= 0).
        samples: random directions per radius (>= 1).
        seed: seed of the directions (a private generator; the global RNG is not touched).

    Returns ``{r: mean of L(w + δ) − L(w)}``.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    radii = list(radii)
    for r in radii:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r < 0:
            raise ValueError(f"radii must be finite numbers >= 0, got {r!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(seed)
    base = float(loss_fn(model))
    out: dict[float, float] = {}
    try:
        for r in radii:
            total = 0.0
            for _ in range(samples):
                for p, w in zip(params, saved):
                    z = torch.randn(w.shape, generator=gen, dtype=w.dtype).to(w.device)
                    p.copy_(w + (r * torch.linalg.vector_norm(w) / torch.linalg.vector_norm(z).clamp_min(1e-30)) * z)
                total += float(loss_fn(model)) - base
            out[float(r)] = total / samples
    finally:
        for p, w in zip(params, saved):
            p.copy_(w)
    return out
