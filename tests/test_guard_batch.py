"""The ``"warn"`` guard's deferred, batched scores (integrate/guard_batch.py): the same verdicts,
counts, first flagged step and warning as the per-step score, one batched scoring per solve."""

import dataclasses
import warnings

import pytest
import torch

import attsolver
from attsolver.correctors import NeurVec
from attsolver.integrate import guard as guard_module
from attsolver.integrate import guard_batch
from attsolver.integrate.guard import KNN_EMA, KNN_EVERY, OutOfDomainWarning
from conftest import GUARD_H

H = GUARD_H


def _mixed_starts(data):
    """Twelve starts: in the domain, slightly out, far out (flagged at different scores)."""
    y0 = data.y[:, 0].repeat(2, 1).clone()
    y0[1] *= 1.3
    y0[4] *= 3.0
    y0[7] += torch.tensor([0.0, 0.0, 15.0], dtype=y0.dtype)
    y0[10] *= 1.15
    return y0


def _irregular_times(data, n=23):
    """Output times, whole multiples of the corrector's step apart, from an offset start: the
    intervals' steps differ in the last bits (several folded scorers, as in a user's solve)."""
    gaps = torch.tensor([1, 3, 2, 5, 1, 4] * 4, dtype=data.t.dtype)[:n - 1] * H
    return 0.37 + torch.cat((data.t[:1], data.t[0] + torch.cumsum(gaps, 0)))


def _warn_solve(system, y0, t, model, **options):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always", OutOfDomainWarning)
        out, st = attsolver.solve(system, y0, t, step_size=H, corrector=model, guard="warn", return_stats=True,
                                  options=options or None)
    return out, st.guard, [str(w.message) for w in rec if issubclass(w.category, OutOfDomainWarning)]


def _per_step(monkeypatch):
    monkeypatch.setattr(guard_batch, "DEFERRED_MAX_BYTES", 0)


def _zero_corrector(base, which):
    """A zero-correction NeurVec with ``base``'s domain (``"all"``), with the nearest-neighbour
    score alone (``"knn only"``) or without it (``"no knn"``)."""
    d = base.domain
    inf = float("inf")
    domains = {"all": d, "knn only": dataclasses.replace(d, distance_threshold=inf, ratio_threshold=inf, _cache={}),
               "no knn": dataclasses.replace(d, coreset=None, knn_threshold=None, _cache={})}
    model = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    model.domain = domains[which]
    return model


@pytest.mark.parametrize("which", ["all", "knn only", "no knn"])
def test_deferred_warn_reports_what_the_per_step_score_reports(guard_setting, monkeypatch, which):
    system, data, base = guard_setting
    model = _zero_corrector(base, which)
    y0, t = _mixed_starts(data), _irregular_times(data)
    calls = []
    real = guard_batch.recorded_verdicts
    monkeypatch.setattr(guard_batch, "recorded_verdicts", lambda *a: calls.append(a[2]) or real(*a))
    out, rep, msgs = _warn_solve(system, y0, t, model)
    assert len(calls) == 1 and len(set(calls[0])) > 1  # one batched scoring per solve, several step sizes
    monkeypatch.setattr(guard_batch, "recorded_verdicts", real)
    _per_step(monkeypatch)
    out_step, rep_step, msgs_step = _warn_solve(system, y0, t, model)
    assert torch.equal(out, out_step)
    assert torch.equal(out, attsolver.solve(system, y0, t, step_size=H, corrector=model))
    assert rep.flagged == rep_step.flagged and any(rep.flagged) and not all(rep.flagged)
    assert (rep.n_flagged, rep.first, rep.reason, rep.n_checked) == (rep_step.n_flagged, rep_step.first,
                                                                     rep_step.reason, rep_step.n_checked)
    assert msgs == msgs_step and len(msgs) == 1
    # "fallback" (per step: its verdicts change the solve) flags the same trajectories
    _, st = attsolver.solve(system, y0, t, step_size=H, corrector=model, guard="fallback", return_stats=True)
    assert st.guard.flagged == rep.flagged


def test_recorded_verdicts_equal_the_per_step_scores_in_sequence(guard_setting):
    system, data, model = guard_setting
    g = torch.Generator().manual_seed(3)
    b, n, sizes = 6, 11, [H, H, 0.5 * H, H, 0.5 * H, H, H, 0.25 * H, H, H, H]
    step = torch.tensor(sizes, dtype=torch.float64)[:, None, None] / H
    idx = torch.arange(n) * 7
    y = data.y[:, idx].transpose(0, 1).clone()  # [n, b, 3] training states, some moved off the attractor
    dy = (data.y[:, idx + 1] - data.y[:, idx]).transpose(0, 1) * step
    y *= 1 + 0.6 * torch.rand(n, b, 1, generator=g, dtype=torch.float64) * (torch.rand(n, b, 1, generator=g) < 0.3)
    c = torch.zeros_like(dy)  # the fixture's corrector is zero: its domain's ratio threshold too
    c[6, 2] = float("nan")  # a non-finite step is outside
    state = guard_module._ScoreState()
    scorers = {h: guard_module._Scorer(model.domain, h, y[0], state) for h in dict.fromkeys(sizes)}
    online = torch.stack([scorers[sizes[s]].ok(y[s], dy[s], c[s]).clone() for s in range(n)])
    got = guard_batch.recorded_verdicts(scorers[H], torch.cat((y, dy, c), 2), sizes, KNN_EVERY, KNN_EMA)
    assert torch.equal(got, online)
    assert not bool(got[6, 2]) and bool(got.any()) and not bool(got.all())


def test_the_nearest_neighbour_product_in_chunks_gives_the_same_verdicts(guard_setting, monkeypatch):
    system, data, model = guard_setting
    y0, t = _mixed_starts(data), data.t[:41]
    _, whole, _ = _warn_solve(system, y0, t, model)
    monkeypatch.setattr(guard_batch, "KNN_CHUNK", 5 * model.domain.coreset.shape[0])  # 5 rows at a time
    _, chunked, _ = _warn_solve(system, y0, t, model)
    assert (chunked.flagged, chunked.n_flagged, chunked.first) == (whole.flagged, whole.n_flagged, whole.first)


def test_a_non_finite_corrected_step_is_flagged_and_named(guard_setting, monkeypatch):
    system, data, model = guard_setting

    class Breaks(NeurVec):
        def forward(self, t, y, dy, h):
            c = torch.zeros_like(y)
            if float(t) > 4.5 * H:  # trajectory 3 from the sixth step on
                c[3] = float("nan")
            return c

    bad = Breaks(3, method="rk4", step_size=H, dtype=torch.float64)
    bad.domain = model.domain
    y0, t = data.y[:, 0].repeat(1, 1), data.t[:21]
    _, rep, msgs = _warn_solve(system, y0, t, bad, check_finite=False)
    _per_step(monkeypatch)
    _, rep_step, _ = _warn_solve(system, y0, t, bad, check_finite=False)
    assert rep.flagged == rep_step.flagged == tuple(k == 3 for k in range(len(y0)))
    assert rep.first == rep_step.first == (pytest.approx(8 * H), 3)  # the score at step 9 sees it
    assert rep.n_flagged == rep_step.n_flagged and "trajectory 3 " in msgs[0]


def test_a_record_above_the_limit_scores_on_its_steps(guard_setting, monkeypatch):
    system, data, model = guard_setting
    calls = []
    real = guard_module._Scorer.ok
    monkeypatch.setattr(guard_module._Scorer, "ok", lambda self, *a: calls.append(1) or real(self, *a))
    y0, t = _mixed_starts(data), data.t[:21]  # 20 steps: 5 scores of 12 x 9 float64 features
    _, deferred, _ = _warn_solve(system, y0, t, model)
    assert calls == []
    monkeypatch.setattr(guard_batch, "DEFERRED_MAX_BYTES", 5 * 12 * 9 * 8 - 1)
    _, per_step, _ = _warn_solve(system, y0, t, model)
    assert len(calls) == 5 and per_step.flagged == deferred.flagged and per_step.n_flagged == deferred.n_flagged


def test_gradients_flow_through_a_deferred_warn_solve(guard_setting):
    system, data, model = guard_setting
    y0 = data.y[:3, 0].clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        out = attsolver.solve(system, y0, data.t[:9], step_size=H, corrector=model, guard="warn")
    out[-1].sum().backward()
    ref = y0.detach().clone().requires_grad_(True)
    attsolver.solve(system, ref, data.t[:9], step_size=H, corrector=model)[-1].sum().backward()
    assert torch.equal(y0.grad, ref.grad)


def _fallback_solve(system, y0, t, model):
    with torch.no_grad():
        return attsolver.solve(system, y0, t, step_size=H, corrector=model, guard="fallback", return_stats=True)


@pytest.mark.parametrize("which", ["all", "knn only", "no knn"])
def test_deferred_fallback_replays_what_the_per_step_fallback_solves(guard_setting, monkeypatch, which):
    system, data, base = guard_setting
    model = _zero_corrector(base, which)
    y0, t = _mixed_starts(data), _irregular_times(data)
    calls = []
    real = guard_module._Scorer.ok
    monkeypatch.setattr(guard_module._Scorer, "ok", lambda self, *a: calls.append(1) or real(self, *a))
    got, st = _fallback_solve(system, y0, t, model)
    assert calls == []  # scored after the solve (no autograd), then the flagged samples solved again
    _per_step(monkeypatch)
    ref, st_ref = _fallback_solve(system, y0, t, model)
    assert len(calls) > 0
    torch.testing.assert_close(got, ref, rtol=1e-13, atol=1e-13)
    a, b = st.guard, st_ref.guard
    assert a.flagged == b.flagged and any(a.flagged) and not all(a.flagged)
    assert (a.n_flagged, a.n_fallbacks, a.fallback_f_evals, a.first, a.reason) == \
        (b.n_flagged, b.n_fallbacks, b.fallback_f_evals, b.first, b.reason)
    # the unflagged samples are the corrected solve's; the flagged ones are not
    plain = attsolver.solve(system, y0, t, step_size=H, corrector=model)
    keep = torch.tensor([not f for f in a.flagged])
    assert torch.equal(got[:, keep], plain[:, keep].detach())


def test_a_sample_flagged_late_is_the_corrected_solve_until_its_flag_then_classical_at_a_quarter_step(
        guard_setting, monkeypatch):
    system, data, model = guard_setting

    class Late(NeurVec):
        """A zero correction, and a large one on sample 1 from t = 10.5 H: flagged by its size at
        the score of step 12 (steps 0, 4, 8, 12, ... are scored)."""

        def forward(self, t, y, dy, h):
            c = torch.zeros_like(y)
            if float(t) > 10.5 * H:
                c[1] = 0.5 * dy[1]
            return c

    late = Late(3, method="rk4", step_size=H, dtype=torch.float64)
    late.domain = model.domain
    y0, t = data.y[:3, 0], data.t[:21]
    got, st = _fallback_solve(system, y0, t, late)
    assert st.guard.flagged == (False, True, False) and st.guard.first == (pytest.approx(12 * H), 1)
    assert st.guard.n_fallbacks == 20 - 12
    with torch.no_grad():
        corrected = attsolver.solve(system, y0, t, step_size=H, corrector=late)
        # steps 11 and 12 of sample 1 are corrected (the score at step 12 sees the first large correction:
        # it is at step 11, which the score at step 8's verdict let through), then h/4 from t[12]
        start = corrected[12, 1:2]
        fine = attsolver.solve(system, start, t[12:], step_size=H / guard_module.FALLBACK_SUBSTEPS)
    torch.testing.assert_close(got[:13], corrected[:13], rtol=0, atol=0)
    torch.testing.assert_close(got[12:, 1:2], fine, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(got[:, [0, 2]], corrected[:, [0, 2]], rtol=0, atol=0)


def test_samples_flagged_at_different_steps_join_the_replay_in_index_order(guard_setting, monkeypatch):
    system, data, model = guard_setting

    class TwoLate(NeurVec):
        """Sample 2 gets a large correction from step 3 on (flagged at step 4), sample 1 from step
        11 on (flagged at step 12); samples 0 and 3 none."""

        def forward(self, t, y, dy, h):
            c = torch.zeros_like(y)
            if float(t) - 0.1 > 2.5 * H:  # the solve starts at t = 0.1
                c[2] = 0.5 * dy[2]
            if float(t) - 0.1 > 10.5 * H:
                c[1] = -0.5 * dy[1]
            return c

    late = TwoLate(3, method="rk4", step_size=H, dtype=torch.float64)
    late.domain = model.domain
    y0, t = data.y[:4, 0], 0.1 + data.t[:23]
    got, st = _fallback_solve(system, y0, t, late)
    _per_step(monkeypatch)
    ref, st_ref = _fallback_solve(system, y0, t, late)
    assert st.guard.flagged == st_ref.guard.flagged == (False, True, True, False)
    assert st.guard.n_fallbacks == st_ref.guard.n_fallbacks == (22 - 4) + (22 - 12)
    assert st.guard.first == st_ref.guard.first == (pytest.approx(0.1 + 4 * H), 2)
    assert st.guard.fallback_f_evals == st_ref.guard.fallback_f_evals == (22 - 4) * 4 * 4
    torch.testing.assert_close(got, ref, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("shape", [(3,), (2, 2, 3)])
def test_deferred_scores_take_any_batch_shape(guard_setting, monkeypatch, shape):
    system, data, model = guard_setting
    y0 = data.y[:4, 0].clone()
    y0[1] *= 3.0  # flagged from step 0
    y0 = y0[1] if shape == (3,) else y0.reshape(shape)
    t = data.t[:30]
    got = {}
    for cap in (guard_batch.DEFERRED_MAX_BYTES, 0):
        monkeypatch.setattr(guard_batch, "DEFERRED_MAX_BYTES", cap)
        for mode in ("warn", "fallback"):
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore", OutOfDomainWarning)
                got[cap > 0, mode] = attsolver.solve(system, y0, t, step_size=H, corrector=model, guard=mode,
                                                     return_stats=True)
    for mode in ("warn", "fallback"):
        (out, st), (ref, st_ref) = got[True, mode], got[False, mode]
        assert out.shape == (len(t), *shape) and torch.equal(out, ref)
        assert st.guard.flagged == st_ref.guard.flagged and st.guard.n_flagged == st_ref.guard.n_flagged > 0
        assert st.guard.first == st_ref.guard.first == (0.0, 0 if shape == (3,) else 1)
