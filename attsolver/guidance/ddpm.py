"""A DDPM on latent codes: an MLP noise predictor ``ε_θ(z_t, t)`` with a sinusoidal time
embedding, its training loop, and the samplers (DDPM ancestral, DDIM with any η, DDIM
inversion).

Every sampler takes ``eps_fn(z_t, t) -> ε`` (``t`` a ``[N]`` long tensor), so the same loops
run the plain model, a classifier-guided ε̂ (:mod:`attsolver.guidance.guide`) or an analytic
ε (the tests use the exact predictor for Gaussian data).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .latent import check_latent
from .schedule import NoiseSchedule

__all__ = ["timestep_embedding", "EpsMLP", "LatentDDPM", "train_ddpm", "ddpm_sample", "ddim_sample",
           "ddim_invert", "gaussian_eps"]

EpsFn = Callable[[Tensor, Tensor], Tensor]


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style sinusoidal embedding of integer timesteps: ``[N] -> [N, dim]``, the first
    half cosines, the second half sines of ``t · max_period^(-i/half)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class EpsMLP(nn.Module):
    """``ε_θ(z, t)``: residual MLP blocks on ``z``, each adding a projection of the time embedding.

    Args:
        dim: latent dimension.
        hidden: width of the hidden layers.
        depth: number of residual blocks.
        time_dim: size of the sinusoidal embedding.
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, time_dim: int = 64):
        super().__init__()
        self.dim, self.hidden, self.depth, self.time_dim = dim, hidden, depth, time_dim
        self.inp = nn.Linear(dim, hidden)
        self.time = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"t": nn.Linear(hidden, hidden),
                           "f": nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                              nn.SiLU(), nn.Linear(hidden, hidden))})
            for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        temb = self.time(timestep_embedding(t, self.time_dim).to(z.dtype))
        h = self.inp(z)
        for blk in self.blocks:
            h = h + blk["f"](h + blk["t"](temb))
        return self.out(h)


class LatentDDPM(nn.Module):
    """A noise predictor together with its schedule.

    ``ddpm(z_t, t)`` is ``ε_θ``; ``sample(...)``, ``ddim(...)`` and ``invert(...)`` call the
    module-level samplers with it.
    """

    def __init__(self, dim: int, schedule: NoiseSchedule | None = None, hidden: int = 256, depth: int = 3,
                 time_dim: int = 64):
        super().__init__()
        self.dim = dim
        self.schedule = schedule or NoiseSchedule.linear(1000)
        self.net = EpsMLP(dim, hidden, depth, time_dim)

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        return self.net(z, t)

    def loss(self, z0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The simple DDPM objective ``E_{t, ε} |ε - ε_θ(sqrt(ᾱ_t) z0 + sqrt(1-ᾱ_t) ε, t)|²``."""
        t = torch.randint(0, self.schedule.T, (len(z0),), generator=generator)
        noise = torch.randn(z0.shape, generator=generator)
        return (self(self.schedule.q_sample(z0, t, noise), t) - noise).pow(2).mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, self.dim, generator=generator)
        return ddpm_sample(self, self.schedule, z, generator=generator)

    @torch.no_grad()
    def ddim(self, n_or_z, steps: int = 50, eta: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n_or_z, self.dim, generator=generator) if isinstance(n_or_z, int) else n_or_z
        return ddim_sample(self, self.schedule, z, self.schedule.timesteps(steps), eta=eta, generator=generator)

    @torch.no_grad()
    def invert(self, z0: Tensor, t0: int | None = None, steps: int = 50) -> Tensor:
        ts = self.schedule.timesteps(steps, t0)
        return ddim_invert(self, self.schedule, z0, ts)


def train_ddpm(model: LatentDDPM, z: Tensor, *, steps: int = 4000, batch_size: int = 256, lr: float = 2e-3,
               seed: int = 0, ema: float | None = 0.995) -> list[float]:
    """Fit ``model`` to latents ``z`` ``[N, D]`` with Adam (cosine-decayed learning rate); returns the
    loss of every step.  With ``ema`` the weights end as their exponential moving average."""
    check_latent(z, model.dim, "z")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got steps={steps}, batch_size={batch_size}")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    avg = [p.detach().clone() for p in model.parameters()] if ema else None
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(z), (batch_size,), generator=g)
        loss = model.loss(z[idx], generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if avg is not None:
            with torch.no_grad():
                for a, p in zip(avg, model.parameters()):
                    a.lerp_(p, 1 - ema)
    if avg is not None:
        with torch.no_grad():
            for a, p in zip(avg, model.parameters()):
                p.copy_(a)
    model.eval()
    return losses


def _tvec(t: int, n: int) -> Tensor:
    return torch.full((n,), t, dtype=torch.long)


def ddpm_sample(eps_fn: EpsFn, schedule: NoiseSchedule, z: Tensor, *, t_start: int | None = None,
                generator: torch.Generator | None = None, posterior_variance: bool = True) -> Tensor:
    """Ancestral sampling from ``z`` at ``t_start`` (default ``T-1``) down to clean:
    ``z_{t-1} = (z_t - β_t/sqrt(1-ᾱ_t) ε) / sqrt(α_t) + σ_t ξ`` with ``σ_t² = β̃_t`` (the posterior
    variance ``β_t (1-ᾱ_{t-1})/(1-ᾱ_t)``) or ``β_t``; no noise at the last step."""
    t_start = schedule.T - 1 if t_start is None else schedule.check_timestep(t_start, "t_start")
    n = len(z)
    for t in range(t_start, -1, -1):
        beta = float(schedule.betas[t])
        ab, ab_prev = float(schedule.abar(t)), float(schedule.abar(t - 1))
        eps = eps_fn(z, _tvec(t, n))
        z = (z - beta / math.sqrt(1 - ab) * eps) / math.sqrt(1 - beta)
        if t > 0:
            var = beta * (1 - ab_prev) / (1 - ab) if posterior_variance else beta
            z = z + math.sqrt(var) * torch.randn(z.shape, generator=generator, dtype=z.dtype)
    return z


def ddim_sample(eps_fn: EpsFn, schedule: NoiseSchedule, z: Tensor, timesteps: list[int], *, eta: float = 0.0,
                generator: torch.Generator | None = None, clip_z0: float | None = None) -> Tensor:
    """DDIM (Song et al. 2021) along descending ``timesteps`` (the first is where ``z`` lives), ending
    clean.  Per step: ``ẑ0 = (z - sqrt(1-ᾱ_t) ε)/sqrt(ᾱ_t)``,
    ``z' = sqrt(ᾱ') ẑ0 + sqrt(1-ᾱ'-σ²) ε + σ ξ`` with
    ``σ = η sqrt((1-ᾱ')/(1-ᾱ_t)) sqrt(1-ᾱ_t/ᾱ')``; η = 0 is deterministic, η = 1 is DDPM-like.

    Where ᾱ_t is tiny (the clipped end of a cosine schedule) an error δ in ε becomes an error
    ``δ sqrt(ᾱ'/ᾱ_t)`` in ``z'``; ``clip_z0`` clamps ``ẑ0`` to ``[-clip_z0, clip_z0]`` (for
    standardised latents), and a linear schedule avoids the problem."""
    if not math.isfinite(eta) or eta < 0:
        raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")
    n = len(z)
    seq = list(timesteps) + [-1]
    for t, t_next in zip(seq[:-1], seq[1:]):
        ab, ab_next = float(schedule.abar(t)), float(schedule.abar(t_next))
        eps = eps_fn(z, _tvec(t, n))
        z0 = (z - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        if clip_z0 is not None:
            z0 = z0.clamp(-clip_z0, clip_z0)
            eps = (z - math.sqrt(ab) * z0) / math.sqrt(1 - ab)  # the ε consistent with the clipped ẑ0
        sigma = eta * math.sqrt((1 - ab_next) / (1 - ab) * (1 - ab / ab_next)) if t_next >= 0 else 0.0
        z = math.sqrt(ab_next) * z0 + math.sqrt(max(1 - ab_next - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            z = z + sigma * torch.randn(z.shape, generator=generator, dtype=z.dtype)
    return z


def ddim_invert(eps_fn: EpsFn, schedule: NoiseSchedule, z0: Tensor, timesteps: list[int]) -> Tensor:
    """Run the η = 0 DDIM map backwards: from clean ``z0`` up to ``timesteps[0]`` (``timesteps`` as
    :func:`ddim_sample` takes them, descending).  Each step evaluates ε at the current point and
    the *next* (noisier) timestep, the usual approximation; ``ddim_sample(..., timesteps)`` of the
    result reconstructs ``z0`` up to the discretisation error."""
    n = len(z0)
    up = list(reversed(list(timesteps)))  # ascending
    z = z0
    prev = -1
    for t in up:
        ab_prev, ab = float(schedule.abar(prev)), float(schedule.abar(t))
        eps = eps_fn(z, _tvec(t, n))
        x0 = (z - math.sqrt(1 - ab_prev) * eps) / math.sqrt(ab_prev)
        z = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps
        prev = t
    return z


def gaussian_eps(schedule: NoiseSchedule, mean: Tensor, var: Tensor | float) -> EpsFn:
    """The exact (MMSE) noise predictor for data ``z0 ~ N(mean, diag(var))``:
    ``E[ε | z_t] = sqrt(1-ᾱ_t) (z_t - sqrt(ᾱ_t) mean) / (ᾱ_t var + 1 - ᾱ_t)``."""
    def eps(z: Tensor, t: Tensor) -> Tensor:
        ab = schedule.abar(t).to(z.dtype)[:, None]
        return (1 - ab).sqrt() * (z - ab.sqrt() * mean) / (ab * var + 1 - ab)
    return eps
