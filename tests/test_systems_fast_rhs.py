"""Issue 24, item 5: the built-in small systems' torch right-hand sides are written in few
torch operations (a kept constant matrix instead of one operation per term).  They must still
be the textbook formulas: here each is compared with the formula written out plainly, term by
term, on batched float64 states (to 1e-14 of the terms' size), in float32, under autograd,
``torch.func.jacrev``/``vmap``, and after a first call made in inference mode."""

from __future__ import annotations

import math

import pytest
import torch

from attsolver.systems.ode import ElasticPendulum, LinearSystem, Lorenz63, Lorenz96, SpringChain


def lorenz63(p, y):
    x, v, z = y[..., 0], y[..., 1], y[..., 2]
    return torch.stack((p.sigma * (v - x), x * (p.rho - z) - v, x * v - p.beta * z), -1)


def lorenz96(p, y):
    n = y.shape[-1]
    out = torch.empty_like(y)
    for i in range(n):
        out[..., i] = (y[..., (i + 1) % n] - y[..., i - 2]) * y[..., i - 1] - y[..., i] + p.F
    return out


def spring_chain(p, y):
    n = p.n
    m = p.masses if isinstance(p.masses, tuple) else (p.masses,) * n
    k = p.stiffness if isinstance(p.stiffness, tuple) else (p.stiffness,) * (n + 1)
    q = [0.0 * y[..., 0]] + [y[..., n + i] for i in range(n)] + [0.0 * y[..., 0]]  # walls q_0 = q_{n+1} = 0
    dp = [k[i + 1] * (q[i + 2] - q[i + 1]) - k[i] * (q[i + 1] - q[i]) for i in range(n)]
    dq = [y[..., i] / m[i] for i in range(n)]
    return torch.stack(dp + dq, -1)


def elastic_pendulum(p, y):
    r, th, dr, dth = y[..., 0], y[..., 1], y[..., 2], y[..., 3]
    ddr = r * dth ** 2 + p.g * torch.cos(th) - p.k / p.m * (r - p.rest_length)
    ddth = -(p.g * torch.sin(th) + 2 * dr * dth) / r
    return torch.stack((dr, dth, ddr, ddth), -1)


def linear(p, y):
    A = p.A
    return torch.stack([sum(A[i][j] * y[..., j] for j in range(len(A))) for i in range(len(A))], -1)


CASES = [
    (Lorenz63(), lorenz63), (Lorenz63(sigma=12.0, rho=35.0, beta=2.0), lorenz63),
    (Lorenz96(), lorenz96), (Lorenz96(N=7, F=11.0), lorenz96),
    (SpringChain(), spring_chain), (SpringChain(n=5, masses=(1.0, 2.0, 0.5, 3.0, 1.5),
                                                stiffness=(1.0, 2.0, 3.0, 0.5, 0.7, 4.0)), spring_chain),
    (SpringChain(n=40, masses=2.0, stiffness=3.0), spring_chain),  # a long chain: always term by term
    (ElasticPendulum(), elastic_pendulum), (ElasticPendulum(g=3.0, k=7.0, m=2.0, rest_length=0.5), elastic_pendulum),
    (LinearSystem(), linear), (LinearSystem(A=((0.0, 1.0, 0.5), (-3.0, 0.2, 0.0), (1.0, 0.0, -2.0))), linear),
]
IDS = [f"{s.name}-{i}" for i, (s, _) in enumerate(CASES)]


def _states(system, shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = 3.0 * torch.randn(*shape, *system.state_shape, generator=g, dtype=torch.float64)
    if isinstance(system, ElasticPendulum):
        y[..., 0] = 0.5 + y[..., 0].abs()  # r > 0
    if isinstance(system, Lorenz63):
        y[..., 2] += 25.0
    return y.to(dtype)


@pytest.mark.parametrize("system,formula", CASES, ids=IDS)
@pytest.mark.parametrize("shape", [(), (1,), (5,), (3, 4), (700,)])  # (700,): the spring chain's term-by-term path
def test_f_is_the_plain_formula_to_round_off(system, formula, shape):
    y = _states(system, shape)
    got, want = system(0.0, y), formula(system, y)
    assert got.shape == want.shape == y.shape and got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-14 * want.abs().max().item())
    # float32 in, float32 out, equal to the float64 formula to float32's round-off
    y32 = y.float()
    got32 = system(0.0, y32)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double(), formula(system, y32.double()), rtol=1e-5,
                               atol=1e-5 * want.abs().max().item())


@pytest.mark.parametrize("system,formula", CASES, ids=IDS)
def test_jacobian_by_autograd_jacrev_and_vmap_equals_the_formulas(system, formula):
    y = _states(system, (4,), seed=1)
    want = torch.stack([torch.autograd.functional.jacobian(lambda v: formula(system, v), y[b]) for b in range(4)])
    jac = torch.func.vmap(torch.func.jacrev(lambda v: system(0.0, v)))(y)
    torch.testing.assert_close(jac, want, rtol=1e-13, atol=1e-13 * want.abs().max().item())
    # plain backward through a batch: d(sum f . w)/dy = J^T w per sample
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    yy = y.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((system(0.0, yy) * w).sum(), yy)
    torch.testing.assert_close(grad, torch.einsum("bij,bi->bj", want, w), rtol=1e-13,
                               atol=1e-13 * want.abs().max().item())


def test_a_first_call_in_inference_mode_does_not_break_a_later_backward():
    # the kept constants are made outside inference mode, so a later backward can save them
    system = Lorenz63(sigma=9.5)  # parameters no other test uses: its constants are made here
    y = _states(system, (2,), seed=3)
    with torch.inference_mode():
        first = system(0.0, y)
    yy = y.clone().requires_grad_(True)
    out = system(0.0, yy)
    (grad,) = torch.autograd.grad(out[:, 0].sum(), yy)
    torch.testing.assert_close(out.detach(), first)
    torch.testing.assert_close(grad, torch.tensor([[-9.5, 9.5, 0.0]] * 2, dtype=torch.float64))


def test_a_sweep_over_parameters_gives_each_its_own_constants():
    y = _states(Lorenz63(), (3,), seed=4)
    for rho in (10.0, 28.0, 99.0, 28.0):
        s = Lorenz63(rho=rho)
        torch.testing.assert_close(s(0.0, y), lorenz63(s, y), rtol=1e-14, atol=1e-11)
    # the time derivative of the autonomous f is zero, and t may require grad
    t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    out = Lorenz63()(t, y.clone().requires_grad_(True))
    assert torch.autograd.grad(out.sum(), t, allow_unused=True)[0] is None
    assert math.isfinite(out.sum().item())
