"""Kolmogorov flow: which ingredient of the coarse finite-volume host caps the learned
interpolation (oracle experiments; 32^2 at Re = 500, 64^2 at Re = 1000).

Every learned-interpolation build lands at 0.8-1.0 halvings of the grid whatever its size,
data or training length.  The learned part only chooses the vorticity's face values; the host
also has face velocities (the streamfunction averaged to the cell corners with a fixed 4-point
mean), a 5-point Poisson solve, a 5-point viscous Laplacian and a time step.  This suite takes
the flux-form 32^2 host (the untrained learned interpolation: centred 2-point face values) and
replaces one ingredient at a time by a more accurate one, then several together:

* ``interp=centred4``: the 4-point (4th-order) face value of the vorticity;
* ``corners=lagrange16``: the streamfunction interpolated to the corners with the 4x4 tensor
  Lagrange stencil (4th order) instead of the 4-point mean;
* ``corners=spectral``: the streamfunction at the corners by exact Fourier interpolation (the
  face velocity, a difference of corner values along the face, is then the exact face average
  of the velocity of that streamfunction; the discrete divergence stays zero);
* ``poisson=spectral``: ``psi_hat = omega_hat / |k|^2`` instead of the 5-point inverse;
* ``laplacian=spectral`` (or ``fd4``): the viscous term's Laplacian;
* ``dt/4``: a quarter of the step.

Each variant is rolled out from the benchmark's held-out initial conditions (the same cache and
reference as ``attsolver bench kolmogorov``), its t95 (mean vorticity correlation with the
reference on the common 32^2 grid, full band and |k| <= 10) measured, and placed on the FD ladder
(32 ... 128, re-run here) with the bench's own :func:`attsolver.evaluate.ladder.place_on_ladder`:
the equivalent grid in halvings over 32^2, bootstrap 5-95 % over the initial conditions.  No
timing: this is about accuracy only.

    attsolver bench kolmogorov_oracle --cache out/kfresh_cache --test-seed 91000 \\
        --model out/kfresh_cache/li_re500_f_32x3_e12_h4l1_step_seed91500.pt --out benchmarks/results/kolmogorov_oracle

(the cache and the model of ``attsolver bench kolmogorov --kinds li --no-exponax --li-weights-per step
--li-hidden 4 --li-layers 1 --li-train 32 --test-seed 91000 --train-seed 91500 --cache out/kfresh_cache``).
``--regime re1000`` runs the same on the 64² base of Kochkov's Re = 1000 (the bench's cached 16-IC test
set, FD ladder 64-256, the Galerkin rows on 64² and 96²), e.g. with the linear map of the levers:

    attsolver bench kolmogorov_oracle --regime re1000 --cache out/re1000_cache --model \
        out/re1000_cache/li_re1000_f_16x2_e48_h4l1_step_es4e1r12v8x4.pt --out benchmarks/results/kolmogorov_oracle_re1000
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attsolver import solve
from attsolver.systems import NavierStokes2DFD
from attsolver.systems import learned_interpolation as li_module
from attsolver.systems.learned_interpolation import base_weights, flux_advection, stencil
from attsolver.systems.navier_stokes import _wavenumbers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks import kolmogorov as k  # noqa: E402
from benchmarks._suite import Run, parser, write_report  # noqa: E402

SCHEMA = 1


def _spectral_shift(a: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """``a`` at ``(x + sx dx, y + sy dx)`` by Fourier interpolation (Nyquist modes dropped)."""
    n = a.shape[-1]
    ky, kx = _wavenumbers(n)
    phase = torch.exp(1j * 2 * math.pi / n * (kx * sx + ky * sy))
    phase = torch.where((kx.abs() == n // 2) | (ky.abs() == n // 2), torch.zeros_like(phase), phase)
    return torch.fft.irfft2(torch.fft.rfft2(a) * phase.to(a.device, torch.complex64 if a.dtype == torch.float32
                                                          else torch.complex128), s=(n, n))


def _roll(a: torch.Tensor, di: int, dj: int) -> torch.Tensor:
    return torch.roll(a, shifts=(-dj, -di), dims=(-2, -1))


def _lagrange16(psi: torch.Tensor) -> torch.Tensor:
    """``psi`` at the corners ``(i + 1/2, j + 1/2)``: the 4x4 tensor Lagrange midpoint stencil."""
    taps = {-1: -1 / 16, 0: 9 / 16, 1: 9 / 16, 2: -1 / 16}
    along_x = sum(c * _roll(psi, o, 0) for o, c in taps.items())
    return sum(c * _roll(along_x, 0, o) for o, c in taps.items())


@dataclass(frozen=True)
class OracleFD(NavierStokes2DFD):
    """The flux-form FD host with ingredients swapped (module docstring); the defaults are the
    untrained learned interpolation's host exactly."""

    interp: str = "centred2"
    corners: str = "mean4"
    poisson: str = "fd5"
    lap: str = "fd5"
    galerkin: int = 0  # > 0: the whole right-hand side pseudo-spectral, the product on this grid
    name = "navier_stokes_2d_fd_oracle"

    def _psi(self, w: torch.Tensor) -> torch.Tensor:
        if self.poisson == "fd5":
            return self.streamfunction(w)
        ky, kx = _wavenumbers(self.n)
        k2 = kx.square() + ky.square()
        inv = torch.where(k2 > 0, 1.0 / k2.clamp_min(1e-30), torch.zeros_like(k2)).to(w.device, w.dtype)
        return torch.fft.irfft2(torch.fft.rfft2(w) * inv, s=(self.n, self.n))

    def _corners(self, psi: torch.Tensor) -> torch.Tensor:
        if self.corners == "mean4":
            return 0.25 * (psi + _roll(psi, 1, 0) + _roll(psi, 0, 1) + _roll(psi, 1, 1))
        if self.corners == "lagrange16":
            return _lagrange16(psi)
        return _spectral_shift(psi, 0.5, 0.5)

    def _laplacian(self, w: torch.Tensor) -> torch.Tensor:
        if self.lap == "fd5":
            return self.laplacian(w)
        if self.lap == "fd4":
            out = 0.0
            for d in ((1, 0), (0, 1)):
                p1, m1 = _roll(w, *d), _roll(w, -d[0], -d[1])
                p2, m2 = _roll(w, 2 * d[0], 2 * d[1]), _roll(w, -2 * d[0], -2 * d[1])
                out = out + (-p2 + 16 * p1 - 30 * w + 16 * m1 - m2) / 12.0
            return out / self.dx**2
        ky, kx = _wavenumbers(self.n)
        k2 = (kx.square() + ky.square()).to(w.device, w.dtype)
        return torch.fft.irfft2(-k2 * torch.fft.rfft2(w), s=(self.n, self.n))

    def _face_velocities(self, psi_fd: torch.Tensor, dx: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Face velocities from the 5-point streamfunction, with this oracle's Poisson solve and
        corner interpolation (the trained model's rows swap this in for its own)."""
        psi = psi_fd
        if self.poisson != "fd5":  # undo the 5-point inverse, apply the exact one
            ky, kx = _wavenumbers(self.n)
            lam_fd = (4.0 / dx**2) * (torch.sin(kx * dx / 2).square() + torch.sin(ky * dx / 2).square())
            k2 = kx.square() + ky.square()
            ratio = torch.where(k2 > 0, lam_fd / k2.clamp_min(1e-30), torch.zeros_like(k2)).to(psi.device, psi.dtype)
            psi = torch.fft.irfft2(torch.fft.rfft2(psi_fd) * ratio, s=(self.n, self.n))
        corner = self._corners(psi)
        return (corner - _roll(corner, 0, -1)) / dx, -(corner - _roll(corner, -1, 0)) / dx

    def _galerkin(self, w: torch.Tensor) -> torch.Tensor:
        """``-div(u omega)`` of the resolved field, pseudo-spectral, the product on a
        ``galerkin``^2 grid (48 for n = 32: alias-free, every mode of |m| < n/2 kept; n: aliased)."""
        n, m = self.n, self.galerkin
        ky, kx = _wavenumbers(n)
        keep = ((kx.abs() < n // 2) & (ky.abs() < n // 2)).to(torch.float64)
        k2 = kx.square() + ky.square()
        cdt = torch.complex64 if w.dtype == torch.float32 else torch.complex128
        wh = torch.fft.rfft2(w) * keep.to(w.device, w.dtype)
        ph = wh * torch.where(k2 > 0, 1.0 / k2.clamp_min(1e-30), torch.zeros_like(k2)).to(w.device, w.dtype)
        iky, ikx = (1j * ky).to(w.device, cdt), (1j * kx).to(w.device, cdt)
        fields = torch.stack([iky * ph, -ikx * ph, wh], dim=-3)
        rows = list(range(n // 2)) + list(range(m - n // 2 + 1, m))
        src = list(range(n // 2)) + list(range(n // 2 + 1, n))
        big = torch.zeros(*fields.shape[:-2], m, m // 2 + 1, dtype=cdt, device=w.device)
        big[..., rows, :n // 2] = fields[..., src, :n // 2]
        uvw = torch.fft.irfft2(big, s=(m, m)) * (m / n) ** 2
        prod = torch.fft.rfft2(uvw[..., :2, :, :] * uvw[..., 2:, :, :]) * (n / m) ** 2
        small = torch.zeros(*prod.shape[:-2], n, n // 2 + 1, dtype=cdt, device=w.device)
        small[..., src, :n // 2] = prod[..., rows, :n // 2]
        return torch.fft.irfft2(-(ikx * small[..., 0, :, :] + iky * small[..., 1, :, :]), s=(n, n))

    def __call__(self, t, w):
        c = self._constants(w.dtype, w.device)
        if self.galerkin:
            adv = self._galerkin(w)
            return (adv + self.nu * self._laplacian(w)).sub_(w, alpha=self.drag).add_(c.forcing)
        if self.interpolation is not None:  # a trained model with this oracle's face velocities
            saved = li_module.face_velocities
            li_module.face_velocities = self._face_velocities
            try:
                adv = self.interpolation.advection(w, self.streamfunction(w), self.dx, t)
            finally:
                li_module.face_velocities = saved
            return (adv + self.nu * self._laplacian(w)).sub_(w, alpha=self.drag).add_(c.forcing)
        u, v = self._face_velocities(self.streamfunction(w), self.dx)
        if self.interp == "spectral":  # the exact (Fourier) face values of the vorticity
            fx, fy = u * _spectral_shift(w, 0.5, 0.0), v * _spectral_shift(w, 0.0, 0.5)
            adv = ((_roll(fx, -1, 0) - fx) + (_roll(fy, 0, -1) - fy)) * (1.0 / self.dx)
            return (adv + self.nu * self._laplacian(w)).sub_(w, alpha=self.drag).add_(c.forcing)
        width = 2 if self.interp == "centred2" else 4
        cells = stencil(width, 1)
        wts = base_weights(self.interp, width, 1).to(w.device, w.dtype)[:, None, None]
        wts = wts.expand(len(cells), self.n, self.n)
        adv = flux_advection(w, u, v, wts, wts, cells, self.dx)
        return (adv + self.nu * self._laplacian(w)).sub_(w, alpha=self.drag).add_(c.forcing)


def variants(n: int) -> list[tuple[str, dict[str, Any] | None, int]]:
    """(name, OracleFD options, step divisor) for the base grid ``n``; None options: the Arakawa FD
    host itself (at n = 32 the names are those of the first, Re = 500 run)."""
    return [
        (f"arakawa (fd-{n})", None, 1),
        ("flux, centred2 (untrained LI host)", {}, 1),
        ("interp centred4", {"interp": "centred4"}, 1),
        ("corners lagrange16", {"corners": "lagrange16"}, 1),
        ("corners spectral", {"corners": "spectral"}, 1),
        ("poisson spectral", {"poisson": "spectral"}, 1),
        ("velocity exact (poisson + corners spectral)", {"poisson": "spectral", "corners": "spectral"}, 1),
        ("laplacian fd4", {"lap": "fd4"}, 1),
        ("laplacian spectral", {"lap": "spectral"}, 1),
        ("dt / 4", {}, 4),
        ("velocity exact + centred4", {"poisson": "spectral", "corners": "spectral", "interp": "centred4"}, 1),
        ("velocity exact + laplacian spectral", {"poisson": "spectral", "corners": "spectral", "lap": "spectral"}, 1),
        ("all: velocity exact + centred4 + laplacian spectral + dt/4",
         {"poisson": "spectral", "corners": "spectral", "interp": "centred4", "lap": "spectral"}, 4),
        ("corners lagrange16 + centred4", {"corners": "lagrange16", "interp": "centred4"}, 1),
        ("interp spectral", {"interp": "spectral"}, 1),
        ("interp spectral + velocity exact + laplacian spectral",
         {"interp": "spectral", "poisson": "spectral", "corners": "spectral", "lap": "spectral"}, 1),
        (f"pseudo-spectral, aliased (product on {n}²)", {"galerkin": n, "lap": "spectral"}, 1),
        (f"Galerkin: pseudo-spectral, alias-free (product on {3 * n // 2}²), every mode below {n // 2} kept",
         {"galerkin": 3 * n // 2, "lap": "spectral"}, 1),
        ("trained LI", {"model": 1}, 1),
        ("trained LI + velocity exact", {"model": 1, "poisson": "spectral", "corners": "spectral"}, 1),
        ("trained LI + laplacian spectral", {"model": 1, "lap": "spectral"}, 1),
        ("trained LI + dt/4", {"model": 1}, 4),
    ]


def rollout(system, method: str, w0: torch.Tensor, t: torch.Tensor, dt: float) -> torch.Tensor:
    with torch.no_grad():
        return solve(system, w0, t, method=method, step_size=dt, options={"check_finite": False}).transpose(0, 1)


def equivalent(scores: dict[str, Any], t: np.ndarray, ladder: list[int], names: list[str], n_boot: int
               ) -> dict[str, Any]:
    """Per band and variant: the equivalent FD grid, halvings, bootstrap 5-95 % over the ICs."""
    placed = k.placements(scores, t, {"fd": [(f"fd-{n}", n) for n in ladder]}, names, n_boot)
    return {band: by_ladder["fd"] for band, by_ladder in placed.items()}


def to_markdown(r: dict[str, Any]) -> str:
    st = r["setup"]
    n, dt = st.get("coarse_n", 32), st.get("dt", 0.025)  # the first (Re = 500) run did not record them
    L = [f"# Kolmogorov flow: what caps the {n}² learned interpolation (oracle ingredients)", "",
         f"Command: `{r['command']}` ({r['date']}; load {r['machine']['load_start'][0]:.1f} at the start, "
         f"{r['machine']['load_end'][0]:.1f} at the end; {r['wall_time_s']:.0f} s).", "",
         f"Re = {1 / r['setup']['physics']['nu']:.0f}; {r['setup']['n_test']} held-out initial conditions (test seed "
         f"{r['setup']['test_seed']}), horizon {r['setup']['t_eval']:g}, the benchmark's {st.get('ref_n', 128)}² reference; "
         f"every variant is the {n}² flux-form host (the untrained learned interpolation's) with the named "
         f"ingredient replaced, stepped by SSP-RK3 at dt = {dt:g} (÷ 4 where named), float32. Equivalent grid: "
         "t95 placed on the FD ladder " + ", ".join(map(str, r["setup"]["fd_ladder"])) + " (re-run here) by "
         f"`place_on_ladder`, halvings over {n}², bootstrap 5–95 % over the initial conditions (≤: below the "
         "ladder's coarsest rung).", "",
         "| variant | t95 full | halvings full [5, 95] | t95 \\|k\\|≤10 | halvings \\|k\\|≤10 [5, 95] |",
         "|---|---|---|---|---|"]
    for name in r["variants"]:
        s, e = r["scores"][name], r["equivalent"]
        cells = []
        for band in ("full", "k10"):
            m = "≤" if e[band][name]["how"] == "below" else ""
            cells += [f"{s['t95'][band]:.2f}", f"{m}{e[band][name]['halvings']:.2f} "
                      f"[{e[band][name]['h_5_95'][0]:.2f}, {e[band][name]['h_5_95'][1]:.2f}]"]
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    L += ["", "FD ladder t95 (full band): " + ", ".join(f"{n}²: {r['scores'][f'fd-{n}']['t95']['full']:.2f}"
                                                        for n in r["setup"]["fd_ladder"]) + "."]
    if r.get("notes"):
        L += ["", "## Notes", ""] + [f"- {x}" for x in r["notes"]]
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = parser("kolmogorov_oracle", __doc__.split("\n\n")[0], out="out/bench-kolmogorov-oracle")
    ap.add_argument("--regime", choices=sorted(k.PROTOCOL), default="re500",
                    help="re500 (32² base, the default) or re1000 (64² base): the bench's regimes and test sets")
    ap.add_argument("--cache", default="out/kolmogorov_cache", help="the Kolmogorov bench's data cache")
    ap.add_argument("--test-seed", type=int, default=k.TEST_SEED)
    ap.add_argument("--n-test", type=int, default=16, help="test initial conditions (the bench's cached set)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--only", nargs="*", default=None, help="run only these variants (by name), plus the ladder")
    ap.add_argument("--model", default=None, help="a trained learned interpolation's state dict (the bench's "
                    "li_*.pt): its rows swap the oracle ingredients into it")
    ap.add_argument("--model-hidden", type=int, default=4)
    ap.add_argument("--model-layers", type=int, default=1)
    ap.add_argument("--model-weights-per", default="step")
    ap.add_argument("--model-stencil", default="4x1", metavar="WxT", help="the model's stencil (the bench's --li-stencil)")
    ap.add_argument("--model-base", default="centred2", choices=("centred2", "centred4"),
                    help="the model's base scheme (the bench's --li-base)")
    args = ap.parse_args(argv)
    try:
        k.li_stencil(SimpleNamespace(li_stencil=args.model_stencil, li_base=args.model_base))
    except ValueError as e:
        ap.error(str(e).replace("--li-stencil", "--model-stencil"))
    if args.n_test < 2:
        ap.error(f"--n-test must be >= 2 (the bootstrap resamples initial conditions), got {args.n_test}")
    run = Run("kolmogorov_oracle", argv, schema=SCHEMA)
    with k.regime(args.regime):
        report = _run(args, run)
        write_report(args.out, "kolmogorov_oracle", report, to_markdown)
    run.log(f"wrote {Path(args.out) / 'kolmogorov_oracle.md'}")
    return 0


def _run(args, run) -> dict[str, Any]:
    """The ladder and every variant on the regime's cached test set (inside :func:`k.regime`)."""
    setting = k.PROTOCOL[args.regime]  # the bench's own test set (frames, spin-up) and FD ladder
    args.t_eval, args.frame, args.t_spin = 8.0, setting["frame"], setting["t_spin"]
    n0 = k.COARSE_N
    test = k.versioned_h5(Path(args.cache), f"test_{args.regime}_f_{args.n_test}_t{args.t_eval:g}_f{args.frame:g}"
                          f"{k._seed_tag(args.test_seed, k.TEST_SEED)}", lambda: k.make_trajectories(
                              args.n_test, args.test_seed, args.t_eval, args.frame, args.t_spin, run.log), run.log)
    t, t_np = test.t, test.t.numpy()
    ref = test.y.to(k.DTYPE)
    ref0 = k.spectral_restrict(ref, n0)
    ladder = setting["fd_ladder"]
    scores: dict[str, Any] = {}
    for n in ladder:
        t0 = time.perf_counter()
        pred = rollout(k.system_for("fd", n), "ssprk3", k.spectral_restrict(ref[:, 0], n), t, k.dt_for(n))
        scores[f"fd-{n}"] = k.score(k.spectral_restrict(pred, n0), ref0, t_np, [])
        run.log(f"fd-{n}: t95 {scores[f'fd-{n}']['t95']['full']:.2f} ({time.perf_counter() - t0:.0f}s)")
    chosen = [v for v in variants(n0) if (args.only is None or v[0] in args.only)
              and (args.model is not None or "model" not in (v[1] or {}))]
    host = None
    if args.model:  # the trained learned interpolation (its build: the arguments below)
        stencil = k.li_stencil(SimpleNamespace(li_stencil=args.model_stencil, li_base=args.model_base))
        host = k.build_learned_interpolation(args.model_hidden, args.model_layers, args.model_weights_per, **stencil)
        host.interpolation.load_state_dict(torch.load(args.model, weights_only=True))
    w0 = ref0[:, 0]
    for name, opts, div in chosen:
        t0 = time.perf_counter()
        if opts is not None and "model" in opts:
            opts = {**{kk: vv for kk, vv in opts.items() if kk != "model"}, "interpolation": host.interpolation}
        system = k.system_for("fd", n0) if opts is None else OracleFD(n=n0, **k.PHYSICS, **opts)
        scores[name] = k.score(rollout(system, "ssprk3", w0, t, k.DT32 / div), ref0, t_np, [])
        run.log(f"{name}: t95 {scores[name]['t95']['full']:.2f}, k10 {scores[name]['t95']['k10']:.2f} "
                f"({time.perf_counter() - t0:.0f}s)")
    names = [v[0] for v in chosen]
    report = run.report(setup={"regime": args.regime, "physics": k.PHYSICS, "coarse_n": n0, "ref_n": k.REF_N,
                               "dt": k.DT32, "model": args.model, "n_test": args.n_test, "t_eval": args.t_eval,
                               "test_seed": args.test_seed, "fd_ladder": ladder, "n_boot": args.n_boot},
                        variants=names, scores={n: {kk: vv for kk, vv in s.items() if kk != "corr"}
                                                for n, s in scores.items()},
                        equivalent=equivalent(scores, t_np, ladder, names, args.n_boot))
    run.stamp(report, complete=True)
    return report


if __name__ == "__main__":
    raise SystemExit(main())
