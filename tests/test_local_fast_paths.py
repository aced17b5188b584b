"""The fast forms of the local correctors against the reference GEMM form.

``forward`` has three ways to the same numbers: the GEMM form with autograd (the reference,
used in training), the same without autograd (normalisation folded into the first layer,
activations in place: any solve under ``torch.no_grad``) and, under ``torch.compile``, the
elementwise form (every layer unrolled into sums of products on shifted copies of the
lattice).  Each must agree with the reference and with the independent per-site evaluation
of test_local_correctors to rounding (1e-12 in float64), carry gradients, start as an exact
zero, and refuse what the reference refuses."""

from __future__ import annotations

import pytest
import torch

import attsolver
from attsolver.integrate.compiled import clear_compile_cache, compile_stats
from attsolver.correctors import LocalAttSolver, LocalHypersolver, LocalNeurVec
from attsolver.correctors.evaluators import tanh_expm1 as _tanh
from attsolver.systems import Lorenz96, SpringChain

from test_local_correctors import build, per_site_reference, randomize

CASES = [(LocalNeurVec, {}), (LocalNeurVec, {"activation": "relu", "window": 3}),
         (LocalHypersolver, {}), (LocalHypersolver, {"hidden": (6, 5), "window": 3}),
         (LocalAttSolver, {}), (LocalAttSolver, {"combine": "mul", "depth": 2}),
         (LocalAttSolver, {"attention_input": "features"})]
IDS = ["neurvec", "neurvec-relu-w3", "hyper", "hyper-2layers-w3", "att", "att-mul-d2", "att-gate-on-features"]
SYSTEMS = [Lorenz96(N=12), SpringChain(n=9)]


def _inputs(system, b=3):
    y = system.sample_initial(b, generator=torch.Generator().manual_seed(1))
    dy = 0.05 * torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return y, dy


@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
@pytest.mark.parametrize("system", SYSTEMS, ids=["ring", "chain"])
def test_fast_forms_give_the_reference_numbers(cls, kw, system):
    model = randomize(build(cls, system, **kw))
    y, dy = _inputs(system)
    ref = model._forward(y, dy, 0.1)  # the GEMM form with autograd
    assert ref.requires_grad
    c, n = model.state_channels, model.sites
    site_by_site = per_site_reference(model, y.reshape(3, c, n), dy.reshape(3, c, n), 0.1).reshape(3, -1)
    torch.testing.assert_close(ref, site_by_site, rtol=1e-12, atol=1e-14)
    assert model.fusable()
    torch.testing.assert_close(model.pointwise_forward(y, dy, 0.1), ref, rtol=1e-12, atol=1e-14)
    with torch.no_grad():  # the folded, in-place form (where the gate does not read the windows)
        out = model(None, y, dy, 0.1)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    assert model.foldable() == (kw.get("attention_input") != "features")


def test_the_elementwise_form_carries_gradients():
    model = randomize(build(LocalAttSolver, Lorenz96(N=6), window=3, width=4))
    y, dy = _inputs(Lorenz96(N=6), b=2)
    y.requires_grad_(True)
    dy.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: model.pointwise_forward(a, b, 0.1), (y, dy))
    # and into the weights, as the reference form
    ga = torch.autograd.grad(model.pointwise_forward(y, dy, 0.1).square().sum(), list(model.parameters()))
    gb = torch.autograd.grad(model._forward(y, dy, 0.1).square().sum(), list(model.parameters()))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_forward_keeps_autograd_when_a_gradient_is_wanted():
    model = randomize(build(LocalNeurVec, SpringChain(n=9)))
    y, dy = _inputs(SpringChain(n=9))
    out = model(None, y, dy, 0.1)  # parameters require grad: the autograd form, no in-place ops
    assert out.requires_grad
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_tanh_through_expm1_is_tanh():
    x = torch.cat([torch.linspace(-30, 30, 2001, dtype=torch.float64), torch.tensor([0.0, 1e-300, -1e-8])])
    torch.testing.assert_close(_tanh(x), torch.tanh(x), rtol=0, atol=4e-16)
    x32 = x.float()
    torch.testing.assert_close(_tanh(x32), torch.tanh(x32), rtol=0, atol=4e-7)


@pytest.mark.parametrize("cls", [LocalNeurVec, LocalHypersolver, LocalAttSolver])
def test_an_untrained_model_is_an_exact_zero_in_every_form(cls):
    model = build(cls, SpringChain(n=9)).eval()
    y, dy = _inputs(SpringChain(n=9))
    assert torch.equal(model.pointwise_forward(y, dy, 0.1), torch.zeros_like(y))
    with torch.no_grad():
        assert torch.equal(model(None, y, dy, 0.1), torch.zeros_like(y))


def test_models_outside_the_fast_forms_say_so():
    kw = {"method": "rk4", "step_size": 0.1, "dtype": torch.float64}
    assert not LocalAttSolver.for_system(Lorenz96(N=8), residual=True, **kw).fusable()
    gelu_residual = LocalAttSolver.for_system(Lorenz96(N=8), activation="gelu", residual=True, **kw)
    assert not gelu_residual.foldable()
    assert LocalAttSolver.for_system(Lorenz96(N=8), attention="none", **kw).fusable()


def test_the_elementwise_form_refuses_a_lattice_too_short_for_the_window():
    model = randomize(build(LocalNeurVec, Lorenz96(N=12)))
    short = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"4 site\(s\), too short for the window of 5"):
        model.pointwise_forward(short, short, 0.1)


def test_a_compiled_corrected_solve_matches_the_eager_one():
    system = SpringChain(n=6)
    model = randomize(LocalNeurVec.for_system(system, method="euler", step_size=0.1, dtype=torch.float32,
                                              window=3, width=4, mixed_precision=True))
    model.requires_grad_(False)
    y0 = system.sample_initial(4, generator=torch.Generator().manual_seed(3))
    t = torch.linspace(0, 0.8, 9, dtype=torch.float64)
    clear_compile_cache()
    eager = attsolver.solve(system, y0, t, method="euler", step_size=0.1, corrector=model)
    fused = attsolver.solve(system, y0, t, method="euler", step_size=0.1, corrector=model,
                            options={"compile": True, "compile_chunk": 2})
    stats = compile_stats()
    assert stats["compiled_calls"] >= 2 and stats["eager_fallbacks"] == 0
    assert fused.dtype == torch.float64
    plain = attsolver.solve(system, y0, t, method="euler", step_size=0.1)
    # float32 rounding in the correction only (the two forms sum in different orders)
    assert float((fused - eager).abs().max()) < 1e-5 * float((eager - plain).abs().max())


@pytest.mark.parametrize("shape,axis,periodic,window", [((10, 3), 0, True, 3), ((2, 10, 3), -2, False, 5),
                                                        ((12,), -1, False, 1)])
def test_fast_forms_on_other_layouts(shape, axis, periodic, window):
    # the lattice on a leading axis, channels on the others, fixed ends, a window of one site
    model = randomize(LocalHypersolver(shape, method="euler", step_size=0.1, periodic=periodic, lattice_axis=axis,
                                       window=window, dtype=torch.float64))
    g = torch.Generator().manual_seed(5)
    y = torch.randn(2, 3, *shape, dtype=torch.float64, generator=g)  # two batch dimensions
    dy = 0.1 * torch.randn(y.shape, dtype=torch.float64, generator=g)
    ref = model._forward(y, dy, 0.1)
    torch.testing.assert_close(model.pointwise_forward(y, dy, 0.1), ref, rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        torch.testing.assert_close(model(None, y, dy, 0.1), ref, rtol=1e-12, atol=1e-14)


def test_a_subclass_without_the_fast_forms_keeps_the_reference():
    from attsolver.correctors import LocalCorrector
    from attsolver.correctors.heads import mlp

    class Plain(LocalCorrector):  # a user's local corrector that only defines network
        def __init__(self, state_shape, **kw):
            super().__init__(state_shape, features=("y",), **kw)
            self.net = mlp([self.site_features, 4, self.state_channels], "tanh", dtype=self.dtype)

        def network(self, u):
            return self.net(u)

    model = randomize(Plain((8,), method="rk4", step_size=0.1, periodic=True, window=3, dtype=torch.float64))
    assert not model.fusable() and not model.foldable()
    y, dy = _inputs(Lorenz96(N=8))
    with torch.no_grad():
        assert torch.equal(model(None, y, dy, 0.1), model._forward(y, dy, 0.1))


def test_the_folded_weights_follow_every_change_of_the_model():
    system = SpringChain(n=9)
    model = randomize(build(LocalNeurVec, system))
    y, dy = _inputs(system)

    def check():
        with torch.no_grad():
            fast = model(None, y, dy, 0.1)
        torch.testing.assert_close(fast, model._forward(y, dy, 0.1), rtol=1e-12, atol=1e-14)

    check()
    with torch.no_grad():  # an optimiser step: in place
        model.net[0].weight.add_(0.1)
    check()
    model.set_normalization(torch.zeros(model.in_channels), 2 * torch.ones(model.in_channels),
                            torch.ones(model.state_channels))
    check()
    other = randomize(build(LocalNeurVec, system), seed=4)
    model.load_state_dict(other.state_dict())
    check()
    model.load_state_dict(randomize(build(LocalNeurVec, system), seed=5).state_dict(), assign=True)  # new tensors
    check()
    model.float().double()
    check()
    import copy
    import pickle

    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):  # the cache is not carried along
        with torch.no_grad():
            torch.testing.assert_close(clone(None, y, dy, 0.1), model._forward(y, dy, 0.1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("parent", [LocalNeurVec, LocalHypersolver, LocalAttSolver])
def test_a_subclass_overriding_network_is_not_run_by_its_parents_fast_forms(parent):
    """``class Mine(LocalNeurVec)`` with its own ``network``: the eager no-grad path (and the
    compiled one) must evaluate that network, not the parent's folded/unrolled one."""

    class Mine(parent):
        def network(self, u):
            return 2.0 * super().network(u)

    system = Lorenz96(N=8)
    model = randomize(build(Mine, system))
    y, dy = _inputs(system)
    with torch.no_grad():
        out = model(None, y, dy, 0.1)
        twin = build(parent, system)
        twin.load_state_dict(model.state_dict())
        parent_out = twin(None, y, dy, 0.1)
    torch.testing.assert_close(out, model._forward(y, dy, 0.1), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out, 2.0 * parent_out, rtol=1e-10, atol=1e-12)
