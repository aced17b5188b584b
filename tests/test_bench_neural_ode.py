"""The neural-vector-field suite's building blocks: derivative matching learns a vector field,
a non-finite neural f gets an error that names it, and the speed suite's mixed-precision
check holds."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _scripts import load_script

import attsolver
from attsolver.systems import LinearSystem


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/neural_ode.py")


def test_derivative_matching_learns_a_linear_vector_field(bench):
    system = LinearSystem()
    y = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model, info = bench.train_vector_field(y, system(None, y), hidden=24, steps=250, seed=0, lr=1e-2)
    assert info["n_params"] == 2 * 24 + 24 + 24 * 24 + 24 + 24 * 2 + 2
    assert info["val_relative_error"] < 0.05
    # solving the learned ODE follows the exact solution of y' = A y for a while
    y0 = torch.tensor([[0.5, -0.3]])
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    sol = bench.checked_solve(model, y0, t, method="rk4", step_size=0.05)
    exact = system.exact(t, y0.double())
    assert float((sol.double() - exact).norm() / exact.norm()) < 0.1  # an untrained field: ~1


def test_a_non_finite_neural_field_is_named_in_the_error(bench):
    f = bench.NeuralVectorField(3, hidden=8)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    with torch.no_grad():
        f.net[-1].bias.fill_(float("nan"))  # damaged weights: caught before any step
    for method in ("euler", "dopri5"):
        with pytest.raises(attsolver.NonFiniteSolutionError, match=r"neural ODE: the network f returned non-finite"):
            bench.checked_solve(f, torch.zeros(2, 3), t, method=method, step_size=0.25 if method == "euler" else None)
    # finite at the start, non-finite later (a state leaving the trained range): solve's error, naming f
    g = bench.NeuralVectorField(3, hidden=8)
    with torch.no_grad():
        g.net[-1].weight.zero_()
        g.net[-1].bias.fill_(1.0)
        g.scale.fill_(3e38)  # f = 3e38 everywhere: float32 overflows in the second step
    with pytest.raises(attsolver.NonFiniteSolutionError, match=r"neural ODE.*step 1.*network's output") as e:
        bench.checked_solve(g, torch.zeros(2, 3), t * 4, method="euler", step_size=1.0)
    assert e.value.step == 1


def _front_time(errors, times, target):
    """Independent re-derivation of the equal-accuracy cost: the Pareto front of (time, error),
    log time linear in log error between front points."""
    pts = sorted((t, e) for e, t in zip(errors, times) if e == e and e > 0)
    front = []
    for t, e in pts:
        if not front or e < front[-1][1]:
            front.append((t, e))
    if target >= front[0][1]:
        return front[0][0]
    for (t0, e0), (t1, e1) in zip(front, front[1:]):
        if e1 <= target <= e0:
            w = (math.log(e0) - math.log(target)) / (math.log(e0) - math.log(e1))
            return math.exp(math.log(t0) + w * (math.log(t1) - math.log(t0)))
    return None  # beyond the most accurate run: extrapolated, not re-derived here


def test_quick_run_trains_a_corrector_that_helps_and_reports_consistent_speedups(bench, tmp_path):
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "neural_ode.json").read_text())
    (p,) = report["problems"]
    rows = {c["label"]: c for c in p["contenders"]}
    classical = [c for c in p["contenders"] if not c["family"].startswith("corrected")]
    corrected = [c for c in p["contenders"] if c["family"].startswith("corrected")]
    assert corrected and all(c["finite"] for c in p["contenders"])
    # classical ladders converge at their order: halving the step of RK4 cuts the error ~16x
    rk4 = sorted((c["step"], c["error"]) for c in classical if c["family"] == "rk4")
    assert rk4[-1][1] / rk4[-2][1] > 6
    for c in corrected:
        base = rows[f"{c['method']} h={c['step']:.4g}"]
        if c["corrector"] == "Hypersolver":  # trained on the neural ODE's own flow: it must help
            assert c["error"] < 0.5 * base["error"]
        # the speed-up column is the classical front's time at this error over this run's time
        # (the lowest of the whole front's and each method ladder's interpolation)
        for key, column, own in (("time_s", "speedup_best", c["time_s"]), ("n_f_evals", "f_eval_ratio_best",
                                                                          c["n_f_evals"])):
            front = _front_time([r["error"] for r in classical], [r[key] for r in classical], c["error"])
            ladders = [_front_time([r["error"] for r in classical if r["family"] == fam],
                                   [r[key] for r in classical if r["family"] == fam], c["error"])
                       for fam in {r["family"] for r in classical}]
            if front is not None:
                expected = min([front] + [x for x in ladders if x is not None])
                assert c[column] == pytest.approx(expected / own, rel=1e-9)
    # evaluations of f per solve: stages x steps for the fixed-step runs
    T = p["t_final"]
    for c in classical:
        if c["family"] in ("euler", "midpoint", "rk4"):
            assert c["n_f_evals"] == {"euler": 1, "midpoint": 2, "rk4": 4}[c["family"]] * round(T / c["step"])
    md = (tmp_path / "neural_ode.md").read_text()
    assert "python benchmarks/neural_ode.py --quick" in md and "| euler h=0.1 + Hypersolver |" in md
    assert (tmp_path / "neural_ode.png").stat().st_size > 1000


def test_one_step_targets_are_the_neural_flow(bench):
    """The training pairs are one accurate step of the network's own flow: for a linear 'network'
    f(y) = A y the exact step is expm(A h) y."""
    f = bench.NeuralVectorField(2, hidden=4, depth=0, dtype=torch.float64)
    A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)
    with torch.no_grad():
        f.net[0].weight.copy_(A)
        f.net[0].bias.zero_()
    y = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = y @ torch.linalg.matrix_exp(A * 0.25).T
    errs = []
    for substeps in (8, 16):
        ds = bench.one_step_dataset(f, y, "euler", 0.25, substeps=substeps)
        assert torch.equal(ds.y[:, 0], y) and ds.t.tolist() == [0.0, 0.25]
        errs.append(float((ds.y[:, 1] - exact).abs().max()))
    assert errs[0] < 1e-6  # RK4 with h/8 substeps: far below the Euler residual (~0.1) it defines
    assert 12 < errs[0] / errs[1] < 20  # fourth order: halving the substep cuts the error ~16x
