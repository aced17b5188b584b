"""Memory-efficient gradients (``options={"adjoint": True}`` / ``{"checkpoint_steps": k}``):
equal to direct back-propagation to 1e-8 in float64, with respect to ``y0``, ``t``, ``f``'s
parameters and the corrector's — on Lorenz-63, a small neural ODE and a corrected solve —
and torchdiffeq's problem set through the adjoint."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import attsolver
from tests.test_torchdiffeq_conventions import PROBLEMS, _exact



@pytest.fixture(autouse=True)
def _float64_by_default():
    """These tests compare gradients to 1e-8: float64 throughout, for this module only (a
    module-level set_default_dtype would leak into every test collected after it)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


class Lorenz(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.tensor([10.0, 28.0, 8.0 / 3.0]))

    def forward(self, t, y):
        s, r, b = self.p
        x, yy, z = y.unbind(-1)
        return torch.stack([s * (yy - x), x * (r - z) - yy, x * yy - b * z], -1)


class MLP(nn.Module):
    def __init__(self, d=3, w=16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(0.5 * torch.randn(d + 1, w, generator=g))
        self.b = nn.Parameter(0.5 * torch.randn(w, d, generator=g))

    def forward(self, t, y):
        inp = torch.cat([y, t.expand(*y.shape[:-1], 1)], -1)  # t enters f: a time gradient to test
        return torch.tanh(inp @ self.a) @ self.b


class Corrector(nn.Module):
    def __init__(self, d=3):
        super().__init__()
        self.w = nn.Parameter(0.01 * torch.randn(d, d, generator=torch.Generator().manual_seed(1)))

    def forward(self, t, y, dy, h):
        return h * torch.tanh(y @ self.w) * dy


def _grads(f, y0, t, extra=(), **kw):
    y0 = y0.clone().requires_grad_(True)
    leaves = [y0, *f.parameters(), *extra]
    if t.requires_grad:
        t = t.detach().clone().requires_grad_(True)
        leaves.append(t)
    sol = attsolver.solve(f, y0, t, **kw)
    loss = (sol ** 2).sum() + sol[..., 0].sum()
    return sol.detach(), torch.autograd.grad(loss, leaves)


def _close(a, b, tol=1e-8):
    for x, y in zip(a, b):
        assert float((x - y).abs().max()) <= tol * max(1.0, float(y.abs().max())), (x, y)


Y0 = torch.tensor([[1.0, 1.0, 1.0], [-2.0, 0.5, 20.0]], dtype=torch.float64)


@pytest.mark.parametrize("make_f", [Lorenz, MLP], ids=["lorenz63", "neural_ode"])
@pytest.mark.parametrize("time_grad", [False, True])
def test_checkpointed_equals_direct_backprop(make_f, time_grad):
    f = make_f()  # built inside the test, under the float64 default
    t = torch.linspace(0.0, 0.6, 7).requires_grad_(time_grad)
    kw = dict(method="rk4", step_size=0.01)
    sol_d, g_d = _grads(f, Y0, t, **kw)
    for k in (1, 7, 1000):  # segments shorter than, straddling and longer than the intervals
        sol_c, g_c = _grads(f, Y0, t, options={"checkpoint_steps": k}, **kw)
        assert torch.equal(sol_c, sol_d)  # same step arithmetic: the same values
        _close(g_c, g_d, 1e-12)


def test_checkpointed_corrected_solve_gradients_reach_the_corrector():
    f, c = Lorenz(), Corrector()
    t = torch.linspace(0.0, 0.5, 6)
    kw = dict(method="rk4", step_size=0.01, corrector=c)
    sol_d, g_d = _grads(f, Y0, t, extra=tuple(c.parameters()), **kw)
    sol_c, g_c = _grads(f, Y0, t, extra=tuple(c.parameters()), options={"checkpoint_steps": 8}, **kw)
    assert torch.equal(sol_c, sol_d)
    assert float(g_d[-1].abs().max()) > 0  # the corrector's gradient is not trivially zero
    _close(g_c, g_d, 1e-12)


def test_checkpointed_without_grad_is_the_eager_result_bit_for_bit():
    t = torch.linspace(0.0, 1.0, 5)
    with torch.no_grad():
        a = attsolver.solve(Lorenz(), Y0, t, step_size=0.01)
        b = attsolver.solve(Lorenz(), Y0, t, step_size=0.01, options={"checkpoint_steps": 3})
    assert torch.equal(a, b)


@pytest.mark.parametrize("make_f", [Lorenz, MLP], ids=["lorenz63", "neural_ode"])
def test_continuous_adjoint_equals_direct_backprop(make_f):
    f = make_f()  # built inside the test, under the float64 default
    t = torch.linspace(0.0, 0.5, 4).requires_grad_(True)
    opts = {"rtol": 1e-12, "atol": 1e-12}
    sol_d, g_d = _grads(f, Y0, t, method="dopri5", options=opts)
    sol_a, g_a = _grads(f, Y0, t, method="dopri5", options={**opts, "adjoint": True})
    _close([sol_a], [sol_d], 1e-10)
    _close(g_a, g_d, 1e-8)


def test_adjoint_params_for_a_plain_function():
    w = torch.tensor(0.7, requires_grad=True)
    y0 = torch.tensor([1.0, 2.0], requires_grad=True)
    t = torch.tensor([0.0, 1.0])
    out = attsolver.solve(lambda t, y: -w * y, y0, t, method="dopri5",
                          options={"adjoint": True, "adjoint_params": (w,), "rtol": 1e-12, "atol": 1e-12})
    gw, gy = torch.autograd.grad(out[-1].sum(), (w, y0))
    exact = torch.exp(-w.detach())
    assert abs(float(gw) - float(-(1.0 + 2.0) * exact)) < 1e-9
    assert torch.allclose(gy, exact.expand(2), atol=1e-10)


@pytest.mark.parametrize("problem", PROBLEMS, ids=[p.name for p in PROBLEMS])
def test_torchdiffeq_problem_set_through_the_adjoint(problem):
    """The problem set of the torchdiffeq conventions suite: the adjoint's gradient with respect
    to y0 equals the exact solution's (a linear map in y0 for these problems: checked by FD of exact)."""
    y0 = torch.tensor([0.2, 0.5, 0.9], requires_grad=True)
    t = torch.linspace(0.0, 1.0, 5)
    opts = {"adjoint": True, "adjoint_params": (), "rtol": 1e-11, "atol": 1e-12}
    sol = attsolver.solve(problem.f, y0, t, method="dopri5", options=opts)
    assert torch.allclose(sol, _exact(problem, t, y0.detach()), atol=1e-8)
    g = torch.autograd.grad(sol[-1].sum(), y0)[0]
    eps = 1e-6
    fd = [(problem.exact(t[-1], y0.detach() + eps * e, t[0]).sum() - problem.exact(t[-1], y0.detach() - eps * e, t[0]).sum())
          / (2 * eps) for e in torch.eye(3)]
    assert torch.allclose(g, torch.stack(fd), atol=1e-6)


def test_bad_memory_options_are_clear_errors():
    t = torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match="checkpoint_steps"):
        attsolver.solve(Lorenz(), Y0, t, method="dopri5", options={"checkpoint_steps": 4})
    with pytest.raises(ValueError, match="adjoint"):
        attsolver.solve(Lorenz(), Y0, t, method="rk4", step_size=0.1, options={"adjoint": True})
    with pytest.raises(TypeError, match="adjoint_params"):
        attsolver.solve(lambda t, y: -y, Y0, t, method="dopri5", options={"adjoint": True})
    with pytest.raises(ValueError, match="integer >= 1"):
        attsolver.solve(Lorenz(), Y0, t, step_size=0.1, options={"checkpoint_steps": 0})


def test_fit_with_checkpoint_steps_trains_as_without(monkeypatch):
    """fit(..., checkpoint_steps=k) goes through the checkpointed loop and trains as without it
    (the float32 corrector and Adam: equal losses to float32 round-off, amplified by Adam's
    normalisation; the gradients themselves are tested equal above)."""
    from attsolver.correctors import AttSolver  # lazy: training layer, only this test needs it
    from attsolver.data import generate_trajectories  # lazy: as above
    from attsolver.integrate import boundary  # lazy: as above
    from attsolver.training import fit  # lazy: as above

    calls = []
    real = boundary.checkpointed_loop
    monkeypatch.setattr(boundary, "checkpointed_loop", lambda plan, k, f: calls.append(k) or real(plan, k, f))
    data = generate_trajectories("linear", 8, t_final=2.0, dt=0.1, seed=1, progress=False)
    losses = []
    for k in (None, 2):
        torch.manual_seed(0)
        model = AttSolver(2, method="rk4", step_size=0.05, width=16)
        h = fit(model, data, epochs=3, lr=3e-3, batch_size=32, progress=False, patience=None, rollout_steps=3,
                check=False, checkpoint_steps=k)
        losses.append(torch.tensor(h.train_loss))
    assert calls and set(calls) == {2}
    assert torch.allclose(losses[1], losses[0], rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="checkpoint_steps"):
        fit(model, data, epochs=1, progress=False, checkpoint_steps=0)


def test_checkpointed_gradients_reach_tensors_a_plain_function_captures():
    """f a closure (not an nn.Module): the tensors it uses are found from its graph."""
    log_w = torch.tensor([0.1, -0.2, 0.3], requires_grad=True)
    net = MLP()

    def f(t, y):
        return -log_w.exp() * y + net(t, y)

    t = torch.linspace(0.0, 0.4, 3)
    grads = []
    for opts in ({}, {"checkpoint_steps": 6}):
        y0 = Y0.clone().requires_grad_(True)
        sol = attsolver.solve(f, y0, t, step_size=0.02, options=opts)
        grads.append(torch.autograd.grad((sol ** 2).sum(), (y0, log_w, net.a, net.b)))
    _close(grads[1], grads[0], 1e-12)
