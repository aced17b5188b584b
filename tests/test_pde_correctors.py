"""Convolutional PDE correctors and the coarse-to-fine set-up: translation equivariance, any
grid size, exactness when untrained, parameter counts, grid-spacing refusal, bad input, and a
short training that must beat the coarse solver on held-out initial conditions."""

from __future__ import annotations

import math

import pytest
import torch

import attsolver
from attsolver.correctors import AttSolverConv, ConvCorrector, NeurVecConv, PeriodicConv1d, list_correctors, load_corrector
from attsolver.data.coarse_fine import CoarseFineSetup, burgers_setup, ks_setup
from attsolver.evaluate.metrics import nrmse
from attsolver.systems.grid import restrict
from attsolver.systems import Burgers, KuramotoSivashinsky

#: every convolutional corrector configuration tested
VARIANTS = {
    "NeurVecConv": (NeurVecConv, {}),
    "AttSolverConv-add": (AttSolverConv, {}),
    "AttSolverConv-mul": (AttSolverConv, {"combine": "mul"}),
    "AttSolverConv-iebn": (AttSolverConv, {"attention": "iebn"}),
    "AttSolverConv-nogate": (AttSolverConv, {"attention": "none"}),
    "AttSolverConv-tanh-k7": (AttSolverConv, {"activation": "tanh", "kernel_size": 7, "head_kernel": 3}),
}


def build(variant: str, nx: int = 64, step_size: float = 0.01, **kw) -> ConvCorrector:
    cls, extra = VARIANTS[variant]
    method = "etdrk4" if step_size == 0.01 else "rk4"
    return cls((nx,), method=method, step_size=step_size, dtype=torch.float64, **{**extra, **kw})


def randomize(model: ConvCorrector, seed: int = 0) -> ConvCorrector:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        model.in_mean.copy_(torch.randn(model.in_mean.shape, generator=g, dtype=model.dtype))
        model.in_std.copy_(1 + torch.rand(model.in_std.shape, generator=g, dtype=model.dtype))
        model.out_scale.fill_(0.7)
    return model.eval()


def fields(n: int, nx: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    u = Burgers(nu=0.01, nx=nx).sample_initial(n, generator=torch.Generator().manual_seed(seed))
    return u, 0.01 * torch.roll(u, 3, -1) - 0.002 * u


def test_conv_correctors_are_registered():
    assert {"NeurVecConv", "AttSolverConv"} <= set(list_correctors())


# --------------------------------------------------------------------------- symmetry and size


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("shift", [1, 5, 37])
def test_translation_equivariance(variant, shift):
    # periodic convolutions commute with shifts; the gate pools over space (shift-invariant)
    model = randomize(build(variant))
    u, du = fields(4, 64)
    c = model(None, u, du, 0.01)
    c_shifted = model(None, torch.roll(u, shift, -1), torch.roll(du, shift, -1), 0.01)
    assert c.abs().max() > 1e-3  # not trivially zero
    torch.testing.assert_close(c_shifted, torch.roll(c, shift, -1), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_runs_at_any_grid_size_with_the_same_parameters(variant):
    counts = {nx: sum(p.numel() for p in build(variant, nx=nx).parameters()) for nx in (16, 64, 1024)}
    assert len(set(counts.values())) == 1, counts
    model = randomize(build(variant, nx=64))
    for nx in (64, 128, 6):  # also a field shorter than the stencil
        u, du = fields(3, max(nx, 16))
        u, du = u[..., :nx], du[..., :nx]
        assert model(None, u, du, 0.01).shape == u.shape
    # a constant field gives a constant correction at every size (equivariance + periodicity)
    for nx in (32, 128):
        c = model(None, torch.full((2, nx), 0.3, dtype=torch.float64), torch.zeros(2, nx, dtype=torch.float64), 0.01)
        torch.testing.assert_close(c, c[:, :1].expand_as(c), rtol=1e-12, atol=1e-14)


def test_parameter_counts():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    w, k = 32, 5  # NeurVec-conv: conv 1 -> w, rational (7), conv w -> 1
    assert count(NeurVecConv(64, method="etdrk4", step_size=0.01)) == (w * k + w) + 7 + (w * k + 1)
    w, k, c_in = 16, 5, 2  # AttSolver-conv: 3 convs, SE gate w -> w/4 -> w, 1x1 head
    body = (c_in * w * k + w) + 2 * (w * w * k + w)
    gate = (w * (w // 4) + w // 4) + ((w // 4) * w + w)
    head = w + 1
    assert count(AttSolverConv(64, method="etdrk4", step_size=0.01)) == body + gate + head == 2933
    assert count(AttSolverConv(64, method="etdrk4", step_size=0.01, attention="none")) == body + head
    assert AttSolverConv(64, method="etdrk4", step_size=0.01).receptive_field == 13


def test_periodic_conv_matches_an_explicit_circular_stencil():
    conv = PeriodicConv1d(1, 1, 3, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[1.0, -2.0, 1.0]]], dtype=torch.float64))
        conv.bias.zero_()
    u = torch.randn(2, 1, 10, dtype=torch.float64)
    expected = torch.roll(u, 1, -1) - 2 * u + torch.roll(u, -1, -1)  # the periodic second difference
    torch.testing.assert_close(conv(u), expected, rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match="odd"):
        PeriodicConv1d(1, 1, 4)


# --------------------------------------------------------------------------- exactness, refusals


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_untrained_corrector_reproduces_the_classical_solution_exactly(variant):
    system = Burgers(nu=0.01, nx=64)
    u0 = system.sample_initial(3, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0, 0.1, 6, dtype=torch.float64)
    model = build(variant).eval()
    assert torch.equal(model(None, u0, 0.01 * u0, 0.01), torch.zeros_like(u0))  # zero-initialised head
    # an explicit method in physical space: bit for bit the plain solve
    plain = attsolver.solve(system, u0, t, method="rk4", step_size=1e-3)
    assert torch.equal(attsolver.solve(system, u0, t, method="rk4", step_size=1e-3,
                                       corrector=build(variant, step_size=1e-3).eval()), plain)
    # a spectral stepper: solve's corrected loop returns to grid values after every step (an
    # irfft/rfft round trip the plain loop skips), so it is bit for bit the zero correction's
    # solve and equal to the plain spectral solve up to that round-off
    zero = attsolver.solve(system, u0, t, method="etdrk4", step_size=0.01,
                           corrector=lambda t, y, dy, h: torch.zeros_like(y))
    corrected = attsolver.solve(system, u0, t, method="etdrk4", step_size=0.01, corrector=model)
    assert torch.equal(corrected, zero)
    plain = attsolver.solve(system, u0, t, method="etdrk4", step_size=0.01)
    torch.testing.assert_close(corrected, plain, rtol=0, atol=1e-14)


def test_other_grid_spacing_is_refused_unless_allowed(tmp_path):
    model = randomize(build("AttSolverConv-add", nx=64))
    with torch.no_grad():
        model.out_scale.fill_(1e-4)  # a small random correction: the solves stay finite
    assert model.trained_for["grid_spacing"] == pytest.approx(1 / 64)
    assert model.trained_for["nx"] == 64
    fine = Burgers(nu=0.01, nx=128)
    u0 = fine.sample_initial(2, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0, 0.05, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"grid spacing 0\.0078125.*trained for dx=0\.015625, nx=64.*allow_other_grid"):
        attsolver.solve(fine, u0, t, method="etdrk4", step_size=0.01, corrector=model)
    model.allow_other_grid = True
    y = attsolver.solve(fine, u0, t, method="etdrk4", step_size=0.01, corrector=model)
    assert y.shape == (6, 2, 128) and bool(torch.isfinite(y).all())
    # the flag is a usage decision, not part of the saved model
    loaded = load_corrector(model.save(tmp_path / "m.pt"))
    assert type(loaded) is AttSolverConv and not loaded.allow_other_grid
    with pytest.raises(ValueError, match="grid spacing"):
        attsolver.solve(fine, u0, t, method="etdrk4", step_size=0.01, corrector=loaded)
    built = AttSolverConv((64,), method="etdrk4", step_size=0.01, dtype=torch.float64, allow_other_grid=True)
    attsolver.solve(fine, u0, t, method="etdrk4", step_size=0.01, corrector=built)
    # other method and step are named as for the ODE correctors
    with pytest.raises(ValueError, match=r"method 'ifrk4' \(trained for 'etdrk4'\).*step size 0\.005"):
        attsolver.solve(Burgers(nu=0.01, nx=64), u0[:, ::2], t, method="ifrk4", step_size=0.005, corrector=loaded)


def test_for_system_records_the_domain():
    ks = KuramotoSivashinsky(nx=64)
    model = AttSolverConv.for_system(ks, method="etdrk4", step_size=0.25)
    assert model.state_shape == (64,) and model.domain_length == pytest.approx(32 * math.pi)
    assert model.trained_for["grid_spacing"] == pytest.approx(32 * math.pi / 64)
    assert model.config()["domain_length"] == pytest.approx(32 * math.pi)


def test_constructor_refuses_bad_settings():
    with pytest.raises(ValueError, match=r"periodic fields .*\(square\)"):
        AttSolverConv((4, 8), method="etdrk4", step_size=0.01)  # 2-D fields must be square
    with pytest.raises(ValueError, match=r"periodic fields .*\(square\)"):
        AttSolverConv((8, 8, 8), method="etdrk4", step_size=0.01)
    with pytest.raises(ValueError, match="domain_length"):
        NeurVecConv(64, method="etdrk4", step_size=0.01, domain_length=0.0)
    with pytest.raises(ValueError, match="combine"):
        AttSolverConv(64, method="etdrk4", step_size=0.01, combine="concat")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        AttSolverConv(64, method="etdrk4", step_size=0.01, kernel_size=4)
    with pytest.raises(ValueError, match="stateless"):
        AttSolverConv(64, method="etdrk4", step_size=0.01, attention="dia")


def test_set_normalization_pools_per_point_statistics_exactly():
    model = build("AttSolverConv-add", nx=8)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(50, 8, generator=g, dtype=torch.float64) * torch.linspace(1, 3, 8, dtype=torch.float64) + 2.0
    du = 0.1 * torch.randn(50, 8, generator=g, dtype=torch.float64)
    r = 0.01 * torch.randn(50, 8, generator=g, dtype=torch.float64)
    feats = torch.cat([u, du], dim=1)  # what fit computes: per grid point
    model.set_normalization(feats.mean(0), feats.std(0, correction=0), r.square().mean(0).sqrt())
    for ch, x in enumerate((u, du)):
        assert model.in_mean[ch].item() == pytest.approx(x.mean().item(), rel=1e-12)
        assert model.in_std[ch].item() == pytest.approx(x.std(correction=0).item(), rel=1e-12)
    assert model.out_scale.item() == pytest.approx(r.square().mean().sqrt().item(), rel=1e-12)
    with pytest.raises(ValueError, match="per channel"):
        model.set_normalization(torch.zeros(3), torch.ones(3), torch.ones(1))


# --------------------------------------------------------------------------- the set-up


def test_restriction_is_exact_for_band_limited_fields():
    x_f = torch.arange(256, dtype=torch.float64) / 256
    u = torch.sin(2 * math.pi * 3 * x_f) + 0.5 * torch.cos(2 * math.pi * 7 * x_f)
    # modes 3 and 7 are below 32/2: restriction = sampling every 8th point
    torch.testing.assert_close(restrict(u, 32), u[::8], rtol=0, atol=1e-13)
    # mode 20 is above the coarse grid's band: removed, not aliased onto mode 12
    v = u + torch.sin(2 * math.pi * 20 * x_f)
    torch.testing.assert_close(restrict(v, 32), u[::8], rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="must divide"):
        restrict(u, 48)


def test_setup_rejects_bad_input():
    with pytest.raises(ValueError, match="even integer >= 16"):
        burgers_setup(nu=0.01, coarse_nx=63)
    with pytest.raises(ValueError, match="even integer >= 16"):
        burgers_setup(nu=0.01, coarse_nx=8)
    with pytest.raises(ValueError, match="nu must be a positive"):
        burgers_setup(nu=0.0)
    with pytest.raises(ValueError, match="nu must be a positive"):
        burgers_setup(nu=-1e-3)
    with pytest.raises(ValueError, match="pdebench_nu"):
        burgers_setup(pdebench_nu=-0.1)
    with pytest.raises(ValueError, match="exactly one"):
        burgers_setup(nu=0.01, pdebench_nu=0.01)
    with pytest.raises(ValueError, match="divide"):
        burgers_setup(nu=0.01, fine_nx=1000, coarse_nx=64)
    with pytest.raises(ValueError, match="divide"):
        burgers_setup(nu=0.01, fine_nx=64, coarse_nx=64)
    with pytest.raises(ValueError, match="whole multiple"):
        CoarseFineSetup("burgers", 0.01, 1.0, 256, 32, 0.003, 0.01, 0.01)
    s = burgers_setup(pdebench_nu=0.01, fine_nx=256, coarse_nx=32, step_ratio=8)
    assert s.nu == pytest.approx(0.01 / math.pi) and s.step_ratio == pytest.approx(8)
    with pytest.raises(ValueError, match="unknown family"):
        s.initial_conditions(2, "gaussian")
    with pytest.raises(ValueError, match="whole multiple"):
        s.generate(2, 0.015)


def test_generated_data_start_from_the_restricted_fields():
    s = burgers_setup(pdebench_nu=0.01, fine_nx=256, coarse_nx=32, step_ratio=8)
    data = s.generate(3, 0.05, family="pulses", seed=4, noise_level=0.01)
    u0 = s.initial_conditions(3, "pulses", seed=4)
    torch.testing.assert_close(data.y_clean[:, 0], restrict(u0, 32), rtol=0, atol=1e-13)
    assert data.y.shape == (3, 6, 32) and data.noise_level == 0.01
    assert data.make_system() == Burgers(nu=s.nu, nx=32)
    assert data.config["setup"]["fine_nx"] == 256
    k = ks_setup(spin_up=1.0)
    assert k.families == ("attractor", "kt") and k.coarse_system().nx == 64


# --------------------------------------------------------------------------- learning


def test_short_training_beats_the_coarse_solver_on_held_out_fields():
    # Burgers, PDEBench Nu = 0.01 on 32 points (the 256-point reference differs from the coarse
    # solution by nRMSE 0.26 here): 16 training fields to t = 0.5, 30 one-step epochs.  Observed
    # 0.26 -> 0.10 (2.5x) with this seed and 2.1x with seed 1; the test asks for 1.6x.
    s = burgers_setup(pdebench_nu=0.01, fine_nx=256, coarse_nx=32, step_ratio=8)
    train = s.generate(16, 0.5, seed=0)
    test = s.generate(6, 0.3, seed=99)
    torch.manual_seed(0)
    model = AttSolverConv.for_system(s.coarse_system(), method="etdrk4", step_size=s.coarse_step,
                                     dtype=torch.float64)
    attsolver.fit(model, train, epochs=30, lr=3e-3, batch_size=64, seed=0, progress=False)
    truth = test.y.transpose(0, 1)
    with torch.no_grad():
        coarse = nrmse(s.coarse_solve(test.y[:, 0], test.t), truth)[1:].mean()
        corrected = nrmse(s.coarse_solve(test.y[:, 0], test.t, corrector=model), truth)[1:].mean()
    assert coarse > 0.2
    assert corrected < coarse / 1.6, (float(coarse), float(corrected))
