"""A user's own problem in Python: a plain f(t, y) through generate_trajectories, from_arrays and
fit; time features for non-autonomous systems; fit's check of its own result."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import attsolver
from attsolver.data import TrajectoryDataset, generate_trajectories
from attsolver.training import FitCheckWarning


def duffing(t, y):
    """Forced Duffing oscillator x'' + 0.3 x' - x + x^3 = 0.5 cos(1.2 t), y = (x, x')."""
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, -0.3 * v + x - x**3 + 0.5 * torch.cos(1.2 * t)], -1)


def test_generate_trajectories_takes_a_plain_f_and_initial_states():
    y0 = torch.tensor([[1.0, 0.0], [0.5, -0.2]], dtype=torch.float64)
    d = generate_trajectories(duffing, y0, t_final=2.0, dt=0.1, refine=50, progress=False)
    assert d.system["name"] == "duffing" and d.config["rhs"].endswith(":duffing")
    # the same trajectories as a direct fine solve
    ref = attsolver.solve(duffing, y0, d.t, step_size=0.1 / 50).transpose(0, 1)
    torch.testing.assert_close(d.y, ref, rtol=0, atol=1e-12)
    # a sampler, seeded: equal seeds give equal data
    def sampler(n, generator):
        return torch.randn(n, 2, generator=generator, dtype=torch.float64)
    a = generate_trajectories(duffing, 3, sampler=sampler, t_final=1.0, dt=0.1, seed=5, progress=False)
    b = generate_trajectories(duffing, 3, sampler=sampler, t_final=1.0, dt=0.1, seed=5, progress=False)
    assert torch.equal(a.y, b.y) and len(a) == 3


def test_generate_trajectories_bad_input_names_the_fix():
    with pytest.raises(ValueError, match="no sample_initial"):
        generate_trajectories(duffing, 3, t_final=1.0, dt=0.1, progress=False)
    with pytest.raises(ValueError, match=r"returned shape \(4, 2\).*n initial states"):
        generate_trajectories(duffing, 3, sampler=lambda n, generator: torch.randn(n + 1, 2), t_final=1.0,
                              dt=0.1, progress=False)
    with pytest.raises(ValueError, match="returned shape"):  # f and the states disagree
        generate_trajectories(duffing, torch.zeros(2, 3, dtype=torch.float64), t_final=1.0, dt=0.1,
                              progress=False)


def test_from_arrays_wraps_external_data_and_refuses_bad_arrays():
    t = np.linspace(0.0, 1.0, 6)
    y = np.random.default_rng(0).normal(size=(3, 6, 2))
    d = TrajectoryDataset.from_arrays(t, y, noise_level=0.01, name="lab")
    assert d.noise_level == 0.01 and d.config["noise_level_known"] and d.state_shape == (2,)
    same = TrajectoryDataset.from_arrays(np.tile(t, (3, 1)), list(y))  # per-trajectory equal times, a list
    assert torch.equal(same.y, d.y) and same.config["noise_level_known"] is False
    with pytest.raises(ValueError, match=r"strictly increasing, but t\[2\]"):
        TrajectoryDataset.from_arrays(t[[0, 1, 3, 2, 4, 5]], y)
    with pytest.raises(ValueError, match="ragged"):
        TrajectoryDataset.from_arrays(t, [y[0], y[1, :5]])
    with pytest.raises(ValueError, match="differs between trajectories"):
        TrajectoryDataset.from_arrays(np.stack([t, t, t * 1.1]), y)
    bad = y.copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"index\(es\) 1"):
        TrajectoryDataset.from_arrays(t, bad)


def test_fit_uses_the_f_it_is_handed_and_names_it_when_missing():
    y0 = 0.8 * torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    d = generate_trajectories(duffing, y0, t_final=4.0, dt=0.4, progress=False)
    model = attsolver.NeurVec(2, method="rk4", step_size=0.4, dtype=torch.float64)
    with pytest.raises(ValueError, match="pass system=f"):
        attsolver.fit(model, d, epochs=1, progress=False)
    with pytest.raises(ValueError, match="not both"):
        attsolver.fit(model, d, f=duffing, system=duffing, epochs=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitCheckWarning)
        h = attsolver.fit(model, d, f=duffing, epochs=2, progress=False)
    assert h.epochs_run == 2 and h.check["rollout"]["horizons"][0] == 1


def test_phase_features_let_a_corrector_learn_a_forcing():
    """dy/dt = cos(w t): Euler's one-step residual sin(w(t+h))/w - sin(w t)/w - h cos(w t) is a
    linear combination of cos(w t) and sin(w t) and does not depend on y.  With the phase
    features a corrector fits it almost exactly; without them (y only, random offsets) it cannot."""
    w, h = 2.0, 0.1

    def forcing(t, y):
        return torch.cos(w * t) * torch.ones_like(y)

    y0 = 5 * torch.randn(16, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    d = generate_trajectories(forcing, y0, t_final=6.0, dt=h, progress=False)
    losses = {}
    for feats in (("y", "dy"), ("y", "cos:2", "sin:2")):
        torch.manual_seed(0)
        m = attsolver.AttSolver(1, method="euler", step_size=h, features=feats, width=32, dtype=torch.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitCheckWarning)
            hist = attsolver.fit(m, d, f=forcing, epochs=30, lr=3e-3, batch_size=64, progress=False, check=False)
        losses[feats] = hist.best_loss
    assert losses[("y", "cos:2", "sin:2")] < 0.05 * losses[("y", "dy")]
    # the time features reach the corrector inside solve: it depends on t at a fixed y
    m.eval()
    y = torch.zeros(1, 1, dtype=torch.float64)
    a = m(torch.tensor(0.0, dtype=torch.float64), y, y, h)
    b = m(torch.tensor(0.7, dtype=torch.float64), y, y, h)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="needs the step's time"):
        m(None, y, y, h)


def test_fit_warns_on_noise_dominated_targets_and_on_nothing_learned():
    """RK4 at h = 0.01 on Lorenz-63: the one-step error (~1e-8 of the spread) is far below 2 %
    observation noise, so the targets are noise and the loss stays at the zero level."""
    d = generate_trajectories("lorenz63", 8, t_final=1.0, dt=0.01, spin_up=5.0, noise_level=0.02, progress=False)
    model = attsolver.AttSolver(3, method="rk4", step_size=0.01, width=16)
    with pytest.warns(FitCheckWarning) as rec:
        h = attsolver.fit(model, d, epochs=3, progress=False)
    text = " ".join(str(r.message) for r in rec)
    assert "noise-dominated" in text and "coarser step" in text
    assert "learned (almost) nothing" in text
    assert h.check["residual_to_noise"]["ratio"] < 0.5  # truly ~1e-6; the estimate's sampling floor ~0.2
    assert "WARNING" in h.summary() and "warning" in repr(h)


def test_noise_estimate_without_a_recorded_level():
    """Without a recorded level the noise is estimated from the residuals' autocovariance; on
    finely sampled data (Euler, linear oscillator, dt = 0.1) it agrees with the measured ratio
    on either side of 1 (noise 1 %: the residual is above the noise; 3 %: below)."""
    from attsolver.training.check import residual_to_noise as _residual_to_noise
    from attsolver.training.targets import classical_steps as _classical

    sys_ = attsolver.systems.make_system("linear")
    clean = generate_trajectories(sys_, 16, t_final=10.0, dt=0.1, progress=False)

    def ratio(data):
        def step(x):
            return _classical("euler", sys_, x, data.t.numpy()[:-1], 0.1, 1, True)
        r = data.y[:, 1:] - step(data.y[:, :-1])
        return _residual_to_noise(r.reshape(r.shape[0], r.shape[1], -1), data.y, data, step)["ratio"]

    for level, side in ((0.01, 1), (0.03, -1)):
        noisy = attsolver.data.add_noise(clean.y, level, generator=torch.Generator().manual_seed(0))
        known = ratio(TrajectoryDataset.from_arrays(clean.t, noisy, noise_level=level))
        unknown = ratio(TrajectoryDataset.from_arrays(clean.t, noisy))
        assert unknown == pytest.approx(known, rel=0.2)
        assert (known - 1) * side > 0 and (unknown - 1) * side > 0


def test_zero_level_of_a_rollout_loss_is_the_uncorrected_rollout():
    """With rollout_steps=k the zero correction's loss is the uncorrected k-interval rollout's:
    an untrained (exactly zero) corrector's validation loss equals it."""
    d = generate_trajectories(attsolver.systems.make_system("linear"), 6, t_final=2.0, dt=0.2, progress=False)
    model = attsolver.NeurVec(2, method="euler", step_size=0.2, width=8, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitCheckWarning)
        h = attsolver.fit(model, d, epochs=1, lr=1e-12, rollout_steps=3, progress=False)
    assert h.check["zero_loss"] == pytest.approx(h.val_loss[0], rel=1e-6)


def test_fit_check_steps_a_forced_system_subclass_at_its_own_times():
    """A non-autonomous f written as a System subclass, trained with autonomous=False: the
    end-of-fit check must step each window from its own start time, as training does, so the
    classical one-step error it reports is the scheme's (tiny at h=0.1), not the forcing's
    phase error of restarting every window at t = 0."""
    from dataclasses import dataclass

    from attsolver.systems import System

    @dataclass(frozen=True)
    class ForcedDuffing(System):
        name = "forced_duffing_subclass"
        state_shape = (2,)

        def __call__(self, t, y):
            return duffing(t, y)

    f = ForcedDuffing()
    y0 = 0.8 * torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    d = generate_trajectories(f, y0, t_final=4.0, dt=0.1, refine=20, progress=False)
    model = attsolver.NeurVec(2, method="rk4", step_size=0.1, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitCheckWarning)
        h = attsolver.fit(model, d, f=f, autonomous=False, epochs=1, progress=False)
    assert h.check["rollout"]["err_classical"][0] < 1e-4
    # the zero correction's loss, in the units training normalises its targets by: about 1 when
    # the check's residuals are the training targets, far above when it restarts windows at t = 0
    assert h.check["zero_loss"] < 3.0
