"""Issue 22: a verdict a busy machine cannot flip — the bootstrap interval, the three outcomes,
the stopping rule of the timing rounds, the cost in evaluations of f, and the same verdict
from the CLI and from Python."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import attsolver
from attsolver.cli.main import main
from attsolver.data import TrajectoryDataset, generate_trajectories, save_h5
from attsolver.evaluate import compare
from attsolver.evaluate.confidence import (bootstrap_speedup, choose_clock, machine_load, narrow_enough, outcome,
                                           run_rounds)
from attsolver.systems import make_system
from attsolver.training.check import _warnings
from attsolver.training.history import FitHistory
from attsolver.training.stability import describe, unstable_states


def _front(speedup: float, n_rounds: int, n_traj: int, noise: float, seed: int = 0):
    """A classical ladder with cost = err^(-1/4) (a 4th-order method) and a corrected run
    whose error costs the ladder ``speedup`` times its own time; rounds and trajectories
    perturbed by multiplicative noise."""
    rng = np.random.default_rng(seed)
    errs = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]
    classical = [{"family": "rk4", "label": f"c{i}", "err_full": e} for i, e in enumerate(errs)]
    samples, traj = {}, {}
    for c in classical:
        cost = c["err_full"] ** -0.25 * 1e-3
        samples[c["label"]] = {"cpu": list(cost * (1 + noise * rng.standard_normal(n_rounds)))}
        traj[c["label"]] = c["err_full"] * (1 + noise * rng.standard_normal(n_traj))
    e_corr = 3e-3
    t_corr = e_corr ** -0.25 * 1e-3 / speedup
    samples["corr"] = {"cpu": list(t_corr * (1 + noise * rng.standard_normal(n_rounds)))}
    traj["corr"] = e_corr * (1 + noise * rng.standard_normal(n_traj))
    return classical, samples, traj


@pytest.mark.parametrize("speedup, expected", [(2.0, "pays"), (0.5, "does not pay"), (1.0, "inconclusive")])
def test_the_bootstrap_interval_covers_the_true_speedup_and_decides_three_ways(speedup, expected):
    """On a log-log-linear front the speed-up at equal accuracy is known exactly; with 5 %
    noise over 30 rounds and 40 trajectories the 95 % interval covers it, is narrow (±10 %) and
    gives the outcome: above 1x pays, below 1x does not, around 1x inconclusive."""
    classical, samples, traj = _front(speedup, 30, 40, 0.05)
    iv = bootstrap_speedup(classical, "corr", samples, traj, "err_full", "cpu", n_boot=300)
    assert iv["low"] < speedup < iv["high"]
    assert iv["point"] == pytest.approx(speedup, rel=0.05)
    assert narrow_enough(iv, 0.10)
    assert outcome(iv["low"], iv["high"]) == expected


def test_noisier_timing_widens_the_interval():
    c, s, t = _front(1.5, 10, 20, 0.02, seed=1)
    quiet = bootstrap_speedup(c, "corr", s, t, "err_full", "cpu")
    c, s, t = _front(1.5, 10, 20, 0.30, seed=1)
    noisy = bootstrap_speedup(c, "corr", s, t, "err_full", "cpu")
    assert (noisy["high"] - noisy["low"]) > 3 * (quiet["high"] - quiet["low"])
    assert outcome(None, None) == "inconclusive" and outcome(1.01, 2) == "pays" and outcome(0.1, 0.99) == "does not pay"


def test_rounds_stop_when_enough_or_at_the_limits():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    s, why = run_rounds(fns, min_rounds=3, max_rounds=50, budget_s=1e3, enough=lambda s: len(s["a"]["cpu"]) >= 7)
    assert len(s["a"]["wall"]) == len(s["b"]["cpu"]) == 7 and "narrow enough after 7" in why
    assert calls[:4] == ["a", "b", "a", "b"]  # interleaved
    s, why = run_rounds(fns, min_rounds=2, max_rounds=4, budget_s=1e3, enough=lambda s: False)
    assert len(s["a"]["wall"]) == 4 and "max_rounds=4" in why
    s, why = run_rounds(fns, min_rounds=2, max_rounds=10**6, budget_s=1e-9, enough=lambda s: False)
    assert len(s["a"]["wall"]) == 2 and "time budget" in why  # the minimum is always done
    assert choose_clock("wall", s)[0] == "wall" and choose_clock("cpu", s)[0] == "cpu"
    assert choose_clock("auto", s)[0] == "wall"  # appending to a list is too short for the CPU clock
    load = machine_load()
    assert load["cores"] >= 1 and (load["load_1min"] is None or load["load_1min"] >= 0)


def _lorenz(n=6, nt=21, dt=0.1):
    s = make_system("lorenz63")
    y0 = s.sample_initial(n, generator=torch.Generator().manual_seed(3))
    y0 = attsolver.solve(s, y0, torch.tensor([0.0, 5.0], dtype=torch.float64), step_size=0.01)[-1]
    return s, y0, torch.arange(nt, dtype=torch.float64) * dt


def test_evaluations_of_f_are_counted_per_rung_and_the_corrector_costs_f_equivalents():
    """RK4 takes 4 evaluations per step: h/k over 20 intervals costs 80 k (+ the same constant
    for every rung); the corrected run costs the coarse run's evaluations plus one corrector
    call per step at its measured exchange rate."""
    s, y0, t = _lorenz()
    zero = attsolver.NeurVec(3, method="rk4", step_size=0.1)
    res = compare(s, y0, t, corrector=zero, refinements=(1, 2, 4), rk4_refinements=(), dopri_rtols=(1e-5,),
                  lyapunov_exponent=0.906, rounds=2, max_rounds=3, progress=False)
    by = {e["label"]: e for e in res.entries}
    base = by["rk4 h/1"]["f_evals"] - 80
    assert [by[f"rk4 h/{k}"]["f_evals"] - base for k in (1, 2, 4)] == [80, 160, 320]
    corr = by["rk4 h/1 + NeurVec"]
    ev = res.verdict["evals"]
    assert corr["f_evals"] == by["rk4 h/1"]["f_evals"] and ev["corrector_calls"] == 20
    assert corr["cost_f_equiv"] == pytest.approx(corr["f_evals"] + 20 * ev["corrector_f_equiv"])
    assert by["dopri5 rtol=1e-05"]["f_evals"] > 0
    assert res.setting["clock"] in ("cpu", "wall") and res.setting["load_start"]["cores"] >= 1
    assert res.verdict["outcome"] in ("pays", "does not pay", "inconclusive")


def test_cli_and_python_give_the_same_verdict(tmp_path, capsys):
    """The same corrector (an untrained NeurVec: zero, so it only adds cost) and the same test
    file: the CLI and the Python API measure identical errors and reach the same outcome —
    decisively 'does not pay', the corrector's cost with no gain in accuracy."""
    s = make_system("lorenz63")
    zero = attsolver.NeurVec(3, method="rk4", step_size=0.1, dtype=torch.float64)
    zero.save(tmp_path / "zero.pt")
    data = generate_trajectories(s, 4, t_final=2.0, dt=0.1, refine=64, seed=7, progress=False)
    save_h5(data, tmp_path / "test.h5")
    common = dict(refinements=(1, 2, 4), dopri_rtols=(1e-4, 1e-6))
    py = compare(s, data=tmp_path / "test.h5", corrector=zero, lyapunov_exponent=0.906, rk4_refinements=(),
                 rounds=3, progress=False, **common)
    code = main(["compare", "lorenz63", "--data", str(tmp_path / "test.h5"), "--corrector", str(tmp_path / "zero.pt"),
                 "--lyapunov", "0.906", "--refinements", "1", "2", "4", "--rk4-refinements", "--dopri-rtols",
                 "1e-4", "1e-6", "--rounds", "3", "--no-progress", "--out", str(tmp_path / "cli")])
    out = capsys.readouterr().out
    assert code == 0 and "timing: process CPU time" in out
    cli = json.loads((tmp_path / "cli" / "compare.json").read_text())
    assert [e["label"] for e in cli["entries"]] == [e["label"] for e in py.entries]
    for a, b in zip(cli["entries"], py.entries):
        assert a["err_match"] == pytest.approx(b["err_match"], rel=1e-12)
    assert cli["verdict"]["outcome"] == py.verdict["outcome"] == "does not pay"
    assert cli["verdict"]["interval"]["high"] < 1 and py.verdict["interval"]["high"] < 1
    assert math.isfinite(py.verdict["evals"]["speedup_best_evals"])


# --------------------------------------------------------------------------- fit's end check


def _roll(ratio, ec, e0, bc=0, b0=0):
    return {"data": "validation", "n_trajectories": 4, "method": "rk4", "step_size": 0.5, "horizons": [1, 5],
            "err_corrected": ec, "err_classical": e0, "ratio": ratio, "blowups_corrected": bc,
            "blowups_classical": b0, "against": "the observations"}


def test_fit_check_says_beats_only_when_the_ratio_is_below_one():
    h = FitHistory(best_loss=1.0, epochs_run=1, best_epoch=1,
                   check={"rollout": _roll([0.5, 1.01], [0.05, 0.101], [0.1, 0.1]), "zero_loss": None,
                          "residual_to_noise": {}})
    assert "beats" not in h.summary().split("\n")[-1] and "does not beat" in h.summary()
    h.check["rollout"] = _roll([0.5, 0.9], [0.05, 0.09], [0.1, 0.1])
    assert h.summary().endswith("beats the classical one at every horizon checked")


def test_fit_check_reports_infinite_rollouts_as_blow_ups():
    out = {"rollout": _roll([math.inf, math.inf], [math.inf] * 2, [math.inf] * 2, bc=4, b0=1), "zero_loss": None,
           "residual_to_noise": {}}
    (w,) = _warnings(out, FitHistory(), "rk4", 0.5, "validation", 1)
    assert "blow up" in w and "on 4 of 4" in w and "on 1 of 4" in w and "stability region" in w
    assert "n/a" not in w and "WORSE" not in w


# --------------------------------------------------------------------------- guard rails


def test_data_of_another_system_are_refused_with_the_mismatch_named():
    """Lorenz-63 data with rho=28 compared against f with rho=35 differ from a fine solve of
    that f by far more than the coarse step does: refused; with the right f they pass and
    their one-interval accuracy (RK4 at dt/64: ~1e-9 of the state) is recorded."""
    data = generate_trajectories(make_system("lorenz63"), 3, t_final=1.0, dt=0.1, refine=64, seed=7, progress=False)
    other = make_system("lorenz63", {"rho": 35.0})
    with pytest.raises(ValueError, match="do not belong to this f"):
        compare(other, data=data, method="rk4", step_size=0.1, refinements=(1,), rk4_refinements=(), dopri_rtols=(),
                lyapunov_exponent=None, rounds=1, progress=False)
    res = compare(make_system("lorenz63"), data=data, method="rk4", step_size=0.1, refinements=(1,),
                  rk4_refinements=(), dopri_rtols=(), lyapunov_exponent=None, rounds=1, progress=False)
    dc = res.setting["data_check"]
    assert dc["data_error_one_interval"] < 1e-7 < dc["coarse_error_one_interval"]


def test_a_ladder_whose_cost_explodes_is_stopped_early_with_a_note():
    """With a tiny time budget every classical rung after the first of its ladder is too slow:
    the ladders stop, each skipped rung named with the reason; the coarse run always stays."""
    s, y0, t = _lorenz(n=2, nt=11)
    res = compare(s, y0, t, method="rk4", step_size=0.1, refinements=(1, 2, 4), rk4_refinements=(),
                  dopri_rtols=(1e-4, 1e-6), lyapunov_exponent=None, rounds=1, time_budget=1e-4, progress=False)
    labels = [e["label"] for e in res.entries]
    skipped = res.setting["skipped"]
    assert "rk4 h/1" in labels and {"rk4 h/2", "rk4 h/4", "dopri5 rtol=1e-06"} <= set(skipped)
    assert not set(labels) & set(skipped)
    assert "ladder stopped: rk4 h/1 took" in skipped["rk4 h/2"]
    assert res.setting["estimate"]["one_round_s"] > 0


def test_unstable_training_states_are_named_before_training():
    """y' = -lam y with lam = 1 on most trajectories and lam = 10 on one: RK4 at h = 0.5 is
    stable where |R(-h lam)| < 1 (h lam = 0.5) and unstable at h lam = 5 (R(-5) = 13.7 > 1):
    exactly that trajectory's states are named, at every time index."""
    lam = torch.tensor([1.0, 1.0, 10.0, 1.0], dtype=torch.float64)
    t = torch.arange(6, dtype=torch.float64) * 0.5
    y = torch.exp(-lam[:, None] * t[None, :])[..., None]
    data = TrajectoryDataset(t=t, y=y, system={"name": "test", "params": {}})
    res = unstable_states(data, lambda tt, yy: -lam_of(yy) * yy, "rk4", 0.5, 1, True)
    assert {i for i, _ in res["unstable"]} == {2} and len(res["unstable"]) == 5
    assert "unstable on 5 of 20 training states (trajectory 2 at time index 0" in describe(res, "rk4", 0.5)


def lam_of(yy):
    # the autonomous batch is [trajectory x time] flattened, trajectory-major (5 states each)
    return torch.tensor([1.0, 1.0, 10.0, 1.0], dtype=torch.float64).repeat_interleave(5).reshape(-1, 1)
