"""The neural-vector-field suite's building blocks: derivative matching learns a vector field,
a non-finite neural f gets an error that names it, and the speed suite's mixed-precision
check holds."""

from __future__ import annotations

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
