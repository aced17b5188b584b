"""The learned interpolation's training domain and guard (attsolver.systems.interpolation_guard).

What must hold: the domain is the two training maxima (checked by hand); a trajectory inside it
is solved bit for bit as without the guard; one outside it from the first step is, under
"fallback", the base scheme's solution bit for bit (the untrained model's), while the others in
the same batch are untouched; "warn" changes nothing and names the trajectory; the guard keeps a
trajectory finite that the learned scheme alone blows up; every misuse is refused by name.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from attsolver import fit
from attsolver.correctors import InterpolationHost
from attsolver.data import TrajectoryDataset
from attsolver.integrate import NonFiniteSolutionError, solve
from attsolver.systems import (InterpolationDomainWarning, LearnedInterpolation, NavierStokes2DFD,
                               record_interpolation_domain)
from attsolver.systems.learned_interpolation import face_velocities

NU = 1.0 / 500.0
N = 16
H = 0.02


def _model(*, scale=0.05, seed=0, **kw):
    torch.manual_seed(seed)
    li = LearnedInterpolation(N, NU, hidden=4, layers=2, **kw).double()
    if scale:
        torch.nn.init.normal_(li.net[-1].weight, std=scale)
        torch.nn.init.normal_(li.net[-1].bias, std=scale)
    return li


def _states(seed=1, b=6):
    return NavierStokes2DFD(n=N, nu=NU).sample_initial(b, generator=torch.Generator().manual_seed(seed))


def _system(li):
    return NavierStokes2DFD(n=N, nu=NU, interpolation=li)


def _solve(li, w0, guard=None, **kw):
    t = torch.linspace(0.0, 0.4, 3, dtype=torch.float64)
    return solve(_system(li), w0, t, method="ssprk3", step_size=H, guard=guard, **kw)


def _departure_by_hand(li, w):
    s = NavierStokes2DFD(n=N, nu=NU)
    u, v = face_velocities(s.streamfunction(w), s.dx)
    with torch.no_grad():
        wx, wy = li(w, u, v)
    w0 = li.w0.double()[:, None, None]
    return max(float((wx - w0).abs().max()), float((wy - w0).abs().max()))


def test_domain_is_the_training_maxima_and_the_margins():
    li, w = _model(), _states()
    d = record_interpolation_domain(li, w, state_margin=1.25, departure_margin=3.0)
    assert float(d[0]) == float(w.abs().max())
    assert math.isclose(float(d[1]), _departure_by_hand(li, w), rel_tol=1e-12)
    assert float(d[1]) > 0 and d[2:].tolist() == [1.25, 3.0]
    assert li.has_domain and "1.25x" in li.domain_text
    # an untrained model is its base scheme: no departure at all
    assert float(record_interpolation_domain(_model(scale=0.0), w)[1]) == 0.0


def test_domain_is_saved_with_the_weights_and_older_weights_load_without_one():
    li = _model()
    record_interpolation_domain(li, _states())
    again = _model(scale=0.0)
    again.load_state_dict(li.state_dict())
    assert torch.equal(again.domain, li.domain)
    old = {k: v for k, v in li.state_dict().items() if k != "domain"}  # saved before domains existed
    older = _model(scale=0.0)
    older.load_state_dict(old)
    assert not older.has_domain and older.domain_text == "no training domain recorded"


def test_inside_the_domain_the_guarded_solve_is_the_plain_one_bit_for_bit():
    li, w = _model(), _states()
    record_interpolation_domain(li, w)
    plain = _solve(li, w)
    for mode in ("warn", "fallback"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sol, stats = _solve(li, w, guard=mode, return_stats=True)
        assert torch.equal(sol, plain)
        assert stats.guard.n_flagged == 0 and stats.guard.first is None
        assert stats.guard.checks >= 20 * 3  # weights per stage: 20 steps of 3 stages (+ solve's check of f)
    assert li._guard is None  # disarmed after the solve


@pytest.mark.parametrize("kw", [{}, {"weights_per": "step"}, {"form": "flux"}])
def test_fallback_outside_the_domain_is_the_base_scheme_and_leaves_the_rest_alone(kw):
    li, w = _model(**kw), _states(b=2)
    record_interpolation_domain(li, w[:1])  # the domain of the first field only
    w0 = torch.stack([w[0], 2.0 * w[1] / float(w[1].abs().max()) * float(w[0].abs().max())])  # 2x its max
    sol, stats = _solve(li, w0, guard="fallback", return_stats=True)
    plain = _solve(li, w0)
    base = _solve(_model(scale=0.0, **kw), w0)  # the untrained model: the base scheme
    assert torch.equal(sol[:, 0], plain[:, 0])  # inside: the learned scheme, untouched
    assert torch.equal(sol[:, 1], base[:, 1])  # outside from step 0: the base scheme exactly
    assert not torch.equal(plain[:, 1], base[:, 1])  # (the learned scheme differs there)
    assert stats.guard.flagged.tolist() == [False, True]
    assert stats.guard.first == (0.0, 1) and "max |omega|" in stats.guard.reasons[1]


def test_warn_changes_nothing_and_names_the_trajectory_and_time():
    li, w = _model(), _states(b=2)
    record_interpolation_domain(li, w[:1])
    w0 = torch.stack([w[0], 3.0 * w[0]])
    with pytest.warns(InterpolationDomainWarning, match=r"t = 0 on trajectory 1 .*1 of 2 trajectories.*fallback"):
        sol = _solve(li, w0, guard="warn")
    assert torch.equal(sol, _solve(li, w0))


def test_a_departure_beyond_the_margin_is_flagged_by_it():
    li, w = _model(), _states()
    record_interpolation_domain(li, w, departure_margin=1.0)
    with torch.no_grad():
        li.net[-1].weight.mul_(3.0)
        li.net[-1].bias.mul_(3.0)
    _, stats = _solve(li, w, guard="fallback", return_stats=True)
    assert stats.guard.n_flagged >= 1
    assert all("departure of the weights" in r for r in stats.guard.reasons.values())


def test_the_fallback_keeps_a_blowing_up_trajectory_finite():
    # a model whose learned weights are far from consistent-and-stable: its solve overflows,
    # the guarded one stays bounded by about the training maximum (the base scheme adds no enstrophy)
    li, w = _model(scale=3.0), _states(b=2)
    li.domain.copy_(record_interpolation_domain(_model(scale=0.0), w))  # the base scheme's states
    li.domain[1] = 10.0  # departures up to 20 allowed: only the state check can stop it
    t = torch.linspace(0.0, 4.0, 5, dtype=torch.float64)
    plain = solve(_system(li), w, t, method="ssprk3", step_size=H, options={"check_finite": False})
    sol, stats = solve(_system(li), w, t, method="ssprk3", step_size=H, guard="fallback", return_stats=True)
    assert not bool(torch.isfinite(plain[-1]).all()) or float(plain[-1].abs().max()) > 10 * float(w.abs().max())
    assert bool(torch.isfinite(sol).all()) and float(sol.detach().abs().max()) <= 2.5 * float(w.abs().max())
    assert stats.guard.n_flagged >= 1


def test_a_network_with_non_finite_output_falls_back_to_the_base_scheme():
    """NaN weights (a damaged parameter) are flagged as not finite at the first check: under
    "fallback" the solve is the base scheme's, bit for bit, where the plain solve is refused."""
    li, w = _model(), _states(b=2)
    record_interpolation_domain(li, w)
    with torch.no_grad():
        li.net[0].weight.view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteSolutionError, match="f itself produced them"):
        _solve(li, w)
    sol, stats = _solve(li, w, guard="fallback", return_stats=True)
    assert torch.equal(sol, _solve(_model(scale=0.0), w))
    assert stats.guard.flagged.tolist() == [True, True] and stats.guard.first[0] == 0.0
    assert all("not finite" in r for r in stats.guard.reasons.values())


def test_progress_pieces_keep_the_fallback_to_the_end():
    li, w = _model(), _states(b=2)
    record_interpolation_domain(li, w[:1])
    w0 = torch.stack([w[0], 3.0 * w[0]])
    t = torch.linspace(0.0, 0.4, 5, dtype=torch.float64)
    kw = dict(method="ssprk3", step_size=H, guard="fallback")
    assert torch.equal(solve(_system(li), w0, t, progress=True, **kw), solve(_system(li), w0, t, **kw))


def test_fit_records_the_domain_of_an_interpolation_host():
    w = _states(b=4)
    t = torch.tensor([0.0, 0.04, 0.08], dtype=torch.float64)
    y = solve(NavierStokes2DFD(n=N, nu=NU), w, t, method="ssprk3", step_size=H).transpose(0, 1).float()
    data = TrajectoryDataset(t=t, y=y.contiguous(), system=NavierStokes2DFD(n=N, nu=NU).config())
    host = InterpolationHost(LearnedInterpolation(N, NU, hidden=2, layers=1), step_size=H)
    fit(host, data, system=host.system(), epochs=1, batch_size=4, val_fraction=0.0, patience=None,
        progress=False, check=False)
    assert host.interpolation.has_domain
    assert math.isclose(float(host.interpolation.domain[0]), float(y.abs().max()), rel_tol=1e-6)


def test_refusals_name_the_argument_and_the_fix():
    li, w = _model(), _states()
    with pytest.raises(ValueError, match="record_interpolation_domain"):
        _solve(li, w, guard="fallback")  # no domain recorded
    record_interpolation_domain(li, w)
    with pytest.raises(ValueError, match="guard must be"):
        _solve(li, w, guard="fall back")
    with pytest.raises(ValueError, match="guard_check_every"):
        _solve(li, w, guard="warn", guard_check_every=4)
    with pytest.raises(ValueError, match="compile"):
        _solve(li, w, guard="warn", options={"compile": True})
    with pytest.raises(ValueError, match="interpolation="):
        solve(NavierStokes2DFD(n=N, nu=NU), w, torch.tensor([0.0, 0.1]), method="ssprk3", step_size=H, guard="warn")
    host = InterpolationHost(li.float(), step_size=H)
    with pytest.raises(ValueError, match="without corrector="):
        solve(host.system(), w.float(), torch.tensor([0.0, 0.1]), method="ssprk3", step_size=H, corrector=host,
              guard="fallback")
    with pytest.raises(ValueError, match="states must be"):
        record_interpolation_domain(li, torch.zeros(3, N + 1, N))
    with pytest.raises(ValueError, match="finite"):
        record_interpolation_domain(li, torch.full((2, N, N), math.nan))
    with pytest.raises(ValueError, match="state_margin"):
        record_interpolation_domain(li, w, state_margin=0.5)
    with pytest.raises(TypeError, match="LearnedInterpolation"):
        record_interpolation_domain(torch.nn.Linear(2, 2), w)
