"""Coarse-to-fine set-ups for learned PDE correctors (Burgers, Kuramoto–Sivashinsky).

A :class:`CoarseFineSetup` fixes one problem:

* a **fine reference**: the PDE on ``fine_nx`` points, solved with a spectral stepper
  (ETDRK4 by default) at the small step ``fine_step``;
* the **restriction** onto the coarse grid: a sharp spectral filter that keeps the Fourier
  modes ``|m| < coarse_nx / 2`` (the coarse grid's Nyquist mode is dropped) followed by
  sampling at the coarse points (every ``fine_nx / coarse_nx``-th fine point) — i.e. the
  truncated Fourier series evaluated on the coarse grid (:func:`attsolver.systems.grid.restrict`);
* a **coarse solver**: the same PDE on ``coarse_nx`` points at the step ``coarse_step``
  (typically 8–32 times ``fine_step``), started from the restricted initial field.

The corrector learns ``restrict(fine solution)(t + H) - coarse_step(restrict(...)(t))``.

Initial-condition families (``setup.families``; the first is the training family, the
others are never seen in training and make the generalisation column):

* Burgers ``"pdebench"``: PDEBench's ``init_multi`` style, sums of two random sine modes
  (wavenumbers 1..4) with random amplitude and phase, sometimes absolute-valued,
  sign-flipped or windowed (:meth:`attsolver.systems.Burgers.sample_initial`);
* Burgers ``"pulses"``: one to three periodic Gaussian pulses of random sign, height
  ``0.5..1.5`` and width ``0.04..0.1`` domain lengths (localised data, non-zero mean);
* KS ``"attractor"``: random low-mode fields integrated for ``spin_up`` time units, so
  they start on the chaotic attractor;
* KS ``"kt"``: the Kassam–Trefethen field ``cos(x/16)(1 + sin(x/16))`` (scaled to the
  domain), randomly shifted and scaled by ``0.5..1.5``, *not* spun up (the transient).

Viscosities: :func:`burgers_setup` takes ``nu`` (the coefficient of ``u_xx``) or, with
``pdebench_nu``, PDEBench's ``Nu`` (``nu = Nu / pi``, the convention of PDEBench's files,
see :mod:`attsolver.data.pdebench`).  :data:`BURGERS_PDEBENCH_NU` lists the values the
benchmark uses, two decades (PDEBench ships files for each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._validate import nonnegative_number, positive_finite, positive_int, whole_multiple
from .._version import __version__
from ..integrate import solve
from ..systems import Burgers, KuramotoSivashinsky
from ..systems.grid import check_grid_points, restrict
from ..systems.pde import MIN_NX, SemilinearPDE
from .dataset import TrajectoryDataset
from .noise import add_noise

__all__ = ["CoarseFineSetup", "burgers_setup", "ks_setup", "BURGERS_PDEBENCH_NU", "FAMILIES"]

#: PDEBench ``Nu`` values of the benchmark: ``nu = Nu / pi`` spans two decades.
BURGERS_PDEBENCH_NU = (0.001, 0.01, 0.1)

#: initial-condition families per equation; the first one is used for training.
FAMILIES = {"burgers": ("pdebench", "pulses"), "kuramoto_sivashinsky": ("attractor", "kt")}


# --------------------------------------------------------------------------- helpers


def _whole_multiple(big: float, small: float) -> int | None:
    return whole_multiple(big / small, 1e-9)


# --------------------------------------------------------------------------- the set-up


@dataclass(frozen=True)
class CoarseFineSetup:
    """A fine reference, its restriction to a coarse grid, and the coarse solver.

    Attributes:
        equation: ``"burgers"`` or ``"kuramoto_sivashinsky"``.
        nu: Burgers viscosity (the coefficient of ``u_xx``), ``None`` for KS.
        length: domain period.
        fine_nx, coarse_nx: grid points (even, >= 16; ``coarse_nx`` divides ``fine_nx``).
        fine_step, coarse_step: solver steps; ``dt`` must be a whole multiple of both.
        dt: interval of the stored trajectories (the training data's time step).
        method: spectral stepper of both solvers (``"etdrk4"`` or ``"ifrk4"``).
        spin_up: time integrated and dropped before ``t = 0`` for the ``"attractor"`` family.
    """

    equation: str
    nu: float | None
    length: float
    fine_nx: int
    coarse_nx: int
    fine_step: float
    coarse_step: float
    dt: float
    method: str = "etdrk4"
    spin_up: float = 0.0

    def __post_init__(self) -> None:
        if self.equation not in FAMILIES:
            raise ValueError(f"equation must be one of {sorted(FAMILIES)}, got {self.equation!r}")
        if self.equation == "burgers":
            nu = positive_finite("nu", self.nu, why=" (the Burgers viscosity)", type_error=False)
            object.__setattr__(self, "nu", nu)
        elif self.nu is not None:
            raise ValueError("nu is a Burgers parameter; leave it None for kuramoto_sivashinsky")
        length = positive_finite("length", self.length, why=" (the domain period)", type_error=False)
        object.__setattr__(self, "length", length)
        fine = check_grid_points("fine_nx", self.fine_nx)
        coarse = check_grid_points("coarse_nx", self.coarse_nx)
        if coarse >= fine or fine % coarse:
            raise ValueError(
                f"coarse_nx ({coarse}) must be smaller than fine_nx ({fine}) and divide it (the coarse "
                f"points are every k-th fine point); e.g. coarse_nx={fine // 16 if fine >= 16 * MIN_NX else fine // 2}"
            )
        object.__setattr__(self, "fine_nx", fine)
        object.__setattr__(self, "coarse_nx", coarse)
        for name in ("fine_step", "coarse_step", "dt"):
            object.__setattr__(self, name, positive_finite(name, getattr(self, name), type_error=False))
        for name in ("fine_step", "coarse_step"):
            if _whole_multiple(self.dt, getattr(self, name)) is None:
                raise ValueError(f"dt ({self.dt:g}) must be a whole multiple of {name} ({getattr(self, name):g})")
        if self.coarse_step < self.fine_step:
            raise ValueError(f"coarse_step ({self.coarse_step:g}) is smaller than fine_step ({self.fine_step:g})")
        if self.method not in ("etdrk4", "ifrk4"):
            raise ValueError(f"method must be a spectral stepper ('etdrk4' or 'ifrk4'), got {self.method!r}")
        nonnegative_number("spin_up", self.spin_up, type_error=False)

    # ------------------------------------------------------------------ systems

    @property
    def families(self) -> tuple[str, ...]:
        """Initial-condition families; ``families[0]`` is the training family."""
        return FAMILIES[self.equation]

    @property
    def step_ratio(self) -> float:
        """``coarse_step / fine_step``."""
        return self.coarse_step / self.fine_step

    def system_on(self, nx: int) -> SemilinearPDE:
        """The PDE on ``nx`` points (same domain and parameters)."""
        if self.equation == "burgers":
            return Burgers(nu=self.nu, nx=nx, length=self.length)
        return KuramotoSivashinsky(nx=nx, length=self.length)

    def fine_system(self) -> SemilinearPDE:
        return self.system_on(self.fine_nx)

    def coarse_system(self) -> SemilinearPDE:
        return self.system_on(self.coarse_nx)

    def label(self) -> str:
        """Short name, e.g. ``"burgers_Nu0.01"`` (PDEBench's ``Nu = pi nu``) or ``"ks"``."""
        if self.equation == "burgers":
            return f"burgers_Nu{math.pi * self.nu:.3g}"
        return "ks"

    def config(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    # ------------------------------------------------------------------ initial conditions

    def initial_conditions(self, n: int, family: str | None = None, *, seed: int = 0,
                           dtype: torch.dtype = torch.float64) -> Tensor:
        """``n`` initial fields of ``family`` on the *fine* grid, ``[n, fine_nx]`` (seeded)."""
        family = self.families[0] if family is None else family
        if family not in self.families:
            raise ValueError(f"unknown family {family!r} for {self.equation}; choose one of {self.families}")
        positive_int("n", n, type_error=False)
        g = torch.Generator().manual_seed(int(seed))
        fine = self.fine_system()
        x = fine.grid(torch.float64)
        if family == "pdebench":
            return fine.sample_initial(n, generator=g, dtype=dtype)
        if family == "pulses":
            k = torch.randint(1, 4, (n, 1), generator=g)
            centre = self.length * torch.rand(n, 3, generator=g, dtype=torch.float64)
            width = self.length * (0.04 + 0.06 * torch.rand(n, 3, generator=g, dtype=torch.float64))
            sign = torch.where(torch.rand(n, 3, generator=g) < 0.5, -1.0, 1.0).double()
            height = sign * (0.5 + torch.rand(n, 3, generator=g, dtype=torch.float64))
            height = torch.where(torch.arange(3) < k, height, torch.zeros_like(height))
            d = torch.remainder(x - centre[:, :, None] + self.length / 2, self.length) - self.length / 2
            u = (height[:, :, None] * torch.exp(-0.5 * (d / width[:, :, None]).square())).sum(1)
            return u.to(dtype)
        if family == "kt":
            shift = self.length * torch.rand(n, 1, generator=g, dtype=torch.float64)
            amp = 0.5 + torch.rand(n, 1, generator=g, dtype=torch.float64)
            s = (2.0 * math.pi / self.length) * (x - shift)
            return (amp * torch.cos(s) * (1.0 + torch.sin(s))).to(dtype)
        # "attractor": random low modes, spun up on the fine grid
        u0 = fine.sample_initial(n, generator=g, dtype=dtype)
        if self.spin_up > 0:
            t = torch.tensor([0.0, self.spin_up], dtype=torch.float64)
            with torch.no_grad():
                u0 = solve(fine, u0, t, method=self.method, step_size=self.fine_step)[-1]
        return u0

    # ------------------------------------------------------------------ solves

    def fine_reference(self, u0_fine: Tensor, t: Tensor, *, batch_size: int = 64) -> Tensor:
        """Solve on the fine grid and restrict: ``[n, len(t), coarse_nx]`` (``u0_fine [n, fine_nx]``)."""
        fine = self.fine_system()
        out = []
        with torch.no_grad():
            for s in range(0, u0_fine.shape[0], batch_size):
                sol = solve(fine, u0_fine[s:s + batch_size], t, method=self.method, step_size=self.fine_step)
                out.append(restrict(sol, self.coarse_nx).transpose(0, 1))
        return torch.cat(out)

    def coarse_solve(self, u0: Tensor, t: Tensor, *, corrector=None, nx: int | None = None,
                     step_size: float | None = None, check_finite: bool = True) -> Tensor:
        """The coarse (or any other grid's) solver from ``u0 [..., nx]``: ``[len(t), ..., nx]``.

        ``nx`` defaults to ``u0``'s length, ``step_size`` to ``coarse_step``.
        """
        system = self.system_on(u0.shape[-1] if nx is None else nx)
        return solve(system, u0, t, method=self.method,
                     step_size=self.coarse_step if step_size is None else step_size,
                     corrector=corrector, options={"check_finite": check_finite})

    def generate(self, n: int, t_final: float, *, family: str | None = None, seed: int = 0,
                 noise_level: float = 0.0, dtype: torch.dtype = torch.float64,
                 noise_scale: Tensor | None = None) -> TrajectoryDataset:
        """Reference trajectories on the coarse grid, every ``dt`` from 0 to ``t_final``.

        Args:
            n: trajectories.
            t_final: a whole multiple of ``dt``.
            family: initial-condition family (default the training family).
            seed: seeds the initial conditions and the noise.
            noise_level: relative observation noise (``attsolver.data.add_noise``).
            noise_scale: per-point spread ``s`` for the noise (default this set's own).

        Returns:
            A :class:`~attsolver.data.TrajectoryDataset` of the *coarse* system (its config
            rebuilds ``Burgers(nu, nx=coarse_nx)`` / KS), ``x`` the coarse grid, ``y_clean``
            the clean values when noisy; ``config`` records this set-up.
        """
        t_final = positive_finite("t_final", t_final, type_error=False)
        steps = _whole_multiple(t_final, self.dt)
        if steps is None:
            raise ValueError(f"t_final ({t_final:g}) must be a whole multiple of dt ({self.dt:g})")
        family = self.families[0] if family is None else family
        t = torch.arange(steps + 1, dtype=torch.float64) * self.dt
        u0 = self.initial_conditions(n, family, seed=seed)
        y_clean = self.fine_reference(u0, t).to(dtype)
        y = y_clean
        if noise_level > 0:
            g = torch.Generator().manual_seed(int(seed) + 7919)
            y = add_noise(y_clean, noise_level, generator=g, scale=noise_scale)
        coarse = self.coarse_system()
        return TrajectoryDataset(
            t=t, y=y, y_clean=y_clean if noise_level > 0 else None, x=coarse.grid(dtype),
            system=coarse.config(), noise_level=noise_level,
            config={"source": "attsolver.data.coarse_fine", "setup": self.config(), "family": family, "n": n,
                    "seed": int(seed), "t_final": t_final, "restriction": "sharp spectral cutoff |m| < coarse_nx/2",
                    "attsolver_version": __version__},
        )


# --------------------------------------------------------------------------- presets


def burgers_setup(nu: float | None = None, *, pdebench_nu: float | None = None, fine_nx: int = 1024,
                  coarse_nx: int = 64, coarse_step: float = 0.01, step_ratio: int = 32, dt: float | None = None,
                  length: float = 1.0, method: str = "etdrk4") -> CoarseFineSetup:
    """Burgers on ``[0, length)``: fine 1024 points at ``coarse_step / 32``, coarse 64 points
    at ``coarse_step = 0.01`` (PDEBench's frame interval), stored every ``dt = coarse_step``.

    Give the viscosity as ``nu`` (coefficient of ``u_xx``) or as PDEBench's ``pdebench_nu``
    (``nu = Nu / pi``), not both.

    Checked on 8 PDEBench-style fields to t = 1, restricted to 64 points, against 4096 points
    at h = 2.5e-5: the 1024-point reference at h = 2.4e-4 is within nRMSE 2e-5 at Nu = 0.001
    (and 1e-8 at Nu = 0.003), far below the coarse solver's error.
    """
    if (nu is None) == (pdebench_nu is None):
        raise ValueError("give the viscosity as nu=... or as PDEBench's pdebench_nu=... (nu = Nu/pi), exactly one")
    if pdebench_nu is not None:
        nu = positive_finite("pdebench_nu", pdebench_nu, why=" (PDEBench's Nu)", type_error=False) / math.pi
    positive_int("step_ratio", step_ratio, type_error=False)
    coarse_step = positive_finite("coarse_step", coarse_step, type_error=False)
    return CoarseFineSetup("burgers", nu, length, fine_nx, coarse_nx, coarse_step / step_ratio, coarse_step,
                           coarse_step if dt is None else dt, method)


def ks_setup(*, fine_nx: int = 512, coarse_nx: int = 64, coarse_step: float = 0.25, step_ratio: int = 8,
             dt: float | None = None, length: float = 32.0 * math.pi, spin_up: float = 100.0,
             method: str = "etdrk4") -> CoarseFineSetup:
    """Kuramoto–Sivashinsky on Kassam & Trefethen's domain ``[0, 32 pi)``: fine 512 points at
    ``h = 1/32``, coarse 64 points at ``h = 1/4`` (their step).  64 points leave only the modes
    ``k < 1.33`` after dealiasing, so the coarse solver misses the dissipation range: the
    correction acts as a closure.  (512 points agree with 1024 at h = 1/64 to nRMSE 1e-6 at
    t = 10 on the coarse grid.)"""
    coarse_step = positive_finite("coarse_step", coarse_step, type_error=False)
    positive_int("step_ratio", step_ratio, type_error=False)
    return CoarseFineSetup("kuramoto_sivashinsky", None, length, fine_nx, coarse_nx, coarse_step / step_ratio,
                           coarse_step, coarse_step if dt is None else dt, method, spin_up)
