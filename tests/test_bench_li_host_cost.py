"""``benchmarks/li_host_cost.py``: it times what the Kolmogorov suite runs (the same grids,
viscosities and steps), refuses trees whose results differ, and renders what it measured."""

import math

import pytest

from _scripts import load_script


def _bench():
    return load_script("benchmarks/li_host_cost.py")


def test_the_cases_are_the_suites_grids_viscosities_and_steps():
    b, k = _bench(), load_script("benchmarks/kolmogorov.py")
    for regime, (n, nu, h) in b.REGIMES.items():
        with k.regime(regime):
            assert n == k.COARSE_N and math.isclose(nu, k.PHYSICS["nu"])
            frame = 0.1 if regime == "re500" else 0.2  # the regimes' output frames
            # the learned solver runs at the FD scale of --step-scale's default, whole steps per frame
            assert math.isclose(h, k.step_for(n, k.STEP_SCALE[regime]["fd"], frame), rel_tol=1e-12)
    assert len(b.cases()) == len(b.REGIMES) * len(b.BUILDS) * len(b.BATCHES)


def test_the_workers_solvers_run_and_agree_with_the_suites_learned_build():
    b = _bench()
    runs = b._solvers("re500", "linear_4x1", 2)
    fd, li = runs["fd"](2), runs["li"](2)
    assert fd.shape == li.shape == (2, 32, 32)
    assert float((fd - li).abs().max()) > 0  # the learned face values are not the Arakawa Jacobian


def test_trees_whose_end_states_differ_beyond_round_off_are_refused():
    b = _bench()
    a = {"fd": [1.0, -2.0, 0.5], "li": [3.0, 1.0, 0.0]}
    close = {"fd": [1.0, -2.0, 0.5], "li": [3.0 + 1e-6, 1.0, 0.0]}
    assert b.same_results({"before": a, "after": close}) == pytest.approx(1e-6 / 3.0)
    with pytest.raises(AssertionError, match="differ by"):
        b.same_results({"before": a, "after": {"fd": a["fd"], "li": [3.0, 1.1, 0.0]}})
    with pytest.raises(AssertionError, match="after tree's end state is not finite"):
        b.same_results({"before": a, "after": {"fd": a["fd"], "li": [3.0, math.nan, 0.0]}})


def test_the_page_shows_each_trees_x_and_the_ratio():
    b = _bench()
    q = {"median": 2.0, "q1": 1.9, "q3": 2.1}
    t = {"fd_step_ms": q, "li_step_ms": q, "x": q, "rounds": 3}
    rep = {"command": "python benchmarks/li_host_cost.py", "date": "2026-12-07 00:00 UTC", "complete": True,
           "wall_time_s": 60.0, "machine": {"cpus": 2}, "rounds": 3, "trees": ["before", "after"],
           "before_tree": "/old", "after_commit": "abc1234",
           "rows": [{"regime": "re1000", "build": "linear_4x1", "batch": 16, "end_state_difference": 1e-7,
                     "before": t, "after": {**t, "x": {"median": 1.6, "q1": 1.5, "q3": 1.7}},
                     "x_before_over_after": 1.25}]}
    md = b.to_markdown(rep)
    assert "| re1000, 64² | linear, 4x1 | 16 |" in md and "1.60 [1.50, 1.70]" in md and "1.25×" in md


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--per-ask", "0"]])
def test_the_suite_refuses_no_rounds_naming_the_options(capsys, argv):
    with pytest.raises(SystemExit):
        _bench().main(argv)
    assert "--rounds and --per-ask must be >= 1" in capsys.readouterr().err
