"""The periodic semilinear PDE systems (Burgers, Kuramoto–Sivashinsky): the semi-discrete
right-hand side, its dealiasing, its invariants, the initial-condition samplers and input
validation.  The time steppers are tested in ``test_spectral.py``."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
import torch

import attsolver
from attsolver.systems import Burgers, KuramotoSivashinsky, SemilinearPDE, make_system

T0 = torch.tensor(0.0, dtype=torch.float64)
SYSTEMS = [Burgers(nu=0.03, nx=64), KuramotoSivashinsky(nx=64)]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rough_field(system: SemilinearPDE, n: int = 3, seed: int = 0) -> torch.Tensor:
    """A field with energy in every mode, including those the 2/3 rule removes."""
    return torch.randn(n, system.nx, generator=_gen(seed), dtype=torch.float64)


# --------------------------------------------------------------------------- grid & operators


@pytest.mark.parametrize("system", SYSTEMS, ids=lambda s: s.name)
def test_grid_wavenumbers_and_symbol(system):
    x = system.grid()
    assert x.shape == (system.nx,) and x[0] == 0 and math.isclose(float(x[1]), system.length / system.nx)
    k = system.wavenumbers()
    assert k.shape == (system.nx // 2 + 1,)
    torch.testing.assert_close(k, 2 * math.pi / system.length * torch.arange(system.nx // 2 + 1, dtype=torch.float64))
    lam = system.linear_symbol()
    expected = -system.nu * k**2 if isinstance(system, Burgers) else k**2 - k**4
    torch.testing.assert_close(lam, expected, rtol=1e-15, atol=0)
    assert system.linear_symbol(torch.float32).dtype == torch.float32
    # the cache hands back the same tensor: the hot path does not rebuild constants
    assert system.linear_symbol() is lam


@pytest.mark.parametrize("nx", [16, 48, 64, 256])
def test_dealias_mask_two_thirds_rule(nx):
    s = Burgers(nx=nx)
    mask = s.dealias_mask()
    m = torch.arange(nx // 2 + 1)
    assert mask.dtype == torch.bool and mask.shape == (nx // 2 + 1,)
    assert torch.equal(mask, 3 * m < nx)
    # the product of two kept fields aliases (m -> m - nx) only onto removed modes
    kmax = int(m[mask].max())
    assert nx - 2 * kmax > kmax


@pytest.mark.parametrize("system", SYSTEMS, ids=lambda s: s.name)
def test_linear_part_of_rhs_is_the_symbol(system):
    """For a tiny field the quadratic term is negligible: f(u) ~ L u, mode by mode."""
    eps = 1e-9
    x = system.grid()
    q = 2 * math.pi / system.length
    u = eps * torch.cos(3 * q * x)
    lam3 = float(system.linear_symbol()[3])
    torch.testing.assert_close(system(T0, u), lam3 * u, rtol=0, atol=1e-16)


def test_burgers_nonlinear_term_of_a_sine():
    """N(sin(qx)) = -(1/2) d/dx sin^2(qx) = -(q/2) sin(2qx); add viscosity -nu q^2 sin(qx)."""
    s = Burgers(nu=0.07, nx=32, length=2.0)
    x = s.grid()
    q = 2 * math.pi / s.length
    u = torch.sin(q * x)
    expected = -0.5 * q * torch.sin(2 * q * x) - s.nu * q**2 * u
    torch.testing.assert_close(s(T0, u), expected, rtol=0, atol=1e-13)


def test_ks_rhs_of_a_cosine():
    """u = cos(qx): u_xx = -q^2 u, u_xxxx = q^4 u, u u_x = -(q/2) sin(2qx)."""
    s = KuramotoSivashinsky(nx=32)
    x = s.grid()
    q = 2 * math.pi / s.length
    u = torch.cos(q * x)
    expected = 0.5 * q * torch.sin(2 * q * x) + (q**2 - q**4) * u
    torch.testing.assert_close(s(T0, u), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("nx", [16, 48, 64])
def test_nonlinear_term_is_alias_free(nx):
    """N_hat equals the exact -(1/2)(P u)^2_x truncated to the kept modes, where the exact
    product is formed on a 4x finer grid (no aliasing there), for a field with energy in
    all modes: both truncations of the 2/3 rule are in place."""
    s = Burgers(nx=nx)
    u = _rough_field(s, 2)
    u_hat = torch.fft.rfft(u)
    mask = s.dealias_mask()
    got = s.nonlinear_hat(T0, u_hat)

    fine = 4 * nx
    p_hat = torch.where(mask, u_hat, 0)
    # the same Fourier series sampled on the fine grid (rfft normalisation scales by n)
    v = torch.fft.irfft(p_hat, n=fine) * (fine / nx)
    prod_hat = torch.fft.rfft(v * v)[..., : nx // 2 + 1] * (nx / fine)
    k = s.wavenumbers()
    expected = torch.where(mask, -0.5j * k * prod_hat, 0)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert torch.all(got[..., ~mask] == 0)


@pytest.mark.parametrize("system", SYSTEMS, ids=lambda s: s.name)
def test_rhs_matches_fourier_form_and_keeps_dtype(system):
    """f(u) = irfft(L u_hat + N_hat(u_hat)): the explicit and spectral methods see one system."""
    u = _rough_field(system)
    u_hat = torch.fft.rfft(u)
    expected = torch.fft.irfft(system.linear_symbol() * u_hat + system.nonlinear_hat(T0, u_hat), n=system.nx)
    torch.testing.assert_close(system(T0, u), expected, rtol=0, atol=1e-12)
    u32 = u.float()
    out32 = system(T0.float(), u32)
    assert out32.dtype == torch.float32 and out32.shape == u32.shape
    torch.testing.assert_close(out32.double(), expected, rtol=1e-4, atol=1e-3 * float(expected.abs().max()))


@pytest.mark.parametrize("system", SYSTEMS, ids=lambda s: s.name)
def test_nonlinear_term_conserves_mean_and_energy(system):
    """int N(u) dx = 0 (conservative form) and int u N(u) dx = int (u^3/3)_x dx = 0; with the
    2/3 rule both hold exactly for the discrete system, for any field."""
    u = _rough_field(system)
    u_hat = torch.fft.rfft(u)
    n = torch.fft.irfft(system.nonlinear_hat(T0, u_hat), n=system.nx)
    scale = float(n.abs().max())
    assert torch.all(n.mean(-1).abs() < 1e-15 * scale * system.nx)
    assert torch.all((u * n).sum(-1).abs() < 1e-13 * scale * float(u.abs().max()) * system.nx)


def test_burgers_energy_identity_instantaneous():
    """For the semi-discrete Burgers system d/dt (1/2) int u^2 = <u, f(u)> = -nu int u_x^2."""
    s = Burgers()
    u = s.sample_initial(5, generator=_gen(1))
    power = (s.length / s.nx) * (u * s(T0, u)).sum(-1)
    torch.testing.assert_close(power, -s.nu * s.dissipation_integral(u), rtol=1e-12, atol=1e-15)
    assert torch.all(power <= 0)


# --------------------------------------------------------------------------- initial conditions


def test_burgers_sampler_pdebench_style():
    s = Burgers()
    u = s.sample_initial(200, generator=_gen(0), abs_prob=0.0, window_prob=0.0)
    assert u.shape == (200, s.nx) and u.dtype == torch.float64
    # sum of two sines with amplitudes < 1: |u| < 2, zero mean, modes 1..4 only, two per field
    assert float(u.abs().max()) < 2.0
    assert float(u.mean(-1).abs().max()) < 1e-14
    spec = torch.fft.rfft(u).abs() / s.nx
    assert float(spec[:, 0].max()) < 1e-14 and float(spec[:, 5:].max()) < 1e-14
    assert torch.all((spec[:, 1:5] > 1e-12).sum(-1) == 2)  # two distinct wavenumbers
    # reproducible with a seeded generator
    assert torch.all(u == s.sample_initial(200, generator=_gen(0), abs_prob=0.0, window_prob=0.0))
    # modifications: abs makes a field non-negative, the window makes it vanish at the ends
    ua = s.sample_initial(50, generator=_gen(2), abs_prob=1.0, flip_prob=0.0, window_prob=0.0)
    assert float(ua.min()) >= 0
    uw = s.sample_initial(50, generator=_gen(3), abs_prob=0.0, window_prob=1.0)
    assert float(uw[:, :5].abs().max()) < 1e-3 and float(uw[:, -5:].abs().max()) < 1e-3
    u32 = s.sample_initial(2, generator=_gen(0), dtype=torch.float32)
    assert u32.dtype == torch.float32


def test_ks_initial_conditions():
    s = KuramotoSivashinsky()
    assert (s.nx, s.length) == (128, 32 * math.pi)
    x = s.grid()
    torch.testing.assert_close(s.kassam_trefethen_initial(), torch.cos(x / 16) * (1 + torch.sin(x / 16)))
    u = s.sample_initial(400, generator=_gen(0))
    assert u.shape == (400, 128)
    assert float(u.mean(-1).abs().max()) < 1e-14
    spec = torch.fft.rfft(u).abs()
    assert float(spec[:, 9:].max()) < 1e-12  # modes 1..8 only
    ms = u.square().mean()
    assert 0.8 < float(ms) < 1.2  # expected mean square 1


# --------------------------------------------------------------------------- validation & plumbing


@pytest.mark.parametrize("kwargs, param", [
    ({"nx": 255}, "nx"), ({"nx": 8}, "nx"), ({"nx": 14}, "nx"), ({"nx": 64.0}, "nx"),
    ({"nx": True}, "nx"), ({"nu": 0.0}, "nu"), ({"nu": -0.01}, "nu"), ({"nu": float("nan")}, "nu"),
    ({"length": 0.0}, "length"), ({"length": -1.0}, "length"), ({"length": float("inf")}, "length"),
])
def test_burgers_bad_parameters(kwargs, param):
    with pytest.raises(ValueError, match=param):
        Burgers(**kwargs)


@pytest.mark.parametrize("kwargs, param", [({"nx": 127}, "nx"), ({"nx": 4}, "nx"), ({"length": -2.0}, "length")])
def test_ks_bad_parameters(kwargs, param):
    with pytest.raises(ValueError, match=param):
        KuramotoSivashinsky(**kwargs)


def test_nx_message_says_why():
    with pytest.raises(ValueError, match="dealiasing"):
        Burgers(nx=10)


def test_wrong_field_shape_and_dtype():
    s = Burgers(nx=64)
    with pytest.raises(ValueError, match="nx=64"):
        s(T0, torch.zeros(3, 65, dtype=torch.float64))
    with pytest.raises(TypeError, match="real"):
        s(T0, torch.zeros(64, dtype=torch.complex128))


def test_registry_config_roundtrip_and_pickle():
    for s in (Burgers(nu=0.02, nx=128, length=2.0), KuramotoSivashinsky(nx=64)):
        cfg = s.config()
        assert cfg["params"]["nx"] == s.nx and "_cache" not in cfg["params"]
        s2 = make_system(**cfg)
        assert s2 == s
        s(T0, torch.zeros(s.nx, dtype=torch.float64))  # fill the cache with closures
        s3 = pickle.loads(pickle.dumps(s))
        u = _rough_field(s)
        torch.testing.assert_close(s3(T0, u), s(T0, u), rtol=0, atol=0)
        torch.testing.assert_close(copy.deepcopy(s)(T0, u), s(T0, u), rtol=0, atol=0)
    assert isinstance(Burgers(nx=np.int64(64)).nx, int)
    assert "burgers" in attsolver.systems.list_systems() and "kuramoto_sivashinsky" in attsolver.systems.list_systems()
