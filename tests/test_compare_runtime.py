"""Issue 22, item 4: compare estimates its run time before the timing rounds, counts them on a
progress reporter against what the time budget fits, and says when the budget (or
max_rounds) ended the rounds before the interval was as narrow as asked."""

from __future__ import annotations

import logging

import pytest
import torch

import attsolver
from attsolver.evaluate import comparison, compare
from attsolver.evaluate.runtime import budget_note, describe_plan, timing_plan
from attsolver.systems import make_system


def test_the_plan_counts_the_rounds_the_budget_fits():
    """One round 0.5 s: a 10 s budget fits 20 rounds (of at most 40); a 1 s budget fits fewer
    than the 3 asked for, which run anyway, and the estimate says so."""
    t = {"min_rounds": 3, "max_rounds": 40, "budget_s": 10.0}
    p = timing_plan(0.5, t, scoring_s=0.7)
    assert (p["rounds_at_least"], p["rounds_at_most"]) == (3, 20)
    assert p["timing_at_least_s"] == pytest.approx(1.5) and p["timing_at_most_s"] == pytest.approx(10.0)
    assert timing_plan(0.01, t, 0.1)["rounds_at_most"] == 40  # max_rounds caps a cheap round
    tight = timing_plan(0.5, dict(t, budget_s=1.0), 0.7)
    assert tight["rounds_at_most"] == 3 and not tight["budget_fits_min_rounds"]
    assert "does not fit the 3 rounds" in describe_plan(tight, 9, 1.0)
    assert "3-20 rounds, about 1.5-10 s" in describe_plan(p, 9, 10.0)


def test_the_note_appears_only_when_the_budget_or_max_rounds_ended_the_rounds():
    iv = {"point": 1.2, "low": 0.9, "high": 1.5}  # ±25 %
    note = budget_note("time budget of 5 s spent after 4 rounds", iv, 0.10)
    assert "±10 % interval was not reached" in note and "0.9x-1.5x (±25 %)" in note and "after 4 rounds" in note
    assert budget_note("interval narrow enough after 6 rounds", iv, 0.10) is None
    assert "after 40 rounds" not in budget_note("max_rounds=40 reached", iv, 0.30)  # the rounds' own judgement
    assert budget_note("3 rounds", iv, 0.10) is None  # no corrector: nothing to narrow
    assert "no interval" in budget_note("max_rounds=40 reached", {"point": 1.0, "low": None, "high": None}, 0.1)


def test_a_budget_too_small_is_reported_with_the_interval_reached(caplog, monkeypatch):
    """A time budget of 1 ms and a ±0.1 % target cannot be met (the interval is held wide: two
    rounds of a coarse CPU clock can tie exactly): the minimum rounds run, the estimate is
    logged before them (stderr is no terminal under pytest), the rounds are counted against the
    plan, and the verdict says the target was not reached and gives the interval."""
    monkeypatch.setattr(comparison, "narrow_enough", lambda iv, width: False)
    s = make_system("lorenz63")
    y0 = s.sample_initial(4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = torch.arange(11, dtype=torch.float64) * 0.1
    zero = attsolver.NeurVec(3, method="rk4", step_size=0.1, dtype=torch.float64)
    with caplog.at_level(logging.INFO, logger="attsolver.progress"):
        res = compare(s, y0, t, corrector=zero, refinements=(1, 2, 4), rk4_refinements=(), dopri_rtols=(),
                      lyapunov_exponent=0.906, rounds=2, max_rounds=50, ci_width=0.001, time_budget=1e-3,
                      progress=True, name="tight")
    est = res.setting["estimate"]
    assert est["rounds_at_least"] == est["rounds_at_most"] == 2 and not est["budget_fits_min_rounds"]
    assert res.setting["timing_rounds"] == 2 and "time budget" in res.setting["timing_stopped"]
    log = caplog.text
    assert "tight: contenders: scored 4 contenders" in log and "does not fit the 2 rounds" in log
    assert "tight: timing: 2/2 round" in log
    iv = res.verdict["interval"]
    note = res.verdict["budget_note"]
    assert note.startswith("the ±0.1 % interval was not reached (time budget of 0.001 s spent after 2 rounds)")
    if iv["low"] is not None and iv["high"] - iv["low"] > 2e-3 * res.verdict["speedup_best"]:
        assert f"{iv['low']:.3g}x-{iv['high']:.3g}x" in note
    assert note in res.verdict_line
