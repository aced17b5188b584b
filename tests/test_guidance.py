"""Latent classifier guidance: schedules, samplers, classifiers, the guided ε̂, the reduction to
latent arithmetic, the shapes renderer and the bad-input errors (attsolver.guidance)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from attsolver.guidance import (EpsMLP, LatentGuidance, LatentSpace, LinearLatentClassifier, LogisticDirections,
                                NoiseSchedule, TimeLatentClassifier, ddim_invert, ddim_sample, ddpm_sample,
                                frechet_distance, gaussian_eps, latent_arithmetic, sequential_arithmetic,
                                timestep_embedding)
from attsolver.guidance.shapes import (ATTRIBUTES, OUTLINE_WIDTH, RADII, X_CENTRES, render_shapes, shape_area)


# -- schedules ---------------------------------------------------------------------------------
def test_linear_schedule_is_ddpm_linspace_and_alpha_bar_is_the_product():
    s = NoiseSchedule.linear(1000)
    assert torch.allclose(s.betas, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    ab = np.cumprod(1 - s.betas.numpy())
    assert np.allclose(s.alpha_bar.numpy(), ab, rtol=1e-12)
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all() and 0 < s.alpha_bar[-1] < s.alpha_bar[0] < 1
    assert float(s.abar(-1)) == 1.0 and float(s.abar(0)) == pytest.approx(1 - 1e-4)


@pytest.mark.parametrize("T", [50, 1000])
def test_cosine_schedule_follows_the_squared_cosine(T):
    s = NoiseSchedule.cosine(T)
    f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all()
    assert s.betas.max() <= 0.999 + 1e-15
    unclipped = (s.betas < 0.999).nonzero().flatten()
    last = int(unclipped.max())  # before the first clipped β, ᾱ[t] = f(t+1)/f(0) exactly
    for t in [0, 1, T // 4, T // 2, min(last, 3 * T // 4)]:
        assert float(s.alpha_bar[t]) == pytest.approx(f(t + 1) / f(0), rel=1e-10)


def test_q_sample_has_the_forward_moments():
    s = NoiseSchedule.cosine(200)
    z0 = torch.tensor([[2.0, -1.0, 0.5]], dtype=torch.float64).expand(100_000, 3)
    g = torch.Generator().manual_seed(0)
    for t in (10, 100, 199):
        zt = s.q_sample(z0, t, generator=g)
        ab = float(s.alpha_bar[t])
        se = math.sqrt((1 - ab) / len(zt))
        assert torch.allclose(zt.mean(0), math.sqrt(ab) * z0[0], atol=5 * se)
        assert torch.allclose(zt.var(0), torch.full((3,), 1 - ab, dtype=torch.float64), rtol=0.03)
    # per-sample timesteps: each row uses its own ᾱ
    t = torch.tensor([0, 199])
    noise = torch.ones(2, 3, dtype=torch.float64)
    out = s.q_sample(z0[:2], t, noise)
    for i in range(2):
        ab = s.alpha_bar[t[i]]
        assert torch.allclose(out[i], ab.sqrt() * z0[0] + (1 - ab).sqrt())


def test_ddim_timesteps_descend_from_t_start_to_zero():
    s = NoiseSchedule.linear(1000)
    ts = s.timesteps(50)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 50 and all(a > b for a, b in zip(ts, ts[1:]))
    assert s.timesteps(10, 4) == [4, 3, 2, 1, 0]  # no more steps than timesteps


# -- the noise predictor ------------------------------------------------------------------------
def test_timestep_embedding_formula():
    t = torch.tensor([0, 7])
    e = timestep_embedding(t, 8)
    assert e.shape == (2, 8)
    assert torch.equal(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    freqs = [10000 ** (-i / 4) for i in range(4)]
    expect = [math.cos(7 * f) for f in freqs] + [math.sin(7 * f) for f in freqs]
    assert torch.allclose(e[1], torch.tensor(expect), atol=1e-6)


def test_eps_mlp_parameter_count():
    D, H, depth, E = 10, 32, 3, 16
    m = EpsMLP(D, H, depth, E)
    expect = (D * H + H) + (E * H + H + H * H + H) + depth * ((H * H + H) + 2 * H + 2 * (H * H + H)) + (2 * H + H * D + D)
    assert sum(p.numel() for p in m.parameters()) == expect
    out = m(torch.randn(5, D), torch.randint(0, 100, (5,)))
    assert out.shape == (5, D)


# -- samplers with the exact ε of Gaussian data ----------------------------------------------------
MU = torch.tensor([1.0, -2.0], dtype=torch.float64)
VAR = torch.tensor([0.25, 4.0], dtype=torch.float64)


def test_ddpm_sampler_with_the_exact_eps_reproduces_gaussian_moments():
    s = NoiseSchedule.linear(1000)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(20_000, 2, generator=g, dtype=torch.float64)
    out = ddpm_sample(gaussian_eps(s, MU, VAR), s, z, generator=g)
    se = (VAR / len(out)).sqrt()
    assert (out.mean(0) - MU).abs().max() < 5 * se.max()
    assert torch.allclose(out.var(0), VAR, rtol=0.05)


def test_ddim_eta0_is_deterministic_and_is_the_gaussian_transport_map():
    """For N(μ, diag σ²) data the η = 0 DDIM path is the probability-flow ODE, whose exact solution
    maps a standard-normal z to μ + σ z; DDIM is a first-order discretisation of it."""
    s = NoiseSchedule.cosine(1000)
    eps = gaussian_eps(s, MU, VAR)
    z = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = ddim_sample(eps, s, z, s.timesteps(100), eta=0.0, generator=torch.Generator().manual_seed(3))
    b = ddim_sample(eps, s, z, s.timesteps(100), eta=0.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)  # η = 0 draws no noise
    errs = [float((ddim_sample(eps, s, z, s.timesteps(n)) - (MU + VAR.sqrt() * z)).abs().max()) for n in (50, 100, 200)]
    assert errs[2] < 0.03 * float(VAR.sqrt().max())
    assert 1.8 < errs[0] / errs[1] < 2.2 and 1.8 < errs[1] / errs[2] < 2.2  # first order in the step
    c = ddim_sample(eps, s, z, s.timesteps(100), eta=1.0, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(a, c)
    assert torch.allclose(c.mean(0), MU, atol=0.06) and torch.allclose(c.var(0), VAR, rtol=0.08)


def test_ddim_inversion_then_sampling_reconstructs_and_converges():
    s = NoiseSchedule.cosine(1000)
    eps = gaussian_eps(s, MU, VAR)
    z0 = MU + VAR.sqrt() * torch.randn(500, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    errs = []
    for steps in (20, 80, 320):
        ts = s.timesteps(steps, 600)
        zt = ddim_invert(eps, s, z0, ts)
        errs.append(float((ddim_sample(eps, s, zt, ts) - z0).abs().max()))
    assert errs[-1] < 1e-2 * float(VAR.sqrt().max())
    assert errs[0] > errs[1] > errs[2]  # a discretisation error, shrinking with the step
    # inverting all the way gives (nearly) standard-normal codes
    zT = ddim_invert(eps, s, z0, s.timesteps(200))
    assert abs(float(zT.mean())) < 0.15 and abs(float(zT.std()) - 1) < 0.1


# -- guidance ---------------------------------------------------------------------------------------
class AnalyticDDPM(nn.Module):
    """The exact ε of N(mean, var·I) data behind the LatentDDPM interface."""

    def __init__(self, dim, schedule, mean=0.0, var=1.0):
        super().__init__()
        self.dim, self.schedule = dim, schedule
        self.eps = gaussian_eps(schedule, torch.as_tensor(mean), torch.as_tensor(var))

    def forward(self, z, t):
        return self.eps(z, t)


def _two_attribute_data(n=4000, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, dim, generator=g)
    labels = {"a": (z[:, 0] > 0).long(), "b": (z[:, 1] + 0.5 * z[:, 2] > 0).long()}
    return z, labels


def test_guided_eps_equals_the_formula_with_finite_difference_gradients():
    torch.manual_seed(0)
    dim = 4
    s = NoiseSchedule.cosine(100)
    clf = TimeLatentClassifier(dim, {"a": 3, "b": 2}, hidden=16, depth=2).double()
    ddpm = AnalyticDDPM(dim, s, 0.3, 2.0)
    lcg = LatentGuidance(ddpm, clf)
    z = torch.randn(3, dim, dtype=torch.float64)
    src = torch.randn(3, dim, dtype=torch.float64)
    t, targets, hold = 40, {"a": torch.tensor([0, 2, 1])}, {"b": torch.tensor([1, 0, 1])}
    lam, lam_h, lam_s = 2.5, 0.7, 0.3
    got = lcg.guided_eps(z, t, targets, {"a": lam}, source=src, source_scale=lam_s, hold=hold, hold_scale=lam_h)

    tt = torch.full((3,), t)

    def objective(zz):  # Σ λ_k log p(c_k|z,t) + λ_h Σ log p(h_j|z,t), per sample
        with torch.no_grad():
            lp = clf.log_prob(zz, tt, {**targets, **hold})
        return lam * lp["a"] + lam_h * lp["b"]

    h = 1e-6
    grad = torch.zeros_like(z)
    for j in range(dim):
        e = torch.zeros_like(z)
        e[:, j] = h
        grad[:, j] = (objective(z + e) - objective(z - e)) / (2 * h)
    ab = s.alpha_bar[t]
    expect = ddpm(z, tt) - (1 - ab).sqrt() * grad + lam_s * (z - ab.sqrt() * src) / (1 - ab).sqrt()
    assert torch.allclose(got, expect, atol=1e-7)
    # each preservation term switches off on its own
    no_pull = lcg.guided_eps(z, t, targets, lam, hold=hold, hold_scale=lam_h)
    assert torch.allclose(got - no_pull, lam_s * (z - ab.sqrt() * src) / (1 - ab).sqrt(), atol=1e-10)
    plain = lcg.guided_eps(z, t, {}, 1.0)
    assert torch.allclose(plain, ddpm(z, tt))


def test_guidance_with_a_linear_logistic_classifier_moves_latents_along_its_weight_vector():
    """With N(0, I) data every DDIM step is a scalar multiple of z plus the guidance term, so the
    guided result minus the unguided one lies on the span of w: the latent-arithmetic form."""
    z, labels = _two_attribute_data()
    lin = LogisticDirections({"a": 2, "b": 2}).fit(z, labels)
    s = NoiseSchedule.cosine(1000)
    lcg = LatentGuidance(AnalyticDDPM(6, s), LinearLatentClassifier(lin))
    z = z.double()
    src = z[labels["a"] == 0][:64]  # class 0: guidance towards class 1 has work to do
    target = {"a": 1}
    plain = lcg.edit(src, target, 0.0, t0=500, steps=40)
    guided = lcg.edit(src, target, 3.0, t0=500, steps=40)
    w = (lin.weight["a"][1] - lin.weight["a"][0]).double()
    delta = guided - plain
    cos = (delta @ w) / (delta.norm(dim=1) * w.norm())
    assert (cos > 1 - 1e-9).all()  # parallel to w, and towards class 1
    assert torch.allclose(plain, src, atol=2e-3)  # no guidance: the inversion round trip
    assert (lin.predict(guided)["a"] == 1).float().mean() > 0.95


def test_latent_arithmetic_is_the_interfacegan_step():
    z, labels = _two_attribute_data()
    lin = LogisticDirections({"a": 2, "b": 2}).fit(z, labels)
    src = z[:50]
    src_lab = lin.predict(src)["a"]
    out = latent_arithmetic(lin, src, {"a": 1}, strength=1.5)
    w = lin.weight["a"][1] - lin.weight["a"][0]
    n = w / w.norm()
    mu = lin.class_means["a"]
    length = 1.5 * float((mu[1] - mu[0]) @ n)
    moved = src_lab == 0
    assert torch.allclose(out[moved], src[moved] + length * n, atol=1e-5)
    assert torch.equal(out[~moved], src[~moved])  # already class 1: no move
    seq = sequential_arithmetic(lin, src, [("a", 1), ("b", 0)])
    assert len(seq) == 2 and torch.equal(seq[0], latent_arithmetic(lin, src, {"a": 1}))


def test_sequential_editing_keeps_earlier_edits():
    z, labels = _two_attribute_data()
    lin = LogisticDirections({"a": 2, "b": 2}).fit(z, labels)
    s = NoiseSchedule.cosine(1000)
    lcg = LatentGuidance(AnalyticDDPM(6, s), LinearLatentClassifier(lin))
    src = z[:200]
    steps = lcg.edit_sequential(src, [("a", 1), ("b", 1)], scales=4.0, t0=600, steps=30, hold_scale=4.0,
                                source_scale=0.05)
    assert len(steps) == 2
    first = lcg.edit(src, {"a": 1}, {"a": 4.0}, t0=600, steps=30, hold_scale=4.0, source_scale=0.05,
                     hold={"b": lin.predict(src)["b"]})
    assert torch.allclose(steps[0], first)
    final = lin.predict(steps[1])
    assert (final["a"] == 1).float().mean() > 0.95 and (final["b"] == 1).float().mean() > 0.95


# -- renderer ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [0, 1, 2])
def test_renderer_pixel_areas_are_the_analytic_areas(shape):
    n = 4
    labels = {"shape": torch.full((n,), shape), "size": torch.tensor([0, 1, 0, 1]),
              "position": torch.tensor([0, 0, 1, 1]), "fill": torch.tensor([0, 0, 1, 1])}
    cx = torch.tensor(X_CENTRES)[labels["position"]] + torch.tensor([0.3, -0.7, 0.1, 0.0])
    img = render_shapes(labels, cx=cx, cy=torch.tensor([15.2, 16.0, 12.9, 18.4]), intensity=torch.ones(n))
    area = img.sum(dim=(1, 2, 3))
    r = torch.tensor(RADII)[labels["size"]]
    for i in range(n):
        full = shape_area(shape, float(r[i]))
        expect = full if labels["fill"][i] == 0 else full - shape_area(shape, float(r[i]) - OUTLINE_WIDTH)
        filled = labels["fill"][i] == 0  # thin outlines suffer more from the 4x4 sub-pixel sampling
        assert float(area[i]) == pytest.approx(expect, rel=0.05 if filled else 0.1)
        # the centroid of a symmetric-in-x shape sits at its centre x
        xs = torch.arange(32) + 0.5
        assert float((img[i, 0].sum(0) * xs).sum() / area[i]) == pytest.approx(float(cx[i]), abs=0.15 if filled else 0.3)
    assert float(area[1] / area[0]) == pytest.approx((RADII[1] / RADII[0]) ** 2, rel=0.05)


def test_renderer_intensity_scales_and_labels_are_checked():
    lab = {k: torch.zeros(2, dtype=torch.long) for k in ATTRIBUTES}
    a = render_shapes(lab, cx=torch.tensor([9.0, 9.0]), cy=torch.tensor([16.0, 16.0]), intensity=torch.tensor([1.0, 0.5]))
    assert torch.allclose(a[1], 0.5 * a[0])
    with pytest.raises(ValueError, match=r"labels\['shape'\]"):
        render_shapes({**lab, "shape": torch.tensor([0, 3])})
    with pytest.raises(ValueError, match="missing attribute"):
        render_shapes({"shape": torch.zeros(2, dtype=torch.long)})


# -- Fréchet distance ---------------------------------------------------------------------------
def test_frechet_distance_of_an_affine_copy():
    """b = 2a + c: Σ_b = 4Σ_a, so FD = |c + μ_a|² ... = |μ_b - μ_a|² + tr(Σ_a + 4Σ_a - 2·2Σ_a) = |μ_b - μ_a|² + tr Σ_a."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 5)) @ rng.normal(size=(5, 5))
    b = 2 * a + np.array([1.0, 0, -2, 0, 0.5])
    expect = ((b.mean(0) - a.mean(0)) ** 2).sum() + np.trace(np.cov(a, rowvar=False))
    assert frechet_distance(a, b) == pytest.approx(expect, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


# -- bad input ---------------------------------------------------------------------------------------
@pytest.fixture
def lcg():
    s = NoiseSchedule.cosine(100)
    clf = TimeLatentClassifier(4, {"shape": 3, "size": 2}, hidden=8, depth=2)
    space = LatentSpace(4, decode=lambda z: z.sum(1), encode=lambda x: x[:, :4])
    return LatentGuidance(AnalyticDDPM(4, s), clf, space)


def test_unknown_attribute_names_are_errors(lcg):
    z = torch.randn(2, 4)
    with pytest.raises(ValueError, match=r"unknown attribute.*'colour'.*known attributes: \['shape', 'size'\]"):
        lcg.generate(2, {"colour": 1})
    with pytest.raises(ValueError, match=r"unknown attribute.*in scales"):
        lcg.edit(z, {"shape": 1}, {"shape": 1.0, "colour": 2.0}, t0=50)
    with pytest.raises(ValueError, match=r"scales has no entry for edited attribute\(s\) \['size'\]"):
        lcg.edit_sequential(z, [("shape", 1), ("size", 0)], {"shape": 1.0}, t0=50)
    with pytest.raises(ValueError, match=r"unknown attribute 'colour' in edits"):
        lcg.edit_sequential(z, [("shape", 1), ("colour", 0)], t0=50)
    with pytest.raises(ValueError, match=r"targets\['shape'\] must be class indices in \[0, 2\]"):
        lcg.edit(z, {"shape": 3}, t0=50)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "2"])
def test_guidance_scales_must_be_finite(lcg, bad):
    z = torch.randn(2, 4)
    with pytest.raises(ValueError, match=r"scales\['shape'\] must be a finite number"):
        lcg.edit(z, {"shape": 1}, {"shape": bad}, t0=50)
    with pytest.raises(ValueError, match="scales must be a finite number"):
        lcg.generate(2, {"shape": 1}, bad)
    with pytest.raises(ValueError, match="source_scale must be a finite number"):
        lcg.edit(z, {"shape": 1}, 1.0, t0=50, source_scale=bad)
    with pytest.raises(ValueError, match="hold_scale must be a finite number"):
        lcg.edit(z, {"shape": 1}, 1.0, t0=50, hold_scale=bad)


def test_latents_of_the_wrong_dimension_are_errors(lcg):
    with pytest.raises(ValueError, match=r"z_src must have shape \[N, 4\].*got \[2, 5\]"):
        lcg.edit(torch.randn(2, 5), {"shape": 1}, t0=50)
    with pytest.raises(ValueError, match=r"z must have shape \[N, 4\]"):
        lcg.guided_eps(torch.randn(4), 10, {"shape": 1})
    with pytest.raises(TypeError, match="floating-point"):
        lcg.edit(torch.ones(2, 4, dtype=torch.long), {"shape": 1}, t0=50)
    with pytest.raises(ValueError, match="NaN or inf"):
        lcg.edit(torch.full((2, 4), float("nan")), {"shape": 1}, t0=50)
    with pytest.raises(ValueError, match=r"encode returned latents of dimension 3"):
        LatentSpace(4, decode=lambda z: z, encode=lambda x: x[:, :3]).encode(torch.randn(2, 6))
    with pytest.raises(ValueError, match="has no encoder"):
        LatentSpace(4, decode=lambda z: z).encode(torch.randn(2, 4))
    with pytest.raises(ValueError, match="does not match ddpm.dim"):
        LatentGuidance(AnalyticDDPM(5, NoiseSchedule.cosine(10)), lcg.classifier)


@pytest.mark.parametrize("t0", [-1, 100, 1000, 2.5, "50"])
def test_t0_outside_the_schedule_is_an_error(lcg, t0):
    with pytest.raises(ValueError, match=r"t0.*\[0, 99\]"):
        lcg.edit(torch.randn(2, 4), {"shape": 1}, t0=t0)


def test_schedule_and_sampler_arguments_are_checked():
    with pytest.raises(ValueError, match="T must be an int >= 2"):
        NoiseSchedule.cosine(1)
    with pytest.raises(ValueError, match="schedule must be one of"):
        NoiseSchedule.make("quadratic")
    s = NoiseSchedule.linear(10)
    with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
        ddim_sample(gaussian_eps(s, 0.0, 1.0), s, torch.randn(2, 2), s.timesteps(5), eta=-1.0)


def test_ddim_clip_bounds_the_clean_estimate_and_forward_noising_edit_is_seeded():
    s = NoiseSchedule.cosine(200)
    out = ddim_sample(gaussian_eps(s, MU, VAR), s, torch.randn(100, 2, dtype=torch.float64), s.timesteps(20),
                      clip_z0=0.5)
    assert out.abs().max() <= 0.5  # the last step returns the clipped ẑ0
    z, labels = _two_attribute_data(n=500)
    lcg = LatentGuidance(AnalyticDDPM(6, NoiseSchedule.cosine(1000)),
                         LinearLatentClassifier(LogisticDirections({"a": 2, "b": 2}).fit(z, labels)))
    a = lcg.edit(z[:8], {"a": 1}, 2.0, t0=300, invert=False, generator=torch.Generator().manual_seed(0))
    b = lcg.edit(z[:8], {"a": 1}, 2.0, t0=300, invert=False, generator=torch.Generator().manual_seed(0))
    c = lcg.edit(z[:8], {"a": 1}, 2.0, t0=300, invert=False, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.slow
def test_shapes_demo_end_to_end_guidance_beats_chance():
    """A tiny version of the benchmark: position (the easiest attribute) must follow the guidance."""
    from attsolver.guidance import LatentDDPM, attribute_agreement, train_ddpm, train_latent_classifier
    from attsolver.guidance.shapes import build_shapes_demo

    demo = build_shapes_demo(n_train=3000, vae_epochs=6, judge_steps=300, seed=0)
    s = NoiseSchedule.linear(1000)
    ddpm = LatentDDPM(demo.space.dim, s, hidden=64, depth=2)
    train_ddpm(ddpm, demo.z_train, steps=600)
    clf = TimeLatentClassifier(demo.space.dim, ATTRIBUTES, hidden=64, depth=2)
    train_latent_classifier(clf, s, demo.z_train, demo.labels_train, steps=500)
    lcg = LatentGuidance(ddpm, clf, demo.space)
    n = 64
    target = {"position": torch.arange(n) % 2}
    z = lcg.generate(n, target, 2.0, steps=20, generator=torch.Generator().manual_seed(0))
    acc = attribute_agreement(demo.judge.predict(demo.space.decode(z)), target)["position"]
    assert acc > 0.8
