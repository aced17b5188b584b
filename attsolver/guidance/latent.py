"""The generator-agnostic latent space: a dimension and a ``decode`` callable, plus an
``encode`` callable where real inputs are to be edited.

Nothing in the guidance method looks inside the generator; it only needs latents of a fixed
dimension that it can hand back to ``decode``.  A VAE's posterior mean, a StyleGAN's W space
(``encode`` = a GAN-inversion network or optimiser) and a normalising flow all fit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["LatentSpace", "check_latent"]


def check_latent(z, dim: int, name: str = "z") -> Tensor:
    """Return ``z`` if it is a finite floating tensor of shape ``[N, dim]``; otherwise raise a
    ValueError/TypeError that names ``name`` and says what was expected."""
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [N, {dim}], got {type(z).__name__}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {z.dtype}; convert with .float()")
    if z.dim() != 2 or z.shape[1] != dim:
        raise ValueError(f"{name} must have shape [N, {dim}] (latent dimension {dim}), got {list(z.shape)}")
    if not torch.isfinite(z).all():
        raise ValueError(f"{name} contains NaN or inf")
    return z


class LatentSpace:
    """A latent space given by callables.

    Args:
        dim: latent dimension ``D``; every latent is a ``[N, D]`` float tensor.
        decode: ``[N, D]`` latents -> generator outputs (images ``[N, C, H, W]``, ...).
        encode: optional, inputs -> ``[N, D]`` latents (needed only to edit real inputs).
        name: shown in messages.

    ``encode``/``decode`` results are checked on the way through, so a generator that
    returns the wrong dimension fails here rather than deep inside a sampler.
    """

    def __init__(self, dim: int, decode: Callable[[Tensor], Tensor],
                 encode: Callable[[Tensor], Tensor] | None = None, name: str = "latent space"):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int (the latent dimension), got {dim!r}")
        if not callable(decode):
            raise TypeError(f"decode must be callable ([N, {dim}] latents -> outputs), got {type(decode).__name__}")
        if encode is not None and not callable(encode):
            raise TypeError(f"encode must be callable (inputs -> [N, {dim}] latents) or None, "
                            f"got {type(encode).__name__}")
        self.dim = dim
        self._decode = decode
        self._encode = encode
        self.name = name

    @property
    def can_encode(self) -> bool:
        return self._encode is not None

    def check(self, z, name: str = "z") -> Tensor:
        """Validate a batch of latents of this space (see :func:`check_latent`)."""
        return check_latent(z, self.dim, name)

    def decode(self, z: Tensor) -> Tensor:
        return self._decode(self.check(z))

    def encode(self, x) -> Tensor:
        if self._encode is None:
            raise ValueError(f"{self.name} has no encoder: pass encode=... to LatentSpace to edit real inputs "
                             "(generation needs only decode)")
        z = self._encode(x)
        if isinstance(z, Tensor) and z.dim() == 2 and z.shape[1] != self.dim:
            raise ValueError(f"encode returned latents of dimension {z.shape[1]}, but {self.name} has dim={self.dim}")
        return check_latent(z, self.dim, "encode(x)")

    def __repr__(self) -> str:
        return f"LatentSpace(dim={self.dim}, encode={'yes' if self.can_encode else 'no'}, name={self.name!r})"
