"""``attsolver.solve``: convergence order, agreement with torchdiffeq, the contract of
DESIGN.md (shapes, direction, autograd, dtypes), the corrector hook, input validation and
non-finite detection.

Every fixed-step method that takes a plain ``f(t, y)`` is tested through the registry, so
a newly registered method is picked up automatically.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchdiffeq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attsolver
from attsolver import NonFiniteSolutionError, solve
from attsolver.steppers import TABLEAUS
from attsolver.steppers.base import Stepper
from attsolver.systems import LinearSystem, Lorenz63

F64 = torch.float64
SPECTRAL = {"etdrk4", "ifrk4"}  # need a semilinear PDE system, not a plain f
PLAIN_FIXED = [m for m in attsolver.list_methods(kind="fixed")
               if m not in SPECTRAL and not attsolver.get_method(m).needs]
ADAPTIVE = attsolver.list_methods(kind="adaptive")
ORDER = {m: attsolver.get_method(m).order for m in PLAIN_FIXED}

LINEAR = LinearSystem()  # y' = A y, eigenvalues -0.1 +- 2i, exact() is expm
LORENZ = Lorenz63()


def _t(*values, dtype=F64):
    return torch.tensor(values, dtype=dtype)


def _y0_linear(*batch, dtype=F64):
    g = torch.Generator().manual_seed(123)
    return torch.randn(*batch, 2, generator=g, dtype=F64).to(dtype)


def stability_polynomial(name: str, z: float) -> float:
    """R(z) = 1 + z b^T (I - z A)^{-1} 1: one step of the method on y' = lambda y, z = lambda h."""
    tab = TABLEAUS[name]
    s = tab.stages
    A = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        A[i, : len(row)] = row
    return 1.0 + z * float(np.array(tab.b) @ np.linalg.solve(np.eye(s) - z * A, np.ones(s)))


# =========================================================================== convergence


@pytest.mark.parametrize("method", PLAIN_FIXED)
def test_convergence_order_linear_against_exact(method, observed_order):
    """Global error at the output times vs the analytic expm solution ~ C h^p."""
    p = ORDER[method]
    y0 = _y0_linear(3)
    t = torch.linspace(0.0, 4.0, 9, dtype=F64)
    exact = LINEAR.exact(t, y0)
    n0 = 256 if p == 1 else 32  # steps over [0, 4] at the coarsest level: asymptotic regime
    hs, errs = [], []
    for k in range(4):  # three halvings
        h = 4.0 / (n0 * 2**k)
        errs.append(float((solve(LINEAR, y0, t, method=method, step_size=h) - exact).abs().max()))
        hs.append(h)
    q = observed_order(hs, errs)
    assert abs(q - p) <= 0.2, f"{method}: observed order {q:.3f}, theory {p} (errors {errs})"


@pytest.fixture(scope="module")
def lorenz_reference():
    y0 = torch.tensor([[-8.0, 7.0, 27.0], [1.0, 1.0, 20.0]], dtype=F64)
    t = torch.linspace(0.0, 1.0, 11, dtype=F64)
    ref = solve(LORENZ, y0, t, method="scipy_dop853", options={"rtol": 1e-13, "atol": 1e-13})
    return y0, t, ref


@pytest.mark.parametrize("method", PLAIN_FIXED)
def test_convergence_order_lorenz_against_dop853(method, lorenz_reference, observed_order):
    """Nonlinear problem: Lorenz-63 over one time unit vs SciPy DOP853 at rtol=atol=1e-13."""
    p = ORDER[method]
    y0, t, ref = lorenz_reference
    n0 = 1600 if p == 1 else 200
    hs, errs = [], []
    for k in range(4):
        h = 1.0 / (n0 * 2**k)
        errs.append(float((solve(LORENZ, y0, t, method=method, step_size=h) - ref).abs().max()))
        hs.append(h)
    q = observed_order(hs, errs)
    assert abs(q - p) <= 0.2, f"{method}: observed order {q:.3f}, theory {p} (errors {errs})"


def test_dopri8_reaches_its_tolerance_at_dense_outputs(lorenz_reference):
    """torchdiffeq's dopri8 interpolant alone misses rtol=1e-10 by orders of magnitude."""
    y0, t, ref = lorenz_reference
    for m in ("dopri5", "dopri8"):
        sol = solve(LORENZ, y0, t, method=m, options={"rtol": 1e-10, "atol": 1e-10})
        assert float((sol - ref).abs().max()) < 1e-7, m


def test_stage_times_across_chunk_boundaries():
    """A non-autonomous f over > 1024 steps (the stage-time chunk) and several intervals
    agrees with the Butcher formula evaluated step by step."""
    def f(t, y):
        return torch.cos(5.0 * t) * y + torch.sin(t)

    tab = TABLEAUS["rk4"]
    t = _t(0.0, 7.0, 13.0, 13.001)
    y0 = _t(0.3, -0.2)
    got = solve(f, y0, t, method="rk4", step_size=0.005)
    y, out = y0, [y0]
    for ta, tb in zip(t[:-1].tolist(), t[1:].tolist()):
        n = max(1, math.ceil((tb - ta) / 0.005 - 1e-9))
        h = (tb - ta) / n
        for k in range(n):
            t0 = ta + k * h
            ks = []
            for i in range(tab.stages):
                yi = y + h * sum((a * kj for a, kj in zip(tab.a[i], ks)), torch.zeros_like(y))
                ks.append(f(torch.tensor(t0 + tab.c[i] * h, dtype=F64), yi))
            y = y + h * sum(b * ki for b, ki in zip(tab.b, ks))
        out.append(y)
    torch.testing.assert_close(got, torch.stack(out), rtol=1e-12, atol=1e-12)


# =========================================================================== torchdiffeq


def _forced_lorenz(t, y):
    """Batched, non-autonomous: wrong stage times would show."""
    return LORENZ(t, y) + 5.0 * torch.sin(3.0 * t)


SHAPES = [(3,), (5, 3), (2, 4, 3)]


def _lorenz_y0(shape):
    g = torch.Generator().manual_seed(7)
    n = math.prod(shape[:-1])
    return LORENZ.sample_initial(n, generator=g).reshape(shape)


@pytest.mark.parametrize("direction", [1.0, -1.0])
@pytest.mark.parametrize("step_size", [None, 0.01])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("ours, theirs", [("euler", "euler"), ("rk38", "rk4"),
                                          ("midpoint", "midpoint"), ("heun", "heun2")])
def test_fixed_step_matches_torchdiffeq(ours, theirs, shape, step_size, direction):
    """Same f / y0 / t in both libraries.  torchdiffeq's "rk4" is Kutta's 3/8 rule."""
    y0 = _lorenz_y0(shape)
    t = direction * torch.linspace(0.0, 0.3, 7, dtype=F64)  # intervals of 0.05: 5 steps of 0.01
    mine = solve(_forced_lorenz, y0, t, method=ours, step_size=step_size)
    opts = None if step_size is None else {"step_size": step_size}
    ref = torchdiffeq.odeint(_forced_lorenz, y0, t, method=theirs, options=opts)
    assert mine.shape == ref.shape == (len(t), *shape)
    torch.testing.assert_close(mine, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("options", [None, {"rtol": 1e-5, "atol": 1e-7}])
def test_dopri5_is_torchdiffeq_dopri5(shape, options):
    y0 = _lorenz_y0(shape)
    t = torch.linspace(0.0, 0.5, 6, dtype=F64)
    mine = solve(_forced_lorenz, y0, t, method="dopri5", options=options)
    kw = {} if options is None else dict(options)
    ref = torchdiffeq.odeint(_forced_lorenz, y0, t, method="dopri5", **kw)
    assert torch.equal(mine, ref)


# =========================================================================== contract


@pytest.mark.parametrize("method", PLAIN_FIXED)
def test_backward_is_forward_of_the_reversed_system(method):
    """Integrating t decreasing is integrating s = -t forward for g(s, y) = -f(-s, y)."""
    def f(t, y):
        return torch.cos(2.0 * t) * LINEAR(t, y) + 0.1 * t

    y0 = _y0_linear(4)
    t = -torch.tensor([0.0, 0.35, 0.9, 1.0], dtype=F64) + 2.0  # decreasing
    back = solve(f, y0, t, method=method, step_size=0.05)
    fwd = solve(lambda s, y: -f(-s, y), y0, -t, method=method, step_size=0.05)
    torch.testing.assert_close(back, fwd, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("method", PLAIN_FIXED)
def test_forward_then_backward_returns_to_y0(method, observed_order):
    """The round-trip error is the method's: for y' = A y it is R(z)R(-z) - 1 per step,
    O(z^(p+2)) for even p (the z^(p+1) terms cancel) and O(z^(p+1)) for odd p, so the
    round trip converges with order p + (p even)."""
    p = ORDER[method]
    y0 = _y0_linear()
    hs, errs = [], []
    for k in range(4):
        n = 20 * 2**k
        t = torch.linspace(0.0, 1.0, n + 1, dtype=F64)
        there = solve(LINEAR, y0, t, method=method)
        back = solve(LINEAR, there[-1], t.flip(0), method=method)
        assert torch.equal(back[0], there[-1])  # starts from where the forward solve ended
        errs.append(float((back[-1] - y0).abs().max()))
        hs.append(1.0 / n)
        assert torch.allclose(back[-1], y0, atol=2.0 / n**p), f"{method}: round trip off by {errs[-1]}"
    q = observed_order(hs, errs)
    assert abs(q - (p + (p % 2 == 0))) <= 0.2, f"{method}: round-trip order {q:.3f}"


def test_backward_matches_exact_solution():
    yT = _y0_linear(2)
    t = torch.linspace(3.0, 0.0, 7, dtype=F64)
    torch.testing.assert_close(solve(LINEAR, yT, t, step_size=0.01), LINEAR.exact(t, yT), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("method", PLAIN_FIXED)
def test_no_grad_builds_no_graph(method):
    net = torch.nn.Linear(2, 2).double()
    y0 = _y0_linear(3).requires_grad_()
    with torch.no_grad():
        sol = solve(lambda t, y: net(y), y0, _t(0.0, 0.5, 1.0), method=method, step_size=0.1)
    assert not sol.requires_grad and sol.grad_fn is None
    # ... while with grad enabled the graph is there
    assert solve(lambda t, y: net(y), y0, _t(0.0, 0.5), method=method).requires_grad


class _TinyField(torch.nn.Module):
    """f(t, y) = tanh(W y + b) + 0.5 sin(t): an nn.Module right-hand side with parameters."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lin = torch.nn.Linear(2, 2, dtype=F64)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(2, 2, generator=g, dtype=F64))
            self.lin.bias.copy_(torch.randn(2, generator=g, dtype=F64))

    def forward(self, t, y):
        return torch.tanh(self.lin(y)) + 0.5 * torch.sin(t)


@pytest.mark.parametrize("method", PLAIN_FIXED)
def test_gradients_through_the_steps_match_finite_differences(method):
    net = _TinyField()
    t = _t(0.0, 0.25, 0.6)  # 0.35 is not a multiple of 0.1: substeps of 0.0875
    y0 = _y0_linear(2).requires_grad_()

    def final_state(y):
        return solve(net, y, t, method=method, step_size=0.1)[-1]

    assert torch.autograd.gradcheck(final_state, (y0,), eps=1e-6, atol=1e-8, rtol=1e-6)

    names = [n for n, _ in net.named_parameters()]

    def final_state_of_params(*params):
        field = lambda tt, y: torch.func.functional_call(net, dict(zip(names, params)), (tt, y))
        return solve(field, y0.detach(), t, method=method, step_size=0.1)[-1]

    params = tuple(p.detach().clone().requires_grad_() for p in net.parameters())
    assert torch.autograd.gradcheck(final_state_of_params, params, eps=1e-6, atol=1e-8, rtol=1e-6)

    # and .backward() fills the module's own .grad with the same numbers
    loss = solve(net, y0.detach(), t, method=method, step_size=0.1)[-1].square().sum()
    loss.backward()
    want = torch.autograd.grad(final_state_of_params(*params).square().sum(), params)
    for p, w in zip(net.parameters(), want):
        torch.testing.assert_close(p.grad, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", PLAIN_FIXED)
def test_step_size_not_dividing_the_intervals_hits_the_output_times(method):
    """Each interval is split into ceil(|dt| / step_size) equal steps, so the outputs are
    solver states at exactly t (same as solving on the refined grid)."""
    y0 = _y0_linear(3)
    t = _t(0.0, 0.3, 0.7, 1.0, 1.55)
    step = 0.07
    sol = solve(LINEAR, y0, t, method=method, step_size=step)
    n = [math.ceil(d / step) for d in np.diff(t.numpy())]
    assert n == [5, 6, 5, 8]
    fine = torch.cat([torch.linspace(float(a), float(b), k + 1, dtype=F64)[:-1]
                      for a, b, k in zip(t[:-1], t[1:], n)] + [t[-1:]])
    idx = np.concatenate(([0], np.cumsum(n)))
    on_fine_grid = solve(LINEAR, y0, fine, method=method)[idx]
    torch.testing.assert_close(sol, on_fine_grid, rtol=1e-13, atol=1e-13)
    p = ORDER[method]
    err = float((sol - LINEAR.exact(t, y0)).abs().max())
    assert err < 3.0 * (2.0 * step) ** p, f"{method}: error {err} at h={step}"


@pytest.mark.parametrize("method", [m for m in PLAIN_FIXED if m in TABLEAUS])
def test_number_of_evaluations_is_stages_times_steps(method):
    calls = []

    def f(t, y):
        calls.append(float(t))
        return -y

    solve(f, _t(1.0), _t(0.0, 0.3, 1.0), method=method, step_size=0.1)
    # one validation call, then 3 + 7 steps of `stages` evaluations
    assert len(calls) == 1 + TABLEAUS[method].stages * 10


@pytest.mark.parametrize("method", PLAIN_FIXED + ADAPTIVE)
def test_single_time_returns_y0(method):
    y0 = _y0_linear(4, 1)
    out = solve(LINEAR, y0, _t(0.5), method=method)
    assert out.shape == (1, 4, 1, 2) and torch.equal(out[0], y0)


@pytest.mark.parametrize("method", PLAIN_FIXED)
def test_single_time_still_validates_step_size(method):
    with pytest.raises(ValueError, match="step_size"):
        solve(LINEAR, _y0_linear(), _t(0.5), method=method, step_size=-1.0)


@pytest.mark.parametrize("t_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", PLAIN_FIXED + ADAPTIVE)
def test_float32_stays_float32(method, t_dtype):
    y0 = _y0_linear(3, dtype=torch.float32)
    t = torch.linspace(0.0, 1.0, 5, dtype=t_dtype)
    step = 0.01 if method in PLAIN_FIXED else None
    sol = solve(LINEAR, y0, t, method=method, step_size=step)
    assert sol.dtype == torch.float32 and sol.shape == (5, 3, 2)
    ref = solve(LINEAR, y0.double(), t.double(), method=method, step_size=step)
    torch.testing.assert_close(sol.double(), ref, rtol=1e-5, atol=1e-5)


# =========================================================================== corrector


class CountingZero(torch.nn.Module):
    """A corrector that adds nothing and records its arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, t, y, dy, h):
        self.calls.append((float(t), h, y.detach().clone(), dy.detach().clone()))
        return torch.zeros_like(y)


@pytest.mark.parametrize("method", PLAIN_FIXED)
def test_corrector_called_once_per_step_with_the_classical_increment(method):
    corr = CountingZero()
    y0 = _y0_linear(3)
    t = _t(0.0, 0.3, 1.0)
    sol = solve(LINEAR, y0, t, method=method, step_size=0.1, corrector=corr)
    assert len(corr.calls) == 3 + 7
    starts = [0.1 * k for k in range(3)] + [0.3 + 0.1 * k for k in range(7)]
    np.testing.assert_allclose([c[0] for c in corr.calls], starts, atol=1e-14)
    np.testing.assert_allclose([c[1] for c in corr.calls], [0.1] * 10, rtol=1e-12)
    assert all(isinstance(c[1], float) for c in corr.calls)
    # dy is the classical increment from the y passed with it
    for n, (tn, h, y, dy) in enumerate(corr.calls):
        one = solve(LINEAR, y, _t(tn, tn + h), method=method)[-1]
        torch.testing.assert_close(y + dy, one, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(corr.calls[3][2], sol[1], rtol=0, atol=0)  # the state at t=0.3


@pytest.mark.parametrize("direction", [1.0, -1.0])
@pytest.mark.parametrize("method", PLAIN_FIXED)
def test_zero_corrector_is_bitwise_the_classical_solution(method, direction):
    y0 = _y0_linear(2, 3)
    t = direction * _t(0.0, 0.3, 1.0)
    plain = solve(_forced_lorenz_linear, y0, t, method=method, step_size=0.07)
    corrected = solve(_forced_lorenz_linear, y0, t, method=method, step_size=0.07, corrector=CountingZero())
    assert torch.equal(plain, corrected)


def _forced_lorenz_linear(t, y):
    return LINEAR(t, y) + torch.sin(4.0 * t) * y.square()


class ExactForDecay(torch.nn.Module):
    """For y' = lam y one step of an RK method is y -> R(lam h) y; adding
    (e^{lam h} - R(lam h)) y makes it the exact flow e^{lam h} y."""

    def __init__(self, lam, method):
        super().__init__()
        self.lam, self.method = lam, method

    def forward(self, t, y, dy, h):
        z = self.lam * h
        return (math.exp(z) - stability_polynomial(self.method, z)) * y


@pytest.mark.parametrize("direction", [1.0, -1.0])
@pytest.mark.parametrize("method", sorted(m for m in PLAIN_FIXED if m in TABLEAUS))
def test_corrector_with_the_local_error_makes_coarse_steps_exact(method, direction):
    lam = -0.7
    y0 = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    t = direction * _t(0.0, 0.5, 1.5, 3.0)
    f = lambda tt, y: lam * y
    exact = torch.exp(lam * (t - t[0]))[:, None] * y0
    coarse = solve(f, y0, t, method=method, step_size=0.5)
    assert float((coarse - exact).abs().max()) > 1e-5  # the classical scheme alone is not exact
    corrected = solve(f, y0, t, method=method, step_size=0.5, corrector=ExactForDecay(lam, method))
    torch.testing.assert_close(corrected, exact, rtol=1e-14, atol=1e-14)


def test_euler_exact_corrector_formula():
    """The textbook form for Euler: correction = (e^{lam h} - 1 - lam h) y."""
    lam, h = 1.3, 0.25
    corr = lambda t, y, dy, hh: (math.exp(lam * hh) - 1.0 - lam * hh) * y
    t = torch.linspace(0.0, 2.0, 9, dtype=F64)
    y0 = _t(1.0, 3.0)
    out = solve(lambda tt, y: lam * y, y0, t, method="euler", corrector=corr)
    torch.testing.assert_close(out, torch.exp(lam * t)[:, None] * y0, rtol=1e-14, atol=0)
    assert abs(float(t[1] - t[0]) - h) < 1e-15


class TrainedFor(torch.nn.Module):
    """A corrector that records what it was trained for and refuses anything else."""

    def __init__(self, method, step, dim):
        super().__init__()
        self.method, self.step, self.dim = method, step, dim
        self.seen = None

    def check_compatible(self, *, method, step_sizes, y0):
        self.seen = (method, np.asarray(step_sizes), tuple(y0.shape))
        if method != self.method:
            raise ValueError(f"corrector was trained for method {self.method!r}, not {method!r}")
        if not np.allclose(step_sizes, self.step):
            raise ValueError(f"corrector was trained for step {self.step}, not {step_sizes}")
        if y0.shape[-1] != self.dim:
            raise ValueError(f"corrector was trained for state dimension {self.dim}")

    def forward(self, t, y, dy, h):
        return torch.zeros_like(y)


def test_incompatible_corrector_is_refused():
    corr = TrainedFor("rk4", 0.1, 2)
    y0, t = _y0_linear(5), _t(0.0, 1.0)
    solve(LINEAR, y0, t, method="rk4", step_size=0.1, corrector=corr)
    assert corr.seen[0] == "rk4" and corr.seen[2] == (5, 2)
    np.testing.assert_allclose(corr.seen[1], [0.1])
    with pytest.raises(ValueError, match="trained for method 'rk4', not 'euler'"):
        solve(LINEAR, y0, t, method="euler", step_size=0.1, corrector=corr)
    with pytest.raises(ValueError, match="trained for step"):
        solve(LINEAR, y0, t, method="rk4", step_size=0.05, corrector=corr)
    with pytest.raises(ValueError, match="state dimension"):
        solve(lambda tt, y: -y, torch.ones(5, 3, dtype=F64), t, method="rk4", step_size=0.1, corrector=corr)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_corrector_with_adaptive_method_is_refused(method):
    with pytest.raises(ValueError, match="corrector"):
        solve(LINEAR, _y0_linear(), _t(0.0, 1.0), method=method, corrector=CountingZero())


def test_corrector_must_be_callable():
    with pytest.raises(TypeError, match="corrector"):
        solve(LINEAR, _y0_linear(), _t(0.0, 1.0), corrector=3.0)


# =========================================================================== bad input


Y0 = _t(1.0, 0.5)
T = _t(0.0, 0.5, 1.0)


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(y0=_t(1.0, math.nan)), ValueError, r"^y0 "),
        (dict(y0=_t(math.inf, 0.0)), ValueError, r"^y0 "),
        (dict(y0=[1.0, 0.5]), TypeError, r"^y0 must be a torch.Tensor"),
        (dict(y0=np.array([1.0, 0.5])), TypeError, r"^y0 must be a torch.Tensor"),
        (dict(y0=torch.tensor([1, 0])), TypeError, r"^y0 must have a floating dtype"),
        (dict(y0=torch.empty(0, 2, dtype=F64)), ValueError, r"^y0 is empty"),
        (dict(t=torch.zeros(2, 3, dtype=F64)), ValueError, r"^t must be 1-D"),
        (dict(t=torch.empty(0, dtype=F64)), ValueError, r"^t must be 1-D"),
        (dict(t=_t(0.0, 0.5, 0.5, 1.0)), ValueError, r"^t must be strictly monotone"),
        (dict(t=_t(0.0, 0.5, 0.2, 1.0)), ValueError, r"^t must be strictly monotone"),
        (dict(t=_t(1.0, 0.5, 0.7)), ValueError, r"^t must be strictly monotone"),
        (dict(t=_t(0.0, math.nan, 1.0)), ValueError, r"^t contains NaN"),
        (dict(t=_t(0.0, 1.0, math.inf)), ValueError, r"^t contains NaN or infinite"),
        (dict(t=torch.tensor([0, 1, 2])), TypeError, r"^t must have a floating dtype"),
        (dict(t="soon"), TypeError, r"^t must be"),
        (dict(method="rk5"), ValueError, r"unknown method 'rk5'; choose one of: .*rk4"),
        (dict(method=4), TypeError, r"^method must be a string"),
        (dict(step_size=0.0), ValueError, r"^step_size must be a positive"),
        (dict(step_size=-0.1), ValueError, r"^step_size must be a positive"),
        (dict(step_size=math.nan), ValueError, r"^step_size must be a positive finite"),
        (dict(step_size=math.inf), ValueError, r"^step_size must be a positive finite"),
        (dict(step_size="0.1"), TypeError, r"^step_size must be a positive number"),
        (dict(step_size=True), TypeError, r"^step_size must be a positive number"),
        (dict(step_size=torch.tensor([0.1, 0.2])), ValueError, r"^step_size must be a scalar"),
        (dict(method="dopri5", step_size=0.1), ValueError, r"^step_size is for fixed-step methods"),
        (dict(f=lambda t, y: y[:1]), ValueError, r"^f\(t, y\) returned shape \(1,\)"),
        (dict(f=lambda t, y: torch.stack((y, y))), ValueError, r"^f\(t, y\) returned shape"),
        (dict(f=lambda t, y: y.float()), TypeError, r"^f\(t, y\) returned dtype torch.float32"),
        (dict(f=lambda t, y: y.numpy()), TypeError, r"^f\(t, y\) must return a torch.Tensor"),
        (dict(f="lorenz63"), TypeError, r"^f must be callable"),
        (dict(f=None), TypeError, r"^f must be callable"),
        (dict(options={"rtol": 1e-6}), ValueError,
         r"options: unknown key\(s\) \['rtol'\] for method 'rk4'; it accepts: check_finite"),
        (dict(method="dopri5", options={"step_size": 0.1}), ValueError,
         r"options: unknown key\(s\) \['step_size'\].*accepts: .*rtol"),
        (dict(options=[("check_finite", False)]), TypeError, r"^options must be a dict"),
        (dict(options={"compile_chunk": 0}), ValueError, r"^options\['compile_chunk'\]"),
    ],
)
def test_bad_input_is_rejected_with_a_message_naming_the_argument(kwargs, exc, pattern):
    args = dict(f=LINEAR, y0=Y0, t=T)
    args.update(kwargs)
    f, y0, t = args.pop("f"), args.pop("y0"), args.pop("t")
    with pytest.raises(exc, match=pattern):
        solve(f, y0, t, **args)


def test_unknown_method_lists_every_choice():
    with pytest.raises(ValueError) as info:
        solve(LINEAR, Y0, T, method="RK4")
    for m in attsolver.list_methods():
        assert m in str(info.value)


@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    gaps=st.lists(st.floats(0.01, 0.6), min_size=0, max_size=5),
    t0=st.floats(-5.0, 5.0),
    direction=st.sampled_from([1.0, -1.0]),
    step=st.one_of(st.none(), st.floats(0.004, 0.02)),
    dtype=st.sampled_from([torch.float64, torch.float32]),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_shapes_and_analytic_solution(batch, gaps, t0, direction, step, dtype):
    """Random monotone grids and batch shapes: output [len(t), *shape] at the exact solution."""
    t = torch.tensor([t0] + list(t0 + direction * np.cumsum(gaps)), dtype=F64)
    if len(t) > 1 and not bool(((t[1:] - t[:-1]) * direction > 0).all()):
        return  # the gaps vanished in rounding
    shape = (*batch, 2)
    y0 = torch.randn(*shape, generator=torch.Generator().manual_seed(len(gaps)), dtype=F64)
    sol = solve(LINEAR, y0.to(dtype), t.to(dtype), method="rk4", step_size=step if step else 0.02)
    assert sol.shape == (len(t), *shape) and sol.dtype == dtype
    tol = 1e-6 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(sol.double(), LINEAR.exact(t, y0), rtol=tol, atol=tol)


# =========================================================================== non-finite


def _first_nonfinite_step(name, f, y0, t, step_size):
    """Step the Butcher formula in Python floats: (index, start time) of the first
    non-finite step, counted over the whole solve."""
    tab = TABLEAUS[name]
    y, step = y0, 0
    for ta, tb in zip(t[:-1], t[1:]):
        n = max(1, math.ceil(abs(tb - ta) / step_size - 1e-9))
        h = (tb - ta) / n
        for k in range(n):
            ks = []
            for i in range(tab.stages):
                ks.append(f(y + h * sum(a * kj for a, kj in zip(tab.a[i], ks))))
            y = y + h * sum(b * ki for b, ki in zip(tab.b, ks))
            if not math.isfinite(y):
                return step, ta + k * h
            step += 1
    raise AssertionError("no blow-up")


@pytest.mark.parametrize("direction", [1.0, -1.0])
@pytest.mark.parametrize("method", sorted(m for m in PLAIN_FIXED if m in TABLEAUS))
def test_blow_up_is_reported_with_step_and_time(method, direction):
    """y' = s y^2 (s = +-1), y(0) = 1 blows up at t = s; the numerical solution overflows a
    few steps after crossing it."""
    s = direction
    t_list = [0.0, 0.5 * s, 1.5 * s, 4.0 * s]
    t = torch.tensor(t_list, dtype=F64)
    f = lambda tt, y: s * y * y
    step, time = _first_nonfinite_step(method, lambda y: s * y * y, 1.0, t_list, 0.1)
    with pytest.raises(NonFiniteSolutionError) as info:
        solve(f, _t(1.0), t, method=method, step_size=0.1)
    e = info.value
    assert isinstance(e, FloatingPointError)
    assert e.step == step and e.time == pytest.approx(time, abs=1e-12)
    assert f"step {step}" in str(e) and f"t={time:.6g}" in str(e) and repr(method) in str(e)
    raw = solve(f, _t(1.0), t, method=method, step_size=0.1, options={"check_finite": False})
    bad = ~torch.isfinite(raw).all(dim=-1)
    assert raw.shape == (4, 1) and bool(bad.any())
    i = int(bad.nonzero()[0, 0])
    assert e.partial.shape == (i, 1) and bool(torch.isfinite(e.partial).all())
    assert torch.equal(e.partial, raw[:i])
    # the same step is named when a corrector is attached
    with pytest.raises(NonFiniteSolutionError) as info2:
        solve(f, _t(1.0), t, method=method, step_size=0.1, corrector=CountingZero())
    assert info2.value.step == step


# =========================================================================== misc


def test_result_is_a_fresh_tensor_of_outputs_and_y0_first():
    y0 = _y0_linear(3)
    sol = solve(LINEAR, y0, T, step_size=0.1)
    assert torch.equal(sol[0], y0)
    sol[1] += 1.0
    assert torch.equal(y0, _y0_linear(3))  # y0 is untouched


def test_scipy_path_stops_at_its_evaluation_budget_with_a_clear_error():
    """An exploding problem makes solve_ivp shrink its step forever; the budget ends it."""
    f = lambda t, y: y * y  # noqa: E731  blows up at t = 1 from y0 = 1
    y0 = torch.ones(1, dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"budget of 500 evaluations.*reached only t=0\.99"):
        attsolver.solve(f, y0, t, method="scipy_dop853", options={"max_evaluations": 500})


class _HandEuler(Stepper):
    """Forward Euler with nothing but what a stepper must have: order, nodes and step."""

    order, nodes = 1, (0.0,)

    def step(self, ts, state, h):
        return state + h * self.f(ts[0], state)


def test_a_stepper_with_only_order_nodes_and_step_runs_on_the_declared_defaults(monkeypatch):
    """``Stepper`` declares every capability the loops use, with defaults (no fast path, stage
    times needed, no ``into=``, no gradient in t, worth compiling, no whole-solve loop, the
    compiled step is the step): a minimal subclass is forward Euler in ``solve``, corrected
    (built with ``fast_path=False`` through its registry entry) and refused for a ``t`` that
    requires grad."""
    from attsolver.steppers.registry import _REGISTRY, FIXED_OPTIONS, MethodSpec

    monkeypatch.setitem(_REGISTRY, "hand_euler", MethodSpec(
        name="hand_euler", kind="fixed", order=1, description="forward Euler by hand", options=FIXED_OPTIONS,
        build=lambda f, y0, **options: _HandEuler(f, **options)))
    y0 = _y0_linear(3)
    s = _HandEuler(LINEAR)
    assert (s.fast_path, s.needs_times, s.writes_into, s.time_differentiable, s.compile_helps) == \
        (False, True, False, False, True)
    assert s.fast_loop(y0, np.ones(2, dtype=np.int64), np.full(2, 0.1)) is None
    ts = [torch.tensor(0.0, dtype=F64)]
    assert torch.equal(s.step_for_compile(ts, y0, 0.1), s.step(ts, y0, 0.1))
    t = _t(0.0, 0.3, 0.5)
    got = solve(LINEAR, y0, t, method="hand_euler", step_size=0.1)
    torch.testing.assert_close(got, solve(LINEAR, y0, t, method="euler", step_size=0.1), rtol=1e-14, atol=1e-14)
    zero = lambda tt, y, dy, h: torch.zeros_like(y)  # noqa: E731
    assert torch.equal(solve(LINEAR, y0, t, method="hand_euler", step_size=0.1, corrector=zero), got)
    with pytest.raises(ValueError, match="t requires grad, but method 'hand_euler' cannot differentiate"):
        solve(LINEAR, y0, t.clone().requires_grad_(), method="hand_euler", step_size=0.1)


@pytest.mark.parametrize("method", ["euler", "heun", "rk4", "rk38"])
def test_outputs_written_into_the_result_equal_the_stepped_states(method):
    """Without autograd the eager loop writes each interval's last step straight into the
    result's row (``step(..., into=row)``); the values must be the stepper's own states, bit
    for bit, with several steps per interval and a shorter step in the last one, and the same
    as the stacked outputs a solve that builds a graph returns."""
    from attsolver.steppers import get_method

    s = attsolver.systems.Lorenz96(N=8, F=8.0)
    y0 = s.sample_initial(3, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([0.0, 0.05, 0.1, 0.17], dtype=torch.float64)
    sol = solve(s, y0, t, method=method, step_size=0.01)
    stepper = get_method(method).build(s, y0)
    y, rows, t0 = y0, [y0], 0.0
    for a, b in zip(t[:-1].tolist(), t[1:].tolist()):
        n = math.ceil((b - a) / 0.01 - 1e-9)
        h = (b - a) / n
        for k in range(n):
            tk = torch.tensor(a + k * h, dtype=torch.float64)
            y = stepper.step([tk + c * h for c in stepper.nodes], y, h)
        rows.append(y)
    assert torch.equal(sol, torch.stack(rows))
    graph = solve(s, y0.clone().requires_grad_(), t, method=method, step_size=0.01)
    assert graph.requires_grad and torch.equal(graph.detach(), sol)
