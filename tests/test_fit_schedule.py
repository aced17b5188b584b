"""fit's rollout_schedule: the window length of every epoch follows it (solver-in-the-loop with a
curriculum), a constant schedule is the fixed rollout_steps run, bad schedules are refused before
any work, and a resume must keep the lengths already run."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch

from attsolver.systems import LinearSystem
from attsolver.training import FitCheckWarning, fit
from conftest import LINEAR_DT as DT
from conftest import linear_model as model
from conftest import quiet_fit as fit_quietly


@pytest.fixture(scope="module")
def data(linear_data):
    return linear_data  # the module's tests call it data


quiet_fit = functools.partial(fit_quietly, epochs=4)


def kolmogorov_curriculum(final: int, epochs: int):
    """The 2-D Kolmogorov benchmark's unroll curriculum: 2 -> final over the first half."""
    return lambda e: max(2, min(final, 2 + (final - 1) * e // max(1, epochs // 2)))


@pytest.mark.parametrize("schedule, expected", [
    (kolmogorov_curriculum(4, 4), [2, 3, 4, 4]),
    ([(0, 1), (2, 3)], [1, 1, 3, 3]),
    ([(0, 3)], [3, 3, 3, 3]),
])
def test_the_window_of_each_epoch_follows_the_schedule(data, schedule, expected):
    """The length is read from the solves training actually runs: an autonomous f records the
    times it is called at, and the last Euler step of a window of k intervals starts at (k-1) dt."""
    seen: list[float] = []
    marks: list[int] = []
    lin = LinearSystem()

    def f(t, y):
        seen.append(float(t))
        return lin(t, y)

    h = quiet_fit(model(), data, system=f, autonomous=True, rollout_schedule=schedule,
                  on_epoch_end=lambda epoch, hist: marks.append(len(seen)))
    starts = [0, *marks[:-1]]
    used = [round(max(seen[a:b]) / DT) + 1 for a, b in zip(starts, marks)]
    assert used == expected and h.rollout_steps == expected
    pairs = [[e, k] for e, k in enumerate(expected) if e == 0 or expected[e - 1] != k]
    m = model()
    quiet_fit(m, data, rollout_schedule=schedule)
    assert m.training_info["fit"]["rollout_schedule"] == pairs
    assert m.training_info["fit"]["rollout_steps"] == expected[-1]


def test_without_a_schedule_every_epoch_uses_rollout_steps(data):
    assert quiet_fit(model(), data, epochs=2).rollout_steps == [0, 0]
    m = model()
    assert quiet_fit(m, data, epochs=2, rollout_steps=2).rollout_steps == [2, 2]
    assert "rollout_schedule" not in m.training_info["fit"]


def test_a_constant_schedule_is_the_fixed_rollout_run(data):
    a, b = model(), model()
    ha = quiet_fit(a, data, rollout_steps=3)
    hb = quiet_fit(b, data, rollout_schedule=lambda e: 3)
    assert ha.train_loss == hb.train_loss and ha.val_loss == hb.val_loss
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_only_epochs_of_one_length_compete_and_the_check_uses_the_best_epochs(data):
    # an untrained (exactly zero) corrector: every loss is the zero correction's at that length,
    # so the longer windows score worse, yet the best epoch is one of the longest
    m = model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitCheckWarning)
        h = fit(m, data, epochs=3, lr=1e-12, rollout_schedule=[(0, 1), (1, 3)], progress=False, patience=None)
    assert h.val_loss[0] < h.val_loss[1] and h.best_epoch >= 2 and h.rollout_steps[h.best_epoch - 1] == 3
    assert h.check["zero_loss"] == pytest.approx(h.val_loss[h.best_epoch - 1], rel=1e-6)


@pytest.mark.parametrize("schedule, error, message", [
    (3, TypeError, r"rollout_schedule must be a callable epoch -> rollout steps or a list of \(epoch, steps\) "
                   r"pairs, got int 3"),
    ("2,4", TypeError, "rollout_schedule must be a callable"),
    ([], ValueError, "rollout_schedule is empty"),
    ([(1, 2)], ValueError, r"rollout_schedule must start at epoch 0 .*got \(1, 2\)"),
    ([(0, 2), (2, 3), (2, 4)], ValueError, r"rollout_schedule's epochs must increase: rollout_schedule\[2\]"),
    ([(0, 0)], ValueError, r"rollout_schedule\[0\]'s steps must be a positive integer \(data intervals per "
                           r"training window\), got 0"),
    ([(0, 2.5)], TypeError, r"rollout_schedule\[0\]'s steps must be a positive integer"),
    ([(-1, 2)], ValueError, r"rollout_schedule\[0\]'s epoch must be an integer >= 0"),
    ([3], TypeError, r"rollout_schedule\[0\] must be an \(epoch, steps\) pair, got 3"),
    ([(0, 2, 1)], TypeError, r"rollout_schedule\[0\] must be an \(epoch, steps\) pair"),
    (lambda e: 0, ValueError, r"rollout_schedule\(0\) must be a positive integer"),
    (lambda e: True, TypeError, r"rollout_schedule\(0\) must be a positive integer"),
    (lambda e: 2 if e < 2 else 2.0, TypeError, r"rollout_schedule\(2\) must be a positive integer.*float 2.0"),
    (lambda e: 2 if e < 2 else 60, ValueError, r"rollout_schedule asks for windows of 60 data intervals "
                                               r"\(epoch index 2\), which need trajectories of at least 61 times; "
                                               r"the data has 21"),
])
def test_bad_schedules_are_refused_before_training(data, schedule, error, message):
    m = model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(error, match=message):
        quiet_fit(m, data, rollout_schedule=schedule)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_a_schedule_and_rollout_steps_together_are_refused(data):
    with pytest.raises(ValueError, match=r"give rollout_steps .* or rollout_schedule .*, not both"):
        quiet_fit(model(), data, rollout_steps=2, rollout_schedule=[(0, 2)])


def test_resume_keeps_the_schedule_and_reaches_the_uninterrupted_weights(data, tmp_path):
    schedule = [(0, 1), (1, 2), (3, 3)]
    straight = model()
    hs = quiet_fit(straight, data, rollout_schedule=schedule, checkpoint=tmp_path / "a.pt")

    class Stop(Exception):
        pass

    def stop_after_2(epoch, history):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        quiet_fit(model(), data, rollout_schedule=schedule, checkpoint=tmp_path / "b.pt", on_epoch_end=stop_after_2)
    with pytest.raises(ValueError, match=r"epoch index 1 ran windows of 2 data intervals, the rollout schedule now "
                                         r"gives 3; resume with the same rollout_schedule"):
        quiet_fit(model(), data, rollout_schedule=[(0, 1), (1, 3)], checkpoint=tmp_path / "b.pt", resume=True)
    with pytest.raises(ValueError, match="epoch index 0 ran windows of 1 data intervals, the rollout schedule now "
                                         "gives 0"):
        quiet_fit(model(), data, checkpoint=tmp_path / "b.pt", resume=True)
    resumed = model()
    hr = quiet_fit(resumed, data, rollout_schedule=schedule, checkpoint=tmp_path / "b.pt", resume=True)
    assert hr.resumed_from == 2 and hr.rollout_steps == hs.rollout_steps == [1, 2, 2, 3]
    assert hr.train_loss == hs.train_loss
    assert all(torch.equal(straight.state_dict()[k], resumed.state_dict()[k]) for k in straight.state_dict())
