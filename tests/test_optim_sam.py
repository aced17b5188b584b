"""SAM's update against its formula on a quadratic, and the flatness measure against its
expectation on a quadratic."""

from __future__ import annotations

import io
import math

import pytest
import torch

from attsolver.optim import SAM, perturbed_loss_increase


def _spd(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=g, dtype=torch.float64)
    return m @ m.T / n + torch.eye(n, dtype=torch.float64)


def test_sam_step_is_the_formula_on_a_quadratic_with_two_parameter_tensors():
    """L(u, v) = ½ (x - c)ᵀ A (x - c), x = (u, v).  SAM with SGD(momentum μ):
    g = A(x - c), ε = ρ g/‖g‖ (one norm over both tensors), g' = A(x + ε - c),
    buf ← μ buf + g', x ← x - lr·buf."""
    A, c = _spd(5, 0), torch.linspace(-1, 1, 5, dtype=torch.float64)
    u = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([1.0, 0.5, -0.7], dtype=torch.float64, requires_grad=True)
    lr, rho, mu = 0.1, 0.2, 0.9
    opt = SAM([u, v], rho=rho, lr=lr, momentum=mu)

    def closure():
        x = torch.cat([u, v])
        loss = 0.5 * (x - c) @ A @ (x - c)
        loss.backward()
        return loss

    x = torch.cat([u, v]).detach().clone()
    buf = None
    for _ in range(4):
        g = A @ (x - c)
        g_sam = A @ (x + rho * g / g.norm() - c)
        buf = g_sam if buf is None else mu * buf + g_sam
        loss = opt.step(closure)
        assert math.isclose(float(loss.detach()), float(0.5 * (x - c) @ A @ (x - c)), rel_tol=1e-14)  # first pass
        x = x - lr * buf
        assert torch.allclose(torch.cat([u, v]).detach(), x, rtol=0, atol=1e-13)
    assert torch.allclose(torch.cat([opt.state[u]["momentum_buffer"], opt.state[v]["momentum_buffer"]]), buf,
                          rtol=0, atol=1e-13)


def test_sam_restores_the_weights_exactly_and_rho_zero_is_the_base_optimizer():
    torch.manual_seed(0)
    m = torch.nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    closure = lambda: (lambda l: (l.backward(), l)[1])(torch.nn.functional.cross_entropy(m(x), y))  # noqa: E731
    before = [p.detach().clone() for p in m.parameters()]
    SAM(m.parameters(), rho=0.5, lr=0.0).step(closure)  # lr 0: only the perturbation and its removal
    assert all(torch.equal(p, b) for p, b in zip(m.parameters(), before))
    ref = torch.nn.Linear(4, 3)
    ref.load_state_dict(m.state_dict())
    sgd = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    sam = SAM(m.parameters(), rho=0.0, lr=0.1, momentum=0.9)
    for _ in range(3):
        sgd.zero_grad()
        torch.nn.functional.cross_entropy(ref(x), y).backward()
        sgd.step()
        sam.step(closure)
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), ref.parameters()))


def test_sam_state_dict_round_trip():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 3)

    def make(m):
        return lambda: (lambda l: (l.backward(), l)[1])(m(x).pow(2).mean())

    opt_a = SAM(a.parameters(), rho=0.1, lr=0.05, momentum=0.9)
    opt_a.step(make(a))
    opt_b = SAM(b.parameters(), rho=0.3, lr=0.05, momentum=0.9)
    buf = io.BytesIO()  # through bytes: a state_dict's tensors are the optimizer's own buffers
    torch.save({"model": a.state_dict(), "opt": opt_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    b.load_state_dict(saved["model"])
    opt_b.load_state_dict(saved["opt"])
    assert opt_b.param_groups[0]["rho"] == 0.1 and opt_b.base_optimizer.param_groups is opt_b.param_groups
    for _ in range(3):
        opt_a.step(make(a))
        opt_b.step(make(b))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_sam_agrees_with_pytorch_optimizer():
    """An independent, maintained SAM (`pytorch-optimizer`, a dev dependency).  Its
    gradient norm is accumulated in float32, hence agreement to ~1e-8, not to rounding."""
    import pytorch_optimizer as po
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 2).double(), torch.nn.Linear(4, 2).double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(6, 4, dtype=torch.float64)
    ours = SAM(a.parameters(), rho=0.05, lr=0.1, momentum=0.9)
    theirs = po.SAM(b.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    for _ in range(3):
        ours.step(lambda: (lambda l: (l.backward(), l)[1])(a(x).pow(2).mean()))
        theirs.zero_grad()

        def closure():
            theirs.zero_grad()
            loss = b(x).pow(2).mean()
            loss.backward()
            return loss

        closure()
        theirs.step(closure)
    assert all(torch.allclose(p, q, rtol=0, atol=1e-7) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(rho=-0.1), ValueError, "rho must be >= 0"),
    (dict(rho="big"), TypeError, "rho must be a finite"),
    (dict(lr=-0.1), ValueError, "lr must be >= 0"),
    (dict(base_optimizer="sgd"), TypeError, "base_optimizer must be"),
])
def test_sam_bad_input(kwargs, exc, words):
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(exc, match=words):
        SAM([w], **(dict(lr=0.1) | kwargs))
    with pytest.raises(ValueError, match="needs a closure"):
        SAM([w], lr=0.1).step()


# ---------------------------------------------------------------- flatness
class _Quadratic(torch.nn.Module):
    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = torch.nn.Parameter(w.clone())


def test_perturbed_loss_increase_matches_the_hessian_trace_at_a_minimum():
    """At the minimum of L = ½ (w - c)ᵀ A (w - c), with δ = r‖w‖ u, u uniform on the unit
    sphere of R^n: E[ΔL] = ½ (r‖w‖)² tr(A)/n, and Var[uᵀAu] = 2(tr A² - (tr A)²/n)/(n(n+2))."""
    n, samples = 12, 3000
    A = _spd(n, 3)
    c = torch.linspace(0.5, 2.0, n, dtype=torch.float64)
    model = _Quadratic(c)
    loss = lambda m: 0.5 * (m.w - c) @ A @ (m.w - c)  # noqa: E731
    radii = [0.0, 0.01, 0.05]
    got = perturbed_loss_increase(model, loss, radii, samples=samples, seed=1)
    assert got[0.0] == 0.0
    tr, tr2 = float(A.trace()), float((A @ A).trace())
    se_unit = math.sqrt(2 * (tr2 - tr ** 2 / n) / (n * (n + 2)) / samples)
    for r in radii[1:]:
        s2 = (r * float(c.norm())) ** 2
        expect = 0.5 * s2 * tr / n
        assert abs(got[r] - expect) < 4 * 0.5 * s2 * se_unit, (r, got[r], expect)
    assert torch.equal(model.w.detach(), c)  # restored exactly


def test_perturbed_loss_increase_ranks_sharp_above_flat_and_validates():
    c = torch.ones(6, dtype=torch.float64)
    flat, sharp = torch.eye(6, dtype=torch.float64), 10 * torch.eye(6, dtype=torch.float64)
    m = _Quadratic(c)
    f = perturbed_loss_increase(m, lambda m: 0.5 * (m.w - c) @ flat @ (m.w - c), [0.1], samples=4)
    s = perturbed_loss_increase(m, lambda m: 0.5 * (m.w - c) @ sharp @ (m.w - c), [0.1], samples=4)
    assert s[0.1] == pytest.approx(10 * f[0.1], rel=1e-12)  # same directions (seed), 10x the curvature
    with pytest.raises(ValueError, match="radii"):
        perturbed_loss_increase(m, lambda m: m.w.sum(), [-0.1])
    with pytest.raises(ValueError, match="samples"):
        perturbed_loss_increase(m, lambda m: m.w.sum(), [0.1], samples=0)
