"""2-D vorticity Navier–Stokes: the pseudo-spectral system through the 1-D/2-D spectral
steppers, and the Arakawa finite-difference baseline.

What is checked: the Taylor–Green vortex decays exactly as ``exp(-(2 nu k^2 + alpha) t)``
(its nonlinear term vanishes); spectral convergence in space (error falls faster than any
power as the grid doubles); 4th order in time for ETDRK4 / IFRK4 against a fine reference and
agreement with RK4 on the same semi-discrete system; 2nd order in space of the
finite-difference baseline; exact discrete conservation of energy and enstrophy by the
Arakawa Jacobian and their conservation in an inviscid run; the spectral cut-off restriction;
the CFL check and bad input.
"""

from __future__ import annotations

import math

import pytest
import torch

from attsolver import solve
from attsolver.systems import NavierStokes2D, NavierStokes2DFD, make_system
from attsolver.systems.grid import restrict_2d as spectral_restrict
from attsolver.systems.navier_stokes import energy_spectrum


def _t(*v):
    return torch.tensor(v, dtype=torch.float64)


def _taylor_green(system, k=2):
    x, y = system.grid()
    return 2 * k * k * torch.sin(k * x) * torch.sin(k * y)  # psi = sin(kx) sin(ky), omega = 2k^2 psi


@pytest.mark.parametrize("method", ["etdrk4", "ifrk4", "rk4"])
def test_taylor_green_decays_exactly(method):
    s = NavierStokes2D(nu=0.05, drag=0.1, forcing_amplitude=0.0, n=32)
    w0 = _taylor_green(s)
    w = solve(s, w0, _t(0.0, 1.0), method=method, step_size=0.05)[-1]
    exact = w0 * math.exp(-(2 * s.nu * 4 + s.drag) * 1.0)
    tol = 1e-12 if method != "rk4" else 1e-7  # exponential integrators are exact on it
    assert (w - exact).abs().max() < tol * w0.abs().max()


def _smooth_ic(n):
    s = NavierStokes2D(n=n)
    return s.sample_initial(1, generator=torch.Generator().manual_seed(3), peak_wavenumber=3.0)[0]


def test_spectral_convergence_in_space():
    # a resolved (viscous, moderate) flow from a band-limited start, exact on every grid
    ref_sys = NavierStokes2D(nu=0.05, n=96)
    w0 = spectral_restrict(0.5 * _smooth_ic(96), 16)

    def upsample(w, n):
        big = torch.zeros(n, n // 2 + 1, dtype=torch.complex128)
        w_hat = torch.fft.rfft2(w)
        h = w.shape[-1] // 2
        big[:h, :h] = w_hat[:h, :h]
        big[n - h + 1:, :h] = w_hat[h + 1:, :h]
        return torch.fft.irfft2(big, s=(n, n)) * (n / w.shape[-1]) ** 2

    t = _t(0.0, 1.0)
    ref = solve(ref_sys, upsample(w0, 96), t, method="etdrk4", step_size=0.01)[-1]
    errors = []
    for n in (16, 32, 64):
        s = NavierStokes2D(nu=0.05, n=n)
        w = solve(s, upsample(w0, n), t, method="etdrk4", step_size=0.01)[-1]
        errors.append(float((w - spectral_restrict(ref, n)).norm() / spectral_restrict(ref, n).norm()))
    # faster than any power of the grid spacing: the observed algebraic rate keeps growing
    rates = [math.log2(errors[0] / errors[1]), math.log2(errors[1] / errors[2])]
    assert errors[-1] < 1e-5 and rates[1] > 1.5 * rates[0] > 6, (errors, rates)


@pytest.mark.parametrize("method", ["etdrk4", "ifrk4"])
def test_fourth_order_in_time_and_agreement_with_rk4(method):
    s = NavierStokes2D(n=32)
    w0 = s.sample_initial(2, generator=torch.Generator().manual_seed(0))
    t = _t(0.0, 1.0)
    ref = solve(s, w0, t, method=method, step_size=0.0025)[-1]
    e = [float((solve(s, w0, t, method=method, step_size=h)[-1] - ref).norm() / ref.norm())
         for h in (0.04, 0.02)]
    order = math.log2(e[0] / e[1])
    assert 3.5 < order < 4.6, (e, order)
    rk4 = solve(s, w0, t, method="rk4", step_size=0.0025)[-1]
    assert float((rk4 - ref).norm() / ref.norm()) < 1e-6


def test_spectral_and_fd_agree_and_fd_is_second_order():
    w0 = _smooth_ic(128)
    t = _t(0.0, 0.5)
    ref_sys = NavierStokes2D(nu=0.02, n=128)
    ref = solve(ref_sys, w0, t, method="etdrk4", step_size=0.005)[-1]
    errors = []
    for n in (32, 64):
        fd = NavierStokes2DFD(nu=0.02, n=n)
        w = solve(fd, spectral_restrict(w0, n), t, method="rk4", step_size=0.005)[-1]
        r = spectral_restrict(ref, n)
        errors.append(float((w - r).norm() / r.norm()))
    order = math.log2(errors[0] / errors[1])
    assert 1.7 < order < 2.5, (errors, order)


def test_arakawa_invariants():
    fd = NavierStokes2DFD(n=32)
    w = fd.sample_initial(2, generator=torch.Generator().manual_seed(1))
    psi = fd.streamfunction(w)
    j = fd.jacobian(psi, w)
    scale = float(j.abs().mean() * w.abs().mean())
    # semi-discrete: sum J = sum psi J = sum w J = 0 (energy, enstrophy, circulation)
    for weight in (torch.ones_like(w), psi, w):
        assert float((weight * j).mean(dim=(-2, -1)).abs().max()) < 1e-12 * max(scale, 1.0) * 1e3
    # J is the advection: psi_x w_y - psi_y w_x to 2nd order for a smooth pair
    x, y = fd.grid()
    p, q = torch.sin(x) * torch.cos(2 * y), torch.cos(3 * x + y)
    exact = (torch.cos(x) * torch.cos(2 * y)) * (-torch.sin(3 * x + y)) \
        - (-2 * torch.sin(x) * torch.sin(2 * y)) * (-3 * torch.sin(3 * x + y))
    err = [float((NavierStokes2DFD(n=n).jacobian(*[spectral_restrict(a[None], n)[0] for a in (p, q)])
                  - spectral_restrict(exact[None], n)[0]).abs().max()) for n in (32,)]
    fine = NavierStokes2DFD(n=64)
    x2, y2 = fine.grid()
    p2, q2 = torch.sin(x2) * torch.cos(2 * y2), torch.cos(3 * x2 + y2)
    exact2 = (torch.cos(x2) * torch.cos(2 * y2)) * (-torch.sin(3 * x2 + y2)) \
        - (-2 * torch.sin(x2) * torch.sin(2 * y2)) * (-3 * torch.sin(3 * x2 + y2))
    err.append(float((fine.jacobian(p2, q2) - exact2).abs().max()))
    assert 3.5 < err[0] / err[1] < 4.5, err
    # inviscid, unforced run: energy and enstrophy conserved up to the time-stepping error
    inviscid = NavierStokes2DFD(nu=1e-12, drag=0.0, forcing_amplitude=0.0, n=32)
    sol = solve(inviscid, w, _t(0.0, 1.0), method="rk4", step_size=0.01)
    for inv in (inviscid.energy, inviscid.enstrophy):
        change = (inv(sol[-1]) - inv(sol[0])).abs() / inv(sol[0])
        assert float(change.max()) < 1e-6


def test_restriction_and_spectrum():
    s = NavierStokes2D(n=64)
    w = s.sample_initial(2, generator=torch.Generator().manual_seed(2))
    # restriction keeps a field that the coarse grid resolves unchanged
    coarse = spectral_restrict(w, 16)
    assert torch.allclose(spectral_restrict(coarse, 16), coarse)
    x, y = s.grid()
    smooth = torch.cos(3 * x - 2 * y)
    xc, yc = NavierStokes2D(n=16).grid()
    assert torch.allclose(spectral_restrict(smooth[None], 16)[0], torch.cos(3 * xc - 2 * yc), atol=1e-12)
    # the spectrum sums to the kinetic energy
    k, e = energy_spectrum(w)
    assert torch.allclose(e.sum(-1), s.energy(w), rtol=1e-10)
    u, v = s.velocity(w)
    assert torch.allclose(s.energy(w), 0.5 * (u.square() + v.square()).mean(dim=(-2, -1)), rtol=1e-10)


def test_cfl_check_and_bad_input():
    fd = NavierStokes2DFD(n=32)
    w0 = fd.sample_initial(1, generator=torch.Generator().manual_seed(0))[0]
    limit = fd.max_step_size(w0)
    with pytest.raises(ValueError, match=r"CFL limit .*step_size <="):
        solve(fd, w0, _t(0.0, 1.0), method="ssprk3", step_size=2 * limit)
    solve(fd, w0, _t(0.0, 4 * limit), method="ssprk3", step_size=0.5 * limit)
    for bad, match in (({"n": 33}, "even integer"), ({"n": 8}, "even integer"), ({"nu": 0.0}, "nu"),
                       ({"nu": -1e-3}, "nu"), ({"drag": -0.1}, "drag"),
                       ({"n": 16, "forcing_wavenumber": 6}, "forcing_wavenumber")):
        for name in ("navier_stokes_2d", "navier_stokes_2d_fd"):
            with pytest.raises(ValueError, match=match):
                make_system(name, **bad)
    s = NavierStokes2D(n=32)
    with pytest.raises(ValueError, match=r"square grid \(32, 32\)"):
        solve(s, torch.zeros(32, 16, dtype=torch.float64), _t(0.0, 0.1), method="etdrk4")
    with pytest.raises(ValueError, match="square"):
        s(torch.tensor(0.0), torch.zeros(32, 16, dtype=torch.float64))


# --------------------------------------------------------------------------- 2-D correctors


def _correctors_2d(n=16, method="etdrk4", h=0.05):
    from attsolver.correctors import AttSolverConv, NeurVecConv

    torch.manual_seed(0)
    common = dict(method=method, step_size=h, domain_length=2 * math.pi, dtype=torch.float64)
    return {
        "cnn": AttSolverConv((n, n), attention="none", width=8, depth=2, kernel_size=3, **common),
        "neurvec": NeurVecConv((n, n), width=8, kernel_size=3, **common),
        "attsolver": AttSolverConv((n, n), activation="tanh", width=8, depth=2, kernel_size=3, **common),
    }


@pytest.mark.parametrize("kind", ["cnn", "neurvec", "attsolver"])
def test_2d_correctors_are_translation_equivariant_and_grid_free(kind):
    model = _correctors_2d()[kind]
    # a non-zero head so the check is not trivial
    head = model.head if hasattr(model, "head") else model.net[-1]
    torch.nn.init.normal_(head.weight, std=0.1)
    s = NavierStokes2D(n=16)
    y = s.sample_initial(2, generator=torch.Generator().manual_seed(0))
    dy = 0.01 * s(torch.tensor(0.0), y)
    with torch.no_grad():
        c = model(None, y, dy, 0.05)
    assert c.shape == y.shape and float(c.abs().max()) > 0
    for shift in ((3, 0), (0, 5), (2, -7)):
        with torch.no_grad():
            rolled = model(None, torch.roll(y, shift, (-2, -1)), torch.roll(dy, shift, (-2, -1)), 0.05)
        torch.testing.assert_close(rolled, torch.roll(c, shift, (-2, -1)), rtol=1e-12, atol=1e-12)
    # the same parameters run on any grid (a 32^2 field) and on any batch shape
    y32 = NavierStokes2D(n=32).sample_initial(3)
    assert model(None, y32, 0 * y32, 0.05).shape == y32.shape
    assert model(None, y[None], dy[None], 0.05).shape == (1, *y.shape)
    assert model.receptive_field in (5, 7)
    # built for a 2-D system: its grid and the 2 pi square
    from attsolver.correctors import AttSolverConv

    built = AttSolverConv.for_system(NavierStokes2D(n=32), method="etdrk4", step_size=0.05)
    assert built.state_shape == (32, 32) and built.grid_spacing == pytest.approx(2 * math.pi / 32)


def test_2d_corrector_in_solve_zero_init_and_refusals():
    model = _correctors_2d()["attsolver"]
    s = NavierStokes2D(n=16)
    w0 = s.sample_initial(2, generator=torch.Generator().manual_seed(1))
    t = _t(0.0, 0.2)
    # zero-initialised head: the corrected solve reproduces the classical one (up to the
    # round-off of the FFT round trip the corrected loop makes at every step)
    torch.testing.assert_close(solve(s, w0, t, method="etdrk4", step_size=0.05, corrector=model),
                               solve(s, w0, t, method="etdrk4", step_size=0.05), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="grid spacing"):
        solve(NavierStokes2D(n=32), NavierStokes2D(n=32).sample_initial(1), t, method="etdrk4",
              step_size=0.05, corrector=model)
    with pytest.raises(ValueError, match="ssprk3|etdrk4"):
        solve(NavierStokes2DFD(n=16), w0, t, method="ssprk3", step_size=0.05, corrector=model)
