"""``options={"compile": True}``: the compiled chunked loop computes what the eager loop does,
and never falls back to eager silently.

Compilation costs seconds per distinct problem, so the default suite compiles one small
case; the rest are marked slow.
"""

import warnings

import pytest
import torch

import attsolver
from attsolver.integrate.compiled import clear_compile_cache, compile_stats
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


def test_float32_linspace_grid_counts_as_uniform_and_compiles():
    """A float32 linspace's steps differ by ~1e-4 relative (its rounding), not by design: the
    grid compiles (no 'not uniform' fallback) and agrees with the eager loop to float32 round-off."""
    y0 = torch.ones(4, 3)
    t = torch.linspace(0, 10, 101)
    clear_compile_cache()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*uniform.*", category=RuntimeWarning)
        got = attsolver.solve(lambda tt, y: -y, y0, t, step_size=0.1, options={"compile": True, "compile_chunk": 8})
    stats = compile_stats()
    assert stats["compiled_calls"] > 0 and stats["eager_fallbacks"] == 0
    torch.testing.assert_close(got, attsolver.solve(lambda tt, y: -y, y0, t, step_size=0.1), rtol=1e-5, atol=1e-6)


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


def test_each_configuration_gets_its_own_code_object():
    """The cheap half of the check below (no compilation): torch's compile cache and its
    recompile limit are per code object, so two configurations must not share one."""
    from attsolver.integrate.compiled import _chunk_function
    from attsolver.steppers import get_method

    s = LinearSystem()
    y0 = torch.ones(2, dtype=torch.float64)
    a = _chunk_function(get_method("rk4").build(s, y0), None, 0.1, 2)
    b = _chunk_function(get_method("rk4").build(s, y0), None, 0.2, 2)
    assert a.__code__ is not b.__code__ and a.__code__.co_filename != b.__code__.co_filename


@pytest.mark.slow
def test_twelve_configurations_in_one_process_each_run_compiled():
    """torch stops compiling a code object after ``recompile_limit`` (8) variants and would
    then run it eagerly; every configuration here has its own compiled code object, so all
    twelve compile once, run compiled, and match the eager loop — none falls back."""
    import torch._dynamo

    assert torch._dynamo.config.recompile_limit < 12  # the limit this test would hit
    clear_compile_cache()
    s = LinearSystem()
    t = torch.linspace(0.0, 0.4, 5, dtype=torch.float64)
    opts = {"compile": True, "compile_chunk": 2}
    graphs0 = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    configs = [(m, b) for m in ("euler", "midpoint", "heun", "ssprk3", "rk4", "rk38") for b in (1, 3)]
    for i, (method, batch) in enumerate(configs, 1):
        y0 = torch.linspace(0.1, 0.9, 2 * batch, dtype=torch.float64).reshape(batch, 2)
        calls = compile_stats()["compiled_calls"]
        got = attsolver.solve(s, y0, t, method=method, options=opts)
        stats = compile_stats()
        assert stats["compilations"] == i, (method, batch, stats)
        assert stats["compiled_calls"] == calls + 2  # 4 steps = 2 compiled chunks of 2
        assert stats["eager_fallbacks"] == 0
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs0 + i
        torch.testing.assert_close(got, attsolver.solve(s, y0, t, method=method), rtol=1e-13, atol=1e-14)
    # a second round reuses every compiled loop: no new graph, still compiled
    for method, batch in configs:
        y0 = torch.linspace(0.1, 0.9, 2 * batch, dtype=torch.float64).reshape(batch, 2)
        attsolver.solve(s, y0, t, method=method, options=opts)
    assert compile_stats()["compilations"] == len(configs)
    assert compile_stats()["compiled_calls"] == 4 * len(configs)


def test_uncompilable_f_warns_and_runs_eagerly_never_silently():
    def f(t, y):
        if float(y.sum()) > 1e9:  # data-dependent Python control flow: a graph break
            return y
        return -y

    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    t = torch.linspace(0, 0.8, 9, dtype=torch.float64)
    clear_compile_cache()
    with pytest.warns(RuntimeWarning, match="could not compile"):
        got = attsolver.solve(f, y0, t, options={"compile": True, "compile_chunk": 4})
    assert torch.equal(got, attsolver.solve(f, y0, t))
    assert compile_stats()["eager_fallbacks"] == 1 and compile_stats()["compiled_calls"] == 0


def test_clear_compile_cache_drops_the_compiled_functions():
    import gc
    import weakref

    from attsolver.integrate import compiled as _compile

    clear_compile_cache()
    s = LinearSystem()
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0, 0.4, 5, dtype=torch.float64)
    attsolver.solve(s, y0, t, options={"compile": True, "compile_chunk": 2})
    assert compile_stats()["cached_configurations"] == 1
    ref = weakref.ref(next(iter(_compile._CACHE.values()))[2])
    clear_compile_cache()
    gc.collect()
    assert ref() is None, "the compiled function outlived clear_compile_cache()"
    assert compile_stats() == {"compilations": 0, "compile_seconds": 0.0, "compiled_calls": 0,
                               "eager_fallbacks": 0, "cached_configurations": 0}
    attsolver.solve(s, y0, t, options={"compile": True, "compile_chunk": 2})
    assert compile_stats()["compilations"] == 1  # compiled afresh


def test_spectral_steppers_say_compile_would_be_slower_and_run_eagerly():
    """Inductor generates no code for complex arithmetic, so a compiled ETDRK4/IFRK4 step was
    2-3x slower than eager, and rk4 on Burgers (FFTs in f) 1.2-1.3x: ``compile`` says so and
    runs the eager loop (nothing compiled)."""
    from attsolver.systems import Burgers

    s = Burgers(nu=0.05, nx=16)
    u0 = s.sample_initial(1, generator=torch.Generator().manual_seed(0))[0]
    t = torch.linspace(0, 0.02, 11, dtype=torch.float64)
    clear_compile_cache()
    for method in ("etdrk4", "ifrk4", "rk4"):  # rk4 on Burgers: f runs FFTs
        with pytest.warns(RuntimeWarning, match="slower than eager"):
            got = attsolver.solve(s, u0, t, method=method, options={"compile": True, "compile_chunk": 2})
        assert torch.equal(got, attsolver.solve(s, u0, t, method=method))
    assert compile_stats()["compilations"] == 0 and compile_stats()["eager_fallbacks"] == 3


def test_inductor_complex_report_switches_the_configuration_to_eager(monkeypatch):
    """When inductor reports, while compiling, that it generates no code for complex
    arithmetic (the compiled loop would be slower than eager), that configuration runs
    eagerly with a warning, now and on later solves, and is not compiled again.  The compiler
    is replaced by a stand-in that reports exactly that (a real compilation takes minutes here)."""
    import torch._dynamo

    from attsolver.integrate import compiled as _compile

    compiled = []

    def fake_compile(fn, **kwargs):
        def run(*args):
            torch._dynamo.utils.counters["stats"]["unique_graphs"] += 1  # "a graph was compiled"
            warnings.warn("Torchinductor does not support code generation for complex operators. "
                          "Performance may be worse than eager.")
            return fn(*args)

        compiled.append(fn)
        return run

    monkeypatch.setattr(_compile.torch, "compile", fake_compile)
    s = LinearSystem()
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0, 0.4, 5, dtype=torch.float64)
    clear_compile_cache()
    opts = {"compile": True, "compile_chunk": 2}
    for _ in range(2):
        with pytest.warns(RuntimeWarning, match="slower than eager"):
            got = attsolver.solve(s, y0, t, options=opts)
        assert torch.equal(got, attsolver.solve(s, y0, t))
    assert len(compiled) == 1  # compiled once, then remembered as eager
    assert compile_stats()["compilations"] == 1 and compile_stats()["eager_fallbacks"] == 2
    assert compile_stats()["compiled_calls"] == 0
