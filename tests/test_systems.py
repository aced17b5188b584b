"""The ODE benchmark systems: interface, registry round trips, and their physics —
Hamiltonian structure and energy conservation, an independent Cartesian pendulum,
the Lorenz-63 Lyapunov exponent, the Lorenz-96 fixed point, and the linear system's
closed form.  Every registered ODE system is picked up automatically (PDEs have their
own tests)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch

import attsolver
from attsolver import solve
from attsolver.systems import (
    ElasticPendulum, LinearSystem, Lorenz63, Lorenz96, SpringChain, list_systems, make_system,
)

F64 = torch.float64
# fields on a grid (1-D and 2-D PDEs) are tested in test_pde_systems.py and test_navier_stokes.py
ODE_SYSTEMS = [n for n in list_systems() if not hasattr(make_system(n), "grid_shape")]
SPECTRAL = {"etdrk4", "ifrk4"}
PLAIN_FIXED = [m for m in attsolver.list_methods(kind="fixed")
               if m not in SPECTRAL and not attsolver.get_method(m).needs]
ORDER = {m: attsolver.get_method(m).order for m in PLAIN_FIXED}


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_the_expected_systems_are_registered():
    assert {"lorenz63", "lorenz96", "spring_chain", "elastic_pendulum", "linear"} <= set(ODE_SYSTEMS)


# =========================================================================== interface


@pytest.mark.parametrize("name", ODE_SYSTEMS)
def test_state_shape_and_f_on_batches(name):
    s = make_system(name)
    assert isinstance(s.state_shape, tuple) and all(isinstance(d, int) and d > 0 for d in s.state_shape)
    assert s.dim == math.prod(s.state_shape)
    y = s.sample_initial(6, generator=_gen())
    assert y.shape == (6, *s.state_shape) and y.dtype == F64
    t = torch.tensor(0.3, dtype=F64)
    dy = s(t, y)
    assert dy.shape == y.shape and dy.dtype == F64 and bool(torch.isfinite(dy).all())
    # batch dimensions first, any number of them; each state evolves on its own
    dy3 = s(t, y.reshape(2, 3, *s.state_shape))
    torch.testing.assert_close(dy3.reshape(dy.shape), dy, rtol=1e-15, atol=0)
    for i in range(6):
        torch.testing.assert_close(s(t, y[i]), dy[i], rtol=1e-15, atol=0)
    assert s(t.float(), y.float()).dtype == torch.float32


@pytest.mark.parametrize("name", ODE_SYSTEMS)
def test_sample_initial_is_reproducible(name):
    s = make_system(name)
    a = s.sample_initial(5, generator=_gen(3))
    b = s.sample_initial(5, generator=_gen(3))
    c = s.sample_initial(5, generator=_gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert bool(torch.isfinite(a).all())
    assert s.sample_initial(2, generator=_gen(3), dtype=torch.float32).dtype == torch.float32


NON_DEFAULT = {
    "lorenz63": dict(sigma=9.0, rho=30.0, beta=2.5),
    "lorenz96": dict(N=12, F=5.5),
    "spring_chain": dict(n=3, masses=(1.0, 2.0, 0.5), stiffness=(1.0, 3.0, 2.0, 0.7)),
    "elastic_pendulum": dict(g=9.0, k=30.0, m=2.0, rest_length=0.8),
    "linear": dict(A=((0.0, 1.0, 0.0), (-1.0, 0.0, 0.5), (0.0, -0.5, -0.2))),
}


@pytest.mark.parametrize("name", ODE_SYSTEMS)
def test_config_round_trips(name):
    for s in [make_system(name)] + ([make_system(name, **NON_DEFAULT[name])] if name in NON_DEFAULT else []):
        cfg = s.config()
        assert cfg["name"] == name
        again = make_system(**cfg)
        through_json = make_system(**json.loads(json.dumps(cfg)))
        assert again == s and through_json == s
        y = s.sample_initial(3, generator=_gen())
        t = torch.tensor(0.0, dtype=F64)
        assert torch.equal(through_json(t, y), s(t, y))


def test_unknown_system_or_parameter_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown system 'lorenz64'; choose one of: .*lorenz63.*spring_chain"):
        make_system("lorenz64")
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['rh0'\]; valid: \['beta', 'rho', 'sigma'\]"):
        make_system("lorenz63", rh0=28.0)
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['mass'\]; valid:.*'masses'"):
        make_system("spring_chain", params={"mass": 1.0})


@pytest.mark.parametrize(
    "name, params, pattern",
    [
        ("spring_chain", dict(masses=-1.0), r"masses\[0\] must be a positive"),
        ("spring_chain", dict(n=3, masses=(1.0, -2.0, 1.0)), r"masses\[1\] must be a positive"),
        ("spring_chain", dict(n=3, stiffness=(1.0, 1.0, 1.0)), r"stiffness needs 4 values, got 3"),
        ("spring_chain", dict(n=3, masses=(1.0, 1.0)), r"masses needs 3 values, got 2"),
        ("spring_chain", dict(stiffness=math.nan), r"stiffness\[0\] must be a positive finite"),
        ("spring_chain", dict(n=0), r"n must be a positive integer"),
        ("lorenz96", dict(N=3), r"N must be an integer >= 4"),
        ("lorenz96", dict(N=40.0), r"N must be an integer >= 4"),
        ("lorenz63", dict(sigma=-10.0), r"sigma must be a positive"),
        ("elastic_pendulum", dict(k=-40.0), r"k must be a positive"),
        ("elastic_pendulum", dict(rest_length=0.0), r"rest_length must be a positive"),
        ("linear", dict(A=((1.0, 2.0),)), r"A must be a non-empty square matrix"),
        ("linear", dict(A=()), r"A must be a non-empty square matrix"),
    ],
)
def test_invalid_parameters_raise(name, params, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_system(name, **params)


# =========================================================================== spring chain


def test_spring_chain_is_hamiltonian():
    """y = (p, q): dq/dt = dH/dp and dp/dt = -dH/dq, with H from energy(), by autograd."""
    s = SpringChain(n=5, masses=(1.0, 2.0, 0.5, 1.5, 3.0), stiffness=(1.0, 0.3, 2.0, 1.2, 0.8, 2.5))
    y = s.sample_initial(4, generator=_gen()).requires_grad_()
    (grad,) = torch.autograd.grad(s.energy(y).sum(), y)
    dH_dp, dH_dq = grad[..., :5], grad[..., 5:]
    torch.testing.assert_close(s(torch.tensor(0.0), y.detach()), torch.cat((-dH_dq, dH_dp), -1), rtol=1e-14, atol=1e-14)


def test_spring_chain_energy_by_hand():
    s = SpringChain(n=2, masses=(2.0, 1.0), stiffness=(1.0, 3.0, 2.0))
    p1, p2, q1, q2 = 0.4, -1.0, 0.3, -0.2
    H = p1**2 / 4 + p2**2 / 2 + 0.5 * (1.0 * q1**2 + 3.0 * (q2 - q1) ** 2 + 2.0 * q2**2)
    assert float(s.energy(torch.tensor([p1, p2, q1, q2], dtype=F64))) == pytest.approx(H, rel=1e-15)


def _energy_drift_orders(system, y0, horizon, n0, method):
    hs, drift = [], []
    t = torch.tensor([0.0, horizon], dtype=F64)
    e0 = system.energy(y0)
    for k in range(4):
        h = horizon / (n0 * 2**k)
        y = solve(system, y0, t, method=method, step_size=h)[-1]
        drift.append(float((system.energy(y) - e0).abs().max()))
        hs.append(h)
    return hs, drift


@pytest.mark.parametrize("method", PLAIN_FIXED)
def test_spring_chain_energy_drift_order(method, observed_order):
    """The chain is linear, y' = M y with purely imaginary eigenvalues i w.  One RK step
    multiplies a mode's energy by |R(i w h)|^2 = 1 + O((w h)^(p+1)) for odd p but
    1 + O((w h)^(p+2)) for even p (the (w h)^(p+1) term of R is purely imaginary and drops
    out), so over a fixed horizon the drift is O(h^(p + (p even))): h^5 for RK4."""
    p = ORDER[method]
    s = SpringChain(n=5, masses=(1.0, 2.0, 0.5, 1.5, 3.0), stiffness=(1.0, 0.3, 2.0, 1.2, 0.8, 2.5))
    y0 = s.sample_initial(4, generator=_gen())
    hs, drift = _energy_drift_orders(s, y0, 10.0, 800 if p == 1 else 200, method)
    q = observed_order(hs, drift)
    expected = p + (p % 2 == 0)
    assert abs(q - expected) <= 0.3, f"{method}: energy drift order {q:.3f}, theory {expected} ({drift})"


# =========================================================================== elastic pendulum


def _polar_to_cartesian(y):
    r, th, dr, dth = y.unbind(-1)
    er = torch.stack((torch.sin(th), -torch.cos(th)), -1)  # pivot at 0, z up, theta = 0 hanging
    eth = torch.stack((torch.cos(th), torch.sin(th)), -1)
    pos = r[..., None] * er
    vel = dr[..., None] * er + (r * dth)[..., None] * eth
    return pos, vel, er, eth


def _cartesian_acceleration(p: ElasticPendulum, pos):
    """Newton in Cartesian coordinates: spring force along the rod plus gravity."""
    rho = pos.norm(dim=-1, keepdim=True)
    gravity = torch.tensor([0.0, -p.g], dtype=pos.dtype)
    return -(p.k / p.m) * (rho - p.rest_length) * pos / rho + gravity


def test_elastic_pendulum_matches_cartesian_newton():
    p = ElasticPendulum(g=9.0, k=30.0, m=2.0, rest_length=0.8)
    y = p.sample_initial(16, generator=_gen())
    y[:, 2:] = 2.0 * torch.randn(16, 2, generator=_gen(1), dtype=F64)  # sizeable velocities
    dr, dth, ddr, ddth = p(torch.tensor(0.0), y).unbind(-1)
    r = y[..., 0]
    pos, vel, er, eth = _polar_to_cartesian(y)
    # acceleration of r e_r: (r'' - r th'^2) e_r + (r th'' + 2 r' th') e_th
    acc_polar = (ddr - r * dth**2)[..., None] * er + (r * ddth + 2 * dr * dth)[..., None] * eth
    torch.testing.assert_close(acc_polar, _cartesian_acceleration(p, pos), rtol=1e-13, atol=1e-13)
    # the energy is the Cartesian one: m |v|^2 / 2 + m g z + k (|x| - L0)^2 / 2
    e_cart = 0.5 * p.m * vel.square().sum(-1) + p.m * p.g * pos[..., 1] \
        + 0.5 * p.k * (pos.norm(dim=-1) - p.rest_length) ** 2
    torch.testing.assert_close(p.energy(y), e_cart, rtol=1e-13, atol=1e-13)


def test_elastic_pendulum_trajectory_matches_cartesian_integration():
    p = ElasticPendulum()
    y0 = p.sample_initial(4, generator=_gen(2))
    pos0, vel0, _, _ = _polar_to_cartesian(y0)
    t = torch.linspace(0.0, 2.0, 5, dtype=F64)
    polar = solve(p, y0, t, step_size=1e-3)

    def cartesian(tt, u):
        return torch.cat((u[..., 2:], _cartesian_acceleration(p, u[..., :2])), -1)

    cart = solve(cartesian, torch.cat((pos0, vel0), -1), t, step_size=1e-3)
    pos, vel, _, _ = _polar_to_cartesian(polar)
    torch.testing.assert_close(pos, cart[..., :2], rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(vel, cart[..., 2:], rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("method", PLAIN_FIXED)
def test_elastic_pendulum_energy_drift_order(method, observed_order):
    """Energy is conserved by the flow, so its drift is bounded by the global error, O(h^p).
    As for the linear chain, for even p the leading h^p term is small in this weakly
    nonlinear regime and the observed slope lies between p and p + 1."""
    p = ORDER[method]
    s = ElasticPendulum()
    y0 = s.sample_initial(4, generator=_gen())
    hs, drift = _energy_drift_orders(s, y0, 2.5, 500 if p == 1 else 250, method)
    q = observed_order(hs, drift)
    assert p - 0.2 <= q <= p + 1.3, f"{method}: energy drift order {q:.3f}, theory >= {p} ({drift})"


# =========================================================================== Lorenz


def test_lorenz63_right_hand_side():
    s = Lorenz63(sigma=9.0, rho=30.0, beta=2.5)
    x, y, z = 1.5, -2.0, 20.0
    dy = s(torch.tensor(0.0), torch.tensor([x, y, z], dtype=F64)).tolist()
    assert dy == pytest.approx([9.0 * (y - x), x * (30.0 - z) - y, x * y - 2.5 * z], rel=1e-15)


def test_lorenz63_largest_lyapunov_exponent():
    """Benettin's two-trajectory method: follow a reference and a neighbour at distance d0,
    renormalise the separation every tau, average log(d / d0) / tau.  Known value 0.906."""
    s = Lorenz63()
    g = _gen(1)
    batch, d0, tau, renormalisations = 16, 1e-8, 0.5, 200
    x = s.sample_initial(batch, generator=g)
    x = solve(s, x, torch.tensor([0.0, 20.0], dtype=F64), step_size=0.01)[-1]  # onto the attractor
    u = torch.randn(batch, 3, generator=g, dtype=F64)
    u = u / u.norm(dim=-1, keepdim=True)
    span = torch.tensor([0.0, tau], dtype=F64)
    log_growth = torch.zeros(batch, dtype=F64)
    for _ in range(renormalisations):
        out = solve(s, torch.cat((x, x + d0 * u)), span, step_size=0.01)[-1]
        x, sep = out[:batch], out[batch:] - out[:batch]
        d = sep.norm(dim=-1)
        log_growth += torch.log(d / d0)
        u = sep / d[:, None]
    lam = float(log_growth.mean()) / (renormalisations * tau)
    assert abs(lam - 0.906) < 0.1, lam
    assert Lorenz63.lyapunov_exponent == pytest.approx(0.906, abs=1e-3)


def test_lorenz96_right_hand_side_and_fixed_point():
    s = Lorenz96(N=40, F=8.0)
    x = s.sample_initial(3, generator=_gen())
    n = s.N
    want = torch.stack([(x[:, (i + 1) % n] - x[:, (i - 2) % n]) * x[:, (i - 1) % n] - x[:, i] + s.F
                        for i in range(n)], -1)
    torch.testing.assert_close(s(torch.tensor(0.0), x), want, rtol=1e-14, atol=1e-14)
    # x_i = F: (F - F) F - F + F = 0, an (unstable) equilibrium
    xs = torch.full((40,), 8.0, dtype=F64)
    assert torch.equal(s(torch.tensor(0.0), xs), torch.zeros(40, dtype=F64))
    out = solve(s, xs, torch.linspace(0.0, 5.0, 6, dtype=F64), step_size=0.01)
    assert torch.equal(out, xs.expand(6, 40))


# =========================================================================== linear


def test_linear_exact_solution_satisfies_the_ode_and_matches_expm():
    A = ((-0.3, 1.0, 0.2), (-1.5, 0.1, 0.0), (0.4, -0.2, -0.5))
    s = LinearSystem(A=A)
    y0 = s.sample_initial(4, generator=_gen())
    t = torch.tensor([0.5, 0.9, 1.7, 3.0], dtype=F64)
    y = s.exact(t, y0)
    assert y.shape == (4, 4, 3) and torch.equal(y[0], y0)
    An = np.array(A)
    for i, ti in enumerate(t.tolist()):
        want = y0.numpy() @ scipy.linalg.expm((ti - 0.5) * An).T
        np.testing.assert_allclose(y[i].numpy(), want, rtol=1e-12, atol=1e-12)
    # central differences: (y(t+d) - y(t-d)) / 2d = A y(t) + O(d^2)
    d = 1e-5
    tt = torch.tensor([0.5, 1.2 - d, 1.2, 1.2 + d], dtype=F64)
    yy = s.exact(tt, y0)
    torch.testing.assert_close((yy[3] - yy[1]) / (2 * d), s(tt[2], yy[2]), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(s(tt[2], yy[2]), yy[2] @ torch.tensor(A, dtype=F64).T, rtol=1e-15, atol=0)


def test_lorenz96_is_the_ring_formula_at_every_site():
    """``x_i' = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F`` with indices mod N, written out site by
    site (the system pads the ring once instead of rolling it three times)."""
    s = attsolver.systems.Lorenz96(N=7, F=3.5)
    y = torch.randn(2, 3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    n = 7
    expected = torch.stack([(y[..., (i + 1) % n] - y[..., (i - 2) % n]) * y[..., (i - 1) % n] - y[..., i] + 3.5
                            for i in range(n)], dim=-1)
    assert torch.equal(s(torch.tensor(0.0), y), expected)
    assert torch.equal(s(torch.tensor(0.0), y),
                       (torch.roll(y, -1, -1) - torch.roll(y, 2, -1)) * torch.roll(y, 1, -1) - y + 3.5)
