"""``options={"compile": "cpp_wrapper"}``: the compiled loop with inductor's C++ wrapper computes
what the eager loop does; without a C++ compiler it says so and runs the default compiled mode.

Compiling with the C++ wrapper takes tens of seconds on a loaded machine: those tests are slow,
and skip where inductor finds no C++ compiler.
"""

from __future__ import annotations

import pytest
import torch

import attsolver
from attsolver.integrate import compiled
from attsolver.integrate.compiled import clear_compile_cache, compile_stats, cxx_compiler_available
from attsolver.systems import LinearSystem

needs_cxx = pytest.mark.skipif(not cxx_compiler_available(), reason="inductor finds no C++ compiler")


def test_the_compile_modes_are_named_and_checked():
    s, y0 = LinearSystem(), torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0.0, 0.3, 4, dtype=torch.float64)
    eager = attsolver.solve(s, y0, t, step_size=0.1)
    for mode in (True, "default", "cpp_wrapper"):  # 3 steps: fewer than a chunk, so nothing compiles
        assert torch.equal(attsolver.solve(s, y0, t, step_size=0.1, options={"compile": mode}), eager)
    with pytest.raises(ValueError, match=r"options\['compile'\] must be one of 'default', 'cpp_wrapper', got 'cpp'"):
        attsolver.solve(s, y0, t, step_size=0.1, options={"compile": "cpp"})
    with pytest.raises(TypeError, match=r"options\['compile'\] must be True or False"):
        attsolver.solve(s, y0, t, step_size=0.1, options={"compile": 1})


@pytest.mark.slow
@needs_cxx
def test_cpp_wrapper_matches_eager_and_the_exact_solution():
    s = LinearSystem()
    y0 = torch.tensor([[1.0, 0.0], [0.5, -0.3]], dtype=torch.float64)
    t = torch.linspace(0.0, 0.7, 8, dtype=torch.float64)  # 28 steps of 0.025: 9 chunks of 3 and an eager tail
    clear_compile_cache()
    opts = {"compile": "cpp_wrapper", "compile_chunk": 3}
    got = attsolver.solve(s, y0, t, method="rk4", step_size=0.025, options=opts)
    eager = attsolver.solve(s, y0, t, method="rk4", step_size=0.025)
    torch.testing.assert_close(got, eager, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(got, s.exact(t, y0), rtol=0, atol=1e-7)  # RK4's accuracy at h = 0.025
    stats = compile_stats()
    assert stats["compilations"] == 1 and stats["eager_fallbacks"] == 0
    attsolver.solve(s, y0, t, method="rk4", step_size=0.025, options=opts)
    assert compile_stats()["compilations"] == 1, "a second identical solve reuses the compiled function"


@pytest.mark.slow
def test_without_a_cxx_compiler_the_default_mode_runs_with_a_warning(monkeypatch):
    monkeypatch.setattr(compiled, "cxx_compiler_available", lambda: False)
    s = LinearSystem()
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0.0, 0.6, 7, dtype=torch.float64)
    clear_compile_cache()
    with pytest.warns(RuntimeWarning, match=r"'cpp_wrapper': inductor finds no C\+\+ compiler.*default compiled loop"):
        got = attsolver.solve(s, y0, t, step_size=0.1, options={"compile": "cpp_wrapper", "compile_chunk": 3})
    torch.testing.assert_close(got, attsolver.solve(s, y0, t, step_size=0.1), rtol=1e-13, atol=1e-14)
    assert compile_stats()["compiled_calls"] > 0  # compiled (default mode), not eager
