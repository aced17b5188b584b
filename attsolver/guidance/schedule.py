"""Noise schedules of a DDPM (Ho et al. 2020; cosine: Nichol & Dhariwal 2021) and the forward
(noising) process ``q(z_t | z_0) = N(sqrt(ᾱ_t) z_0, (1 - ᾱ_t) I)``.

Timesteps are integers ``t = 0, ..., T-1``; ``ᾱ_t = prod_{s<=t} (1 - β_s)``, so ``t = 0``
is already slightly noisy and ``t = -1`` (used by the samplers' last step) means clean.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["NoiseSchedule", "SCHEDULES"]

SCHEDULES = ("linear", "cosine")


class NoiseSchedule:
    """β, α = 1 - β and ᾱ (float64 tensors of length ``T``).

    Build with :meth:`linear` or :meth:`cosine` (or :meth:`make` by name).
    """

    def __init__(self, betas: Tensor, kind: str = "custom"):
        self.kind = kind
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.dim() != 1 or len(betas) < 2:
            raise ValueError(f"betas must be a 1-D tensor with at least 2 entries, got shape {list(betas.shape)}")
        if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas >= 1).any():
            raise ValueError("betas must lie in (0, 1)")
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)

    @property
    def T(self) -> int:
        return len(self.betas)

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        """β linear from ``beta_start`` to ``beta_end`` (DDPM's values at T = 1000).  For another
        ``T`` the end points are rescaled by 1000/T so that the total noise stays comparable (β capped at 0.999)."""
        _check_T(T)
        scale = 1000.0 / T
        betas = torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64).clamp(max=0.999)
        return cls(betas, "linear")

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        """``ᾱ(t) = f(t)/f(0)``, ``f(t) = cos²(π/2 · (t/T + s)/(1 + s))``, with
        ``β_t = min(1 - ᾱ(t+1)/ᾱ(t), max_beta)``; so ``alpha_bar[t] = ᾱ(t+1)`` unless clipped."""
        _check_T(T)
        steps = torch.arange(T + 1, dtype=torch.float64)
        f = torch.cos((steps / T + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        betas = (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)
        return cls(betas, "cosine")

    @classmethod
    def make(cls, kind: str = "cosine", T: int = 1000) -> "NoiseSchedule":
        if kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")
        return cls.linear(T) if kind == "linear" else cls.cosine(T)

    # -- lookups -----------------------------------------------------------------------------
    def abar(self, t: Tensor | int) -> Tensor:
        """ᾱ_t for integer ``t`` (``-1`` -> 1, i.e. clean), as float64."""
        t = torch.as_tensor(t, dtype=torch.long)
        padded = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar])
        return padded[t + 1]

    def check_timestep(self, t, name: str = "t0") -> int:
        """``t`` as an int in ``[0, T-1]``; otherwise a ValueError naming ``name``."""
        if isinstance(t, Tensor) and t.numel() == 1:
            t = t.item()
        if isinstance(t, bool) or not isinstance(t, int) and not (isinstance(t, float) and t.is_integer()):
            raise ValueError(f"{name} must be an integer timestep in [0, {self.T - 1}], got {t!r}")
        t = int(t)
        if not 0 <= t < self.T:
            raise ValueError(f"{name}={t} is outside the schedule: choose a timestep in [0, {self.T - 1}] (T={self.T})")
        return t

    def q_sample(self, z0: Tensor, t: Tensor | int, noise: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """Draw ``z_t ~ q(z_t | z_0)``: ``sqrt(ᾱ_t) z0 + sqrt(1 - ᾱ_t) ε``; ``t`` an int or a ``[N]``
        long tensor."""
        if noise is None:
            noise = torch.randn(z0.shape, generator=generator, dtype=z0.dtype, device=z0.device)
        ab = self.abar(t).to(z0.dtype)
        if ab.dim() == 1:
            ab = ab.view(-1, *([1] * (z0.dim() - 1)))
        return ab.sqrt() * z0 + (1 - ab).sqrt() * noise

    def timesteps(self, steps: int, t_start: int | None = None) -> list[int]:
        """``steps`` evenly spaced timesteps from ``t_start`` (default ``T-1``) down to 0, descending
        (the DDIM sub-sequence)."""
        t_start = self.T - 1 if t_start is None else self.check_timestep(t_start, "t_start")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        steps = min(steps, t_start + 1)
        ts = torch.linspace(t_start, 0, steps, dtype=torch.float64).round().long().tolist()
        out: list[int] = []
        for t in ts:  # strictly decreasing, no duplicates
            if not out or t < out[-1]:
                out.append(t)
        return out

    def __repr__(self) -> str:
        return f"NoiseSchedule(kind={self.kind!r}, T={self.T})"


def _check_T(T) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise ValueError(f"T must be an int >= 2 (the number of diffusion steps), got {T!r}")
