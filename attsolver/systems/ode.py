"""ODE benchmark systems: Lorenz-63, Lorenz-96, a spring-mass chain, an elastic
pendulum and a linear system with a closed-form solution.

Each has a NumPy twin of its right-hand side, ``numpy_rhs(t, y)`` (``t`` a float, ``y`` a
float64 array ``[..., *state]``; the same arithmetic as ``__call__``, equal to it to round-off).
The SciPy steppers (``scipy_dop853``, ...) call it instead of the torch ``f`` on a float64 CPU
state: a tiny ``f`` evaluated through torch costs a few microseconds of dispatch per operation,
several times what the arithmetic costs, and SciPy calls ``f`` once per stage.

For the same reason the torch ``f`` of the small systems is written in few operations: a
constant matrix (kept per dtype and device, :mod:`._constants`) applied to the state and its
products instead of one operation per term (Lorenz-63: 3 operations instead of 11; it equals
the plain formula to round-off, not bit for bit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .._validate import positive_finite
from ._constants import constant
from .base import Lattice, RunDefaults, System, register_system

__all__ = ["Lorenz63", "Lorenz96", "SpringChain", "ElasticPendulum", "LinearSystem"]

#: the spring chain's one-matmul path: chains of at most _SMALL_CHAIN masses (its 2n x 2n
#: generator kept: 32 KiB at most) on states of at most _SMALL numbers (a few dozen states;
#: beyond, the matmul's (2n)^2 work per state costs more than the term-by-term kernels)
_SMALL, _SMALL_CHAIN = 1024, 32


def _positive(name: str, **values: float) -> None:
    """Check each parameter (the values are kept as given: ``config()`` records them)."""
    for k, v in values.items():
        positive_finite(f"{name}: parameter {k}", v, type_error=False)


@register_system
@dataclass(frozen=True)
class Lorenz63(System):
    """Lorenz (1963): ``x' = sigma (y - x)``, ``y' = x (rho - z) - y``, ``z' = x y - beta z``.

    With the classical parameters the largest Lyapunov exponent is about 0.906
    (Lyapunov time about 1.1).
    """

    sigma: float = 10.0
    rho: float = 28.0
    beta: float = 8.0 / 3.0
    name = "lorenz63"
    lyapunov_exponent = 0.906
    run_defaults = RunDefaults(dt=0.01, t_final=10.0, spin_up=10.0, refine=20)

    def __post_init__(self):
        _positive(self.name, sigma=self.sigma, beta=self.beta)

    @property
    def state_shape(self):
        return (3,)

    def __call__(self, t, y):
        # [x, y, z, x x, x y, x z] @ M: the linear part and the products x z, x y in one matmul
        # keyed by a tuple of the parameters: hashing it costs a tenth of the dataclass's __hash__
        key = ("lorenz63", self.sigma, self.rho, self.beta)
        return torch.cat((y, y[..., :1] * y), dim=-1) @ constant(key, y, self._matrix)

    def _matrix(self):
        """``M`` (6 x 3): rows are the features ``x, y, z, x x, x y, x z``, columns ``f``'s."""
        s, r, b = float(self.sigma), float(self.rho), float(self.beta)
        return ((-s, r, 0.0), (s, -1.0, 0.0), (0.0, 0.0, -b), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))

    def numpy_rhs(self, t, y):
        """``f`` in NumPy (see the module's text)."""
        x, yy, z = y[..., 0], y[..., 1], y[..., 2]
        return np.stack((self.sigma * (yy - x), x * (self.rho - z) - yy, x * yy - self.beta * z), axis=-1)

    def sample_initial(self, n, *, generator=None, dtype=torch.float64, device=None):
        """Points near the attractor: a Gaussian cloud around its centre (0, 0, 25) with
        the attractor's spread; integrate a few time units first to land on it."""
        mean = torch.tensor([0.0, 0.0, 25.0], dtype=dtype, device=device)
        std = torch.tensor([8.0, 9.0, 8.5], dtype=dtype, device=device)
        return mean + std * torch.randn(n, 3, generator=generator, dtype=dtype, device=device)


@register_system
@dataclass(frozen=True)
class Lorenz96(System):
    """Lorenz (1996): ``x_i' = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F``, periodic in ``i``.

    For ``N=40, F=8`` the largest Lyapunov exponent is about 1.7.
    """

    N: int = 40
    F: float = 8.0
    name = "lorenz96"
    lyapunov_exponent = 1.68
    run_defaults = RunDefaults(dt=0.05, t_final=10.0, spin_up=5.0, refine=20)
    lattice = Lattice(axis=-1, periodic=True)  # a ring of N sites, one channel

    def __post_init__(self):
        if not isinstance(self.N, int) or self.N < 4:
            raise ValueError(f"lorenz96: N must be an integer >= 4, got {self.N!r}")

    @property
    def state_shape(self):
        return (self.N,)

    def __call__(self, t, y):
        # y padded periodically once, p[j] = y[j - 2]: the three neighbours are slices of it
        # (the same arithmetic as three torch.roll copies, in 5 kernels instead of 7, and
        # contiguous reads that torch.compile vectorises, where a roll's modular index is not)
        n = y.shape[-1]
        p = torch.cat((y[..., -2:], y, y[..., :1]), dim=-1)
        return (p[..., 3:] - p[..., :n]) * p[..., 1:n + 1] - y + self.F

    def numpy_rhs(self, t, y):
        """``f`` in NumPy (see the module's text)."""
        n = y.shape[-1]
        p = np.concatenate((y[..., -2:], y, y[..., :1]), axis=-1)
        return (p[..., 3:] - p[..., :n]) * p[..., 1:n + 1] - y + self.F

    def sample_initial(self, n, *, generator=None, dtype=torch.float64, device=None):
        """``F`` plus unit Gaussian perturbations (the usual spin-up start)."""
        return self.F + torch.randn(n, self.N, generator=generator, dtype=dtype, device=device)


@register_system
@dataclass(frozen=True)
class SpringChain(System):
    """``n`` masses joined by ``n+1`` linear springs between two fixed walls.

    State ``y = (p_1..p_n, q_1..q_n)`` (momenta first, as NeurVec's spring chain), with
    Hamiltonian ``H = sum p_i^2 / (2 m_i) + sum_{i=0}^{n} k_i (q_{i+1} - q_i)^2 / 2`` and
    ``q_0 = q_{n+1} = 0``.  ``masses``/``stiffness`` are scalars or per-mass / per-spring
    tuples.  :meth:`energy` gives ``H`` (conserved exactly by the flow).
    """

    n: int = 20
    masses: float | tuple[float, ...] = 1.0
    stiffness: float | tuple[float, ...] = 1.0
    name = "spring_chain"
    run_defaults = RunDefaults(dt=0.2, t_final=20.0, spin_up=0.0, refine=20)
    lattice = Lattice(axis=-1, periodic=False, blocks=2)  # n sites with (p, q) channels, walls at both ends

    def __post_init__(self):
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"spring_chain: n must be a positive integer, got {self.n!r}")
        for label, v, length in (("masses", self.masses, self.n), ("stiffness", self.stiffness, self.n + 1)):
            vals = v if isinstance(v, tuple) else (v,)
            if isinstance(v, tuple) and len(v) != length:
                raise ValueError(f"spring_chain: {label} needs {length} values, got {len(v)}")
            _positive(self.name, **{f"{label}[{i}]": x for i, x in enumerate(vals)})

    @property
    def state_shape(self):
        return (2 * self.n,)

    def _mk(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """The masses (``n``) and stiffnesses (``n + 1``) as tensors like ``like`` (kept)."""
        key = ("spring_chain", self.n, self.masses, self.stiffness)
        m = constant((key, "m"), like, lambda: torch.as_tensor(self.masses, dtype=torch.float64).expand(self.n))
        k = constant((key, "k"), like, lambda: torch.as_tensor(self.stiffness, dtype=torch.float64).expand(self.n + 1))
        return m, k

    def _generator(self) -> Tensor:
        """``G`` with ``f(y) = y @ G`` (``2n x 2n``): the flow is linear."""
        m, k = self._mk(torch.empty(0, dtype=torch.float64))
        n, i = self.n, torch.arange(self.n)
        G = torch.zeros(2 * n, 2 * n, dtype=torch.float64)
        G[n + i, i] = -(k[:-1] + k[1:])  # dp_i = k_i (q_{i+1} - q_i) - k_{i-1} (q_i - q_{i-1})
        G[n + i[1:], i[:-1]] = k[1:-1]
        G[n + i[:-1], i[1:]] = k[1:-1]
        G[i, n + i] = 1.0 / m  # dq_i = p_i / m_i
        return G

    def __call__(self, t, y):
        if self.n <= _SMALL_CHAIN and y.numel() <= _SMALL:  # one matmul, not the 6 kernels below
            return y @ constant(("spring_chain", self.n, self.masses, self.stiffness, "G"), y, self._generator)
        m, k = self._mk(y)
        p, q = y[..., : self.n], y[..., self.n:]
        # spring extensions q_{i+1} - q_i for i = 0..n with fixed walls
        qpad = torch.nn.functional.pad(q, (1, 1))
        tension = k * (qpad[..., 1:] - qpad[..., :-1])  # [.., n+1]
        dp = tension[..., 1:] - tension[..., :-1]
        return torch.cat((dp, p / m), dim=-1)

    def numpy_rhs(self, t, y):
        """``f`` in NumPy (see the module's text)."""
        m = np.broadcast_to(np.asarray(self.masses, dtype=y.dtype), (self.n,))
        k = np.broadcast_to(np.asarray(self.stiffness, dtype=y.dtype), (self.n + 1,))
        p, q = y[..., : self.n], y[..., self.n:]
        qpad = np.pad(q, [(0, 0)] * (q.ndim - 1) + [(1, 1)])
        tension = k * (qpad[..., 1:] - qpad[..., :-1])
        return np.concatenate((tension[..., 1:] - tension[..., :-1], p / m), axis=-1)

    def energy(self, y: Tensor) -> Tensor:
        """The Hamiltonian, shape ``y.shape[:-1]``."""
        m, k = self._mk(y)
        p, q = y[..., : self.n], y[..., self.n:]
        qpad = torch.nn.functional.pad(q, (1, 1))
        ext = qpad[..., 1:] - qpad[..., :-1]
        return 0.5 * (p.square() / m).sum(-1) + 0.5 * (k * ext.square()).sum(-1)

    def sample_initial(self, n, *, generator=None, dtype=torch.float64, device=None):
        """Standard-normal momenta and displacements."""
        return torch.randn(n, 2 * self.n, generator=generator, dtype=dtype, device=device)


@register_system
@dataclass(frozen=True)
class ElasticPendulum(System):
    """A mass on a spring swinging under gravity (the spring pendulum), in polar form.

    State ``(r, theta, r', theta')`` with ``theta = 0`` hanging down:

        r''     = r theta'^2 + g cos(theta) - (k/m)(r - L0)
        theta'' = -(g sin(theta) + 2 r' theta') / r

    The energy ``m (r'^2 + r^2 theta'^2)/2 - m g r cos(theta) + k (r - L0)^2 / 2`` is conserved.
    """

    g: float = 9.81
    k: float = 40.0
    m: float = 1.0
    rest_length: float = 1.0
    name = "elastic_pendulum"
    run_defaults = RunDefaults(dt=0.1, t_final=10.0, spin_up=0.0, refine=20)

    def __post_init__(self):
        _positive(self.name, g=self.g, k=self.k, m=self.m, rest_length=self.rest_length)

    @property
    def state_shape(self):
        return (4,)

    def __call__(self, t, y):
        r, th, dr, dth = y.unbind(-1)
        # the formulas of the class text, two products fused (addcmul): 14 torch calls, not 17
        ddr = torch.addcmul(self.g * torch.cos(th) - (self.k / self.m) * (r - self.rest_length), r * dth, dth)
        ddth = torch.addcmul(self.g * torch.sin(th), dr, dth, value=2.0) / -r
        return torch.stack((dr, dth, ddr, ddth), dim=-1)

    def numpy_rhs(self, t, y):
        """``f`` in NumPy (see the module's text)."""
        r, th, dr, dth = y[..., 0], y[..., 1], y[..., 2], y[..., 3]
        s, c = np.sin(th), np.cos(th)
        ddr = r * dth * dth + self.g * c - (self.k / self.m) * (r - self.rest_length)
        ddth = -(self.g * s + 2.0 * dr * dth) / r
        return np.stack((dr, dth, ddr, ddth), axis=-1)

    def energy(self, y: Tensor) -> Tensor:
        r, th, dr, dth = y.unbind(-1)
        kin = 0.5 * self.m * (dr * dr + r * r * dth * dth)
        return kin - self.m * self.g * r * torch.cos(th) + 0.5 * self.k * (r - self.rest_length) ** 2

    def sample_initial(self, n, *, generator=None, dtype=torch.float64, device=None):
        """Angles in +-60 degrees, stretch within +-20% of the static equilibrium, at rest
        plus small velocities."""
        u = torch.rand(n, 4, generator=generator, dtype=dtype, device=device) * 2 - 1
        r_eq = self.rest_length + self.m * self.g / self.k
        r = r_eq * (1 + 0.2 * u[:, 0])
        th = (math.pi / 3) * u[:, 1]
        return torch.stack((r, th, 0.5 * u[:, 2], 0.5 * u[:, 3]), dim=-1)


@register_system
@dataclass(frozen=True)
class LinearSystem(System):
    """``y' = A y`` with the closed-form solution ``y(t) = expm((t - t0) A) y0``.

    The default ``A`` is a lightly damped oscillator, eigenvalues ``-0.1 +- 2i``.
    """

    A: tuple[tuple[float, ...], ...] = ((-0.1, 2.0), (-2.0, -0.1))
    name = "linear"
    run_defaults = RunDefaults(dt=0.1, t_final=10.0, spin_up=0.0, refine=20)

    def __post_init__(self):
        rows = tuple(tuple(float(x) for x in r) for r in self.A)
        if not rows or any(len(r) != len(rows) for r in rows):
            raise ValueError(f"linear: A must be a non-empty square matrix, got {self.A!r}")
        object.__setattr__(self, "A", rows)

    @property
    def state_shape(self):
        return (len(self.A),)

    def matrix(self, like: Tensor) -> Tensor:
        """``A`` in ``like``'s dtype and device (kept between calls: do not modify it)."""
        return constant(("linear", self.A), like, lambda: self.A)

    def __call__(self, t, y):
        return y @ self.matrix(y).T

    def numpy_rhs(self, t, y):
        """``f`` in NumPy (see the module's text)."""
        return y @ np.asarray(self.A, dtype=y.dtype).T

    def exact(self, t: Tensor, y0: Tensor) -> Tensor:
        """Exact solution at times ``t`` (1-D, ``t[0]`` initial), shape ``[len(t), *y0.shape]``."""
        A = self.matrix(y0)
        dt = (t - t[0]).to(y0.dtype)
        P = torch.linalg.matrix_exp(dt[:, None, None] * A)  # [T, d, d]
        return torch.einsum("tij,...j->t...i", P, y0)

    def sample_initial(self, n, *, generator=None, dtype=torch.float64, device=None):
        return torch.randn(n, len(self.A), generator=generator, dtype=dtype, device=device)
