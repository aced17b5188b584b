"""The a-posteriori check's calibrated ratio (training/check_ratio.py, integrate/guard.py)."""

import copy
import dataclasses
import math
import warnings

import pytest
import torch

import attsolver
from attsolver.correctors import NeurVec
from attsolver.data import generate_trajectories
from attsolver.integrate.guard import POSTERIORI_RATIO, OutOfDomainWarning, TrainingDomain
from attsolver.systems import Lorenz63
from attsolver.training import calibrate_check, record_domain, set_check_ratio
from attsolver.training.check_ratio import check_ratio_threshold

H = 0.02
EVERY = 8


@pytest.fixture(scope="module")
def setting():
    system = Lorenz63()
    data = generate_trajectories(system, 20, t_final=1.28, dt=H, spin_up=2.0, seed=0, progress=False)
    torch.manual_seed(0)
    model = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    # a random correction about RK4's error: some trajectories beat the classical shadow, some lose
    with torch.no_grad():
        model.net[2].weight.copy_(torch.randn(3, 1024, dtype=torch.float64) * 3e-8)
    record_domain(model, data)
    return system, data, model


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.25, 0.5])
def test_threshold_is_the_smallest_that_flags_at_most_the_rate(rate):
    g = torch.Generator().manual_seed(3)
    r = torch.rand(97, generator=g, dtype=torch.float64) * 3
    thr = check_ratio_threshold(r, rate)
    assert thr in r.tolist()
    assert int((r > thr).sum()) <= rate * len(r)
    below = r[r < thr].max()  # the next smaller candidate flags too many
    assert int((r > below).sum()) > rate * len(r)


def test_threshold_on_ranks_and_nan():
    r = torch.arange(1.0, 101.0, dtype=torch.float64)[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    assert check_ratio_threshold(r, 0.05) == 95.0  # 96..100 flagged: 5 of 100
    assert check_ratio_threshold(torch.tensor([float("nan"), 2.0, 1.0]), 0.5) == 1.0  # NaN reads as 0


def test_the_report_carries_the_largest_summed_ratio_and_the_check_uses_the_stored_ratio(setting):
    system, data, model = setting
    y0, t = data.y[:, 0], data.t
    kw = dict(step_size=H, corrector=model, return_stats=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        _, plain = attsolver.solve(system, y0, t, guard="warn", **kw)
        _, checked = attsolver.solve(system, y0, t, guard="warn", guard_check_every=EVERY, **kw)
    assert plain.guard.check_ratio is None
    ratios = torch.tensor(checked.guard.check_ratio, dtype=torch.float64)
    assert ratios.shape == (20,) and bool((ratios > 0).all())
    features = torch.tensor(plain.guard.flagged)
    # the default ratio: distrusted exactly where the largest ratio exceeded it (warn: the solve is not changed)
    assert torch.equal(torch.tensor(checked.guard.flagged), features | (ratios > POSTERIORI_RATIO))
    ratio = calibrate_check(model, data, check_every=EVERY, rate=0.25, f=system)
    try:
        # the feature scores' flags count first (flagged at any ratio), then the largest ratios
        assert ratio == check_ratio_threshold(torch.where(features, torch.full_like(ratios, math.inf), ratios), 0.25)
        assert model.domain.check_ratio(EVERY) == ratio and model.domain.check_ratio(2 * EVERY) == POSTERIORI_RATIO
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfDomainWarning)
            _, again = attsolver.solve(system, y0, t, guard="warn", guard_check_every=EVERY, **kw)
        by_check = ratios > ratio
        union = features | by_check
        assert torch.equal(torch.tensor(again.guard.flagged), union)
        assert int(union.sum()) <= 0.25 * 20 and int((by_check & ~features).sum()) > 0
        # one ratio lower would flag more than the rate
        lower = ratios[(ratios < ratio) & ~features].max()
        assert int((features | (ratios > lower)).sum()) > 0.25 * 20
    finally:
        model.domain = model.domain.with_check_ratios(())


def test_when_the_scores_alone_flag_more_than_the_rate_the_check_adds_none(setting):
    system, data, model = setting
    tight = copy.copy(model)
    tight.domain = dataclasses.replace(model.domain, distance_threshold=0.0, _cache={})  # every step flagged
    with pytest.warns(UserWarning, match="feature scores alone flag 20 of 20"):
        ratio = calibrate_check(tight, data, check_every=EVERY, rate=0.25, f=system)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        _, st = attsolver.solve(system, data.y[:, 0], data.t, step_size=H, corrector=tight, guard="warn",
                                guard_check_every=EVERY, return_stats=True)
    assert ratio == max(st.guard.check_ratio)


def test_check_ratios_survive_the_checkpoint_dict_and_bad_ones_are_refused(setting):
    _, _, model = setting
    dom = model.domain.with_check_ratios(((32, 1.7), (64, 2.5)))
    back = TrainingDomain.from_dict(dom.to_dict())
    assert back.check_ratios == ((32, 1.7), (64, 2.5)) and back.check_ratio(64) == 2.5
    assert "check_ratios" not in model.domain.to_dict()  # none calibrated: the checkpoint reads as before
    # ratios calibrated on the earlier schedule (first window after check_every steps) are dropped, with a warning
    old = {k: v for k, v in dom.to_dict().items() if k != "check_schedule"}
    with pytest.warns(UserWarning, match="earlier schedule.*calibrate_check"):
        assert TrainingDomain.from_dict(old).check_ratios == ()
    bad = dom.to_dict()
    bad["check_ratios"] = [[32, -1.0]]
    with pytest.raises(ValueError, match="calibrate_check"):
        TrainingDomain.from_dict(bad)


def test_bad_input_is_refused_naming_the_argument(setting):
    system, data, model = setting
    for ratio in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="ratio"):
            set_check_ratio(model, 32, ratio)
    with pytest.raises(ValueError, match="check_every"):
        set_check_ratio(model, 0, 1.5)
    with pytest.raises(ValueError, match="rate"):
        calibrate_check(model, data, check_every=EVERY, rate=1.0, f=system)
    with pytest.raises(ValueError, match=r"at least ceil\(1/rate\) = 100"):
        calibrate_check(model, data, check_every=EVERY, rate=0.01, f=system)
    assert model.domain.check_ratios == ()


def test_a_window_that_cannot_close_is_not_opened(setting):
    """Check every 8 steps, a window of 4: the first opens at the first step, the next at step 9;
    a window is opened only when the solve has the steps left to close it."""
    system, data, model = setting
    y0 = data.y[:, 0]
    kw = dict(step_size=H, corrector=model, guard="warn", return_stats=True)
    per_window = 4 * (1 + 2) * 4  # 4 steps of the classical shadow and the refined one (2 substeps), 4 stages each
    got = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        for n in (3, 4, 11, 12):
            got[n] = attsolver.solve(system, y0, data.t[:n + 1], guard_check_every=EVERY, **kw)[1].guard
    assert got[3].check_ratio is None and got[3].fallback_f_evals == 0  # 3 steps: the first window cannot close
    assert got[4].check_ratio is not None and got[4].fallback_f_evals == per_window
    assert got[11].fallback_f_evals == per_window  # from step 9 only 3 steps are left
    assert got[12].fallback_f_evals == 2 * per_window
