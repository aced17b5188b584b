"""Issue 22, item 4: compare states the reference's accuracy and never credits a rung finer
than it.  Data made at a known step have a known error, so the floor is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attsolver
from attsolver.data import generate_trajectories
from attsolver.evaluate import compare
from attsolver.evaluate.confidence import per_trajectory_error
from attsolver.evaluate.contenders import build_test_set
from attsolver.evaluate.metrics import blow_up_limit, speedups_at_equal_accuracy
from attsolver.evaluate.reference_accuracy import (FACTOR, credit_above_reference, describe_floor,
                                                   reference_accuracy)
from attsolver.evaluate.result import make_verdict
from attsolver.systems import make_system


def _true_error(data, exact, match="err_full") -> float:
    return float(per_trajectory_error(data, exact, blow_up_limit(exact), match).mean())


def test_rk4_data_at_h_over_20_put_the_floor_there_and_rk4_at_h_over_32_is_not_credited():
    """Elastic pendulum, data = RK4 at h/20 (h = 0.2).  Their error against RK4 at h/1000 (exact
    to 1e-6 of it) is the floor; compare's estimate matches it to 5 %, and every
    rung it scores at most 2x that floor — RK4 at h/32 (true error (20/32)^4 = 0.15 of the
    data's) and h/16 (measured as the difference of two RK4 solutions) — is left out of the
    equal-accuracy interpolation, while h/8 (error 40x the floor) is credited."""
    s, h = make_system("elastic_pendulum"), 0.2
    data = generate_trajectories(s, 4, t_final=2.0, dt=h, refine=20, seed=3, progress=False)
    exact = generate_trajectories(s, 4, t_final=2.0, dt=h, refine=1000, seed=3, progress=False)
    floor = _true_error(data.y_true, exact.y_true)
    zero = attsolver.NeurVec(s.state_shape, method="rk4", step_size=h, dtype=torch.float64)
    res = compare(s, data=data, corrector=zero, refinements=(1, 4, 8, 16, 32), rk4_refinements=(),
                  dopri_rtols=(), rounds=1, max_rounds=1, lyapunov_exponent=None, progress=False)
    ref = res.setting["reference_accuracy"]
    assert ref["resolved"] and ref["error"] == pytest.approx(floor, rel=0.05)
    by = {e["label"]: e for e in res.entries}
    assert by["rk4 h/32"]["at_reference_accuracy"] and by["rk4 h/16"]["at_reference_accuracy"]
    assert not by["rk4 h/8"]["at_reference_accuracy"] and by["rk4 h/8"]["err_full"] > 10 * floor
    assert {"rk4 h/16", "rk4 h/32"} <= set(res.verdict["not_credited"])
    assert "rk4 h/8" not in res.verdict["not_credited"] and "rk4 h/1" not in res.verdict["not_credited"]
    assert f"reference accuracy {ref['error']:.3g}" in res.verdict_line and "rk4 h/32" in res.verdict_line
    assert res.verdict["speedup_is_lower_bound"] is False  # the zero corrector is at the coarse error


def test_a_reference_compare_computes_states_its_richardson_accuracy():
    """Without data compare computes the reference (RK4 at h/256); Richardson's estimate of its
    error (against h/128, over 2^4 - 1) matches its error against RK4 at h/1024 within 20 %."""
    s, h = make_system("elastic_pendulum"), 0.5
    y0 = s.sample_initial(4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.arange(9, dtype=torch.float64) * h
    test = build_test_set(s, y0, t, None, None, "rk4", h, torch.float64)
    exact = attsolver.solve(s, y0, t, method="rk4", step_size=h / 1024).transpose(0, 1)
    truth = _true_error(test.true, exact)
    ref = reference_accuracy(s, test, computed=True, method="rk4", h=h, problem="any", match="err_full",
                             limit=blow_up_limit(test.true))
    assert ref["resolved"] and "Richardson" in ref["how"]
    assert ref["error"] == pytest.approx(truth, rel=0.2)


def _ladder():
    """A 4th-order ladder: cost = err^(-1/4); errors 1e-2 ... 1e-6."""
    return [{"family": "rk4", "label": f"c{i}", "err_full": e, "time_s": e ** -0.25 * 1e-3}
            for i, e in enumerate([1e-2, 1e-3, 1e-4, 1e-5, 1e-6])] + [
        {"family": "same", "label": "coarse", "k": 1, "err_full": 5e-2, "time_s": 0.4e-3}]


def test_rungs_at_the_floor_are_dropped_and_a_corrected_run_at_it_gets_a_lower_bound():
    """Floor r = 1e-5: the rungs at 1e-5 and 1e-6 (<= 2r) are not credited.  A corrected run
    measured at 1.5e-5 (<= 2r) may truly be anywhere up to 2.5e-5: the classical cost is read
    at 2.5e-5, which is no more than the cost at its measured error — a lower bound on the
    speed-up, and the verdict says so."""
    classical, ref = _ladder(), {"error": 1e-5, "resolved": True, "how": "given"}
    corr = {"family": "corrected", "label": "corr", "err_full": 1.5e-5, "time_s": 1e-3}
    traj = {e["label"]: np.full(3, e["err_full"]) for e in classical + [corr]}
    credited, tr, target, floor = credit_above_reference(classical, corr, traj, ref, "err_full")
    assert [e["label"] for e in credited] == ["c0", "c1", "c2", "coarse"]
    assert floor["not_credited"] == ["c3", "c4"] and floor["threshold"] == FACTOR * 1e-5
    assert floor["bound"] and target == pytest.approx(2.5e-5) and tr["corr"] == pytest.approx([2.5e-5] * 3)
    v = make_verdict(credited, corr, classical[-1], method="rk4", step_size=0.1, match="err_full",
                     target_error=target)
    naive = speedups_at_equal_accuracy(classical, corr["err_full"], corr["time_s"], "err_full")["speedup_best"]
    assert v["speedup_best"] == pytest.approx(2.5e-5 ** -0.25, rel=1e-9)  # read on the credited front
    assert v["speedup_best"] < naive  # the rung-crediting reading overstated it
    text = describe_floor(ref, floor)
    assert "lower bound" in text and "c3, c4" in text and "1e-05" in text
    # a corrected run above the floor keeps its own error; an unknown floor drops nothing
    corr2 = dict(corr, err_full=3e-4)
    assert credit_above_reference(classical, corr2, traj, ref, "err_full")[2] == 3e-4
    same, _, t2, f2 = credit_above_reference(classical, corr2, traj, {"error": None, "how": "unknown"}, "err_full")
    assert same == classical and t2 == 3e-4 and not f2["not_credited"] and not f2["bound"]


def test_pde_data_are_judged_by_the_spectral_default_even_for_an_rk4_coarse_solve():
    """Burgers data made by ETDRK4 at h/20: with an RK4 coarse method the yardstick is still
    the semilinear problem's default (ETDRK4 at h/64, stable where RK4 need not be), and the
    estimate matches the data's error against ETDRK4 at h/640 within 5 %."""
    s, h = make_system("burgers"), 0.01
    data = generate_trajectories(s, 3, t_final=0.1, dt=h, refine=20, seed=1, progress=False)
    exact = generate_trajectories(s, 3, t_final=0.1, dt=h, refine=640, seed=1, progress=False)
    test = build_test_set(s, None, None, data, None, "rk4", h, torch.float64)
    ref = reference_accuracy(s, test, computed=False, method="rk4", h=h, problem="semilinear", match="err_full",
                             limit=blow_up_limit(test.true))
    assert "etdrk4 at h/64" in ref["how"] and ref["resolved"]
    assert ref["error"] == pytest.approx(_true_error(data.y_true, exact.y_true), rel=0.05)
