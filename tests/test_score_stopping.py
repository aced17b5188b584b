"""Early stopping on a score of the model (ScoreStopping, fit's on_epoch_end returning True):
evaluated every k epochs, the best evaluation's weights kept and put back, a stop after
`patience` evaluations without improvement, the epoch cap kept, and bad settings refused."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from attsolver import solve
from attsolver.data import generate_trajectories
from attsolver.training import ScoreStopping
from conftest import LINEAR_DT as DT
from conftest import linear_model as model
from conftest import quiet_fit as fit_quietly


@pytest.fixture(scope="module")
def data(linear_data):
    return linear_data  # the module's tests call it data


quiet_fit = functools.partial(fit_quietly, epochs=12, restore_best=False)


def scripted(scores):
    """A score that returns the given values in turn and stamps the model's weights with the
    evaluation's index, so the kept weights say which evaluation they came from."""
    calls = []

    def score(m):
        calls.append(len(calls))
        with torch.no_grad():
            m.bias.fill_(float(len(calls)))  # evaluation 1, 2, ...
        return scores[len(calls) - 1]
    return score, calls


def test_best_evaluation_kept_and_stop_after_patience_without_improvement():
    lin = nn.Linear(1, 1)
    score, calls = scripted([1.0, 3.0, 2.0, 2.5, 2.9, 9.0])
    stop = ScoreStopping(lin, score, every=2, patience=3)
    asked = [stop(e) for e in range(1, 11)]  # evaluations at epochs 2, 4, 6, 8, 10
    assert len(calls) == 5
    assert [e for e, _ in stop.curve] == [2, 4, 6, 8, 10]
    assert (stop.best_epoch, stop.best_score) == (4, 3.0)
    assert asked == [False] * 9 + [True]  # 6, 8, 10 did not beat 3.0: the third asks to stop
    assert stop.stopped_epoch == 10
    assert float(lin.bias.detach()) == 5.0  # the last evaluation's stamp
    assert stop.restore() and float(lin.bias.detach()) == 2.0  # the second evaluation (epoch 4) is back


def test_min_mode_min_delta_and_nonfinite_scores_count_as_worst():
    lin = nn.Linear(1, 1)
    score, _ = scripted([5.0, math.nan, 4.95, 4.0, math.inf])
    stop = ScoreStopping(lin, score, patience=3, mode="min", min_delta=0.1)
    asked = [stop(e) for e in range(1, 6)]
    assert (stop.best_epoch, stop.best_score) == (4, 4.0)  # 4.95 is not better by more than 0.1
    assert asked == [False, False, False, False, False]  # the improvement at 4 reset the count
    assert stop.record()["curve"][1] == [2, None]  # non-finite scores are recorded as null
    stop_nan = ScoreStopping(nn.Linear(1, 1), lambda m: math.nan, patience=2)
    assert [stop_nan(e) for e in (1, 2)] == [False, True]
    assert not stop_nan.restore()  # nothing finite was ever seen: the weights stay as they are


def test_warmup_evaluations_keep_the_best_but_never_count_as_misses():
    lin = nn.Linear(1, 1)
    score, _ = scripted([2.0, 1.0, 1.0, 1.0, 1.5, 1.8, 1.9])
    stop = ScoreStopping(lin, score, patience=2, warmup=4)
    asked = [stop(e) for e in range(1, 7)]
    # epochs 2-4 miss inside the warm-up (no count); 5 and 6 miss after it: the stop comes at 6
    assert asked == [False] * 5 + [True] and stop.stopped_epoch == 6
    assert stop.best_epoch == 1 and stop.restore() and float(lin.bias.detach()) == 1.0


def test_fit_stops_when_the_callback_asks_and_restores_the_best(data):
    m = model()
    seen = []

    def score(mm):  # improves for 3 evaluations, then only gets worse
        seen.append({k: v.clone() for k, v in mm.state_dict().items()})
        return [1.0, 2.0, 3.0, 2.0, 1.0, 0.0, -1.0][len(seen) - 1]
    stop = ScoreStopping(m, score, every=2, patience=2)
    history = quiet_fit(m, data, epochs=40, rollout_steps=2, on_epoch_end=stop)
    # evaluations at epochs 2, 4, 6 (best), 8, 10: the second miss asks to stop after epoch 10
    assert history.epochs_run == 10 and len(history.train_loss) == 10
    assert history.stopped_early
    assert stop.best_epoch == 6 and stop.stopped_epoch == 10
    assert stop.restore()
    for k, v in m.state_dict().items():
        assert torch.equal(v, seen[2][k])  # the weights scored at epoch 6


def test_without_patience_the_epoch_cap_ends_the_run(data):
    m = model()
    stop = ScoreStopping(m, lambda mm: -1.0, every=3, patience=None)
    history = quiet_fit(m, data, epochs=7, rollout_steps=1, on_epoch_end=stop)
    assert history.epochs_run == 7 and not history.stopped_early
    assert [e for e, _ in stop.curve] == [3, 6]
    # only True stops: a callback returning another truthy value (e.g. a list) does not
    history = quiet_fit(model(), data, epochs=3, rollout_steps=1, on_epoch_end=lambda e, h: [e])
    assert history.epochs_run == 3 and not history.stopped_early


def test_a_real_validation_score_the_restored_weights_score_the_best(data):
    """Score: minus the corrected rollout's relative error on held-out trajectories; after the
    restore the model scores exactly the best value of the curve (the kept weights are the scored ones)."""
    m = model()
    val = generate_trajectories("linear", 2, t_final=2.5, dt=DT, seed=11, progress=False)
    f = val.make_system()

    def neg_error(mm):
        pred = solve(f, val.y[:, 0], val.t, method="euler", step_size=DT, corrector=mm).transpose(0, 1)
        return -float((pred - val.y).norm() / val.y.norm())
    stop = ScoreStopping(m, neg_error, every=1, patience=2)
    quiet_fit(m, data, epochs=8, lr=1e-2, rollout_steps=2, on_epoch_end=stop)
    assert stop.best_score == max(v for _, v in stop.curve)
    stop.restore()
    m.eval()
    with torch.no_grad():
        assert neg_error(m) == pytest.approx(stop.best_score, rel=1e-12)
    uncorrected = solve(f, val.y[:, 0], val.t, method="euler", step_size=DT).transpose(0, 1)
    assert stop.best_score > -float((uncorrected - val.y).norm() / val.y.norm())  # it learned something


@pytest.mark.parametrize("kw, match", [
    (dict(every=0), "every"), (dict(patience=0), "patience"), (dict(mode="up"), "mode"),
    (dict(min_delta=-1.0), "min_delta"), (dict(warmup=-1), "warmup"),
])
def test_bad_settings_are_refused_naming_the_argument(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ScoreStopping(nn.Linear(1, 1), lambda m: 0.0, **kw)
    with pytest.raises(TypeError, match="score"):
        ScoreStopping(nn.Linear(1, 1), 3.0)
