"""The spectral steppers ETDRK4 (Cox & Matthews 2002, Kassam & Trefethen 2005 coefficients)
and IFRK4, driven through the public ``attsolver.solve``.

What is checked: the contour-integral coefficients against high-precision phi-functions;
exactness on linear problems and reduction to classical RK4 when ``L = 0``; observed
temporal order 4 on Burgers and Kuramoto–Sivashinsky; agreement with RK4 on the same
semi-discrete system and with an independent NumPy/SciPy method-of-lines solution;
conservation of the mean, decay of the energy; long-time boundedness on the
Kassam–Trefethen Kuramoto–Sivashinsky problem; batches, dtypes and bad input.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import attsolver
from attsolver import solve
from attsolver.steppers import get_method
from attsolver.steppers.spectral import ETDRK4, IFRK4, etdrk4_coefficients, is_spectral_system
from attsolver.systems import Burgers, KuramotoSivashinsky, SemilinearPDE

SPECTRAL = ["etdrk4", "ifrk4"]


def _t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _smooth_burgers_ic(system: Burgers) -> torch.Tensor:
    x = system.grid()
    q = 2 * math.pi / system.length
    return torch.sin(q * x) + 0.5 * torch.cos(2 * q * x + 0.3)


# --------------------------------------------------------------------------- test systems


@dataclass(frozen=True)
class _Linear(SemilinearPDE):
    """u_t = L u with a given symbol (N = 0): the exact solution is exp(t L) mode by mode."""

    nx: int = 32
    length: float = 2 * math.pi
    nu: float = 0.1
    c: float = 0.0  # advection speed: symbol -nu k^2 - i c k (complex when c != 0)
    name = "linear_pde_test"

    def __post_init__(self):
        self._validate_grid()

    def _symbol(self, k):
        return -self.nu * k**2 if self.c == 0 else -self.nu * k**2 - 1j * self.c * k

    def _make_nonlinear(self, wavenumbers):
        return lambda t, u_hat: torch.zeros_like(u_hat)


@dataclass(frozen=True)
class _InviscidBurgers(Burgers):
    """Burgers' nonlinearity with L = 0: every exponential integrator reduces to its
    underlying explicit method, here classical RK4."""

    name = "inviscid_burgers_test"

    def _symbol(self, k):
        return torch.zeros_like(k)


# --------------------------------------------------------------------------- coefficients


def _phi_exact(z: complex, h: float):
    import mpmath

    mpmath.mp.dps = 50
    z = mpmath.mpc(z.real, z.imag)
    if z == 0:
        return [1, 1, h / 2, h / 6, h / 6, h / 6]
    e = mpmath.exp(z)
    return [e, mpmath.exp(z / 2), h * (mpmath.exp(z / 2) - 1) / z,
            h * (-4 - z + e * (4 - 3 * z + z**2)) / z**3,
            h * (2 + z + e * (z - 2)) / z**3,
            h * (-4 - 3 * z - z**2 + e * (4 - z)) / z**3]


def _rel_errors(coeffs, exact_rows):
    errs = np.zeros((len(exact_rows), 6))
    for i, ex in enumerate(exact_rows):
        for j, name in enumerate(coeffs._fields):
            got = complex(getattr(coeffs, name)[i])
            ref = complex(ex[j])
            errs[i, j] = abs(got - ref) / max(abs(ref), 1e-300)
    return errs


def test_contour_coefficients_match_high_precision_phi_functions():
    """Real symbol: the half-circle contour mean agrees with 50-digit phi-functions to
    ~1e-13 everywhere, including |z| << 1 where the direct formula cancels."""
    pytest.importorskip("mpmath")
    h = 0.25
    z = [-1e4, -300.0, -40.0, -5.0, -1.5, -1.0, -0.5, -1e-3, -1e-8, 0.0, 1e-8, 1e-3, 0.5, 1.0, 2.5, 10.0]
    coeffs = etdrk4_coefficients(h, torch.tensor(z, dtype=torch.float64) / h)
    assert coeffs.f1.dtype == torch.float64
    errs = _rel_errors(coeffs, [_phi_exact(complex(v), h) for v in z])
    assert errs.max() < 3e-13, errs.max()
    near_zero = [i for i, v in enumerate(z) if abs(v) <= 1e-3]
    assert errs[near_zero].max() < 1e-15 * 10


def test_direct_formula_cancels_near_zero():
    """Why the contour is needed: the direct f1 in double precision loses ~all digits at
    z = 1e-5 while the contour value stays accurate."""
    pytest.importorskip("mpmath")
    z = 1e-5
    direct = (-4 - z + math.exp(z) * (4 - 3 * z + z * z)) / z**3
    exact = float(_phi_exact(complex(z), 1.0)[3].real)
    contour = float(etdrk4_coefficients(1.0, torch.tensor([z], dtype=torch.float64)).f1[0])
    assert abs(direct - exact) / exact > 1e-2
    assert abs(contour - exact) / exact < 1e-15 * 10


def test_contour_coefficients_complex_symbol():
    """Complex symbol (dispersion/advection): the full circle is used and nothing is dropped."""
    pytest.importorskip("mpmath")
    z = [3j, -2 + 5j, -50 + 20j, 1e-6j, 0.4 - 0.9j]
    coeffs = etdrk4_coefficients(1.0, torch.tensor(z, dtype=torch.complex128))
    assert coeffs.f1.dtype == torch.complex128
    errs = _rel_errors(coeffs, [_phi_exact(v, 1.0) for v in z])
    assert errs.max() < 3e-13, errs.max()


# --------------------------------------------------------------------------- exact cases


@pytest.mark.parametrize("method", SPECTRAL)
@pytest.mark.parametrize("nu, c", [(0.1, 0.0), (0.1, 1.3), (0.0, 1.3)])
def test_exact_for_linear_problems_any_step(method, nu, c):
    """N = 0: both integrators reproduce u_hat(t) = exp(t L) u_hat(0) to round-off with steps
    far beyond any explicit stability limit, for a real (diffusion) and a complex
    (advection-diffusion) symbol."""
    s = _Linear(nu=nu, c=c)
    u0 = torch.exp(torch.sin(s.grid()))  # all modes present
    t = _t(0.0, 0.7, 2.0)
    lam = s.linear_symbol().to(torch.complex128)
    exact = torch.stack([torch.fft.irfft(torch.exp(float(tt) * lam) * torch.fft.rfft(u0), n=s.nx) for tt in t])
    out = solve(s, u0, t, method=method, step_size=0.35)
    torch.testing.assert_close(out, exact, rtol=0, atol=1e-13)


@pytest.mark.parametrize("method", SPECTRAL)
def test_pure_advection_is_an_exact_translation_both_ways(method):
    """u_t + c u_x = 0 has u(x, t) = u0(x - c t); exp(sin x) is band-limited to round-off on
    32 points, so the steppers reproduce the translation forward and, with t decreasing
    (negative steps), backward."""
    s = _Linear(nu=0.0, c=1.3)
    x = s.grid()
    t = _t(0.0, 0.5, 2.0)
    exact = torch.stack([torch.exp(torch.sin(x - 1.3 * float(tt))) for tt in t])
    out = solve(s, exact[0], t, method=method, step_size=0.3)
    torch.testing.assert_close(out, exact, rtol=0, atol=1e-13)
    back = solve(s, exact[-1], t.flip(0), method=method, step_size=0.3)
    torch.testing.assert_close(back, exact.flip(0), rtol=0, atol=1e-13)


@pytest.mark.parametrize("method", SPECTRAL)
def test_reduces_to_classical_rk4_when_L_is_zero(method):
    s = _InviscidBurgers(nx=32)
    u0 = 0.3 * _smooth_burgers_ic(s)
    t = torch.linspace(0, 0.2, 5, dtype=torch.float64)
    spectral = solve(s, u0, t, method=method, step_size=0.01)
    rk4 = solve(s, u0, t, method="rk4", step_size=0.01)
    torch.testing.assert_close(spectral, rk4, rtol=0, atol=1e-14)


# --------------------------------------------------------------------------- convergence


@functools.lru_cache(maxsize=None)
def _problem(name: str):
    """(system, u0, T, step sizes in the asymptotic regime, reference u(T))."""
    if name == "burgers":
        s = Burgers(nu=0.05, nx=64)
        u0, T, hs = _smooth_burgers_ic(s), 0.5, (0.5 / 40, 0.5 / 80, 0.5 / 160)
    else:
        s = KuramotoSivashinsky()  # the Kassam–Trefethen grid, nx=128 on [0, 32 pi)
        u0, T, hs = s.kassam_trefethen_initial(), 2.0, (1 / 4, 1 / 8, 1 / 16)
    ref = solve(s, u0, _t(0.0, T), method="scipy_dop853", options={"rtol": 1e-13, "atol": 1e-13})[-1]
    return s, u0, T, hs, ref


@pytest.mark.parametrize("problem", ["burgers", "kuramoto_sivashinsky"])
@pytest.mark.parametrize("method", SPECTRAL)
def test_observed_order_four(method, problem):
    """Halving the step divides the error at T by 2^4: log2(e(h)/e(h/2)) = 4 +- 0.2.
    Reference: SciPy DOP853 at rtol=atol=1e-13 on the same semi-discrete system (its error
    is below 1/100 of the smallest error measured here)."""
    s, u0, T, hs, ref = _problem(problem)
    errs = [float((solve(s, u0, _t(0.0, T), method=method, step_size=h)[-1] - ref).norm() / ref.norm())
            for h in hs]
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]
    assert all(abs(p - 4.0) < 0.2 for p in orders), (errs, orders)
    assert errs[-1] > 100 * 1e-13  # still far above the reference's accuracy


# --------------------------------------------------------------------------- agreement


def _numpy_mol_reference(nu_or_none, nx, length, u0, t_eval):
    """Independent method of lines in NumPy (no attsolver code): the 2/3-rule pseudo-spectral
    Burgers (nu given) or Kuramoto–Sivashinsky (nu None) right-hand side, integrated by
    scipy.integrate.solve_ivp (DOP853) at tight tolerances."""
    from scipy.integrate import solve_ivp

    k = 2 * np.pi / length * np.arange(nx // 2 + 1)
    keep = 3 * np.arange(nx // 2 + 1) < nx
    lin = -nu_or_none * k**2 if nu_or_none is not None else k**2 - k**4

    def rhs(_, u):
        uh = np.fft.rfft(u)
        w = np.fft.irfft(np.where(keep, uh, 0), n=nx)
        nh = np.where(keep, -0.5j * k * np.fft.rfft(w * w), 0)
        return np.fft.irfft(lin * uh + nh, n=nx)

    sol = solve_ivp(rhs, (t_eval[0], t_eval[-1]), u0, method="DOP853", t_eval=t_eval, rtol=1e-12, atol=1e-12)
    assert sol.success
    return torch.as_tensor(sol.y.T)


@pytest.mark.parametrize("problem", ["burgers", "kuramoto_sivashinsky"])
def test_spectral_rk4_and_independent_scipy_agree(problem):
    if problem == "burgers":
        s = Burgers(nu=0.02, nx=64)
        u0, t = _smooth_burgers_ic(s), torch.linspace(0, 0.3, 4, dtype=torch.float64)
        ref = _numpy_mol_reference(s.nu, s.nx, s.length, u0.numpy(), t.numpy())
        h, h_rk4 = 2.5e-4, 2.5e-4
    else:
        s = KuramotoSivashinsky(nx=64)
        u0, t = s.kassam_trefethen_initial(), torch.linspace(0, 3, 4, dtype=torch.float64)
        ref = _numpy_mol_reference(None, s.nx, s.length, u0.numpy(), t.numpy())
        h, h_rk4 = 1 / 64, 1 / 128
    scale = float(ref.abs().max())
    for method, step in (("etdrk4", h), ("ifrk4", h), ("rk4", h_rk4)):
        out = solve(s, u0, t, method=method, step_size=step)
        err = float((out - ref).abs().max()) / scale
        assert err < 2e-10, (method, err)  # measured: 3e-11 (Burgers), 3e-12 (KS)


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("method", SPECTRAL + ["rk4"])
def test_burgers_conserves_mean(method):
    """d/dt int u dx = int (-(u^2/2)_x + nu u_xx) dx = 0; the k=0 mode of L and N vanish."""
    s = Burgers(nx=128)
    u0 = s.sample_initial(4, generator=torch.Generator().manual_seed(5), abs_prob=0.5) + 0.3
    t = torch.linspace(0, 0.5, 6, dtype=torch.float64)
    step = 1e-3 if method != "rk4" else 2.5e-4  # rk4 is explicit: h |L|max < 2.8
    out = solve(s, u0, t, method=method, step_size=step)
    drift = (out.mean(-1) - u0.mean(-1)).abs().max()
    assert float(drift) < 1e-14
    assert float((out[-1] - u0).abs().max()) > 0.05  # the field itself did change


@pytest.mark.parametrize("method", SPECTRAL)
def test_burgers_energy_decays_monotonically(method):
    """E(t) = (1/2) int u^2 satisfies dE/dt = -nu int u_x^2 <= 0: E never increases along the
    numerical solution, and E(0) - E(T) matches nu int_0^T int u_x^2 (Simpson in time)."""
    from scipy.integrate import simpson

    s = Burgers()  # PDEBench-like: nu = 0.01, nx = 256 on [0, 1)
    u0 = s.sample_initial(4, generator=torch.Generator().manual_seed(3), abs_prob=0.5, window_prob=0.5)
    t = torch.linspace(0, 1, 201, dtype=torch.float64)
    u = solve(s, u0, t, method=method, step_size=2.5e-3)
    E = s.energy(u)
    assert torch.all(E[1:] - E[:-1] <= 1e-14 * E[0])
    assert torch.all(E[-1] < 0.9 * E[0])
    dissipated = s.nu * simpson(s.dissipation_integral(u).numpy(), x=t.numpy(), axis=0)
    np.testing.assert_allclose((E[0] - E[-1]).numpy(), dissipated, rtol=1e-2)


def test_kuramoto_sivashinsky_kassam_trefethen_run_stays_bounded():
    """The Kassam–Trefethen experiment: nx=128 on [0, 32 pi), u0 = cos(x/16)(1 + sin(x/16)),
    ETDRK4 with h = 1/4 to t = 150.  The solution stays finite and bounded (|u| < 5), keeps
    zero mean, becomes chaotic without decaying, and is accurate (vs h = 1/32) until chaos
    amplifies the step error."""
    s = KuramotoSivashinsky()
    u0 = s.kassam_trefethen_initial()
    t = torch.linspace(0, 150, 601, dtype=torch.float64)
    u = solve(s, u0, t, method="etdrk4", step_size=0.25)
    assert bool(torch.isfinite(u).all())
    assert float(u.abs().max()) < 5.0
    assert float(u.mean(-1).abs().max()) < 1e-13
    assert float(u[400:].std(-1).min()) > 0.5  # t >= 100: still O(1) fluctuations
    fine = solve(s, u0, t[:121], method="etdrk4", step_size=1 / 32)  # t <= 30
    rel = (u[:121] - fine).norm(dim=-1) / fine.norm(dim=-1)
    assert float(rel.max()) < 1e-4


# --------------------------------------------------------------------------- public-call usage


@pytest.mark.parametrize("method", SPECTRAL)
def test_batch_matches_single_solves(method):
    s = Burgers(nx=128)
    u0 = s.sample_initial(5, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0, 0.3, 7, dtype=torch.float64)
    out = solve(s, u0, t, method=method, step_size=5e-3)
    assert out.shape == (7, 5, 128) and out.dtype == torch.float64
    for b in (0, 3):
        single = solve(s, u0[b], t, method=method, step_size=5e-3)
        torch.testing.assert_close(out[:, b], single, rtol=0, atol=1e-13)
    torch.testing.assert_close(out[0], u0, rtol=0, atol=1e-15)  # t[0] returns the initial state
    # extra batch dimensions
    out2 = solve(s, u0.reshape(5, 1, 128), t, method=method, step_size=5e-3)
    torch.testing.assert_close(out2.reshape(7, 5, 128), out, rtol=0, atol=1e-13)


@pytest.mark.parametrize("method", SPECTRAL)
def test_step_between_output_times_and_nonuniform_grid(method):
    """Without step_size one step per interval; linspace intervals (equal up to rounding)
    share one set of coefficients, and a non-uniform t gets the right steps."""
    s = Burgers(nu=0.05, nx=64)
    u0 = _smooth_burgers_ic(s)
    t = torch.linspace(0, 0.2, 41, dtype=torch.float64)
    a = solve(s, u0, t, method=method)
    b = solve(s, u0, t, method=method, step_size=0.005)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    stepper = get_method(method).build(s, u0)
    state = stepper.to_state(u0)
    for i in range(40):
        h = float(t[i + 1] - t[i])
        state = stepper.step([t[i]] * 4, state, h)
    assert len(stepper._cache) <= 2
    t_nu = _t(0.0, 0.013, 0.05, 0.051, 0.2)
    out = solve(s, u0, t_nu, method=method, step_size=2.5e-4)
    ref = solve(s, u0, t_nu, method="scipy_dop853", options={"rtol": 1e-13, "atol": 1e-13})
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", SPECTRAL)
def test_float32(method):
    s = KuramotoSivashinsky(nx=64)
    u0 = s.kassam_trefethen_initial()
    t = torch.linspace(0, 5, 6, dtype=torch.float64)
    ref = solve(s, u0, t, method=method, step_size=0.125)
    out = solve(s, u0.float(), t.float(), method=method, step_size=0.125)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", SPECTRAL)
def test_zero_corrector_reproduces_classical_solution(method):
    s = Burgers(nu=0.05, nx=64)
    u0 = _smooth_burgers_ic(s)
    t = torch.linspace(0, 0.2, 5, dtype=torch.float64)
    plain = solve(s, u0, t, method=method, step_size=0.01)
    corrected = solve(s, u0, t, method=method, step_size=0.01,
                      corrector=lambda tn, y, dy, h: torch.zeros_like(y))
    torch.testing.assert_close(corrected, plain, rtol=0, atol=1e-14)


@pytest.mark.parametrize("method", SPECTRAL)
def test_gradients_flow_through_the_steppers(method):
    """The in-place kernels of the hot path leave autograd intact (finite-difference check)."""
    s = Burgers(nu=0.1, nx=16)
    u0 = s.sample_initial(2, generator=torch.Generator().manual_seed(1)).requires_grad_()
    t = torch.linspace(0, 0.05, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda u: solve(s, u, t, method=method, step_size=0.01), (u0,))


def test_registered_with_order_and_needs():
    assert {"etdrk4", "ifrk4"} <= set(attsolver.list_methods(kind="fixed"))
    for name, cls in (("etdrk4", ETDRK4), ("ifrk4", IFRK4)):
        spec = get_method(name)
        assert spec.order == 4 and spec.kind == "fixed" and "SemilinearPDE" in spec.needs
        stepper = spec.build(Burgers(nx=32), torch.zeros(32, dtype=torch.float64))
        assert isinstance(stepper, cls) and stepper.order == 4 and stepper.nodes == (0.0, 0.5, 0.5, 1.0)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("method", SPECTRAL)
def test_plain_function_is_refused(method):
    with pytest.raises(TypeError, match=r"SemilinearPDE.*'rk4'.*attsolver\.systems"):
        solve(lambda t, y: -y, torch.ones(32, dtype=torch.float64), _t(0.0, 1.0), method=method)


@pytest.mark.parametrize("method", SPECTRAL)
def test_wrong_last_dimension_is_refused(method):
    s = Burgers(nx=64)
    with pytest.raises(ValueError, match="nx=64"):
        solve(s, torch.zeros(2, 60, dtype=torch.float64), _t(0.0, 0.1), method=method)
    # the builder checks on its own too (it may be reached without evaluating f first)
    with pytest.raises(ValueError, match=r"y0's last dimension.*nx=64"):
        get_method(method).build(s, torch.zeros(2, 60, dtype=torch.float64))
    with pytest.raises(TypeError, match="real"):
        get_method(method).build(s, torch.zeros(64, dtype=torch.complex128))


def test_bad_system_parameters_through_make_system():
    with pytest.raises(ValueError, match="nx"):
        attsolver.systems.make_system("burgers", nx=63)
    with pytest.raises(ValueError, match="nu"):
        attsolver.systems.make_system("burgers", nu=0)


@pytest.mark.parametrize("method", SPECTRAL)
@pytest.mark.parametrize("system", [Burgers(nu=0.01, nx=64, length=1.0), KuramotoSivashinsky(nx=64)],
                         ids=["burgers", "ks"])
def test_numpy_fast_path_equals_the_torch_path_to_round_off(method, system):
    """The fast path (coefficients with the dealiasing mask and ``-ik/2`` folded in, NumPy
    FFTs) is the same ETDRK4/IFRK4 step as the torch path: a batch of 3 over 50 steps agrees
    to round-off, the fast path is what a plain float64 solve runs, and a state carrying an
    autograd graph takes the torch path (so gradients flow, checked by gradcheck above)."""
    u0 = system.sample_initial(3, generator=torch.Generator().manual_seed(2))
    h = 1e-3 if isinstance(system, Burgers) else 0.05
    fast = get_method(method).build(system, u0)
    plain = get_method(method).build(system, u0)
    plain.fast_path = False
    assert fast._use_fast(fast.to_state(u0)) and not plain._use_fast(plain.to_state(u0))
    assert not fast._use_fast(fast.to_state(u0.clone().requires_grad_()))
    ts = [torch.tensor(0.0, dtype=torch.float64)] * 4
    a, b = fast.to_state(u0), plain.to_state(u0)
    for _ in range(50):
        a, b = fast.step(ts, a, h), plain.step(ts, b, h)
    scale = b.abs().max()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-13 * float(scale))
    torch.testing.assert_close(fast.from_state(a), plain.from_state(b), rtol=0,
                               atol=1e-13 * float(u0.abs().max()))


def test_fast_path_only_for_the_declared_advection_term():
    """A subclass that replaces the nonlinear term loses the fast path (its N is not
    ``-ik/2 rfft(u^2)``), and so do float32 fields (the torch path keeps their dtype)."""

    @dataclass(frozen=True)
    class Cubic(Burgers):
        def _make_nonlinear(self, k):
            keep = (torch.arange(len(k)) < self.dealias_cutoff).to(k.dtype)

            def nonlinear(t, u_hat):
                return -torch.fft.rfft(torch.fft.irfft(u_hat * keep, n=self.nx) ** 3) * keep

            return nonlinear

    s = Cubic(nu=0.1, nx=32)
    assert s.quadratic_nonlinearity() is None
    assert not ETDRK4(s, s.sample_initial(1)).fast_path

    @dataclass(frozen=True)
    class Forced(Burgers):  # overrides the protocol's nonlinear_op itself: N + a constant forcing
        def nonlinear_op(self, dtype=torch.float64, device=None):
            base = super().nonlinear_op(dtype, device)
            force = torch.zeros(self.modes, dtype=torch.complex128)
            force[1] = 0.5 * self.nx

            def nonlinear(t, u_hat):
                return base(t, u_hat) + force.to(u_hat.dtype)

            return nonlinear

    forced = Forced(nu=0.1, nx=32)
    assert forced.quadratic_nonlinearity() is None
    u0 = forced.sample_initial(2, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0, 0.5, 6, dtype=torch.float64)
    plain = attsolver.solve(forced, u0, t, method="etdrk4", step_size=0.01)
    # the torch path (taken when y0 needs gradients) is the reference for the override
    ref = attsolver.solve(forced, u0.clone().requires_grad_(), t, method="etdrk4", step_size=0.01).detach()
    torch.testing.assert_close(plain, ref, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(plain, attsolver.solve(Burgers(nu=0.1, nx=32), u0, t, method="etdrk4",
                                                      step_size=0.01))
    b = Burgers(nu=0.1, nx=32)
    assert not ETDRK4(b, b.sample_initial(1).float()).fast_path
    assert ETDRK4(b, b.sample_initial(1)).fast_path


@pytest.mark.parametrize("kernels", ["pocketfft", "public"])
@pytest.mark.parametrize("nx", [32, 33])
def test_fast_path_ffts_equal_numpys_public_ones(nx, kernels, monkeypatch):
    """The fast path calls NumPy's pocketfft kernels directly (no Python wrapper): their
    results must be NumPy's ``rfft``/``irfft`` bit for bit, for even and odd lengths and
    batches, written into the given arrays."""
    from attsolver.steppers import spectral
    from attsolver.steppers.spectral import _real_ffts

    if kernels == "public":  # a NumPy without the private kernels: np.fft itself
        monkeypatch.setattr(spectral, "_GUFUNCS", None)
    else:
        assert spectral._gufuncs() is not None  # this NumPy has them and they passed the check
    rfft, irfft, scale = _real_ffts(nx)
    x = np.random.default_rng(3).standard_normal((4, nx))
    v = np.empty((4, nx // 2 + 1), np.complex128)
    assert rfft(x, 1.0, out=v) is v and np.array_equal(v, np.fft.rfft(x))
    u = np.empty((4, nx))
    assert irfft(v, scale, out=u) is u and np.array_equal(u, np.fft.irfft(v, nx))
    np.testing.assert_allclose(u, x, rtol=0, atol=1e-13)


@pytest.mark.parametrize("method", SPECTRAL)
def test_fast_loop_is_the_stepwise_fast_path_and_the_torch_path(method):
    """``solve``'s loop over the fast path (NumPy arrays, outputs transformed straight into
    the result) gives exactly what stepping the fast path one step at a time gives, on a
    grid with several steps per output and a shorter step in the last interval, and agrees with the
    torch path (a state carrying a graph) to round-off."""
    s = Burgers(nu=0.02, nx=64, length=1.0)
    u0 = s.sample_initial(2, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([0.0, 0.01, 0.02, 0.034], dtype=torch.float64)
    sol = solve(s, u0, t, method=method, step_size=2.5e-3)
    stepper = get_method(method).build(s, u0)
    ts = [t[0]] * 4
    v, rows = stepper.to_state(u0), [u0]
    dt = np.diff(t.numpy())
    for n, h in ((4, dt[0] / 4), (4, dt[1] / 4), (6, dt[2] / 6)):  # the last: 6 steps of 2.33e-3
        h = float(h)
        for _ in range(n):
            v = stepper.step(ts, v, h)
        rows.append(stepper.from_state(v))
    assert torch.equal(sol, torch.stack(rows))
    ref = solve(s, u0.clone().requires_grad_(), t, method=method, step_size=2.5e-3).detach()
    torch.testing.assert_close(sol, ref, rtol=0, atol=1e-12 * float(u0.abs().max()))


@pytest.mark.parametrize("method", SPECTRAL)
def test_a_corrected_solve_builds_its_stepper_without_the_fast_path(method):
    """The fast path is a constructor option, not a flag switched on a built stepper: a
    stepper built with ``fast_path=False`` runs the torch path on every step, and a solve
    with a (zero) corrector runs exactly that stepper's arithmetic, step after step."""
    s = Burgers(nu=0.02, nx=64, length=1.0)
    u0 = s.sample_initial(2, generator=torch.Generator().manual_seed(6))
    assert get_method(method).build(s, u0).fast_path
    plain = get_method(method).build(s, u0, fast_path=False)
    assert not plain.fast_path and not plain._use_fast(plain.to_state(u0))
    t = torch.tensor([0.0, 0.01, 0.02], dtype=torch.float64)
    sol = solve(s, u0, t, method=method, step_size=5e-3, corrector=lambda tt, y, dy, h: torch.zeros_like(y))
    y, rows = u0, [u0]
    for a in t[:-1].tolist():
        for k in range(2):
            t0 = torch.tensor(a + k * 5e-3, dtype=torch.float64)
            ts = [t0 + c * 5e-3 for c in plain.nodes]
            y = plain.from_state(plain.step(ts, plain.to_state(y), 5e-3))
        rows.append(y)
    assert torch.equal(sol, torch.stack(rows))


def test_is_spectral_system_is_the_protocol():
    """``is_spectral_system``: the 1-D and 2-D PDE systems and any object with the protocol's
    three members; not an ODE system, a plain function or an object missing a member."""

    class Minimal:  # a user's own class: the three members, no attsolver base class
        grid_shape = (8,)

        def linear_symbol(self, dtype=torch.float64, device=None):
            return torch.zeros(5, dtype=dtype)

        def nonlinear_op(self, dtype=torch.float64, device=None):
            return lambda t, v: torch.zeros_like(v)

    class NoGrid:
        linear_symbol = Minimal.linear_symbol
        nonlinear_op = Minimal.nonlinear_op

    assert is_spectral_system(Burgers(nx=32)) and is_spectral_system(KuramotoSivashinsky(nx=32))
    assert is_spectral_system(attsolver.systems.NavierStokes2D()) and is_spectral_system(Minimal())
    assert not any(is_spectral_system(x) for x in (attsolver.systems.Lorenz63(), lambda t, y: -y, NoGrid()))


@pytest.mark.parametrize("method", SPECTRAL)
def test_coefficients_are_computed_once_per_system_and_step(method):
    """``solve`` builds a stepper per call; the coefficients of a step are shared by the
    steppers of one system (the same arrays, not recomputed), never by another system."""
    a, b = Burgers(nu=0.01, nx=32, length=1.0), Burgers(nu=0.02, nx=32, length=1.0)
    u0 = a.sample_initial(1)
    s1, s2, s3 = (get_method(method).build(s, u0) for s in (a, a, b))
    for x, y in zip(s1._coefficients(1e-3), s2._coefficients(1e-3)):
        assert x is y
    assert all(x is y for x, y in zip(s1._fast_coefficients(1e-3), s2._fast_coefficients(1e-3)))
    other = s3._coefficients(1e-3)
    assert not torch.equal(s1._coefficients(1e-3)[0], other[0])
    assert s1._coefficients(2e-3)[0] is not s1._coefficients(1e-3)[0]
