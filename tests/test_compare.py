"""attsolver.compare: the equal-accuracy verdict is the ode benchmark's analysis (one code path),
it reproduces the committed benchmark's numbers, and it refuses what it cannot compare."""

from __future__ import annotations

import json

import pytest
import torch

from _scripts import ROOT, load_script
import attsolver
from attsolver.evaluate.comparison import compare
from attsolver.evaluate.contenders import build_ladders, problem_of
from attsolver.evaluate.lyapunov import estimate_lyapunov_exponent
from attsolver.evaluate.metrics import speedups_at_equal_accuracy
from attsolver.evaluate.result import CompareResult
from attsolver.steppers.registry import _REGISTRY, MethodSpec, default_method, list_methods, register_method
from attsolver.systems import make_system

COMMITTED = ROOT / "benchmarks" / "results" / "ode.json"


@pytest.fixture(scope="module")
def committed():
    return json.loads(COMMITTED.read_text())


@pytest.mark.parametrize("case", ["spring_chain", "lorenz96"])
def test_library_speedups_equal_the_committed_benchmark_columns(committed, case):
    """Every committed row's speed-up columns follow from the library function applied to the
    row's corrected error and time and the case's classical sweep: the same numbers."""
    sweep = committed["cases"][case]["sweep"]["entries"]
    match = committed["cases"][case]["definition"]["match"]
    rows = [r for r in committed["rows"] if r["case"] == case]
    assert rows
    for r in rows:
        s = speedups_at_equal_accuracy(sweep, r["err_match"], r["rollout_time_norm_s"], match)
        for key in ("speedup_same", "speedup_best", "k_equiv"):
            if r[key] is None:
                assert s[key] is None
            else:
                assert s[key] == pytest.approx(r[key], rel=1e-12), (key, r["corrector"])
        assert s["speedup_same_kind"] == r["speedup_same_kind"]
        assert s["best_classical_reaching"] == r["best_classical_reaching"]


def test_compare_reproduces_the_committed_classical_sweep(committed):
    """compare() on the benchmark's own elastic-pendulum test set measures the committed errors
    of RK4 at h/k (deterministic; up to the round-off the solver's summation order has changed
    since the benchmark ran, ~1e-9 of the error)."""
    ode = load_script("benchmarks/ode.py")
    case = ode.CASES["elastic_pendulum"]
    test = ode.make_test_set(case, committed["cases"]["elastic_pendulum"]["n_test"])
    res = compare(make_system(case.system), data=test.data, method=case.method, step_size=case.step,
                  refinements=(1, 2, 4, 8, 16), dopri_rtols=(), rounds=1, progress=False,
                  match=case.match, lyapunov_exponent=test.lyapunov)
    ours = {e["label"]: e for e in res.entries}
    for e in committed["cases"]["elastic_pendulum"]["sweep"]["entries"]:
        if e["label"] in ours:
            for key in ("err_q1", "err_q2", "err_full", "blowup_rate"):
                assert ours[e["label"]][key] == pytest.approx(e[key], rel=1e-6, abs=1e-15), (e["label"], key)


def _lorenz_test(n=6, nt=41, dt=0.1):
    s = make_system("lorenz63")
    y0 = s.sample_initial(n, generator=torch.Generator().manual_seed(3))
    y0 = attsolver.solve(s, y0, torch.tensor([0.0, 5.0], dtype=torch.float64), step_size=0.01)[-1]
    return s, y0, torch.arange(nt, dtype=torch.float64) * dt


def test_a_zero_corrector_ties_the_coarse_solve_and_does_not_pay(tmp_path):
    """An untrained corrector is exactly zero: its rollout is the coarse classical one, so its
    speed-up against the same method is (coarse time / corrected time) <= ~1 — never 'pays'."""
    s, y0, t = _lorenz_test()
    zero = attsolver.AttSolver(3, method="rk4", step_size=0.1, dtype=torch.float32)  # float32: copied to float64
    res = compare(lambda t, y: s(t, y), y0, t, corrector=zero, refinements=(1, 2, 4), rk4_refinements=(),
                  dopri_rtols=(1e-4,), lyapunov_exponent=0.906, rounds=2, out=tmp_path, name="l63",
                  progress=False)
    corr = next(e for e in res.entries if e["family"] == "corrected")
    coarse = next(e for e in res.entries if e["label"] == "rk4 h/1")
    for key in ("err_q1", "err_q2", "err_full", "vpt"):
        assert corr[key] == pytest.approx(coarse[key], rel=1e-12)
    v = res.verdict
    assert v["pays"] is False and "<1x (does not pay)" in v["line"]
    assert v["speedup_same_kind"] == "cheapest"  # the coarse run already reaches its error: an upper bound
    assert res.setting["match"] == "err_q1"  # 4 time units x 0.906 > 1 Lyapunov time: chaotic
    data = json.loads((tmp_path / "l63.json").read_text())
    assert data["verdict"]["line"] == v["line"]
    assert {"speedup_same", "speedup_best", "pays", "best_classical_reaching"} <= set(data["verdict"])
    for key in ("work_precision_png", "error_vs_time_png"):
        assert (tmp_path / data["files"][key].split("/")[-1]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp-file litter


def test_lyapunov_estimate_matches_lorenz63():
    s, y0, _ = _lorenz_test(n=4)
    lam = estimate_lyapunov_exponent(s, y0, 20.0, step_size=0.01)
    assert lam == pytest.approx(0.906, rel=0.15)
    # a linear decaying system: no divergence
    lam_lin = estimate_lyapunov_exponent(lambda t, y: -y, torch.ones(2, 3, dtype=torch.float64), 5.0, step_size=0.05)
    assert lam_lin == pytest.approx(-1.0, abs=1e-6)


def test_bad_input_is_refused_with_the_argument_named():
    s, y0, t = _lorenz_test(n=2, nt=5)
    c = attsolver.NeurVec(3, method="rk4", step_size=0.1)
    with pytest.raises(ValueError, match="step_size=0.1, not 0.05"):
        compare(s, y0, t, corrector=c, step_size=0.05, progress=False)
    with pytest.raises(ValueError, match="method 'rk4', not 'euler'"):
        compare(s, y0, t, corrector=c, method="euler", progress=False)
    with pytest.raises(ValueError, match="shorter than one coarse step"):
        compare(s, y0, t[:2] * 0.5, corrector=c, progress=False)
    with pytest.raises(ValueError, match="method= and step_size="):
        compare(s, y0, t, progress=False)
    with pytest.raises(ValueError, match="whole multiple"):
        compare(s, y0, torch.arange(5, dtype=torch.float64) * 0.15, method="rk4", step_size=0.1, progress=False)


LADDER_ARGS = dict(refinements=(2, 4), step_refinements=(1, 2), spectral_refinements=(1, 3), tolerances=(1e-3, 1e-6))


TOL = ["dopri5", "dopri8", "scipy_dop853"]  # issue 22: the high-order explicit methods join the tolerance ladder


@pytest.mark.parametrize("method, problem, families", [
    ("rk4", "any", ["same", *TOL]),
    ("euler", "any", ["same", "rk4", *TOL]),
    ("rk4", "semilinear", ["same", "etdrk4", "ifrk4", *TOL]),
    ("etdrk4", "semilinear", ["same", "rk4", "ifrk4", *TOL]),
])
def test_the_classical_ladders_are_the_registrys(method, problem, families):
    """compare's contenders are a registry query (today: RK4 over steps, dopri5 over
    tolerances, the spectral steppers for a semilinear PDE), in a fixed order, each with the
    rungs of its argument."""
    ladders = build_ladders(method, problem, **LADDER_ARGS)
    assert [lad.family for lad in ladders] == families
    rungs = {lad.family: lad.rungs for lad in ladders}
    assert rungs["same"] == (1, 2, 4) and all(rungs[m] == (1e-3, 1e-6) for m in TOL)
    assert all(rungs[m] == ((1, 2) if m == "rk4" else (1, 3)) for m in families if m in ("rk4", "etdrk4", "ifrk4"))
    labels = [c.label for lad in ladders for c in lad.contenders(0.1)]
    assert labels[:3] == [f"{method} h/1", f"{method} h/2", f"{method} h/4"] and labels[-1] == "scipy_dop853 rtol=1e-06"
    assert set(list_methods(ladder="steps", problem=problem)) - {method} == set(families[1:-len(TOL)])


def test_a_method_joins_the_comparison_by_its_registry_entry(monkeypatch):
    monkeypatch.setitem(_REGISTRY, "heun_ladder", MethodSpec(
        name="heun_ladder", kind="fixed", order=2, description="test", build=_REGISTRY["heun"].build,
        options=_REGISTRY["heun"].options, ladders=("steps",)))
    families = [lad.family for lad in build_ladders("euler", "any", **LADDER_ARGS)]
    assert families == ["same", "heun_ladder", "rk4", *TOL]


def test_registry_declarations_are_checked_and_queried():
    assert default_method() == "rk4" and default_method("any") == "rk4" and default_method("semilinear") == "etdrk4"
    assert problem_of(make_system("burgers", {"nx": 32})) == "semilinear"
    assert problem_of(make_system("lorenz63")) == problem_of(lambda t, y: -y) == "any"
    assert list_methods(ladder="tolerance") == TOL
    assert "etdrk4" not in list_methods(problem="any") and "etdrk4" in list_methods(problem="semilinear")
    for bad, match in [(dict(kind="adaptive", ladders=("steps",)), "takes fixed methods"),
                       (dict(ladders=("sizes",)), "ladders must be one of"),
                       (dict(applies_to="stiff"), "applies_to must be one of"),
                       (dict(default_for=("any",)), "already the default method"),
                       (dict(applies_to="semilinear", default_for=("any",)), "cannot be the default")]:
        kw = dict(name="_test_method", kind="fixed", order=1, description="test") | bad
        with pytest.raises(ValueError, match=match):
            register_method(MethodSpec(**kw))
    assert "_test_method" not in list_methods()
    with pytest.raises(ValueError, match="problem must be one of"):
        default_method("stiff")


def test_the_json_is_valid_with_null_for_a_non_finite_number():
    res = CompareResult([{"label": "x", "err_full": float("nan"), "vpt": float("inf")}], None,
                        {"lyapunov_exponent": float("-inf"), "summary_line": "s"}, {"t": [0.0, 1.0]})
    text = res.to_json()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data["entries"][0]["err_full"] is None and data["entries"][0]["vpt"] is None
    assert data["setting"]["lyapunov_exponent"] is None and data["kind"] == "attsolver.compare"
