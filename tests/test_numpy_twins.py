"""Issue 22, item 2: the built-in ODE systems carry a NumPy twin of their right-hand side, equal
to the torch one to round-off, and the SciPy steppers call it (so the library's SciPy contender
in compare is SciPy with a NumPy f, as strong as SciPy called directly)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attsolver
from attsolver.systems import make_system
from attsolver.systems.ode import ElasticPendulum, LinearSystem, Lorenz63, Lorenz96, SpringChain

SYSTEMS = [Lorenz63(), Lorenz63(sigma=12.0, rho=35.0), Lorenz96(), Lorenz96(N=7, F=11.0), SpringChain(),
           SpringChain(n=3, masses=(1.0, 2.0, 0.5), stiffness=(1.0, 3.0, 2.0, 0.7)), ElasticPendulum(),
           ElasticPendulum(k=25.0, m=2.0), LinearSystem(),
           LinearSystem(A=((0.0, 1.0, 0.0), (-1.0, 0.0, 2.0), (0.5, 0.0, -0.3)))]


@pytest.mark.parametrize("system", SYSTEMS, ids=lambda s: f"{s.name}")
def test_the_numpy_twin_equals_the_torch_rhs(system):
    """On random float64 states of two batch shapes the twin equals f to 1e-14 (relative to the
    size of f), and keeps y's shape."""
    g = torch.Generator().manual_seed(0)
    for batch in ((), (6,), (2, 3)):
        y = system.sample_initial(int(np.prod(batch)) or 1, generator=g, dtype=torch.float64)
        y = y.reshape(*batch, *system.state_shape) if batch else y[0]
        want = system(torch.tensor(0.3, dtype=torch.float64), y).numpy()
        got = system.numpy_rhs(0.3, y.numpy())
        assert got.shape == want.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14 * np.abs(want).max())


@pytest.mark.parametrize("name", ["lorenz63", "elastic_pendulum", "lorenz96", "spring_chain"])
def test_scipy_steppers_use_the_twin_and_agree_with_the_torch_f(name):
    """scipy_dop853 on the system (its twin) and on the same f hidden behind a plain function
    (the torch path): the same solution to 1e-10 and the same count of evaluations of f."""
    s = make_system(name)
    y0 = s.sample_initial(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 6, dtype=torch.float64)
    opts = {"rtol": 1e-8, "atol": 1e-10}
    twin, st = attsolver.solve(s, y0, t, method="scipy_dop853", options=opts, return_stats=True)
    plain, sp = attsolver.solve(lambda tt, yy: s(tt, yy), y0, t, method="scipy_dop853", options=opts,
                                return_stats=True)
    torch.testing.assert_close(twin, plain, rtol=1e-10, atol=1e-12)
    assert st.n_f_evals == sp.n_f_evals > 0


def test_a_users_twin_is_called_and_a_wrong_one_is_refused():
    """A plain f with a numpy_rhs attribute: the SciPy stepper calls the twin (never f) in
    float64 on the CPU (f at most once, solve's check of its output), and still calls f in
    float32; a twin of the wrong shape gets a clear error."""
    calls = {"torch": 0, "numpy": 0}

    def f(t, y):
        calls["torch"] += 1
        return -y

    def twin(t, y):
        calls["numpy"] += 1
        return -y

    f.numpy_rhs = twin
    y0 = torch.ones(2, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    y = attsolver.solve(f, y0, t, method="scipy_dop853", options={"rtol": 1e-10, "atol": 1e-12})
    assert calls["torch"] <= 1 and calls["numpy"] > 10  # at most solve's one check of f's output
    before = calls["torch"]
    torch.testing.assert_close(y[-1], torch.full((2, 2), np.exp(-1.0), dtype=torch.float64), rtol=1e-9, atol=0)
    attsolver.solve(f, y0.float(), t.float(), method="scipy_dop853")
    assert calls["torch"] > before + 10  # float32: the torch f, in the state's dtype
    f.numpy_rhs = lambda t, y: np.zeros(3)
    with pytest.raises(ValueError, match="numpy_rhs"):
        attsolver.solve(f, y0, t, method="scipy_dop853")
