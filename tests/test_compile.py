"""``options={"compile": True}``: the compiled chunked loop computes what the eager loop does.

Compilation costs seconds per distinct problem, so the default suite compiles one small
case; the rest are marked slow.
"""

import warnings

import pytest
import torch

import attsolver
from attsolver._compile import clear_compile_cache, compile_stats
from attsolver.systems import LinearSystem, Lorenz63


def test_compiled_matches_eager_with_substeps_tail_and_cache():
    s = LinearSystem()
    y0 = torch.tensor([[1.0, 0.0], [0.5, -0.3]], dtype=torch.float64)
    # 7 intervals of 0.1 with step 0.025 -> 28 steps: 9 chunks of 3 plus a 1-step eager tail
    t = torch.linspace(0.0, 0.7, 8, dtype=torch.float64)
    clear_compile_cache()
    opts = {"compile": True, "compile_chunk": 3}
    got = attsolver.solve(s, y0, t, method="rk4", step_size=0.025, options=opts)
    eager = attsolver.solve(s, y0, t, method="rk4", step_size=0.025)
    assert got.shape == eager.shape == (8, 2, 2)
    torch.testing.assert_close(got, eager, rtol=1e-13, atol=1e-14)
    # and both are the right answer to RK4 accuracy
    torch.testing.assert_close(got, s.exact(t, y0), rtol=0, atol=1e-7)
    assert compile_stats()["compilations"] == 1
    attsolver.solve(s, y0, t, method="rk4", step_size=0.025, options=opts)
    assert compile_stats()["compilations"] == 1, "a second identical solve must reuse the compiled function"


def test_nonuniform_grid_falls_back_to_eager_with_a_warning():
    s = LinearSystem()
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.3, 0.35], dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="uniform step"):
        got = attsolver.solve(s, y0, t, options={"compile": True})
    assert torch.equal(got, attsolver.solve(s, y0, t))


def test_fewer_steps_than_a_chunk_runs_eagerly_without_compiling():
    s = LinearSystem()
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0, 0.3, 4, dtype=torch.float64)
    clear_compile_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = attsolver.solve(s, y0, t, options={"compile": True, "compile_chunk": 8})
    assert torch.equal(got, attsolver.solve(s, y0, t))
    assert compile_stats()["compilations"] == 0


@pytest.mark.slow
def test_compiled_lorenz_with_corrector_matches_eager():
    s = Lorenz63()
    y0 = s.sample_initial(4, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0, 0.5, 51, dtype=torch.float64)

    class Damp(torch.nn.Module):
        def forward(self, t, y, dy, h):
            return -0.01 * h * y

    c = Damp()
    got = attsolver.solve(s, y0, t, corrector=c, options={"compile": True})
    eager = attsolver.solve(s, y0, t, corrector=c)
    torch.testing.assert_close(got, eager, rtol=1e-11, atol=1e-11)
