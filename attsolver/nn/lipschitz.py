"""A cap on the spectral norm of a linear map: ``W -> W * min(1, cap / sigma_max(W))``.

Unlike :func:`torch.nn.utils.parametrizations.spectral_norm`, which rescales every weight to
norm exactly one, this leaves a weight whose norm is already within the cap untouched, so the
cap bounds the layer's Lipschitz constant without fixing it.  ``sigma_max`` is tracked by one
power iteration per training-mode forward pass (as in Miyato et al. 2018), which can lag a
fast-moving weight by a few per cent; :func:`refresh_spectral_caps` sets the singular
vectors *exactly* (SVD), which happens at construction and whenever a
:class:`attsolver.correctors.Corrector` is put in eval mode, so a model in use honours the
cap to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .._validate import positive_number

__all__ = ["SpectralCap", "spectral_cap", "spectral_norm_of", "refresh_spectral_caps"]


class SpectralCap(nn.Module):
    """Parametrization that caps the spectral norm of a weight at ``cap``.

    Args:
        weight: the weight it will parametrize (its shape and the initial singular vectors
            come from it); 2-D, or N-D with the first dimension as the output (flattened).
        cap: the bound (> 0).
        n_power_iterations: power iterations per training-mode forward pass.
    """

    def __init__(self, weight: Tensor, cap: float = 1.0, n_power_iterations: int = 1, eps: float = 1e-12):
        super().__init__()
        positive_number("lipschitz cap", cap)
        if weight.ndim < 2:
            raise ValueError(f"a spectral cap needs a weight of at least 2 dimensions, got {tuple(weight.shape)}")
        self.cap = float(cap)
        self.n_power_iterations = int(n_power_iterations)
        self.eps = float(eps)
        w = weight.detach().reshape(weight.shape[0], -1)
        self.register_buffer("_u", torch.empty(w.shape[0], dtype=w.dtype, device=w.device))
        self.register_buffer("_v", torch.empty(w.shape[1], dtype=w.dtype, device=w.device))
        self.refresh(weight)

    @torch.no_grad()
    def refresh(self, weight: Tensor) -> None:
        """Set the singular vectors exactly from ``weight`` (the unconstrained one) by an SVD."""
        w = weight.detach().reshape(weight.shape[0], -1)
        u_svd, _, vh_svd = torch.linalg.svd(w, full_matrices=False)
        self._u.copy_(u_svd[:, 0])
        self._v.copy_(vh_svd[0])

    def extra_repr(self) -> str:
        return f"cap={self.cap:g}"

    def forward(self, weight: Tensor) -> Tensor:
        w = weight.reshape(weight.shape[0], -1)
        if self.training:
            with torch.no_grad():
                for _ in range(self.n_power_iterations):
                    self._v.copy_(F.normalize(w.t() @ self._u, dim=0, eps=self.eps))
                    self._u.copy_(F.normalize(w @ self._v, dim=0, eps=self.eps))
            # clones: the buffers change in place at the next call, the graph must not see that
            u, v = self._u.clone(), self._v.clone()
        else:
            u, v = self._u, self._v
        sigma = torch.dot(u, w @ v)
        # sigma == 0 (a zero weight) gives cap/0 = inf -> factor 1: nothing to cap
        return weight * torch.clamp(self.cap / sigma, max=1.0)


def spectral_cap(module: nn.Module, cap: float = 1.0, name: str = "weight", n_power_iterations: int = 1) -> nn.Module:
    """Cap the spectral norm of ``module.<name>`` at ``cap`` (in place); returns ``module``."""
    parametrize.register_parametrization(
        module, name, SpectralCap(getattr(module, name), cap, n_power_iterations)
    )
    return module


def spectral_norm_of(weight: Tensor) -> float:
    """The exact largest singular value of a weight (flattened to 2-D), for tests and reports."""
    w = weight.detach().reshape(weight.shape[0], -1)
    return float(torch.linalg.matrix_norm(w, ord=2))


def refresh_spectral_caps(module: nn.Module) -> None:
    """Recompute, exactly, the singular vectors of every :class:`SpectralCap` in ``module``."""
    for m in module.modules():
        if not parametrize.is_parametrized(m):
            continue
        for plist in m.parametrizations.values():
            for p in plist:
                if isinstance(p, SpectralCap):
                    # the cap is registered alone on a weight (spectral_cap), so its input is the original
                    p.refresh(plist.original)
