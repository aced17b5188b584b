"""The guard's nearest-neighbour domain score (integrate/guard_knn.py): the coreset, its
calibrated threshold, the sticky fallback, old domains and damaged coresets."""

import copy
import dataclasses
import math
import warnings

import pytest
import torch

import attsolver
from attsolver.correctors import NeurVec, load_corrector
from attsolver.data import generate_trajectories
from attsolver.integrate import guard as guard_module
from attsolver.integrate import guard_knn
from attsolver.integrate.guard import FALLBACK_SUBSTEPS, OutOfDomainWarning, TrainingDomain
from attsolver.systems import Lorenz63
from attsolver.training import record_domain
from conftest import GUARD_H

H = GUARD_H  # the step of the shared guard_setting fixture


def _circle(n: int) -> torch.Tensor:
    theta = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    return torch.stack((torch.cos(theta), torch.sin(theta)), dim=1)


def test_a_point_on_the_manifold_scores_zero_and_a_point_off_it_its_distance():
    # features on a circle (a curved 1-D manifold): fewer points than the coreset keeps, so the
    # coreset is every training feature, whitened
    z = 3.0 * _circle(400) + torch.tensor([1.0, -2.0], dtype=torch.float64)
    dom = TrainingDomain.from_samples(z, torch.zeros(400), horizon=1.0, step_size=0.1,
                                      groups=torch.arange(400) // 50)
    assert dom.coreset.shape == (400, 2)
    u = (z - dom.mean) @ dom.whiten
    torch.testing.assert_close(guard_knn.nearest_distance(u, dom.coreset), torch.zeros(400, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    # the whitened circle is a circle about 0 (uniform angles: isotropic covariance); a point
    # moved out along its normal by delta is delta from its nearest neighbour, itself
    radius = u.norm(dim=1)
    torch.testing.assert_close(radius, radius.mean().expand(400), rtol=1e-9, atol=0)
    for delta in (0.05, 0.3, 2.0):
        moved = u[::7] * (1 + delta / radius[::7, None])
        torch.testing.assert_close(guard_knn.nearest_distance(moved, dom.coreset), torch.full((len(moved),), delta,
                                   dtype=torch.float64), rtol=1e-6, atol=1e-6)
    # ... while its squared Mahalanobis distance barely moves (the ellipsoid cannot see it)
    assert float(dom.distance2(z[:1] + 0.05 * (z[:1] - dom.mean))) < dom.distance_threshold


def test_farthest_points_cover_the_set_within_the_last_pick_distance():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(500, 3, generator=g, dtype=torch.float64)
    idx = guard_knn.farthest_points(u, 64)
    assert len(set(idx.tolist())) == 64
    covering = torch.cdist(u, u[idx]).min(1).values.max()
    # the greedy pick's next distance is the covering radius; any pick is at least that far from the earlier ones
    d_pick = torch.cdist(u[idx[-1:]], u[idx[:-1]]).min()
    assert covering <= d_pick + 1e-12


def test_threshold_is_the_held_out_quantile_and_bounds_the_false_flag_rate():
    # synthetic trajectories of i.i.d. features: 32 trajectories of 64 samples in 3 dimensions
    g = torch.Generator().manual_seed(1)
    n_traj, per, every = 32, 64, guard_module.SCORE_EVERY
    u = torch.randn(n_traj * per, 3, generator=g, dtype=torch.float64)
    groups = torch.arange(n_traj * per) // per
    core, thr = guard_knn.calibrate_knn(u, groups, every, margin=1.0)
    # the threshold by hand: each fold (every 4th trajectory) against the others' coreset
    averages = []
    for k in range(guard_knn.KNN_FOLDS):
        out = (groups % guard_knn.KNN_FOLDS) == k
        rest = u[~out]
        c = rest[guard_knn.farthest_points(rest, guard_knn.CORESET_SIZE)]
        for tr in torch.unique(groups[out]).tolist():
            averages.append(guard_knn.moving_average(torch.cdist(u[groups == tr][::every], c).min(1).values))
    assert thr == pytest.approx(float(torch.quantile(torch.cat(averages), guard_knn.KNN_QUANTILE)), rel=1e-9)
    _, thr2 = guard_knn.calibrate_knn(u, groups, every, margin=1.5)
    assert thr2 == pytest.approx(1.5 * thr, rel=1e-12)
    # fresh trajectories from the same distribution: at most ~1 % of their moving averages exceed it
    fresh = torch.randn(200, per // every, 3, generator=g, dtype=torch.float64)
    avg = guard_knn.moving_average(guard_knn.nearest_distance(fresh.reshape(-1, 3), core).reshape(200, -1).T)
    rate = float((avg > thr).double().mean())
    assert rate <= 1 - guard_knn.KNN_QUANTILE + 0.01
    # and far points always exceed it
    assert bool((guard_knn.nearest_distance(u[:10] + 10.0, core) > thr).all())


def test_no_coreset_above_the_feature_limit():
    dim = guard_knn.KNN_MAX_FEATURES + 2
    z = torch.randn(300, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    dom = TrainingDomain.from_samples(z, torch.zeros(300), horizon=1.0, step_size=0.1)
    assert dom.coreset is None and dom.knn_threshold is None


def test_the_coreset_sees_another_rho_that_the_ellipsoid_does_not(guard_setting):
    system, data, model = guard_setting
    y0, t = data.y[:, 0], data.t[:41]
    other = Lorenz63(rho=45.0)  # the same states, dy / h moved by 17 x in one component
    # the data scores alone: without the right-hand-side probe (test_guard_probe), which sees rho at once
    old = dataclasses.replace(model.domain, coreset=None, knn_threshold=None, probe_y=None, probe_f=None, _cache={})
    bare = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    bare.domain = old
    model = copy.copy(model)
    model.domain = model.domain.with_probes(None, None)
    with warnings.catch_warnings():  # "warn": each score's own verdict, nothing sticks
        warnings.simplefilter("ignore", OutOfDomainWarning)
        _, without = attsolver.solve(other, y0, t, step_size=H, corrector=bare, guard="warn", return_stats=True)
        _, with_knn = attsolver.solve(other, y0, t, step_size=H, corrector=model, guard="warn", return_stats=True)
    # 6 trajectories of 40 steps: the ellipsoid flags a fifth of the sample-steps, the coreset nearly all
    assert without.guard.n_flagged <= 0.25 * 240
    assert with_knn.guard.n_flagged >= 0.8 * 240 and all(with_knn.guard.flagged)
    # in distribution, the nearest-neighbour score flags none of the training starts
    _, same = attsolver.solve(system, y0, data.t, step_size=H, corrector=model, guard="fallback", return_stats=True)
    assert same.guard.n_flagged == 0


def test_sticky_fallback_keeps_a_flagged_sample_on_the_refined_step(guard_setting, monkeypatch):
    system, data, model = guard_setting
    y0 = data.y[:2, 0].clone()
    y0[1] = 2.5 * (y0[1] - torch.tensor([0.0, 0.0, 23.5], dtype=torch.float64)) + torch.tensor([0.0, 0.0, 23.5],
                                                                                                  dtype=torch.float64)
    t = data.t[:101]
    got, st = attsolver.solve(system, y0, t, step_size=H, corrector=model, guard="fallback", return_stats=True)
    # flagged at the first step: from then on every step is 4 RK4 substeps (the zero corrector's
    # corrected step is the classical step at h)
    fine = attsolver.solve(system, y0[1:], t, step_size=H / FALLBACK_SUBSTEPS)
    torch.testing.assert_close(got[:, 1:], fine, rtol=1e-12, atol=1e-12)
    assert st.guard.first == (0.0, 1) and st.guard.n_fallbacks == 100
    assert torch.equal(got[:, :1], attsolver.solve(system, y0[:1], t, step_size=H, corrector=model))
    # not sticky: once back on the attractor the sample returns to the corrected step
    monkeypatch.setattr(guard_module, "STICKY_FALLBACK", False)
    loose, st2 = attsolver.solve(system, y0, t, step_size=H, corrector=model, guard="fallback", return_stats=True)
    assert 0 < st2.guard.n_fallbacks < 100
    assert not torch.equal(loose[:, 1:], fine)


def test_a_domain_without_coreset_loads_and_scores_as_before(guard_setting, tmp_path):
    system, data, model = guard_setting
    d = model.domain.to_dict()
    assert d["coreset"].shape[1] == 6
    old_dict = {k: v for k, v in d.items() if k not in ("coreset", "knn_threshold")}
    old = TrainingDomain.from_dict(old_dict)
    assert old.coreset is None and old.knn_threshold is None
    bare = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    bare.domain = old
    back = load_corrector(bare.save(tmp_path / "old_domain.pt"))
    assert back.domain.coreset is None and "coreset" not in back.checkpoint_dict()["domain"]
    # the Mahalanobis and ratio scores alone: a moved state is flagged as it was before
    y0 = data.y[:3, 0].clone()
    y0[2] *= 3.0
    with pytest.warns(OutOfDomainWarning):
        _, st = attsolver.solve(system, y0, data.t[:9], step_size=H, corrector=back, guard="warn", return_stats=True)
    u2 = old.distance2(torch.cat((y0, (attsolver.solve(system, y0, data.t[:2], step_size=H)[-1] - y0) / H), 1))
    assert st.guard.flagged == tuple(bool(v) for v in (u2 > old.distance_threshold))
    # and a domain with a coreset survives the checkpoint bit for bit
    full = load_corrector(model.save(tmp_path / "new.pt")).domain
    assert torch.equal(full.coreset, model.domain.coreset) and full.knn_threshold == model.domain.knn_threshold


@pytest.mark.parametrize("change, match", [
    ({"coreset": torch.zeros(5, 4, dtype=torch.float64)}, r"coreset of shape \(5, 4\), expected \[M, 6\]"),
    ({"coreset": torch.full((5, 6), float("nan"), dtype=torch.float64)}, "non-finite"),
    ({"knn_threshold": -1.0}, "nearest-neighbour threshold -1.0"),
    ({"knn_threshold": None}, "nearest-neighbour threshold None"),
    ({"coreset": [1.0, 2.0]}, "coreset of shape list"),
])
def test_a_damaged_or_incompatible_coreset_is_refused(guard_setting, tmp_path, change, match):
    _, _, model = guard_setting
    d = {**model.domain.to_dict(), **change}
    with pytest.raises(ValueError, match=match) as err:
        TrainingDomain.from_dict(d)
    assert "record_domain(corrector, data)" in str(err.value)


def test_an_incompatible_coreset_in_a_checkpoint_is_refused_on_load(guard_setting, tmp_path):
    _, _, model = guard_setting
    bad = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    bad.domain = dataclasses.replace(model.domain, coreset=model.domain.coreset[:, :4], _cache={})
    path = bad.save(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="coreset of shape"):
        load_corrector(path)


def test_record_domain_of_several_data_sets_pools_them_as_distinct_trajectories(guard_setting):
    system, data, _ = guard_setting
    more = generate_trajectories(system, 3, t_final=1.0, dt=H, spin_up=2.0, seed=5, progress=False)
    a = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    dom = record_domain(a, [data, more])
    assert a.domain is dom and dom.n_samples == 6 * 100 + 3 * 50
    assert dom.horizon == pytest.approx(2.0)  # the longest
    # the pooled mean is the sample-weighted mean of the two sets' features
    one = record_domain(NeurVec(3, method="rk4", step_size=H, dtype=torch.float64), data)
    two = record_domain(NeurVec(3, method="rk4", step_size=H, dtype=torch.float64), more)
    torch.testing.assert_close(dom.mean, (600 * one.mean + 150 * two.mean) / 750, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="empty list"):
        record_domain(a, [])


def test_the_scorer_computes_the_moving_average_of_the_nearest_distance(guard_setting):
    system, data, model = guard_setting
    dom = model.domain
    y = data.y[:, :3].reshape(-1, 3)
    step = attsolver.solve(system, y, torch.tensor([0.0, H], dtype=torch.float64), step_size=H)[-1]
    dy, zero = step - y, torch.zeros_like(y)
    scorer = guard_module._Scorer(dom, H, y)
    u = (torch.cat((y, dy / H), 1) - dom.mean) @ dom.whiten
    d = guard_knn.nearest_distance(u, dom.coreset)
    scorer.ok(y, dy, zero)
    torch.testing.assert_close(scorer.state.average.double(), d, rtol=0, atol=2e-3)  # float32 product
    moved = y + 1.0
    dy2 = attsolver.solve(system, moved, torch.tensor([0.0, H], dtype=torch.float64), step_size=H)[-1] - moved
    for _ in range(guard_knn.KNN_EVERY - 1):  # the scores in between keep the average and its verdict
        held = scorer.ok(moved, dy2, zero)
        torch.testing.assert_close(scorer.state.average.double(), d, rtol=0, atol=2e-3)
        inside = dom.distance2(torch.cat((moved, dy2 / H), 1)) <= dom.distance_threshold
        assert torch.equal(held, inside & (d <= dom.knn_threshold))
    ok = scorer.ok(moved, dy2, zero)
    d2 = guard_knn.nearest_distance((torch.cat((moved, dy2 / H), 1) - dom.mean) @ dom.whiten, dom.coreset)
    avg = (1 - guard_knn.KNN_EMA) * d + guard_knn.KNN_EMA * d2
    torch.testing.assert_close(scorer.state.average.double(), avg, rtol=0, atol=2e-3)
    inside = dom.distance2(torch.cat((moved, dy2 / H), 1)) <= dom.distance_threshold
    assert torch.equal(ok, inside & (avg <= dom.knn_threshold))
