"""Periodic 1-D semilinear PDEs ``u_t = L u + N(u)`` with ``L`` diagonal in Fourier space.

The state is a real field ``u`` of shape ``[..., nx]`` sampled on the uniform periodic grid
``x_j = j * length / nx`` (``j = 0..nx-1``), batch dimensions first.  Derivatives are
pseudo-spectral: with the real FFT ``u_hat = rfft(u)`` (``nx // 2 + 1`` modes, mode ``m``
has wavenumber ``k_m = 2 pi m / length``), ``d/dx`` is multiplication by ``i k``.

The nonlinear term is dealiased with the 2/3 rule: the field is truncated to the modes
``3 |m| < nx`` before the product is formed and the product is truncated to the same
modes afterwards.  A product of two fields with ``3|m| < nx`` has modes ``|m| < 2 nx / 3``,
which alias (``m -> m - nx``) onto ``|m| > nx / 3`` only, so after the second truncation
the quadratic term is exact (free of aliasing) on the modes that are kept.

Two consumers use the same semi-discrete system:

* the explicit Runge–Kutta methods call ``system(t, u)``, the physical-space right-hand
  side ``irfft(L u_hat + N_hat(u_hat))``;
* the spectral steppers (:mod:`attsolver.steppers.spectral`: ETDRK4 of Cox & Matthews
  2002 with the contour-integral coefficients of Kassam & Trefethen 2005, and an
  integrating-factor RK4) treat ``L`` exactly and call :meth:`SemilinearPDE.nonlinear_op`.

So ``solve(system, u0, t, method="rk4")`` and ``method="etdrk4"`` approximate the same
ODE system and converge to the same solution as the step shrinks.

References:
    S. M. Cox and P. C. Matthews, "Exponential time differencing for stiff systems",
    J. Comput. Phys. 176 (2002) 430–455.
    A.-K. Kassam and L. N. Trefethen, "Fourth-order time-stepping for stiff PDEs",
    SIAM J. Sci. Comput. 26 (2005) 1214–1233.
    M. Takamoto et al., "PDEBench: an extensive benchmark for scientific machine
    learning", NeurIPS Datasets and Benchmarks 2022 (the Burgers initial conditions).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from .._validate import is_integer, positive_finite
from .base import CachedConstants, RunDefaults, System, register_system
from .grid import MIN_POINTS

__all__ = ["SemilinearPDE", "Burgers", "KuramotoSivashinsky"]

#: smallest grid: the 2/3 rule keeps ``3|m| < nx``, i.e. only 6 modes (mean included) at 16.
MIN_NX = MIN_POINTS

NonlinearOp = Callable[[Tensor, Tensor], Tensor]


class _Constants(NamedTuple):
    """Per-(dtype, device) tensors of one system, built once and reused by every call."""

    wavenumbers: Tensor  # [nx//2+1] real, 2 pi m / length
    symbol: Tensor  # [nx//2+1] real, the Fourier symbol of L
    symbol_complex: Tensor  # the same as a complex tensor (faster in complex products)
    nonlinear: NonlinearOp  # (t, u_hat) -> dealiased N_hat


class SemilinearPDE(CachedConstants, System):
    """Base class for periodic 1-D PDEs ``u_t = L u + N(u)`` with a Fourier-diagonal ``L``.

    Public (``attsolver.SemilinearPDE``): subclass it for your own PDE and solve it with
    ``method="etdrk4"`` / ``"ifrk4"`` (the linear part exactly) or any explicit method (the
    physical right-hand side).  It implements the spectral steppers' protocol
    :class:`attsolver.steppers.spectral.SpectralSystem` (``grid_shape``,
    :meth:`linear_symbol`, :meth:`nonlinear_op`).  Minimal example (Allen–Cahn
    ``u_t = eps u_xx + u - u^3``)::

        @dataclass(frozen=True)
        class AllenCahn(attsolver.SemilinearPDE):
            eps: float = 0.01
            nx: int = 128
            length: float = 2 * math.pi
            name = "allen_cahn_example"

            def __post_init__(self):
                self._validate_grid()

            def _symbol(self, k):                  # L = eps d^2/dx^2 + 1
                return 1.0 - self.eps * k**2

            def _make_nonlinear(self, k):          # N(u) = -u^3, 2/3-rule dealiased
                keep = (torch.arange(len(k)) < self.dealias_cutoff).to(k.dtype)
                def nonlinear(t, u_hat):
                    u = torch.fft.irfft(u_hat * keep, n=self.nx)
                    return -torch.fft.rfft(u**3) * keep
                return nonlinear

    (A cubic term needs the 1/2 rule to be alias-free; the 2/3 rule is the usual compromise.)

    A subclass is a frozen dataclass with fields ``nx`` (grid points) and ``length``
    (period), calls :meth:`_validate_grid` in ``__post_init__``, and implements
    :meth:`_symbol` (the Fourier symbol of ``L``) and :meth:`_make_nonlinear` (the
    dealiased ``N_hat``).  Everything else — grid, wavenumbers, the physical right-hand
    side for explicit methods, caching of constant tensors — lives here.

    Attributes:
        nx: number of grid points (even, at least 16).
        length: period of the domain, in the units of ``x``.
    """

    nx: int
    length: float

    # ------------------------------------------------------------------ set-up

    def _validate_grid(self) -> None:
        nx = self.nx
        if not is_integer(nx) or nx < MIN_NX or nx % 2:
            raise ValueError(
                f"{self.name}: nx must be an even integer >= {MIN_NX}, got {nx!r}; the 2/3-rule "
                f"dealiasing keeps only the modes |m| < nx/3 (6 at nx={MIN_NX}), and the real-FFT "
                "layout assumes an even grid with a Nyquist mode — use e.g. nx=64, 128 or 256"
            )
        object.__setattr__(self, "nx", int(nx))
        length = positive_finite(f"{self.name}: length", self.length, why=" (the period of the domain)",
                                 type_error=False)
        object.__setattr__(self, "length", length)
        object.__setattr__(self, "_cache", {})

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.nx,)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """``(nx,)``: the spatial grid the spectral steppers transform (their protocol,
        :class:`attsolver.steppers.spectral.SpectralSystem`)."""
        return (self.nx,)

    @property
    def modes(self) -> int:
        """Number of real-FFT modes, ``nx // 2 + 1``."""
        return self.nx // 2 + 1

    @property
    def dealias_cutoff(self) -> int:
        """Number of modes kept by the 2/3 rule: modes ``m = 0 .. cutoff-1`` (``3 m < nx``)."""
        return (self.nx - 1) // 3 + 1

    # ------------------------------------------------------------------ subclass hooks

    def _symbol(self, k: Tensor) -> Tensor:
        """The Fourier symbol of ``L`` at wavenumbers ``k`` (float64)."""
        raise NotImplementedError

    def _make_nonlinear(self, wavenumbers: Tensor) -> NonlinearOp:
        """Build ``(t, u_hat) -> N_hat`` for ``wavenumbers``' real dtype and device."""
        raise NotImplementedError

    # ------------------------------------------------------------------ constants

    def _constants(self, dtype: torch.dtype, device=None) -> _Constants:
        return self._cached(dtype, device, self._build_constants)

    def _build_constants(self, dtype: torch.dtype, device) -> _Constants:
        k64 = (2.0 * math.pi / self.length) * torch.arange(self.modes, dtype=torch.float64)
        k = k64.to(dtype=dtype, device=device)
        complex_dtype = torch.promote_types(dtype, torch.complex64)
        symbol = self._symbol(k64)
        symbol = symbol.to(dtype=complex_dtype if symbol.is_complex() else dtype, device=device)
        return _Constants(k, symbol, symbol.to(complex_dtype), self._make_nonlinear(k))

    def grid(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """Grid points ``x_j = j * length / nx``, shape ``[nx]``."""
        x = torch.arange(self.nx, dtype=torch.float64) * (self.length / self.nx)
        return x.to(dtype=dtype, device=device)

    def wavenumbers(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """Angular wavenumbers ``k_m = 2 pi m / length`` of the rfft modes, shape ``[nx//2+1]``."""
        return self._constants(dtype, device).wavenumbers

    def linear_symbol(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """The Fourier symbol of ``L``: ``(L u)_hat = symbol * u_hat``, shape ``[nx//2+1]``.

        Real (of ``dtype``) for dissipative operators such as Burgers' and
        Kuramoto–Sivashinsky's.  A subclass may return a complex symbol (odd derivatives:
        advection, dispersion); it then comes back in the matching complex dtype, and the
        Nyquist mode, whose imaginary part a real field cannot carry, is dropped by
        ``irfft``.  The returned tensor is cached and shared: do not modify it in place.
        """
        return self._constants(dtype, device).symbol

    def quadratic_nonlinearity(self, dtype: torch.dtype = torch.float64,
                               device=None) -> tuple[Tensor, Tensor] | None:
        """``(mask, g)`` with ``N_hat(v) = g * rfft(irfft(mask * v, n=nx) ** 2)``, or ``None``.

        The optional structure the spectral steppers' fast path uses (it folds ``g`` and
        ``mask`` into the ETDRK4 coefficients).  Burgers and Kuramoto–Sivashinsky return
        their advection term's (complex, ``[nx//2+1]``); a system whose ``_make_nonlinear``
        is anything else — including a subclass overriding theirs, or its ``nonlinear_op`` /
        ``nonlinear_hat`` — returns ``None``.
        """
        cls = type(self)
        if (not getattr(cls._make_nonlinear, "_advective", False)
                or cls.nonlinear_op is not SemilinearPDE.nonlinear_op
                or cls.nonlinear_hat is not SemilinearPDE.nonlinear_hat):
            return None  # a subclass that replaces the nonlinear term in any way keeps the torch path
        k = self._constants(dtype, device).wavenumbers
        return _advection_parts(self.dealias_cutoff, k)

    def dealias_mask(self, device=None) -> Tensor:
        """Boolean ``[nx//2+1]``: ``True`` for the modes the 2/3 rule keeps (``3 m < nx``)."""
        return torch.arange(self.modes, device=device) < self.dealias_cutoff

    def nonlinear_op(self, dtype: torch.dtype = torch.float64, device=None) -> NonlinearOp:
        """The dealiased nonlinear term as a function ``(t, u_hat) -> N_hat``.

        ``u_hat`` is ``rfft(u)``, complex, shape ``[..., nx//2+1]`` of the complex dtype that
        matches ``dtype``; the result has the same shape and is zero on the modes the 2/3
        rule removes.  The function holds its constant tensors, so a stepper fetches it
        once and calls it in its hot loop without any look-up.
        """
        return self._constants(dtype, device).nonlinear

    def nonlinear_hat(self, t: Tensor, u_hat: Tensor) -> Tensor:
        """``rfft`` of the dealiased ``N(u)`` given ``u_hat = rfft(u)`` (``[..., nx//2+1]``)."""
        return self._constants(u_hat.dtype, u_hat.device).nonlinear(t, u_hat)

    # ------------------------------------------------------------------ right-hand side

    def __call__(self, t: Tensor, u: Tensor) -> Tensor:
        """Physical-space right-hand side ``irfft(L u_hat + N_hat)``, shape and dtype of ``u``.

        Args:
            t: time, a 0-d tensor (unused by autonomous systems).
            u: real field ``[..., nx]`` on the grid :meth:`grid`.
        """
        if u.ndim == 0 or u.shape[-1] != self.nx or u.is_complex():
            self._check_field(u, "u")
        c = self._constants(u.dtype, u.device)
        u_hat = torch.fft.rfft(u)
        rhs = torch.addcmul(c.nonlinear(t, u_hat), c.symbol_complex, u_hat)
        return torch.fft.irfft(rhs, n=self.nx)

    def _check_field(self, u: Tensor, arg: str) -> None:
        if u.is_complex() or not u.is_floating_point():
            raise TypeError(
                f"{self.name}: {arg} must be a real floating field [..., nx], got dtype {u.dtype}; "
                "pass the physical-space values (e.g. u.real.double())"
            )
        if u.ndim == 0 or u.shape[-1] != self.nx:
            raise ValueError(
                f"{self.name}: {arg} must have last dimension nx={self.nx} (grid points), got shape "
                f"{tuple(u.shape)}; sample states with system.sample_initial(n) or build the "
                f"system with nx={u.shape[-1] if u.ndim else '...'}"
            )

    # ------------------------------------------------------------------ diagnostics

    def energy(self, u: Tensor) -> Tensor:
        """``(1/2) * integral of u^2 dx`` (trapezoid rule = exact for trigonometric
        polynomials of the grid), shape ``u.shape[:-1]``."""
        return 0.5 * (self.length / self.nx) * u.square().sum(-1)

    def dissipation_integral(self, u: Tensor) -> Tensor:
        """``integral of u_x^2 dx`` computed spectrally, shape ``u.shape[:-1]``.

        For Burgers ``d/dt (1/2) int u^2 = -nu int u_x^2`` (the advection term does no work).
        """
        k = self._constants(u.dtype, u.device).wavenumbers
        u_hat = torch.fft.rfft(u)
        w = torch.full_like(k, 2.0)  # each interior rfft mode stands for +-m
        w[0] = 1.0
        w[-1] = 1.0  # Nyquist (nx even) appears once
        return (self.length / self.nx**2) * (w * k.square() * u_hat.abs().square()).sum(-1)


def _advective(make_nonlinear):
    """Mark a ``_make_nonlinear`` that builds :func:`_advection_nonlinearity` (see
    :meth:`SemilinearPDE.quadratic_nonlinearity`); a subclass overriding it loses the mark."""
    make_nonlinear._advective = True
    return make_nonlinear


def _advection_parts(cutoff: int, wavenumbers: Tensor) -> tuple[Tensor, Tensor]:
    """``(mask, g)`` of :func:`_advection_nonlinearity`: the 0/1 input mask of the modes the
    2/3 rule keeps and the output multiplier ``-i k / 2`` on those modes (0 elsewhere)."""
    kept = torch.arange(len(wavenumbers), device=wavenumbers.device) < cutoff
    zero = torch.zeros_like(wavenumbers)
    return (torch.complex(kept.to(wavenumbers.dtype), zero),
            torch.complex(zero, torch.where(kept, -0.5 * wavenumbers, zero)))


def _advection_nonlinearity(nx: int, cutoff: int, wavenumbers: Tensor) -> NonlinearOp:
    """``N(u) = -(1/2) (u^2)_x`` with 2/3-rule dealiasing, in Fourier space.

    The input truncation is a multiplication by a 0/1 mask (measured faster than letting
    ``irfft`` zero-pad a sliced input); the output truncation and the factor ``-i k / 2``
    are one precomputed complex multiplier.  Both multipliers are complex because
    complex-by-complex kernels beat the type-promoting complex-by-real ones.
    """
    mask, g = _advection_parts(cutoff, wavenumbers)
    irfft, rfft = torch.fft.irfft, torch.fft.rfft

    def nonlinear(t: Tensor, u_hat: Tensor) -> Tensor:
        u = irfft(u_hat * mask, n=nx)
        return rfft(u * u).mul_(g)

    return nonlinear


def _grid_window(x: Tensor, left: Tensor, right: Tensor, width: float) -> Tensor:
    return 0.5 * (torch.tanh((x - left) / width) - torch.tanh((x - right) / width))


@register_system
@dataclass(frozen=True)
class Burgers(SemilinearPDE):
    """Viscous Burgers equation ``u_t + u u_x = nu u_xx`` on a periodic domain.

    In semilinear form ``L = nu d^2/dx^2`` (symbol ``-nu k^2``) and ``N(u) = -(1/2)(u^2)_x``
    (conservative form; its zero mode vanishes, so the spatial mean of ``u`` is invariant,
    and ``int u N(u) dx = 0``, so the energy ``(1/2) int u^2`` decays at the rate
    ``nu int u_x^2``).  The defaults follow PDEBench's 1-D Burgers set-up on ``[0, 1)``
    (PDEBench's files give ``Nu = pi * nu``; see docs/method.md §3 and :mod:`attsolver.data.pdebench`).

    Args:
        nu: viscosity ``nu > 0``.
        nx: grid points (even, >= 16).
        length: domain period.
    """

    nu: float = 0.01
    nx: int = 256
    length: float = 1.0
    name = "burgers"
    #: PDEBench's 1-D Burgers: t in [0, 2], 201 frames
    run_defaults = RunDefaults(dt=0.01, t_final=2.0, spin_up=0.0, refine=10)

    def __post_init__(self) -> None:
        self._validate_grid()
        nu = positive_finite(f"{self.name}: nu", self.nu, why=" (the viscosity)", type_error=False)
        object.__setattr__(self, "nu", nu)

    def _symbol(self, k: Tensor) -> Tensor:
        return -self.nu * k.square()

    @_advective
    def _make_nonlinear(self, wavenumbers: Tensor) -> NonlinearOp:
        return _advection_nonlinearity(self.nx, self.dealias_cutoff, wavenumbers)

    def sample_initial(self, n: int, *, generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float64, device=None, max_wavenumber: int = 4,
                       waves: int = 2, abs_prob: float = 0.1, flip_prob: float = 0.5,
                       window_prob: float = 0.1) -> Tensor:
        """PDEBench-style random initial conditions, shape ``[n, nx]``.

        Each field is ``sum_{i=1}^{waves} A_i sin(2 pi m_i x / length + phi_i)`` with
        ``waves`` distinct integer wavenumbers ``m_i`` drawn from ``1..max_wavenumber``,
        amplitudes ``A_i ~ U[0, 1)`` and phases ``phi_i ~ U[0, 2 pi)``.  Then, as in
        PDEBench's ``init_multi``: with probability ``abs_prob`` the field is replaced by its
        absolute value, with probability ``flip_prob`` its sign is flipped, and with
        probability ``window_prob`` it is multiplied by the smooth window
        ``(tanh((x - xL)/w) - tanh((x - xR)/w)) / 2`` with ``xL ~ U[0.1, 0.45] length``,
        ``xR ~ U[0.55, 0.9] length`` and ``w = max(0.01 length, 2 length / nx)`` (PDEBench
        uses ``w = 0.01``; the floor keeps the edge at least two cells wide on coarse grids).

        Differences from PDEBench: the wavenumbers are distinct (PDEBench may draw the same
        one twice, which doubles it), and the default ``max_wavenumber`` is 4.  Set the three
        probabilities to 0 for band-limited smooth fields.

        Args:
            n: number of fields.
            generator: optional ``torch.Generator`` for reproducible draws.
            dtype, device: of the result.
            max_wavenumber: largest integer wavenumber (in units of ``2 pi / length``).
            waves: sine modes per field (at most ``max_wavenumber``).
            abs_prob, flip_prob, window_prob: probabilities of the three modifications.
        """
        if not 1 <= waves <= max_wavenumber:
            raise ValueError(f"burgers.sample_initial: need 1 <= waves <= max_wavenumber, got {waves}, {max_wavenumber}")
        if max_wavenumber >= self.dealias_cutoff:
            raise ValueError(
                f"burgers.sample_initial: max_wavenumber={max_wavenumber} is not resolved by nx={self.nx} "
                f"(the 2/3 rule keeps m < {self.dealias_cutoff}); use a smaller one or a larger nx"
            )

        def rand(*shape):
            return torch.rand(*shape, generator=generator, dtype=dtype, device=device)

        x = self.grid(dtype, device)
        m = rand(n, max_wavenumber).argsort(dim=-1)[:, :waves].to(dtype) + 1.0  # distinct 1..max
        amp, phase = rand(n, waves), 2.0 * math.pi * rand(n, waves)
        arg = (2.0 * math.pi / self.length) * m[:, :, None] * x + phase[:, :, None]
        u = (amp[:, :, None] * torch.sin(arg)).sum(1)
        u = torch.where(rand(n, 1) < abs_prob, u.abs(), u)
        u = torch.where(rand(n, 1) < flip_prob, -u, u)
        left = self.length * (0.1 + 0.35 * rand(n, 1))
        right = self.length * (0.55 + 0.35 * rand(n, 1))
        width = max(0.01 * self.length, 2.0 * self.length / self.nx)
        window = _grid_window(x, left, right, width)
        return torch.where(rand(n, 1) < window_prob, u * window, u)


@register_system
@dataclass(frozen=True)
class KuramotoSivashinsky(SemilinearPDE):
    """Kuramoto–Sivashinsky equation ``u_t = -u u_x - u_xx - u_xxxx`` on a periodic domain.

    ``L = -d^2/dx^2 - d^4/dx^4`` (symbol ``k^2 - k^4``: modes with ``0 < k < 1`` grow,
    the rest are damped, strongly so at large ``k``) and ``N(u) = -(1/2)(u^2)_x``.  The
    spatial mean is invariant.  The defaults are the Kassam & Trefethen (2005) set-up:
    ``nx = 128`` points on ``[0, 32 pi)``, solved with ETDRK4 at ``h = 1/4`` from
    :meth:`kassam_trefethen_initial`; the dynamics are spatio-temporally chaotic.

    Dealiasing differs from the published script: the nonlinear term here is dealiased by
    the 2/3 rule (as for every :class:`SemilinearPDE`, so ``rk4`` and ``etdrk4`` solve one
    semi-discrete system and a learned corrector sees alias-free data), while Kassam &
    Trefethen's ``kursiv.m`` does not dealias.  At their set-up the two differ by about
    3e-3 (max norm) at ``t = 10`` and, the dynamics being chaotic, diverge later; the
    difference is the aliasing error of ``kursiv.m``, not an error of this solver.  To
    reproduce ``kursiv.m`` digit for digit, a subclass may override ``_make_nonlinear``
    without the truncation.  Burgers uses the same 2/3 rule.

    Args:
        nx: grid points (even, >= 16).
        length: domain period.
    """

    nx: int = 128
    length: float = 32.0 * math.pi
    name = "kuramoto_sivashinsky"
    #: Kassam–Trefethen: h = 1/4 is already accurate for ETDRK4; the reference takes h = 1/16
    run_defaults = RunDefaults(dt=0.25, t_final=50.0, spin_up=0.0, refine=4)

    def __post_init__(self) -> None:
        self._validate_grid()

    def _symbol(self, k: Tensor) -> Tensor:
        k2 = k.square()
        return k2 - k2.square()

    @_advective
    def _make_nonlinear(self, wavenumbers: Tensor) -> NonlinearOp:
        return _advection_nonlinearity(self.nx, self.dealias_cutoff, wavenumbers)

    def kassam_trefethen_initial(self, *, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """``u0 = cos(x/16) (1 + sin(x/16))`` of Kassam & Trefethen (2005), shape ``[nx]``.

        Written as ``cos(2 pi x / length)(1 + sin(2 pi x / length))``, which is their formula
        for the default ``length = 32 pi`` and stays periodic for any other length.
        """
        s = (2.0 * math.pi / self.length) * self.grid(torch.float64)
        return (torch.cos(s) * (1.0 + torch.sin(s))).to(dtype=dtype, device=device)

    def sample_initial(self, n: int, *, generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float64, device=None, max_wavenumber: int = 8) -> Tensor:
        """Random smooth zero-mean fields, shape ``[n, nx]``.

        ``u0 = sum_{m=1}^{M} a_m cos(2 pi m x / length) + b_m sin(2 pi m x / length)`` with
        ``M = max_wavenumber`` and independent ``a_m, b_m ~ N(0, 1/M)``, so the expected
        mean square of ``u0`` is 1 (the size of the Kassam–Trefethen initial condition).
        With the default length ``32 pi`` and ``M = 8`` all modes lie in the linearly
        unstable band ``k < 1``; the field leaves these modes within a few time units.
        """
        if not 1 <= max_wavenumber < self.dealias_cutoff:
            raise ValueError(
                f"kuramoto_sivashinsky.sample_initial: max_wavenumber must be in 1..{self.dealias_cutoff - 1} "
                f"for nx={self.nx}, got {max_wavenumber}"
            )
        coef = torch.randn(n, 2, max_wavenumber, generator=generator, dtype=dtype, device=device)
        coef = coef / math.sqrt(max_wavenumber)
        m = torch.arange(1, max_wavenumber + 1, dtype=dtype, device=device)
        arg = (2.0 * math.pi / self.length) * m[:, None] * self.grid(dtype, device)  # [M, nx]
        return coef[:, 0] @ torch.cos(arg) + coef[:, 1] @ torch.sin(arg)
