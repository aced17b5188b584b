"""The out-of-distribution guard (integrate/guard.py), the training domain and its record."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch

import attsolver
from attsolver.correctors import NeurVec, load_corrector
from attsolver.integrate.guard import FALLBACK_SUBSTEPS, OutOfDomainWarning, TrainingDomain
from attsolver.training import record_domain
from conftest import GUARD_H

H = GUARD_H  # the step of the shared guard_setting fixture


def test_mahalanobis_distance_is_the_inverse_covariance_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64)
    z = torch.randn(500, 4, generator=g, dtype=torch.float64) @ a + 3.0
    dom = TrainingDomain.from_samples(z, torch.zeros(500), horizon=1.0, step_size=0.1)
    zn = z.numpy()
    prec = np.linalg.inv(np.cov(zn.T))
    dev = zn[:5] - zn.mean(0)
    expect = np.einsum("ij,jk,ik->i", dev, prec, dev)
    np.testing.assert_allclose(dom.distance2(z[:5]).numpy(), expect, rtol=1e-6)  # the 1e-9 ridge
    assert dom.distance_threshold == pytest.approx(1.5 * dom.distance_max)


def test_in_domain_guard_flags_nothing_and_changes_nothing(guard_setting):
    system, data, model = guard_setting
    y0, t = data.y[:, 0], data.t
    plain = attsolver.solve(system, y0, t, step_size=H, corrector=model)
    for mode in ("warn", "fallback"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", OutOfDomainWarning)
            got, st = attsolver.solve(system, y0, t, step_size=H, corrector=model, guard=mode, return_stats=True)
        assert torch.equal(got, plain)
        assert st.guard.n_flagged == 0 and st.guard.n_checked == 6 * (len(t) - 1)
        assert not any(st.guard.flagged)


def test_fallback_is_the_classical_solve_at_a_quarter_step(guard_setting):
    system, data, model = guard_setting
    wild = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    wild.domain = model.domain
    with torch.no_grad():  # a large correction on every step: each is flagged by its size
        wild.out_scale.fill_(1.0)
        for p in wild.parameters():
            p.fill_(0.05)
    y0, t = data.y[:3, 0], data.t[:11]
    got, st = attsolver.solve(system, y0, t, step_size=H, corrector=wild, guard="fallback", return_stats=True)
    fine = attsolver.solve(system, y0, t, step_size=H / FALLBACK_SUBSTEPS)
    torch.testing.assert_close(got, fine, rtol=1e-12, atol=1e-12)
    assert st.guard.n_flagged == st.guard.n_fallbacks == 3 * 10
    assert st.guard.fallback_f_evals == 10 * FALLBACK_SUBSTEPS * 4
    # unguarded, the same corrector leaves the classical solution far behind
    raw = attsolver.solve(system, y0, t, step_size=H, corrector=wild, options={"check_finite": False})
    assert not bool(torch.isfinite(raw).all()) or float((raw - fine).abs().max()) > 1e-3


def test_warn_names_the_first_time_and_trajectory_once(guard_setting):
    system, data, model = guard_setting
    y0 = data.y[:4, 0].clone()
    y0[2] *= 3.0  # trajectory 2 starts far outside the attractor
    with pytest.warns(OutOfDomainWarning, match=r"t = 0 on trajectory 2 ") as rec:
        out, st = attsolver.solve(system, y0, data.t[:6], step_size=H, corrector=model, guard="warn",
                                  return_stats=True)
    assert len(rec) == 1
    assert st.guard.first == (0.0, 2) and st.guard.flagged[2] and st.guard.n_fallbacks == 0
    assert torch.equal(out, attsolver.solve(system, y0, data.t[:6], step_size=H, corrector=model))


def test_guard_over_progress_pieces_sums_the_reports(guard_setting, monkeypatch):
    system, data, model = guard_setting
    # every step scored, nothing sticky and no moving average (the Mahalanobis and ratio scores
    # alone): the pieces (one output interval each here) then see the same verdicts (a piece
    # starts its guard afresh: sticky flags and the nearest-neighbour average do not cross pieces)
    monkeypatch.setattr("attsolver.integrate.guard.SCORE_EVERY", 1)
    monkeypatch.setattr("attsolver.integrate.guard.STICKY_FALLBACK", False)
    monkeypatch.setattr(model, "domain", dataclasses.replace(model.domain, coreset=None, knn_threshold=None,
                                                             _cache={}))
    y0 = data.y[:2, 0].clone()
    y0[1] *= 3.0
    _, whole = attsolver.solve(system, y0, data.t[:21], step_size=H, corrector=model, guard="fallback",
                               return_stats=True)
    _, pieces = attsolver.solve(system, y0, data.t[:21], step_size=H, corrector=model, guard="fallback",
                                return_stats=True, progress=True)
    assert pieces.guard.n_flagged == whole.guard.n_flagged > 0
    assert pieces.guard.flagged == whole.guard.flagged == (False, True)


def test_domain_survives_the_checkpoint_and_old_files_load_without_one(guard_setting, tmp_path):
    _, _, model = guard_setting
    back = load_corrector(model.save(tmp_path / "m.pt"))
    for k in ("mean", "whiten", "low", "high"):
        assert torch.equal(getattr(back.domain, k), getattr(model.domain, k))
    assert back.domain.ratio_quantiles == model.domain.ratio_quantiles
    old = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    assert "domain" not in old.checkpoint_dict()
    assert load_corrector(old.save(tmp_path / "old.pt")).domain is None


def test_bad_guard_input(guard_setting):
    system, data, model = guard_setting
    y0, t = data.y[:2, 0], data.t[:3]
    bare = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"record_domain\(corrector, data\)"):
        attsolver.solve(system, y0, t, step_size=H, corrector=bare, guard="warn")
    with pytest.raises(ValueError, match="guard must be None, 'warn' or 'fallback'"):
        attsolver.solve(system, y0, t, step_size=H, corrector=model, guard="on")
    with pytest.raises(ValueError, match="give corrector="):
        attsolver.solve(system, y0, t, step_size=H, guard="warn")
    with pytest.raises(ValueError, match="guard_check_every needs guard"):
        attsolver.solve(system, y0, t, step_size=H, corrector=model, guard_check_every=4)
    with pytest.raises(ValueError, match="guard_check_every"):
        attsolver.solve(system, y0, t, step_size=H, corrector=model, guard="warn", guard_check_every=0)
    with pytest.raises(ValueError, match="distance_margin"):
        record_domain(bare, data, distance_margin=0.5)


def _wild(model):
    """A corrector much worse than none (every weight 0.01, full-size output), on a domain that
    admits every state and correction size: only the a-posteriori check can flag it."""
    wild = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    wild.domain = dataclasses.replace(model.domain, distance_threshold=float("inf"), ratio_threshold=float("inf"),
                                      knn_threshold=float("inf"))
    with torch.no_grad():
        wild.out_scale.fill_(1.0)
        for p in wild.parameters():
            p.fill_(0.01)
    return wild


def test_a_posteriori_check_distrusts_a_corrector_worse_than_no_corrector(guard_setting):

    from attsolver.integrate.guard import POSTERIORI_EVERY, POSTERIORI_WINDOW
    system, data, model = guard_setting
    wild = _wild(model)
    y0, t = data.y[:2, 0], data.t[:41]
    plain = attsolver.solve(system, y0, t, step_size=H, corrector=wild)
    got, st = attsolver.solve(system, y0, t, step_size=H, corrector=wild, guard="fallback", return_stats=True,
                              guard_check_every=POSTERIORI_EVERY)
    unchecked = attsolver.solve(system, y0, t, step_size=H, corrector=wild, guard="fallback")
    assert torch.equal(unchecked, plain)  # without the check nothing is flagged
    # the first window opens at the first step (CHECK_SCHEDULE) and is judged after its last step
    window = int(POSTERIORI_WINDOW * POSTERIORI_EVERY)
    start, first = 0, window  # the window's first state (its outputs are the next ones), its last
    assert torch.equal(got[:start + 1], plain[:start + 1])
    # the window that distrusted them is undone: its end, and every output inside it, is the
    # refined shadow's (RK4 at h/2 from the window's start), not the corrected solve's it judged
    shadow = attsolver.solve(system, plain[start], t[start:first + 1], step_size=H / 2)
    torch.testing.assert_close(got[start:first + 1], shadow, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(plain[start + 1:first + 1], shadow[1:], rtol=1e-6, atol=1e-9)
    assert st.guard.n_rewinds == 2
    assert st.guard.n_flagged == 2 * (40 - first) and st.guard.flagged == (True, True)
    assert st.guard.first == (pytest.approx(float(t[first])), 0)
    # from the check on, every step is the classical one refined to h/4
    fine = attsolver.solve(system, got[first], t[first:], step_size=H / FALLBACK_SUBSTEPS)
    torch.testing.assert_close(got[first:], fine, rtol=1e-12, atol=1e-12)


def test_a_distrusted_window_returns_the_refined_shadow_at_its_outputs_too(guard_setting):
    """Outputs every 4 steps (11 outputs: stacked at the end, not written into a buffer): the
    first window, steps 0..8, holds the output at step 4; once it distrusts the samples, that
    output and the window's end are the refined shadow's from the start, and the steps after it
    are the classical step refined to h/4."""
    from attsolver.integrate.guard import POSTERIORI_EVERY, POSTERIORI_WINDOW
    from attsolver.integrate.loop import STACKED_OUTPUTS
    system, data, model = guard_setting
    wild = _wild(model)
    y0, dense = data.y[:2, 0], data.t[:41]
    sparse = dense[::4]
    assert len(sparse) <= STACKED_OUTPUTS
    plain = attsolver.solve(system, y0, dense, step_size=H, corrector=wild)  # the guarded solve until the window
    got, st = attsolver.solve(system, y0, sparse, step_size=H, corrector=wild, guard="fallback", return_stats=True,
                              guard_check_every=POSTERIORI_EVERY)
    end = int(POSTERIORI_WINDOW * POSTERIORI_EVERY)
    assert end == 8 and st.guard.n_rewinds == 2
    shadow = attsolver.solve(system, y0, dense[:end + 1], step_size=H / 2)
    assert not torch.allclose(plain[4], shadow[4], rtol=1e-6, atol=1e-9)  # the corrected output it replaced
    torch.testing.assert_close(got[1], shadow[4], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[2], shadow[8], rtol=1e-12, atol=1e-12)
    # after the window: the classical step refined to h/4 from the shadow's end
    fine = attsolver.solve(system, shadow[-1], dense[end:13], step_size=H / FALLBACK_SUBSTEPS)[-1]
    torch.testing.assert_close(got[3], fine, rtol=1e-12, atol=1e-12)


def test_record_domain_of_a_time_dependent_f_steps_each_state_from_its_own_time():
    from attsolver.data import TrajectoryDataset

    def forced(t, y):  # reads t: every state is stepped from its own start time
        return torch.stack((y[..., 1], -y[..., 0] + torch.cos(3.0 * t)), dim=-1)

    t = torch.arange(6, dtype=torch.float64) * 0.1
    y = torch.randn(3, 6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    data = TrajectoryDataset(t, y, system={"name": "forced", "params": {}})
    model = NeurVec(2, method="rk4", step_size=0.1, dtype=torch.float64)
    dom = record_domain(model, data, f=forced)
    assert dom.n_samples == 3 * 5 and dom.horizon == pytest.approx(0.5)
    steps = torch.stack([attsolver.solve(forced, y[:, j], t[j:j + 2], step_size=0.1)[-1] for j in range(5)], 1)
    z = torch.cat((y[:, :-1].reshape(-1, 2), (steps - y[:, :-1]).reshape(-1, 2) / 0.1), dim=1)
    torch.testing.assert_close(dom.mean, z.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dom.low, z.min(0).values, rtol=0, atol=0)


def test_the_score_runs_every_score_every_steps_and_its_verdict_holds_until_the_next(guard_setting, monkeypatch):
    from attsolver.integrate import guard as guard_module
    system, data, model = guard_setting
    calls = []
    real = guard_module._Scorer.ok

    def counting(self, y, dy, c):
        calls.append(1)
        return real(self, y, dy, c)

    monkeypatch.setattr(guard_module._Scorer, "ok", counting)
    # the per-step score ("warn" defers it to the solve's end: tests/test_guard_batch.py)
    monkeypatch.setattr(guard_module.guard_batch, "DEFERRED_MAX_BYTES", 0)
    y0 = data.y[:2, 0].clone()
    y0[1] *= 3.0  # far outside on the first step: flagged at the first score
    with pytest.warns(OutOfDomainWarning):
        _, st = attsolver.solve(system, y0, data.t[:11], step_size=H, corrector=model, guard="warn",
                                return_stats=True)
    assert len(calls) == -(-10 // guard_module.SCORE_EVERY)  # steps 1, 5, 9 of 10
    # a flagged verdict covers its score's step and the SCORE_EVERY - 1 after it
    assert st.guard.n_flagged >= guard_module.SCORE_EVERY
    assert st.guard.flagged == (False, True) and st.guard.first == (0.0, 1)


def test_a_posteriori_check_keeps_a_corrector_no_worse_than_no_corrector(guard_setting):
    system, data, model = guard_setting
    # the zero corrector's steps are the classical ones: the summed errors tie, nothing is distrusted
    zero = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    zero.domain = dataclasses.replace(model.domain, distance_threshold=float("inf"), ratio_threshold=float("inf"),
                                      knn_threshold=float("inf"))
    y0, t = data.y[:, 0], data.t[:65]
    got, st = attsolver.solve(system, y0, t, step_size=H, corrector=zero, guard="fallback", guard_check_every=8,
                              return_stats=True)
    assert st.guard.n_flagged == 0 and torch.equal(got, attsolver.solve(system, y0, t, step_size=H, corrector=zero))
