"""Correctors and attention gates: exactness when untrained, scaling laws, bounds, parameter
counts, compatibility refusals, save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import attsolver
from attsolver.correctors import (
    AttSolver, Corrector, Hypersolver, NeurVec, list_correctors, load_corrector, get_corrector_class,
)
from attsolver.correctors.base import SCHEMA_VERSION
from attsolver._io import seal_payload, verify_payload
from attsolver.nn import list_attention, make_attention, refresh_spectral_caps, spectral_norm_of
from attsolver.systems import Lorenz63


#: every corrector configuration tested: the registered classes with their defaults, plus the
#: AttSolver design variants
VARIANTS = {name: (name, {}) for name in list_correctors()}
VARIANTS.update({
    "AttSolver-mul": ("AttSolver", {"combine": "mul"}),
    "AttSolver-nogate": ("AttSolver", {"attention": "none"}),
    "AttSolver-iebn": ("AttSolver", {"attention": "iebn"}),
    "AttSolver-se-from-features": ("AttSolver", {"attention_input": "features"}),
    "AttSolver-se-from-y": ("AttSolver", {"attention_input": "y", "lipschitz_cap": None}),
    "NeurVec-tanh": ("NeurVec", {"activation": "tanh", "width": 64}),
})
# the local correctors on the 3 components of these tests as a ring of 3 sites
VARIANTS.update({name: (name, {"periodic": True, "window": 3})
                 for name in ("LocalNeurVec", "LocalHypersolver", "LocalAttSolver")})


def build(variant: str, *, state_shape=(3,), method="rk4", step_size=0.05, dtype=torch.float64) -> Corrector:
    name, kw = VARIANTS[variant]
    return get_corrector_class(name)(state_shape, method=method, step_size=step_size, dtype=dtype, **kw)


def randomize(model: Corrector, seed: int = 0) -> Corrector:
    """Give every parameter and normalisation buffer a non-trivial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        model.in_mean.copy_(torch.randn(model.in_mean.shape, generator=g, dtype=model.dtype))
        model.in_std.copy_(1 + torch.rand(model.in_std.shape, generator=g, dtype=model.dtype))
        model.out_scale.copy_(0.5 + torch.rand(model.out_scale.shape, generator=g, dtype=model.dtype))
    return model


# --------------------------------------------------------------------------- exact when untrained


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_untrained_corrector_reproduces_the_classical_solution_bitwise(variant, method, dtype):
    # zero-initialised output layer: C == 0 exactly, and y* + 0 == y* in IEEE arithmetic
    system = Lorenz63()
    y0 = system.sample_initial(4, generator=torch.Generator().manual_seed(1), dtype=dtype)
    t = torch.linspace(0, 0.5, 6, dtype=torch.float64)
    model = build(variant, method=method, step_size=0.05, dtype=dtype)
    for y in (y0, y0[0]):  # batched [B, d] and a single state [d]
        plain = attsolver.solve(system, y, t, method=method, step_size=0.05)
        corrected = attsolver.solve(system, y, t, method=method, step_size=0.05, corrector=model)
        assert corrected.dtype == dtype
        assert torch.equal(plain, corrected)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_forward_keeps_any_batch_shape(variant):
    model = randomize(build(variant)).eval()  # eval: no power iteration between the calls
    for shape in [(3,), (5, 3), (2, 4, 3)]:
        y = torch.randn(shape, dtype=torch.float64)
        out = model(None, y, 0.01 * y, 0.05)
        assert out.shape == y.shape
    batched = model(None, y, 0.01 * y, 0.05)
    single = model(None, y[1, 2], 0.01 * y[1, 2], 0.05)
    torch.testing.assert_close(batched[1, 2], single)


# --------------------------------------------------------------------------- Hypersolver scaling


class _Ones(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.d = d

    def forward(self, u):
        return u.new_ones(u.shape[0], self.d)


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_hypersolver_output_scales_as_h_to_the_order_plus_one(method):
    model = Hypersolver(3, method=method, step_size=0.1, dtype=torch.float64)
    p = attsolver.get_method(method).order
    assert model.output_order == p + 1
    model.net = _Ones(3)  # fix g = 1: C = h^{p+1} * out_scale
    with torch.no_grad():
        model.out_scale.copy_(torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))
    y = torch.randn(4, 3, dtype=torch.float64)
    c = {h: model(None, y, 0.01 * y, h) for h in (0.1, 0.05, 0.025)}
    torch.testing.assert_close(c[0.1][0], 0.1 ** (p + 1) * model.out_scale, rtol=1e-14, atol=0)
    for h in (0.1, 0.05):
        ratio = c[h] / c[h / 2]
        torch.testing.assert_close(ratio, torch.full_like(ratio, 2.0 ** (p + 1)), rtol=1e-12, atol=0)


def test_neurvec_output_does_not_depend_on_h():
    model = randomize(build("NeurVec"))
    y = torch.randn(4, 3, dtype=torch.float64)
    assert torch.equal(model(None, y, 0.01 * y, 0.05), model(None, y, 0.02 * y, 0.1))


# --------------------------------------------------------------------------- attention gates


@pytest.mark.parametrize("name", list_attention())
@pytest.mark.parametrize("shape", [(32, 16), (8, 16, 5, 5)])
def test_gate_is_in_open_unit_interval_and_lipschitz_bounded(name, shape):
    torch.manual_seed(0)
    gate = make_attention(name, 16, lipschitz_cap=1.0, dtype=torch.float64)
    with torch.no_grad():  # move IEBN off its zero initialisation so the bound is not trivial
        for p in gate.parameters():
            p.add_(torch.randn_like(p))
    x = 3 * torch.randn(shape, dtype=torch.float64)

    def gate_of(inp):  # a stateful gate returns (gate, state); start a fresh sequence each call
        return gate(inp)[0] if gate.stateful else gate(inp)

    a = gate_of(x)
    assert a.shape == (shape[0], 16, *([1] * (len(shape) - 2)))
    assert bool((a > 0).all()) and bool((a < 1).all())
    gate.eval()
    x2 = x + 0.1 * torch.randn_like(x)
    da = (gate_of(x) - gate_of(x2)).reshape(shape[0], -1).norm(dim=1)
    dx = (x - x2).reshape(shape[0], shape[1], -1).mean(-1).norm(dim=1)  # the pooled inputs
    bound = gate.lipschitz_bound()
    assert bound is not None
    assert bool((da <= bound * dx * (1 + 1e-9)).all())


def _capped_weights(module):
    return [m.weight for m in module.modules() if parametrize.is_parametrized(m, "weight")]


def test_spectral_cap_holds_at_init_and_through_training():
    torch.manual_seed(0)
    gate = make_attention("se", 64, in_channels=24, reduction=4, lipschitz_cap=1.0)
    weights = _capped_weights(gate)
    assert len(weights) == 2
    assert all(spectral_norm_of(w) <= 1 + 1e-5 for w in weights)  # exact (SVD) at init
    opt = torch.optim.Adam(gate.parameters(), lr=0.05)
    x = torch.randn(128, 24)
    for _ in range(30):  # push the weights up: maximise the gate's spread
        loss = -gate(x).var()
        opt.zero_grad()
        loss.backward()
        opt.step()
    raw = [m.parametrizations.weight.original for m in gate.modules() if parametrize.is_parametrized(m, "weight")]
    assert max(spectral_norm_of(w) for w in raw) > 1.5  # the cap is doing something
    # one power iteration per training step tracks the norm to a few per cent ...
    assert all(spectral_norm_of(w) <= 1.05 for w in _capped_weights(gate))
    # ... and refreshing (done when a corrector enters eval mode) makes it exact
    refresh_spectral_caps(gate)
    assert all(spectral_norm_of(w) <= 1 + 1e-6 for w in _capped_weights(gate))


def test_attsolver_gate_layers_are_spectrally_capped():
    model = randomize(build("AttSolver")).eval()  # eval mode refreshes the caps exactly
    weights = _capped_weights(model.gate)
    assert len(weights) == 2 and _capped_weights(model.body) == []
    assert all(spectral_norm_of(w) <= 1 + 1e-9 for w in weights)
    assert max(spectral_norm_of(m.parametrizations.weight.original) for m in (model.gate.fc1, model.gate.fc2)) > 1
    assert not _capped_weights(build("AttSolver-se-from-y").gate)


def test_unknown_attention_lists_the_choices():
    with pytest.raises(ValueError, match="unknown attention 'cbam'.*se"):
        make_attention("cbam", 8)
    with pytest.raises(ValueError, match="unknown attention"):
        AttSolver(3, method="rk4", step_size=0.1, attention="cbam")


# --------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("d", [3, 40])
def test_default_parameter_counts(d):
    def count(m):
        return sum(p.numel() for p in m.parameters())

    kw = {"method": "rk4", "step_size": 0.1}
    w = 1024  # NeurVec: d -> 1024 -> d, plus the 7 coefficients of the rational activation
    assert count(NeurVec(d, **kw)) == d * w + w + w * d + d + 7
    assert count(NeurVec(d, activation="tanh", **kw)) == d * w + w + w * d + d
    # Hypersolver: g: [y, Phi, h] (2d+1) -> 64 -> 64 -> d
    assert count(Hypersolver(d, **kw)) == (2 * d + 1) * 64 + 64 + 64 * 64 + 64 + 64 * d + d
    # AttSolver: body [y, dy] (2d) -> 128 -> 128; SE gate 128 -> 32 -> 128; head 128 -> d
    body = 2 * d * 128 + 128 + 128 * 128 + 128
    gate = 128 * 32 + 32 + 32 * 128 + 128
    head = 128 * d + d
    assert count(AttSolver(d, **kw)) == body + gate + head
    assert count(AttSolver(d, combine="mul", **kw)) == body + gate + head
    assert count(AttSolver(d, attention="none", **kw)) == body + head
    assert count(AttSolver(d, attention="iebn", **kw)) == body + 2 * 128 + head


# --------------------------------------------------------------------------- compatibility


@pytest.fixture
def lorenz_setup():
    system = Lorenz63()
    y0 = system.sample_initial(2, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0, 0.2, 5, dtype=torch.float64)
    return system, y0, t, build("AttSolver", method="rk4", step_size=0.05)


def test_refuses_another_method(lorenz_setup):
    system, y0, t, model = lorenz_setup
    with pytest.raises(ValueError, match=r"method 'euler' \(trained for 'rk4'\)") as e:
        attsolver.solve(system, y0, t, method="euler", step_size=0.05, corrector=model)
    assert "step size" not in str(e.value).split(". It was")[0]


def test_refuses_another_step_size(lorenz_setup):
    system, y0, t, model = lorenz_setup
    with pytest.raises(ValueError, match=r"step size 0\.025 \(trained for step_size=0\.05") as e:
        attsolver.solve(system, y0, t, method="rk4", step_size=0.025, corrector=model)
    assert "method 'rk4' (" not in str(e.value)
    with pytest.raises(ValueError, match="step size 0.1 "):  # no step_size: one step per interval
        attsolver.solve(system, y0, torch.linspace(0, 0.2, 3, dtype=torch.float64), corrector=model)
    # a step that divides the intervals is accepted
    attsolver.solve(system, y0, torch.linspace(0, 0.2, 3, dtype=torch.float64), step_size=0.05, corrector=model)


def test_refuses_another_state_shape(lorenz_setup):
    system, y0, t, _ = lorenz_setup
    model = build("NeurVec-tanh", state_shape=(4,))
    with pytest.raises(ValueError, match=r"state shape: y0 has shape \(2, 3\).*\(4,\)"):
        attsolver.solve(system, y0, t, step_size=0.05, corrector=model)


def test_names_every_mismatch_at_once(lorenz_setup):
    system, y0, t, _ = lorenz_setup
    model = build("NeurVec-tanh", state_shape=(4,), method="euler", step_size=0.1)
    with pytest.raises(ValueError) as e:
        attsolver.solve(system, y0, t, method="rk4", step_size=0.05, corrector=model)
    msg = str(e.value)
    assert "method 'rk4' (trained for 'euler')" in msg and "step size 0.05" in msg and "state shape" in msg


def test_refuses_other_dtype_and_backward_time(lorenz_setup):
    system, y0, t, model = lorenz_setup
    with pytest.raises(TypeError, match="float32.*float64|float64.*float32"):
        attsolver.solve(system, y0.float(), t, step_size=0.05, corrector=model)
    with pytest.raises(ValueError, match="backward"):
        attsolver.solve(system, y0, t.flip(0), step_size=0.05, corrector=model)


def test_constructor_refuses_bad_settings():
    with pytest.raises(ValueError, match="fixed-step"):
        NeurVec(3, method="dopri5", step_size=0.1)
    with pytest.raises(ValueError, match="unknown method"):
        NeurVec(3, method="rk5", step_size=0.1)
    with pytest.raises(ValueError, match="step_size"):
        NeurVec(3, method="rk4", step_size=0.0)
    with pytest.raises(ValueError, match="state_shape"):
        NeurVec((3, 0), method="rk4", step_size=0.1)
    with pytest.raises(ValueError, match="features"):
        AttSolver(3, method="rk4", step_size=0.1, features=("y", "q"))
    with pytest.raises(ValueError, match="attention_input"):
        AttSolver(3, method="rk4", step_size=0.1, attention_input="phi")
    with pytest.raises(ValueError, match="combine"):
        AttSolver(3, method="rk4", step_size=0.1, combine="concat")
    with pytest.raises(TypeError, match="dtype"):
        NeurVec(3, method="rk4", step_size=0.1, dtype=torch.int64)


def test_trained_for_records_the_setting():
    model = AttSolver((2, 5), method="heun", step_size=0.2, dtype=torch.float32)
    rec = model.trained_for
    assert rec["method"] == "heun" and rec["order"] == 2 and rec["step_size"] == 0.2
    assert rec["state_shape"] == [2, 5] and rec["features"] == ["y", "dy"] and rec["dtype"] == "float32"
    import json

    json.dumps(rec)
    json.dumps(model.config())


# --------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_save_load_reproduces_outputs_bitwise(variant, tmp_path):
    model = randomize(build(variant)).eval()
    model.training_info = {"note": "trained on nothing"}
    path = model.save(tmp_path / "model.pt")
    y = torch.randn(6, 3, dtype=torch.float64)
    expected = model(None, y, 0.01 * y, 0.05)
    for loaded in (load_corrector(path), type(model).load(path), Corrector.load(path)):
        assert type(loaded) is type(model) and not loaded.training
        assert torch.equal(loaded(None, y, 0.01 * y, 0.05), expected)
        assert loaded.trained_for == model.trained_for
        assert loaded.config() == model.config()
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_load_refuses_another_class(tmp_path):
    path = build("Hypersolver").save(tmp_path / "h.pt")
    with pytest.raises(ValueError, match="holds a Hypersolver corrector, not a NeurVec"):
        NeurVec.load(path)


def test_load_refuses_newer_schema_foreign_and_corrupted_files(tmp_path):
    model = build("NeurVec-tanh")
    path = model.save(tmp_path / "m.pt")
    ckpt = verify_payload(torch.load(path, weights_only=True), "m.pt")
    ckpt["schema_version"] = SCHEMA_VERSION + 1
    torch.save(seal_payload(ckpt), tmp_path / "newer.pt")  # as a newer attsolver would write it
    with pytest.raises(ValueError, match="newer attsolver"):
        load_corrector(tmp_path / "newer.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not an attsolver corrector checkpoint"):
        load_corrector(tmp_path / "foreign.pt")
    data = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable attsolver checkpoint"):
        load_corrector(tmp_path / "truncated.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x00 not a checkpoint" * 10)
    with pytest.raises(ValueError, match="not a readable attsolver checkpoint"):
        load_corrector(tmp_path / "garbage.pt")
    with pytest.raises(FileNotFoundError):
        load_corrector(tmp_path / "missing.pt")


def test_save_is_atomic(tmp_path, monkeypatch):
    model = build("NeurVec-tanh")
    path = model.save(tmp_path / "m.pt")
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        randomize(model).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_set_normalization_checks_its_input():
    model = build("NeurVec-tanh")
    with pytest.raises(ValueError, match="in_std needs 3 values"):
        model.set_normalization(torch.zeros(3), torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match="out_scale must be finite and positive"):
        model.set_normalization(torch.zeros(3), torch.ones(3), torch.zeros(3))


def test_check_compatible_accepts_rounding_of_the_step():
    model = build("NeurVec-tanh", step_size=0.1)
    y0 = torch.zeros(3, dtype=torch.float64)
    model.check_compatible(method="rk4", step_sizes=np.array([0.1 * (1 + 1e-12), 0.1]), y0=y0)
    with pytest.raises(ValueError, match="step size"):
        model.check_compatible(method="rk4", step_sizes=np.array([0.1 * (1 + 1e-6)]), y0=y0)
    assert math.isclose(model.trained_for["step_size"], 0.1)
