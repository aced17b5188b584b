"""2-D incompressible Navier–Stokes in vorticity form on the periodic square ``[0, 2 pi)^2``.

    omega_t + u . grad(omega) = nu lap(omega) - alpha omega + F,
    u = (psi_y, -psi_x),  -lap(psi) = omega,

with the Kolmogorov forcing of Kochkov et al. (2021): the body force ``A sin(k y)`` in the
x-momentum equation, i.e. ``F = curl = -A k cos(k y)`` (``A = 0`` gives decaying
turbulence).  A field is ``omega[..., ny, nx]`` with ``omega[..., j, i]`` the value at
``(x_i, y_j) = (2 pi i / n, 2 pi j / n)``: ``x`` is the last axis, ``y`` the one before.

Two discretisations of the same equation:

* :class:`NavierStokes2D` — pseudo-spectral.  It implements the spectral steppers'
  protocol (:class:`attsolver.steppers.spectral.SpectralSystem`): the symbol of the linear
  part is ``-nu |k|^2 - alpha``, the nonlinear term ``-div(u omega) + F`` is formed in
  physical space from the 2/3-rule-truncated field (square truncation ``3 |m| < n`` in both
  directions) and truncated again, so it is alias-free on the kept modes.  The
  streamfunction is the exact Poisson solve ``psi_hat = omega_hat / |k|^2``.  So
  ``solve(system, w0, t, method="etdrk4")`` (or ``"ifrk4"``, or any explicit method through
  ``system(t, w)``) works as for the 1-D PDEs.
* :class:`NavierStokes2DFD` — the classical 2nd-order finite-difference baseline: the
  Arakawa (1966) Jacobian (which conserves the discrete energy and enstrophy in the
  inviscid limit), the 5-point Laplacian, the streamfunction from the 5-point Poisson
  equation (solved exactly by FFT, as most periodic codes do), stepped by an explicit
  Runge–Kutta method (``"ssprk3"`` or ``"rk4"``) with a CFL-limited step: ``solve`` refuses a
  step above :meth:`NavierStokes2DFD.max_step_size` of the initial field.

References:
    D. Kochkov et al., "Machine learning-accelerated computational fluid dynamics",
    PNAS 118 (2021) e2101784118 (the Kolmogorov set-up and the accuracy protocol).
    A. Arakawa, "Computational design for long-term numerical integration of the equations
    of fluid motion", J. Comput. Phys. 1 (1966) 119–143.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .._validate import is_integer, nonnegative_number, positive_number
from .base import CachedConstants, System, real_dtype, register_system
from ._halo import Halo
from .grid import MIN_POINTS
from .learned_interpolation import LearnedInterpolation, check_weights, face_velocities

__all__ = ["NavierStokes2D", "NavierStokes2DFD", "energy_spectrum"]

#: smallest grid: the 2/3 rule keeps ``3|m| < n``, i.e. |m| <= 5 at n = 16.
MIN_N = MIN_POINTS
LENGTH = 2.0 * math.pi


def _wavenumbers(n: int, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
    """``(ky [n, 1], kx [1, n//2+1])``: integer wavenumbers of the ``rfft2`` modes."""
    ky = torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64)[:, None]
    kx = torch.arange(n // 2 + 1, dtype=torch.float64)[None, :]
    return ky.to(dtype=dtype, device=device), kx.to(dtype=dtype, device=device)


def energy_spectrum(w: Tensor) -> tuple[Tensor, Tensor]:
    """Shell-summed kinetic energy spectrum of a vorticity field ``[..., n, n]``.

    ``E(k) = sum over |k'| in [k - 1/2, k + 1/2) of (1/2) |u_hat(k')|^2`` with ``u_hat``
    normalised so that ``sum_k E(k)`` is the domain-mean kinetic energy ``<|u|^2> / 2``.

    Returns:
        ``(k, E)``: integer shells ``k = 0..n//2`` and ``E [..., n//2 + 1]``.
    """
    n = w.shape[-1]
    ky, kx = _wavenumbers(n, real_dtype(w.dtype), w.device)
    k2 = kx.square() + ky.square()
    w_hat = torch.fft.rfft2(w) / n**2
    weight = torch.full_like(kx, 2.0)
    weight[..., 0] = 1.0
    weight[..., -1] = 1.0
    inv = torch.where(k2 > 0, 1.0 / k2.clamp_min(1e-30), torch.zeros_like(k2))
    e = 0.5 * weight * inv * w_hat.abs().square()
    shell = torch.sqrt(k2).round().long().clamp_max(n // 2).expand_as(e[0] if e.ndim > 2 else e)
    out = torch.zeros(*e.shape[:-2], n // 2 + 1, dtype=e.dtype, device=e.device)
    out.index_add_(-1, shell.reshape(-1), e.reshape(*e.shape[:-2], -1))
    return torch.arange(n // 2 + 1), out


class _Constants(NamedTuple):
    symbol: Tensor  # [n, n//2+1] real, -nu |k|^2 - alpha
    nonlinear: Any  # (t, w_hat) -> N_hat
    forcing: Tensor  # [n, n] real grid values of F
    psi_over_w: Tensor  # [n, n//2+1]: psi_hat = psi_over_w * w_hat
    ikx: Tensor  # [1, n//2+1] complex i k_x
    iky: Tensor  # [n, 1] complex i k_y


@dataclass(frozen=True)
class _Vorticity2D(CachedConstants, System):
    """Shared parameters (with their defaults: both discretisations solve the same problem),
    validation, grid, forcing and diagnostics of the two discretisations."""

    nu: float = 1.0 / 250.0
    drag: float = 0.1
    forcing_wavenumber: int = 4
    forcing_amplitude: float = 1.0
    n: int = 64

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        n = self.n
        if not is_integer(n) or n < MIN_N or n % 2:
            raise ValueError(
                f"{self.name}: n must be an even integer >= {MIN_N} (grid points per side of the "
                f"square), got {n!r}; the 2/3 rule keeps |m| < n/3 and the real-FFT layout needs an "
                "even grid — use e.g. n=32, 64, 128 or 256"
            )
        object.__setattr__(self, "n", int(n))
        nu = positive_number(f"{self.name}: nu (the kinematic viscosity)", self.nu, type_error=False)
        drag = nonnegative_number(f"{self.name}: drag (the linear drag alpha)", self.drag, type_error=False)
        object.__setattr__(self, "nu", nu)
        object.__setattr__(self, "drag", drag)
        object.__setattr__(self, "forcing_amplitude", float(self.forcing_amplitude))
        k = self.forcing_wavenumber
        if not is_integer(k) or k < 0 or 3 * k >= self.n:
            raise ValueError(
                f"{self.name}: forcing_wavenumber must be an integer with 0 <= k < n/3 = {self.n / 3:.4g} "
                f"(resolved by the grid), got {k!r}; use a larger n or a smaller k (Kochkov: k=4)"
            )
        object.__setattr__(self, "forcing_wavenumber", int(k))
        object.__setattr__(self, "_cache", {})

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.n, self.n)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """``(n, n)``: ``(ny, nx)`` of a field."""
        return (self.n, self.n)

    @property
    def length(self) -> float:
        """Side of the periodic square, ``2 pi``."""
        return LENGTH

    @property
    def dx(self) -> float:
        """Grid spacing ``2 pi / n``."""
        return LENGTH / self.n

    def grid(self, dtype: torch.dtype = torch.float64, device=None) -> tuple[Tensor, Tensor]:
        """``(x, y)``, each ``[n, n]``: ``x[j, i] = 2 pi i / n``, ``y[j, i] = 2 pi j / n``."""
        c = torch.arange(self.n, dtype=torch.float64) * self.dx
        y, x = torch.meshgrid(c, c, indexing="ij")
        return x.to(dtype=dtype, device=device), y.to(dtype=dtype, device=device)

    def forcing(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """Grid values of the vorticity forcing ``F = -A k cos(k y)``, ``[n, n]``."""
        _, y = self.grid(torch.float64)
        k, a = self.forcing_wavenumber, self.forcing_amplitude
        return (-a * k * torch.cos(k * y)).to(dtype=dtype, device=device)

    def _check_field(self, w: Tensor, arg: str = "w") -> None:
        if w.is_complex() or not w.is_floating_point():
            raise TypeError(f"{self.name}: {arg} must be a real floating field [..., n, n], got dtype {w.dtype}")
        if w.ndim < 2 or tuple(w.shape[-2:]) != (self.n, self.n):
            raise ValueError(
                f"{self.name}: {arg} must end in the square grid ({self.n}, {self.n}), got shape "
                f"{tuple(w.shape)}; only square periodic domains are supported — sample fields with "
                "system.sample_initial(m) or restrict a fine field with attsolver.systems.grid.restrict_2d(w, n)"
            )

    def sample_initial(self, m: int, *, generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float64, device=None, peak_wavenumber: float = 4.0,
                       rms_vorticity: float = 4.0) -> Tensor:
        """Random smooth vorticity fields, ``[m, n, n]``.

        White noise whose Fourier coefficients are multiplied by ``|k|^2 exp(-(|k|/k_p)^2)``
        (``k_p = peak_wavenumber``), limited to the 2/3-rule modes, zero mean, scaled to an
        rms vorticity of ``rms_vorticity``.  Forced runs forget it during the spin-up.
        """
        noise = torch.randn(m, self.n, self.n, generator=generator, dtype=torch.float64)
        ky, kx = _wavenumbers(self.n)
        kk = torch.sqrt(kx.square() + ky.square())
        keep = (3 * kx.abs() < self.n) & (3 * ky.abs() < self.n) & (kk > 0)
        envelope = torch.where(keep, kk.square() * torch.exp(-(kk / peak_wavenumber).square()),
                               torch.zeros_like(kk))
        w = torch.fft.irfft2(torch.fft.rfft2(noise) * envelope, s=(self.n, self.n))
        w = w * (rms_vorticity / w.square().mean(dim=(-2, -1), keepdim=True).sqrt())
        return w.to(dtype=dtype, device=device)

    # ------------------------------------------------------------------ diagnostics

    def velocity(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """``(u, v)`` on the grid, each of ``w``'s shape."""
        c = self._constants(w.dtype, w.device)
        psi_hat = torch.fft.rfft2(w) * c.psi_over_w
        s = (self.n, self.n)
        return torch.fft.irfft2(c.iky * psi_hat, s=s), torch.fft.irfft2(-c.ikx * psi_hat, s=s)

    def max_step_size(self, w: Tensor, courant: float = 1.0) -> float:
        """``courant * dx / max(|u| + |v|)``: the advective CFL step of the field ``w``."""
        u, v = self.velocity(w)
        speed = float((u.abs() + v.abs()).max())
        return courant * self.dx / max(speed, 1e-12)

    def enstrophy(self, w: Tensor) -> Tensor:
        """Domain-mean enstrophy ``<omega^2> / 2``, shape ``w.shape[:-2]``."""
        return 0.5 * w.square().mean(dim=(-2, -1))

    def energy(self, w: Tensor) -> Tensor:
        """Domain-mean kinetic energy ``<psi omega> / 2 = <|u|^2> / 2`` (with this
        discretisation's Poisson solve), shape ``w.shape[:-2]``."""
        c = self._constants(w.dtype, w.device)
        psi = torch.fft.irfft2(torch.fft.rfft2(w) * c.psi_over_w, s=(self.n, self.n))
        return 0.5 * (psi * w).mean(dim=(-2, -1))

    def _constants(self, dtype: torch.dtype, device=None) -> _Constants:
        return self._cached(dtype, device, self._build_constants)

    def _laplacian_eigenvalues(self, ky: Tensor, kx: Tensor) -> Tensor:
        """``|k|^2`` (spectral) or the 5-point-Laplacian eigenvalue (finite differences)."""
        raise NotImplementedError

    def _build_constants(self, dtype: torch.dtype, device) -> _Constants:
        ky, kx = _wavenumbers(self.n)
        lam = self._laplacian_eigenvalues(ky, kx)
        psi_over_w = torch.where(lam > 0, 1.0 / lam.clamp_min(1e-30), torch.zeros_like(lam))
        cdt = torch.promote_types(dtype, torch.complex64)
        symbol = -self.nu * (kx.square() + ky.square()) - self.drag
        nonlinear = self._make_nonlinear(ky, kx, psi_over_w, dtype, device)
        return _Constants(symbol.to(dtype=dtype, device=device), nonlinear,
                          self.forcing(dtype, device), psi_over_w.to(dtype=cdt, device=device),
                          (1j * kx).to(dtype=cdt, device=device), (1j * ky).to(dtype=cdt, device=device))

    def _make_nonlinear(self, ky, kx, psi_over_w, dtype, device):
        return None


@register_system
@dataclass(frozen=True)
class NavierStokes2D(_Vorticity2D):
    """Pseudo-spectral 2-D vorticity Navier–Stokes with Kolmogorov forcing (module docstring).

    Defaults: Kochkov et al.'s forcing (``k = 4``, amplitude 1, drag 0.1) at a lower
    Reynolds number than their ``nu = 1e-3`` (this machine's scale; see docs/kolmogorov.md).

    Args:
        nu: kinematic viscosity ``> 0`` (Re = 1 / nu for the unit forcing).
        drag: linear drag ``alpha >= 0``.
        forcing_wavenumber: ``k`` of ``F = -A k cos(k y)``; ``0 <= k < n/3``.
        forcing_amplitude: ``A``; 0 for decaying turbulence.
        n: grid points per side (even, >= 16); the domain is ``[0, 2 pi)^2``.
    """

    name = "navier_stokes_2d"

    @property
    def dealias_cutoff(self) -> int:
        """Modes ``|m| < dealias_cutoff`` (``3 |m| < n``) are kept by the 2/3 rule."""
        return (self.n - 1) // 3 + 1

    def _laplacian_eigenvalues(self, ky, kx):
        return kx.square() + ky.square()

    def _make_nonlinear(self, ky, kx, psi_over_w, dtype, device):
        n = self.n
        cdt = torch.promote_types(dtype, torch.complex64)
        keep = ((3 * kx.abs() < n) & (3 * ky.abs() < n)).to(torch.float64)
        # one multiplier stack turns w_hat into the (u, v, w) coefficients: u = psi_y, v = -psi_x
        to_uvw = torch.stack([1j * ky * psi_over_w * keep, -1j * kx * psi_over_w * keep,
                              keep + 0j]).to(dtype=cdt, device=device)
        # -div(u w) = -(i kx (u w)_hat + i ky (v w)_hat), truncated again
        div = torch.stack([-1j * kx * keep, -1j * ky * keep]).to(dtype=cdt, device=device)
        f_hat = (torch.fft.rfft2(self.forcing(torch.float64)) * keep).to(dtype=cdt, device=device)
        irfft2, rfft2, s = torch.fft.irfft2, torch.fft.rfft2, (n, n)

        def nonlinear(t: Tensor, w_hat: Tensor) -> Tensor:
            uvw = irfft2(w_hat.unsqueeze(-3) * to_uvw, s=s)  # [..., 3, n, n]
            flux = uvw[..., :2, :, :] * uvw[..., 2:, :, :]
            return (rfft2(flux) * div).sum(-3).add_(f_hat)

        return nonlinear

    def linear_symbol(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """``-nu |k|^2 - alpha`` on the ``rfft2`` modes, ``[n, n//2+1]`` (cached: do not modify)."""
        return self._constants(dtype, device).symbol

    def nonlinear_op(self, dtype: torch.dtype = torch.float64, device=None):
        """``(t, w_hat) -> N_hat``: ``-div(u w) + F`` dealiased (2/3 rule), ``[..., n, n//2+1]``."""
        return self._constants(dtype, device).nonlinear

    def __call__(self, t: Tensor, w: Tensor) -> Tensor:
        """Physical right-hand side ``omega_t``, shape and dtype of ``w`` ``[..., n, n]``."""
        if w.ndim < 2 or tuple(w.shape[-2:]) != (self.n, self.n) or w.is_complex():
            self._check_field(w)
        c = self._constants(w.dtype, w.device)
        w_hat = torch.fft.rfft2(w)
        return torch.fft.irfft2(torch.addcmul(c.nonlinear(t, w_hat), c.symbol, w_hat), s=(self.n, self.n))


def _shift(a: Tensor, di: int, dj: int) -> Tensor:
    """``a`` at ``(i + di, j + dj)``: ``i`` along x (last axis), ``j`` along y."""
    return torch.roll(a, shifts=(-dj, -di), dims=(-2, -1))


@register_system
@dataclass(frozen=True)
class NavierStokes2DFD(_Vorticity2D):
    """2nd-order finite-difference 2-D vorticity Navier–Stokes (the classical baseline).

    ``omega_t = J(psi, omega) + nu lap_h(omega) - alpha omega + F`` with the Arakawa Jacobian
    ``J = (J++ + J+x + Jx+) / 3`` (2nd order, conserves ``sum omega^2`` and
    ``sum psi omega`` exactly in the semi-discrete inviscid limit), the 5-point Laplacian
    ``lap_h`` and ``-lap_h psi = omega`` solved exactly by FFT.  Step it with an explicit
    RK method (``"ssprk3"``, ``"rk4"``); ``solve`` checks the step against
    :meth:`max_step_size` of the initial field.

    With ``interpolation=`` a :class:`~attsolver.systems.learned_interpolation.LearnedInterpolation`
    the advection term is instead the flux form ``-div(u omega)`` with the face values chosen
    by the model (inside every stage of the step, so ``solve`` differentiates through it);
    the domain mean of ``omega`` is then conserved exactly by the advection.

    Args: as :class:`NavierStokes2D`; ``interpolation``: ``None`` (Arakawa) or a learned
    interpolation built for this ``n``, ``nu``, ``drag`` and forcing wavenumber.
    """

    interpolation: Any = field(default=None, repr=False)  # compared by identity
    name = "navier_stokes_2d_fd"

    def __post_init__(self) -> None:
        super().__post_init__()
        li = self.interpolation
        if li is not None:
            if not isinstance(li, LearnedInterpolation):
                raise TypeError(
                    f"{self.name}: interpolation must be None or an "
                    f"attsolver.systems.learned_interpolation.LearnedInterpolation, got {type(li).__name__}"
                )
            li.check_system(self)
            li.check_consistency()

    def config(self) -> dict[str, Any]:
        """As :meth:`System.config`; a learned interpolation is named by what it was trained
        for (its weights travel in a checkpoint, not in the config)."""
        out = super().config()
        li = out["params"].pop("interpolation")
        if li is not None:
            out["learned_interpolation"] = li.trained_for
        return out

    def _laplacian_eigenvalues(self, ky, kx):
        d = self.dx
        return (4.0 / d**2) * (torch.sin(kx * d / 2).square() + torch.sin(ky * d / 2).square())

    def velocity(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """``(u, v) = (psi_y, -psi_x)`` by centred differences, each of ``w``'s shape."""
        psi = self.streamfunction(w)
        d2 = 2.0 * self.dx
        return ((_shift(psi, 0, 1) - _shift(psi, 0, -1)) / d2,
                -(_shift(psi, 1, 0) - _shift(psi, -1, 0)) / d2)

    def streamfunction(self, w: Tensor) -> Tensor:
        """``psi`` with ``-lap_h psi = omega`` (zero mean), ``w``'s shape."""
        c = self._constants(w.dtype, w.device)
        return torch.fft.irfft2(torch.fft.rfft2(w) * c.psi_over_w, s=(self.n, self.n))

    def jacobian(self, psi: Tensor, w: Tensor) -> Tensor:
        """Arakawa's ``J(psi, omega) ~ psi_x omega_y - psi_y omega_x`` (2nd order): the mean
        of the three 9-point Jacobians ``J++, J+x, Jx+``, read from views of one padded copy
        of each field (measured faster here than the equivalent flux form, which needs a
        second padded copy of the four fluxes)."""
        return self._jacobian(Halo(psi), Halo(w))

    def _jacobian(self, p: Halo, q: Halo) -> Tensor:
        jpp = (p(1, 0) - p(-1, 0)) * (q(0, 1) - q(0, -1)) - (p(0, 1) - p(0, -1)) * (q(1, 0) - q(-1, 0))
        jpx = (p(1, 0) * (q(1, 1) - q(1, -1)) - p(-1, 0) * (q(-1, 1) - q(-1, -1))
               - p(0, 1) * (q(1, 1) - q(-1, 1)) + p(0, -1) * (q(1, -1) - q(-1, -1)))
        jxp = (q(0, 1) * (p(1, 1) - p(-1, 1)) - q(0, -1) * (p(1, -1) - p(-1, -1))
               - q(1, 0) * (p(1, 1) - p(1, -1)) + q(-1, 0) * (p(-1, 1) - p(-1, -1)))
        return (jpp + jpx + jxp) * (1.0 / (12.0 * self.dx**2))

    def laplacian(self, w: Tensor) -> Tensor:
        """5-point Laplacian, ``w``'s shape."""
        q = Halo(w)
        return (q(1, 0) + q(-1, 0) + q(0, 1) + q(0, -1) - 4.0 * w) * (1.0 / self.dx**2)

    def __call__(self, t: Tensor, w: Tensor) -> Tensor:
        """Semi-discrete right-hand side ``omega_t``, shape and dtype of ``w`` ``[..., n, n]``."""
        if w.ndim < 2 or tuple(w.shape[-2:]) != (self.n, self.n) or w.is_complex():
            self._check_field(w)
        c = self._constants(w.dtype, w.device)
        li = self.interpolation
        q = Halo(w, 1 if li is None else li.halo)  # one padded copy serves the advection and the Laplacian
        lap = (q(1, 0) + q(-1, 0) + q(0, 1) + q(0, -1) - 4.0 * w) * (self.nu / self.dx**2)
        if li is not None:
            out = li.advection(w, self.streamfunction(w), self.dx, t, halo=q)
        else:
            out = self._jacobian(Halo(self.streamfunction(w)), q)
        return (out + lap).sub_(w, alpha=self.drag).add_(c.forcing)

    def max_step_size(self, w: Tensor, courant: float = 1.0) -> float:
        """CFL limit ``courant * min(dx / max(|u| + |v|), dx^2 / (4 nu))`` of the field ``w``
        (advective and diffusive limits of an explicit step)."""
        u, v = self.velocity(w)
        speed = float((u.abs() + v.abs()).max())
        return courant * min(self.dx / max(speed, 1e-12), self.dx**2 / (4.0 * self.nu))

    def check_step_size(self, y0: Tensor, step_size: float, method: str) -> None:
        """Called by ``solve`` once: refuse an explicit step above the CFL limit of ``y0``."""
        limit = self.max_step_size(y0.detach())
        if self.interpolation is not None:
            self._check_learned_weights(y0.detach())
            self.interpolation.start_solve(method, step_size)  # weights_per="step" follows the stages
        if step_size > limit * (1.0 + 1e-9):
            raise ValueError(
                f"{self.name}: step_size={step_size:.4g} exceeds the CFL limit {limit:.4g} of the "
                f"initial field (dx / max(|u|+|v|) and dx^2 / (4 nu) at n={self.n}); pass "
                f"step_size <= {limit:.4g}, e.g. 0.5 * system.max_step_size(w0)"
            )

    def _check_learned_weights(self, w: Tensor) -> None:
        """Refuse a learned interpolation whose weights on ``w`` are not consistent."""
        li = self.interpolation
        with torch.no_grad():
            u, v = face_velocities(self.streamfunction(w), self.dx)
            wx, wy = li(w, u, v)
        if li._guard is not None:  # non-finite weights are the armed guard's to replace (its first check flags them)
            keep = torch.isfinite(wx).flatten(-3).all(-1) & torch.isfinite(wy).flatten(-3).all(-1)
            wx, wy = wx[keep], wy[keep]
        m = li.meta
        for name, wt in (("x-face", wx), ("y-face", wy)):
            check_weights(wt, m["width"], m["transverse"], m["degree"],
                          what=f"{self.name}: the interpolation's {name} weights")
