"""AlterSGD: SGD before the trigger (bit for bit), alternating descent/ascent after it, the
second-order effect of a descent/ascent pair, the plateau trigger, state round-trips, errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attsolver.optim import AlterSGD


def _mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))


def _batches(n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(n)]


def _closure(model, opt, x, y):
    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss
    return closure


SGD_OPTIONS = [
    dict(),
    dict(momentum=0.9),
    dict(momentum=0.9, weight_decay=5e-3),
    dict(momentum=0.8, dampening=0.3, weight_decay=1e-2),
    dict(momentum=0.9, nesterov=True, weight_decay=1e-3),
    dict(weight_decay=1e-2),
]


@pytest.mark.parametrize("options", SGD_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain")
@pytest.mark.parametrize("trigger", ["manual", "plateau"])
def test_before_the_trigger_it_is_torch_sgd_bit_for_bit(options, trigger):
    ref, alt = _mlp(), _mlp()
    # two groups with different rates: the per-group options are honoured as in SGD
    groups = lambda m: [{"params": m[0].parameters()}, {"params": m[2].parameters(), "lr": 0.03}]  # noqa: E731
    sgd = torch.optim.SGD(groups(ref), lr=0.1, **options)
    opt = AlterSGD(groups(alt), lr=0.1, trigger=trigger, window=4, patience=10_000, **options)
    for x, y in _batches(25):
        l_ref = sgd.step(_closure(ref, sgd, x, y))
        l_alt = opt.step(_closure(alt, opt, x, y))
        assert torch.equal(l_ref, l_alt)
        for p, q in zip(ref.parameters(), alt.parameters()):
            assert torch.equal(p, q)
    assert not opt.alternating and opt.ascent_steps == 0 and opt.steps == 25
    if options.get("momentum"):
        for p, q in zip(ref.parameters(), alt.parameters()):
            assert torch.equal(sgd.state[p]["momentum_buffer"], opt.state[q]["momentum_buffer"])


def test_without_closure_the_gradients_in_grad_are_used_and_observe_feeds_the_trigger():
    ref, alt = _mlp(), _mlp()
    sgd = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.5)
    opt = AlterSGD(alt.parameters(), lr=0.05, momentum=0.5, window=2, patience=1)
    for x, y in _batches(3):
        for m, o in ((ref, sgd), (alt, opt)):
            o.zero_grad()
            loss = torch.nn.functional.cross_entropy(m(x), y)
            loss.backward()
            if o is opt:
                opt.observe(loss)
            o.step()
    assert all(torch.equal(p, q) for p, q in zip(ref.parameters(), alt.parameters()))
    assert len(opt.window_means) == 1  # 3 observations, window 2: one complete window


def test_after_the_trigger_steps_alternate_descent_and_ascent():
    """On a linear loss L = c·w (gradient c everywhere) without momentum the steps are
    exactly -lr·c, +ascent_lr·c, -lr·c, ...; the first step after the trigger descends."""
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = AlterSGD([w], lr=0.1, ascent_lr=0.04, trigger="manual")
    closure = _lin_closure(w, c, opt)
    opt.step(closure)
    opt.start_alternating()
    deltas, kinds = [], []
    for _ in range(6):
        before = w.detach().clone()
        kinds.append("ascent" if opt.next_is_ascent else "descent")
        opt.step(closure)
        deltas.append(w.detach() - before)
    assert kinds == ["descent", "ascent"] * 3
    for d, kind in zip(deltas, kinds):
        expect = -0.1 * c if kind == "descent" else 0.04 * c
        assert torch.allclose(d, expect, rtol=0, atol=1e-15)
    assert opt.ascent_steps == 3 and opt.steps == 7 and opt.trigger_step == 1


def _lin_closure(w, c, opt):
    def closure():
        opt.zero_grad()
        loss = (w * c).sum()
        loss.backward()
        return loss
    return closure


def test_ascent_skips_momentum_and_leaves_the_buffer_alone_weight_decay_always_shrinks():
    c = torch.tensor([1.0, -2.0], dtype=torch.float64)
    w = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
    mu, lr, a_lr, wd = 0.9, 0.1, 0.05, 0.2
    opt = AlterSGD([w], lr=lr, momentum=mu, weight_decay=wd, ascent_lr=a_lr, trigger="manual")
    closure = _lin_closure(w, c, opt)
    buf = None
    for step in range(8):
        if step == 3:
            opt.start_alternating()
        w0 = w.detach().clone()
        ascent = opt.alternating and opt.next_is_ascent
        opt.step(closure)
        if ascent:  # w <- w (1 - a_lr·wd) + a_lr·c; buffer untouched
            expect = w0 * (1 - a_lr * wd) + a_lr * c
            assert torch.equal(opt.state[w]["momentum_buffer"], buf)
        else:  # SGD: buf <- mu·buf + (c + wd·w); w <- w - lr·buf
            d = c + wd * w0
            buf = d.clone() if buf is None else mu * buf + d
            expect = w0 - lr * buf
        assert torch.allclose(w.detach(), expect, rtol=0, atol=1e-14)
    assert opt.ascent_steps == 2  # steps 4 and 6 (0-based 3 descends first)


def test_weight_decay_shrinks_on_ascent_steps():
    w = torch.tensor([2.0, -3.0], dtype=torch.float64, requires_grad=True)
    opt = AlterSGD([w], lr=0.1, weight_decay=0.5, trigger="manual")
    opt.start_alternating()
    zero = _lin_closure(w, torch.zeros(2, dtype=torch.float64), opt)
    opt.step(zero)  # descent
    mid = w.detach().clone()
    opt.step(zero)  # ascent with zero data gradient: only the decay acts
    assert torch.allclose(w.detach(), mid * (1 - 0.1 * 0.5), rtol=0, atol=1e-15)
    assert (w.detach().abs() < mid.abs()).all()


# ---------------------------------------------------------------- second order
def _rosen_like(w: torch.Tensor) -> torch.Tensor:
    """A smooth non-quadratic test function (its Hessian varies with w)."""
    A = torch.tensor([[1.0, 0.4, -0.2], [0.4, 2.0, 0.3], [-0.2, 0.3, 0.7]], dtype=w.dtype)
    b = torch.tensor([0.3, -0.5, 0.2], dtype=w.dtype)
    return torch.log(torch.cosh(A @ w - b)).sum() + 0.25 * (w ** 4).sum() + 0.5 * w[0] * w[1] ** 2


def _pair(w0: torch.Tensor, eta: float) -> torch.Tensor:
    w = w0.clone().requires_grad_(True)
    opt = AlterSGD([w], lr=eta, trigger="manual")
    opt.start_alternating()
    for _ in range(2):  # descent then ascent
        def closure():
            opt.zero_grad()
            loss = _rosen_like(w)
            loss.backward()
            return loss
        opt.step(closure)
    return w.detach()


def test_a_descent_ascent_pair_is_a_gradient_step_of_size_eta_squared_on_half_the_squared_gradient_norm():
    """Δ = -η g + η g(w - η g) = -η² H g + O(η³): the pair moves along -∇(½‖∇L‖²) with step
    η².  Hence, to leading order, ΔL = -η² gᵀHg and Δ(½‖g‖²) = -η² ‖Hg‖².  Checked against
    autograd's Hessian-vector product; the relative errors shrink like O(η)."""
    w0 = torch.tensor([0.8, -0.6, 1.1], dtype=torch.float64)
    w = w0.clone().requires_grad_(True)
    g = torch.autograd.grad(_rosen_like(w), w, create_graph=True)[0]
    hg = torch.autograd.grad(g, w, grad_outputs=g.detach())[0].detach()
    g = g.detach()
    half_sq = lambda v: 0.5 * float(torch.autograd.functional.jacobian(_rosen_like, v).pow(2).sum())  # noqa: E731
    errs_dir, errs_loss, errs_gn = [], [], []
    etas = [4e-3, 2e-3, 1e-3]
    for eta in etas:
        w2 = _pair(w0, eta)
        errs_dir.append(float(((w2 - w0) / eta ** 2 + hg).norm() / hg.norm()))
        d_loss = float(_rosen_like(w2) - _rosen_like(w0))
        errs_loss.append(abs(d_loss / (-eta ** 2 * float(g @ hg)) - 1))
        errs_gn.append(abs((half_sq(w2) - half_sq(w0)) / (-eta ** 2 * float(hg @ hg)) - 1))
    for errs in (errs_dir, errs_loss, errs_gn):
        assert errs[-1] < 2e-2
        slope = np.polyfit(np.log(etas), np.log(errs), 1)[0]
        assert 0.8 < slope < 1.2, errs  # first-order remainder: the η² term is exact


def test_on_a_quadratic_the_pair_contracts_by_one_minus_eta_squared_h_squared():
    """L = ½ a w² in 1-D: the pair maps w to (1 - η²a²) w exactly, so
    ΔL = ½ a w² ((1 - η²a²)² - 1) = -η² gHg + ½ η⁴ a⁵ w², with gHg = a³ w².  The loss
    change is -η² gᵀHg, not -½η²‖g‖² (they differ by the factor 2a)."""
    a, w0, eta = 3.0, 0.7, 0.05
    w = torch.tensor([w0], dtype=torch.float64, requires_grad=True)
    opt = AlterSGD([w], lr=eta, trigger="manual")
    opt.start_alternating()
    for _ in range(2):
        def closure():
            opt.zero_grad()
            loss = 0.5 * a * (w ** 2).sum()
            loss.backward()
            return loss
        opt.step(closure)
    assert math.isclose(float(w.detach()), (1 - eta ** 2 * a ** 2) * w0, rel_tol=1e-14)
    d_loss = 0.5 * a * float(w.detach()) ** 2 - 0.5 * a * w0 ** 2
    g, h = a * w0, a
    assert math.isclose(d_loss, -eta ** 2 * g * h * g + 0.5 * eta ** 4 * a ** 5 * w0 ** 2, rel_tol=1e-12)
    assert math.isclose(d_loss / (-0.5 * eta ** 2 * g ** 2), 2 * a, rel_tol=eta ** 2 * a ** 2)


# ---------------------------------------------------------------- trigger
def _window_of(mean: float) -> list[float]:
    return [mean - 1.0, mean, mean + 1.0]


def test_plateau_trigger_fires_exactly_when_patience_windows_do_not_improve():
    """window 3, rel_tol 0.1, patience 2.  Window means 10 (first: best), 8 (< 9: best),
    7.5 (not < 7.2: bad 1), 7.0 (< 7.2: best, bad 0), 6.9 (not < 6.3: bad 1), 6.8 (bad 2:
    fire) -> the trigger fires on the 18th loss, not before."""
    w = torch.zeros(1, requires_grad=True)
    opt = AlterSGD([w], lr=0.1, window=3, rel_tol=0.1, patience=2)
    losses = [v for m in (10.0, 8.0, 7.5, 7.0, 6.9, 6.8, 1.0) for v in _window_of(m)]
    fired = [opt.observe(v) for v in losses]
    assert fired.index(True) == 17 and all(fired[17:])
    assert opt.window_means == pytest.approx([10.0, 8.0, 7.5, 7.0, 6.9, 6.8])  # frozen once fired
    assert opt.trigger_state()["best"] == pytest.approx(7.0)


def test_rel_tol_zero_counts_an_equal_window_as_no_progress():
    w = torch.zeros(1, requires_grad=True)
    opt = AlterSGD([w], lr=0.1, window=2, rel_tol=0.0, patience=1)
    assert [opt.observe(v) for v in (1.0, 1.0, 0.5, 1.5)] == [False, False, False, True]


def test_abs_tol_lets_a_geometrically_shrinking_loss_converge():
    """Window means 0.8·0.5^k: every window halves, so rel_tol=0.1 alone never fires; with
    abs_tol=0.1: drops from the best 0.4 (best 0.4), 0.2 (best 0.2), 0.1 (not > 0.1: bad 1),
    0.15 (best 0.05: progress is measured from the best, not the last window), 0.025 (bad 1),
    0.0375 (bad 2: fire in window 6 at patience 2)."""
    means = [0.8 * 0.5 ** k for k in range(8)]
    for abs_tol, fire_window in ((0.0, None), (0.1, 6)):
        w = torch.zeros(1, requires_grad=True)
        opt = AlterSGD([w], lr=0.1, window=2, rel_tol=0.1, abs_tol=abs_tol, patience=2)
        fired = [opt.observe(v) for m in means for v in (m, m)]
        assert (fired.index(True) // 2 if True in fired else None) == fire_window


def _reference_fire_index(losses, window, rel_tol, abs_tol, patience):
    """An independent statement of the rule: block means, ReduceLROnPlateau-style counting."""
    n = len(losses) // window
    means = np.asarray(losses[: n * window]).reshape(n, window).mean(axis=1)
    best, bad = None, 0
    for k, m in enumerate(means):
        if best is None or (best - m > rel_tol * best and best - m > abs_tol):
            best, bad = m, 0
        else:
            bad += 1
            if bad >= patience:
                return (k + 1) * window - 1
    return None


@settings(max_examples=60, deadline=None)
@given(losses=st.lists(st.floats(0.01, 10.0), min_size=0, max_size=60), window=st.integers(1, 6),
       rel_tol=st.sampled_from([0.0, 0.01, 0.1, 0.5]), abs_tol=st.sampled_from([0.0, 0.05, 1.0]),
       patience=st.integers(1, 4))
def test_trigger_agrees_with_the_reference_rule(losses, window, rel_tol, abs_tol, patience):
    w = torch.zeros(1, requires_grad=True)
    opt = AlterSGD([w], lr=0.1, window=window, rel_tol=rel_tol, abs_tol=abs_tol, patience=patience)
    fired = [opt.observe(v) for v in losses]
    expect = _reference_fire_index(losses, window, rel_tol, abs_tol, patience)
    assert (fired.index(True) if True in fired else None) == expect


def test_trained_model_triggers_and_reset_trigger_restarts_plain_descent():
    model = _mlp()
    opt = AlterSGD(model.parameters(), lr=0.05, momentum=0.9, window=10, rel_tol=0.05, patience=2)
    data = _batches(10)  # random labels: the loss stalls near log 3
    for i in range(200):
        opt.step(_closure(model, opt, *data[i % 10]))
        if opt.alternating:
            break
    assert opt.alternating, "the loss on random labels plateaus within 200 steps"
    # the step whose loss fired the trigger was the first descent; the next one ascends
    assert opt.ascent_steps == 0 and opt.next_is_ascent and opt.trigger_step == opt.steps - 1
    opt.step(_closure(model, opt, *data[0]))
    assert opt.ascent_steps == 1 and not opt.next_is_ascent
    bufs = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    opt.reset_trigger()
    assert not opt.alternating and opt.steps == 0 and opt.window_means == []
    assert all(torch.equal(b, opt.state[p]["momentum_buffer"]) for b, p in zip(bufs, model.parameters()))
    opt.reset_trigger(clear_momentum=True)
    assert all("momentum_buffer" not in opt.state[p] for p in model.parameters())


# ---------------------------------------------------------------- state
@pytest.mark.parametrize("save_at", [7, 40])  # mid-window before the trigger; after it, mid-pair
def test_state_dict_round_trip_resumes_identically(save_at):
    a = _mlp()
    opt_a = AlterSGD(a.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-3, ascent_lr=0.1,
                     window=3, rel_tol=0.05, patience=2)
    data = _batches(6)  # random labels: the loss plateaus and the trigger fires
    for i in range(save_at):
        opt_a.step(_closure(a, opt_a, *data[i % 6]))
    buf = io.BytesIO()
    torch.save({"model": a.state_dict(), "opt": opt_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    b = _mlp(seed=99)
    b.load_state_dict(saved["model"])
    opt_b = AlterSGD(b.parameters(), lr=1.0, window=50, patience=7)  # settings come from the state
    opt_b.load_state_dict(saved["opt"])
    assert opt_b.trigger_state() == opt_a.trigger_state()
    for i in range(save_at, save_at + 30):
        opt_a.step(_closure(a, opt_a, *data[i % 6]))
        opt_b.step(_closure(b, opt_b, *data[i % 6]))
    assert opt_a.alternating and opt_a.trigger_state() == opt_b.trigger_state()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_loading_a_plain_sgd_state_dict_is_refused():
    m = _mlp()
    sgd_state = torch.optim.SGD(m.parameters(), lr=0.1).state_dict()
    with pytest.raises(ValueError, match="altersgd"):
        AlterSGD(m.parameters(), lr=0.1).load_state_dict(sgd_state)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(lr=-0.1), ValueError, "lr must lie in"),
    (dict(ascent_lr=-0.01), ValueError, "ascent_lr"),
    (dict(window=0), ValueError, "window must be an integer >= 1"),
    (dict(window=-5), ValueError, "window"),
    (dict(window=2.5), TypeError, "window must be an integer"),
    (dict(patience=0), ValueError, "patience"),
    (dict(rel_tol=1.0), ValueError, "rel_tol"),
    (dict(rel_tol=-0.1), ValueError, "rel_tol"),
    (dict(abs_tol=-0.1), ValueError, "abs_tol"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(weight_decay=-1e-4), ValueError, "weight_decay"),
    (dict(lr=float("nan")), TypeError, "lr must be a finite"),
    (dict(nesterov=True), ValueError, "nesterov=True needs momentum"),
    (dict(trigger="loss"), ValueError, "trigger must be one of"),
])
def test_bad_settings_are_refused_with_the_argument_named(kwargs, exc, words):
    w = torch.zeros(1, requires_grad=True)
    options = dict(lr=0.1) | kwargs
    with pytest.raises(exc, match=words):
        AlterSGD([w], **options)


def test_bad_param_group_and_bad_losses_are_refused():
    w, v = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = AlterSGD([w], lr=0.1)
    with pytest.raises(ValueError, match="lr must lie in"):
        opt.add_param_group({"params": [v], "lr": -1.0})
    with pytest.raises(ValueError, match="loss must be finite"):
        opt.observe(float("nan"))
    with pytest.raises(ValueError, match="loss must be a scalar"):
        opt.observe(torch.ones(2))
    with pytest.raises(TypeError, match="loss must be a number"):
        opt.observe("0.3")
    with pytest.raises(ValueError, match="closure must return the loss"):
        opt.step(lambda: None)
