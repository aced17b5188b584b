"""The guard's system check (integrate/guard_system.py) and the per-feature score of many features."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch

import attsolver
from attsolver.correctors import NeurVec
from attsolver.data import generate_trajectories
from attsolver.integrate.guard import FALLBACK_SUBSTEPS, MAX_FULL_COVARIANCE, OutOfDomainWarning, TrainingDomain, \
    _Scorer
from attsolver.integrate.guard_system import system_mismatch
from attsolver.systems import Lorenz63, Lorenz96

H = 0.03125  # dyadic: h / 4 and the step grid are exact, so the fallback is the classical solve bit for bit


@pytest.fixture(scope="module")
def setting():
    system = Lorenz63()
    data = generate_trajectories(system, 5, t_final=1.0, dt=H, spin_up=2.0, seed=0, progress=False)
    model = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    with torch.no_grad():  # a small nonzero correction: a corrected solve differs from the classical one
        g = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        model.out_scale.fill_(1e-3)
    # wide margins and the ellipsoid and ratio scores alone (the nearest-neighbour score's
    # threshold, calibrated on 5 trajectories, may flag one of them): this file tests the system check
    attsolver.training.record_domain(model, data, distance_margin=10.0, ratio_margin=10.0)
    model.domain = dataclasses.replace(model.domain, coreset=None, knn_threshold=None, _cache={})
    # what fit records (training/loop.py: data_info["system"] = data.system)
    model.training_info = {"data": {"system": data.system}}
    return system, data, model


def test_same_system_flags_nothing_and_changes_nothing(setting):
    system, data, model = setting
    y0, t = data.y[:, 0], data.t
    plain = attsolver.solve(system, y0, t, step_size=H, corrector=model)
    assert not torch.equal(plain, attsolver.solve(system, y0, t, step_size=H))
    same = Lorenz63(rho=28.0 * (1 + 1e-15))  # within the relative tolerance
    for f in (system, same):
        with warnings.catch_warnings():
            warnings.simplefilter("error", OutOfDomainWarning)
            got, st = attsolver.solve(f, y0, t, step_size=H, corrector=model, guard="warn", return_stats=True)
        assert torch.equal(got, attsolver.solve(f, y0, t, step_size=H, corrector=model))
        assert st.guard.n_flagged == 0 and st.guard.reason is None and st.guard.system is None


def test_changed_rho_flags_every_step_from_the_start_and_names_it(setting):
    _, data, model = setting
    y0, t = data.y[:, 0], data.t[:9]
    shifted = Lorenz63(rho=35.0)
    with pytest.warns(OutOfDomainWarning, match=r"trained on lorenz63 with rho=28\.0; this solve has rho=35\.0") as rec:
        got, st = attsolver.solve(shifted, y0, t, step_size=H, corrector=model, guard="warn", return_stats=True)
    assert len(rec) == 1
    g = st.guard
    assert g.reason == "system" and "rho=35.0" in g.system
    assert g.n_flagged == g.n_checked == 5 * 8 and all(g.flagged) and g.first == (0.0, 0) and g.n_fallbacks == 0
    # "warn" leaves the solution alone
    assert torch.equal(got, attsolver.solve(shifted, y0, t, step_size=H, corrector=model))


def test_fallback_on_another_system_is_the_classical_solve_at_a_quarter_step(setting):
    _, data, model = setting
    y0, t = data.y[:, 0], data.t
    shifted = Lorenz63(sigma=12.0)
    got, st = attsolver.solve(shifted, y0, t, step_size=H, corrector=model, guard="fallback", return_stats=True)
    fine = attsolver.solve(shifted, y0, t, step_size=H / FALLBACK_SUBSTEPS)
    assert torch.equal(got, fine)
    n = 5 * (len(t) - 1)
    assert st.guard.n_fallbacks == st.guard.n_flagged == n and st.guard.reason == "system"
    assert st.guard.fallback_f_evals == (len(t) - 1) * FALLBACK_SUBSTEPS * 4
    assert "sigma=10.0" in st.guard.system and "sigma=12.0" in st.guard.system


def test_a_plain_callable_or_a_corrector_without_a_record_skips_the_check(setting):
    system, data, model = setting
    y0, t = data.y[:2, 0], data.t[:9]
    shifted = Lorenz63(rho=35.0)

    def plain_f(tt, y):  # the same right-hand side, not a System: its parameters are unknown
        return shifted(tt, y)

    no_probe = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    no_probe.load_state_dict(model.state_dict())
    no_probe.training_info = model.training_info
    no_probe.domain = model.domain.with_probes(None, None)  # the parameters' check alone (test_guard_probe: the probe)
    _, st = attsolver.solve(plain_f, y0, t, step_size=H, corrector=no_probe, guard="fallback", return_stats=True)
    assert st.guard.reason != "system" and st.guard.system is None and st.guard.probe is None
    bare = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    bare.domain = no_probe.domain  # a domain but no training record (record_domain, not fit)
    assert system_mismatch(shifted, bare) is None and system_mismatch(shifted, model) is not None
    _, st = attsolver.solve(shifted, y0, t, step_size=H, corrector=bare, guard="fallback", return_stats=True)
    assert st.guard.system is None and st.guard.reason != "system"


def test_system_mismatch_compares_names_numbers_and_lists():
    class Rec:
        def __init__(self, system):
            self.trained_for = {"data": {"system": system}}

    l96 = Lorenz96(N=8)
    assert system_mismatch(l96, Rec(l96.config())) is None
    assert "this solve has F=12.0" in system_mismatch(Lorenz96(N=8, F=12.0), Rec(l96.config()))
    assert system_mismatch(l96, Rec({"name": "lorenz63", "params": {}})) == \
        "corrector was trained on lorenz63; this solve has lorenz96"
    assert "N=10" in system_mismatch(Lorenz96(N=10), Rec(l96.config()))
    # a parameter recorded on one side only is not compared (a checkpoint older than the parameter)
    old = l96.config()
    old["params"].pop("F")
    assert system_mismatch(Lorenz96(N=8, F=12.0), Rec(old)) is None
    assert system_mismatch(l96, Rec(None)) is None and system_mismatch(l96, object()) is None


def test_per_feature_score_is_the_elementwise_formula_and_the_full_covariance_path_is_unchanged():
    g = torch.Generator().manual_seed(1)
    dim = MAX_FULL_COVARIANCE // 2 + 3  # 2 D > MAX_FULL_COVARIANCE: per-feature scaling
    z = torch.randn(400, 2 * dim, generator=g, dtype=torch.float64) * torch.linspace(0.5, 3.0, 2 * dim) + 1.0
    dom = TrainingDomain.from_samples(z, torch.zeros(400), horizon=1.0, step_size=0.1)
    assert dom.whiten.ndim == 1
    h = 0.07
    y = torch.randn(6, dim, generator=g, dtype=torch.float64)
    dy = h * torch.randn(6, dim, generator=g, dtype=torch.float64)
    sc = _Scorer(dom, h, y)
    assert sc.a_y.ndim == 1 and sc.a_dy.ndim == 1  # no dense F x F diagonal
    zn = np.concatenate((y.numpy(), dy.numpy() / h), axis=1)
    w = 1.0 / (z.numpy() - z.numpy().mean(0)).std(0, ddof=1)
    expect = (((zn - z.numpy().mean(0)) * w) ** 2).sum(1)
    np.testing.assert_allclose(sc.whitened(y, dy).square().sum(1).numpy(), expect, rtol=1e-12)
    np.testing.assert_allclose(dom.distance2(torch.cat((y, dy / h), 1)).numpy(), expect, rtol=1e-12)
    # full covariance (few features): the two matrix products with the h-scaled rows, as before
    small = TrainingDomain.from_samples(z[:, :6], torch.zeros(400), horizon=1.0, step_size=0.1)
    sc = _Scorer(small, h, y)
    wf = small.whiten
    old = torch.addmm(-(small.mean @ wf), y[:, :3], wf[:3]).addmm_(dy[:, :3], wf[3:] / h)
    assert torch.equal(sc.whitened(y[:, :3], dy[:, :3]), old)


def test_a_guarded_solve_with_many_features_flags_nothing_in_distribution():
    system = Lorenz96(N=MAX_FULL_COVARIANCE // 2 + 4)
    data = generate_trajectories(system, 3, t_final=1.0, dt=0.05, spin_up=1.0, seed=0, progress=False)
    model = NeurVec.for_system(system, method="rk4", step_size=0.05, dtype=torch.float64)
    attsolver.training.record_domain(model, data)
    assert model.domain.whiten.ndim == 1
    y0, t = data.y[:, 0], data.t
    plain = attsolver.solve(system, y0, t, step_size=0.05, corrector=model)
    got, st = attsolver.solve(system, y0, t, step_size=0.05, corrector=model, guard="fallback", return_stats=True)
    assert torch.equal(got, plain) and st.guard.n_flagged == 0
    far = y0 * 4.0  # far outside the attractor: every rollout flagged by the per-feature score
    _, st = attsolver.solve(system, far, t[:3], step_size=0.05, corrector=model, guard="warn", return_stats=True)
    assert all(st.guard.flagged) and st.guard.reason == "features"
