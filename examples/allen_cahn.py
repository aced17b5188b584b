"""A user's own periodic PDE for `attsolver`: the Allen–Cahn equation

    u_t = eps u_xx + u - u^3    on [0, 2 pi), periodic,

written as a subclass of the public ``attsolver.SemilinearPDE``: the Fourier symbol of the
linear part (``1 - eps k^2``) and the nonlinear term (``-u^3``, 2/3-rule dealiased) are all it
declares, and the spectral steppers (``etdrk4``, ``ifrk4``) as well as the explicit RK methods
solve it.  Used with ``--rhs examples/allen_cahn.py:AllenCahn`` (see docs/compare.md).
"""

import math
from dataclasses import dataclass

import torch

import attsolver


@dataclass(frozen=True)
class AllenCahn(attsolver.SemilinearPDE):
    eps: float = 0.01
    nx: int = 64
    length: float = 2 * math.pi
    name = "allen_cahn"

    def __post_init__(self):
        self._validate_grid()

    def _symbol(self, k):  # L = eps d^2/dx^2 + 1
        return 1.0 - self.eps * k**2

    def _make_nonlinear(self, k):  # N(u) = -u^3, 2/3-rule dealiased
        keep = torch.complex((torch.arange(len(k), device=k.device) < self.dealias_cutoff).to(k.dtype),
                             torch.zeros_like(k))
        nx = self.nx

        def nonlinear(t, u_hat):
            u = torch.fft.irfft(u_hat * keep, n=nx)
            return -torch.fft.rfft(u**3) * keep

        return nonlinear

    def sample_initial(self, n, *, generator=None, dtype=torch.float64, device=None):
        """Smooth random fields of amplitude ~0.5: the first 6 Fourier modes with random coefficients."""
        x = self.grid(torch.float64)
        m = torch.arange(1, 7, dtype=torch.float64)
        a = torch.randn(n, 6, generator=generator, dtype=torch.float64) / m
        b = torch.randn(n, 6, generator=generator, dtype=torch.float64) / m
        arg = m[None, :, None] * x[None, None, :] * (2 * math.pi / self.length)
        u = 0.5 * ((a[..., None] * torch.cos(arg)).sum(1) + (b[..., None] * torch.sin(arg)).sum(1))
        return u.to(dtype=dtype, device=device)


def sample(n, generator):
    """The same fields, as a stand-alone sampler for --init."""
    return AllenCahn().sample_initial(n, generator=generator)
