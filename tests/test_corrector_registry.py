"""Every corrector the factory builds — each registered head on each layout it runs on, and each
preset — is tested here by name, so a new head or layout is tested as soon as it is registered:
it builds the class its name says, keeps the state's shape, starts as an exact zero in every
evaluation form (and so leaves a solve bit for bit classical), and survives a save / load round
trip bit for bit.  Also: unknown names are refused with the valid ones; a head or a layout
registered from outside (one class, one line) is built with every layout or head, and no head
is run by another head's fast forms."""

from __future__ import annotations

import json

import pytest
import torch

import attsolver
from attsolver.correctors import (
    REGISTRY, Corrector, Layout, LocalCorrector, NeurVecHead, create, list_correctors, load_corrector, names,
)
from attsolver.correctors import factory
from attsolver.correctors.heads import MLPHead, base as heads_base
from attsolver.correctors.layouts import base as layouts_base
from attsolver.systems import Burgers, Lorenz63, Lorenz96

#: one problem per layout: the system the factory builds for, and a batch of its states
SYSTEMS = {"dense": Lorenz63(), "lattice": Lorenz96(N=8), "grid": Burgers(nu=0.01, nx=16)}


def build(name: str, dtype=torch.float64) -> Corrector:
    system = SYSTEMS[REGISTRY[name].layout.name]
    return create(name, system=system, method="rk4", step_size=0.05, dtype=dtype)


def states(name: str, batch=(2, 3), seed=0):
    system = SYSTEMS[REGISTRY[name].layout.name]
    g = torch.Generator().manual_seed(seed)
    y = system.sample_initial(batch[0] * batch[1], generator=g).reshape(*batch, *system.state_shape)
    return y, 0.01 * torch.randn(y.shape, generator=g, dtype=y.dtype)


def randomize(model: Corrector, seed: int = 0) -> Corrector:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        model.in_mean.copy_(torch.randn(model.in_mean.shape, generator=g, dtype=model.dtype))
        model.in_std.copy_(1 + torch.rand(model.in_std.shape, generator=g, dtype=model.dtype))
        model.out_scale.copy_(0.5 + torch.rand(model.out_scale.shape, generator=g, dtype=model.dtype))
    return model.eval()


def every_form(model: Corrector, y, dy, h=0.05) -> dict[str, torch.Tensor]:
    """The correction in each evaluation form the model has (the reference with autograd, the
    eager form without, and a lattice's elementwise form)."""
    out = {"reference": model(None, y, dy, h)}
    with torch.no_grad():
        out["no_grad"] = model(None, y, dy, h)
        if isinstance(model, LocalCorrector) and model.fusable():
            out["elementwise"] = model.pointwise_forward(y, dy, h)
    return out


def test_every_class_is_a_name():
    assert set(list_correctors()) <= {e.class_name for e in REGISTRY.values()}
    assert {"neurvec", "hypersolver", "attsolver-mul", "neurvec-local", "attsolver-conv-add"} <= set(names())
    assert names("lattice") == [n for n in names() if n.split("-")[1:2] == ["local"]]


@pytest.mark.parametrize("name", names())
def test_a_name_builds_its_class_with_its_preset(name):
    entry = REGISTRY[name]
    model = build(name)
    assert type(model).__name__ == entry.class_name
    assert type(model.layout) is entry.layout and type(model.head_spec) is entry.head
    assert entry.fixed.items() <= model.head_spec.hparams().items()
    json.dumps(model.config())
    json.dumps(model.trained_for)


@pytest.mark.parametrize("name", names())
def test_keeps_the_shape_and_is_an_exact_zero_in_every_form_when_untrained(name):
    model = build(name).eval()
    y, dy = states(name)
    for form, c in every_form(model, y, dy).items():
        assert c.shape == y.shape, form
        assert torch.equal(c, torch.zeros_like(y)), form
    system = SYSTEMS[REGISTRY[name].layout.name]
    t = torch.tensor([0.0, 0.05, 0.1], dtype=torch.float64)
    plain = attsolver.solve(system, y[0], t, method="rk4", step_size=0.05)
    assert torch.equal(attsolver.solve(system, y[0], t, method="rk4", step_size=0.05, corrector=model), plain)


@pytest.mark.parametrize("name", names())
def test_save_load_round_trip_is_bitwise(name, tmp_path):
    model = randomize(build(name))
    model.training_info = {"note": name}
    loaded = load_corrector(model.save(tmp_path / "m.pt"))
    assert type(loaded) is type(model) and loaded.config() == model.config()
    assert loaded.trained_for == model.trained_for
    y, dy = states(name, seed=1)
    ours, theirs = every_form(model, y, dy), every_form(loaded, y, dy)
    assert ours.keys() == theirs.keys()
    for form in ours:
        assert torch.equal(ours[form], theirs[form]), form
    assert ours["reference"].abs().max() > 0


def test_unknown_names_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown corrector 'neurvec-2d'; choose one of: .*attsolver-conv-mul.*neurvec-local"):
        create("neurvec-2d", 3, method="rk4", step_size=0.1)
    assert type(create("LocalNeurVec", system=Lorenz96(N=8), method="rk4", step_size=0.1)).__name__ == "LocalNeurVec"
    with pytest.raises(TypeError, match="state_shape or a system"):
        create("neurvec", method="rk4", step_size=0.1)


def test_a_preset_fixes_its_argument():
    model = create("attsolver-conv-mul", 16, method="rk4", step_size=0.1, combine="add")  # as the CLI did
    assert model.config()["combine"] == "mul"


class _DoubledHead(MLPHead):
    """A user's head in one class: twice an MLP of one hidden layer, h-scaled like a Hypersolver."""

    name = "doubled"
    features = ("y", "dy")

    def __init__(self, *, width: int = 6):
        super().__init__([width], "tanh")
        self.width = width

    def hparams(self):
        return {"width": self.width}

    def output_order(self, order):
        return order + 1

    def network(self, m, u):
        return 2.0 * m.net(u)


@pytest.fixture
def doubled_head():
    saved = dict(factory._HEADS), dict(heads_base._HEADS)
    factory.register_head(_DoubledHead)  # the one registry line
    yield
    factory._HEADS.clear(), factory._HEADS.update(saved[0])
    heads_base._HEADS.clear(), heads_base._HEADS.update(saved[1])
    factory._rebuild()


def test_a_new_head_is_one_class_and_one_line(doubled_head, tmp_path):
    assert {"doubled", "doubled-local", "doubled-conv"} <= set(names())
    for name in ("doubled", "doubled-local", "doubled-conv"):
        model = build(name)
        y, dy = states(name)
        assert all(torch.equal(c, torch.zeros_like(y)) for c in every_form(model.eval(), y, dy).values())
        model = randomize(model)
        assert model.output_order == 5 and model._fast is None  # no fast form knows this head
        loaded = load_corrector(model.save(tmp_path / f"{name}.pt"))
        assert torch.equal(loaded(None, y, dy, 0.05), model(None, y, dy, 0.05))
        assert loaded.config()["head"] == {"name": "doubled", "width": 6}


def test_a_subclass_of_a_known_head_is_never_run_by_its_fast_forms(tmp_path):
    class Scaled(NeurVecHead):  # the same modules as NeurVec's, another network
        def network(self, m, u):
            return 3.0 * m.net(u)

    kw = {"method": "rk4", "step_size": 0.05, "dtype": torch.float64}
    mine = LocalCorrector.for_system(Lorenz96(N=8), head=Scaled(width=4), **kw)
    twin = randomize(LocalCorrector.for_system(Lorenz96(N=8), head=NeurVecHead(width=4), **kw))
    mine.load_state_dict(twin.state_dict())
    mine.eval()
    assert not mine.fusable() and not mine.foldable() and twin.fusable() and twin.foldable()
    y, dy = states("neurvec-local")
    with torch.no_grad():
        torch.testing.assert_close(mine(None, y, dy, 0.05), 3.0 * twin(None, y, dy, 0.05), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="Scaled is not the head registered as 'neurvec'"):
        mine.save(tmp_path / "m.pt")  # its config would rebuild NeurVec's network: refused, not saved
    assert not (tmp_path / "m.pt").exists()


class _Componentwise(Layout):
    """A user's layout in one class: every state component on its own, the network mapping its
    features (one number each) to its correction."""

    name = "componentwise"
    suffix = "-componentwise"
    feature_layout = "per component: its features"

    def __init__(self, state_shape, features=("y",)):
        super().__init__(state_shape, features)
        self.n_in, self.n_out = len(self.features), 1

    def stat_sizes(self):
        return self.n_in, 1

    def spread_scale(self, m, scale):
        return scale.expand(self.state_dim)

    def forward(self, m, t, y, dy, h):
        yb, dyb = y.reshape(-1, 1), dy.reshape(-1, 1)
        u = torch.cat(self.feature_parts(yb, dyb, h, (yb.shape[0], 1), None, type(m).__name__), dim=1)
        return (m.network((u - m.in_mean) / m.in_std) * m.channel_scale(h)).reshape(y.shape)


@pytest.fixture
def componentwise_layout():
    saved = dict(factory._LAYOUTS), dict(layouts_base._LAYOUTS)
    factory.register_layout(_Componentwise)  # the one registry line
    SYSTEMS["componentwise"] = Lorenz63()
    yield
    factory._LAYOUTS.clear(), factory._LAYOUTS.update(saved[0])
    layouts_base._LAYOUTS.clear(), layouts_base._LAYOUTS.update(saved[1])
    factory._rebuild()
    del SYSTEMS["componentwise"]


def test_a_new_layout_is_one_class_and_one_line(componentwise_layout, tmp_path):
    new = names("componentwise")
    assert new == ["attsolver-componentwise", "attsolver-componentwise-add", "attsolver-componentwise-mul",
                   "hypersolver-componentwise", "neurvec-componentwise"]
    for name in new:
        model = build(name).eval()
        y, dy = states(name)
        assert torch.equal(model(None, y, dy, 0.05), torch.zeros_like(y))
        model = randomize(model)
        loaded = load_corrector(model.save(tmp_path / f"{name}.pt"))
        assert type(loaded) is Corrector and loaded.config() == model.config()
        assert loaded.config()["layout"] == {"name": "componentwise"}
        assert torch.equal(loaded(None, y, dy, 0.05), model(None, y, dy, 0.05))
