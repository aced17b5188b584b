"""benchmarks/ode_fresh.py (issue 22, item 3): the configuration is selected on the validation
run by the README's rule, the fresh seeds are never used elsewhere in the project, and the
README's verdict table quotes only the fresh figures and calls "pays" only what the pooled
interval over the fresh seeds confirms (with no seed's own interval below 1x)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from _scripts import load_script
from attsolver.cli.demo import DEMO

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fresh():
    return load_script("benchmarks/ode_fresh.py")


@pytest.fixture(scope="module")
def readme():
    return load_script("benchmarks/update_readme.py")


def _row(case, corrector, n, noise, seed, speedup, err=0.1):
    return {"case": case, "corrector": corrector, "n_train": n, "noise": noise, "seed": seed,
            "speedup_best": speedup, "speedup_best_kind": "interpolated", "err_match": err,
            "best_classical_reaching": "rk4 h/2"}


# --------------------------------------------------------------------------- selection


def test_selection_takes_the_largest_mean_over_seeds(fresh):
    rows = [
        # A: one lucky seed (max 3.0) but mean 1.2; B: mean 1.5 with every seed > 1
        _row("x", "A", 16, 0.0, 0, 3.0), _row("x", "A", 16, 0.0, 1, 0.3), _row("x", "A", 16, 0.0, 2, 0.3),
        _row("x", "B", 64, 0.01, 0, 1.4), _row("x", "B", 64, 0.01, 1, 1.5), _row("x", "B", 64, 0.01, 2, 1.6),
        # another case, larger still: never mixed in
        _row("y", "C", 4, 0.0, 0, 9.0),
    ]
    cfg = fresh.select_config(rows, "x")
    assert (cfg["corrector"], cfg["n_train"], cfg["noise"]) == ("B", 64, 0.01)
    assert cfg["speedup_mean"] == pytest.approx(1.5)
    assert cfg["speedup_std"] == pytest.approx(0.1)
    assert [s["seed"] for s in cfg["seeds"]] == [0, 1, 2]
    assert cfg["pays"] is True


def test_selection_pays_only_when_every_seed_is_above_one(fresh):
    rows = [_row("x", "A", 16, 0.0, 0, 2.0), _row("x", "A", 16, 0.0, 1, 1.5), _row("x", "A", 16, 0.0, 2, 0.9)]
    cfg = fresh.select_config(rows, "x")
    assert cfg["speedup_mean"] > 1 and cfg["pays"] is False


def test_selection_leaves_out_unscored_seeds_and_groups(fresh):
    # a seed without a speed-up does not count in the mean (as ode.py's aggregate), but it is no
    # seed above 1x either; a group with no speed-up at all is never chosen
    rows = [_row("x", "A", 16, 0.0, 0, 1.2), _row("x", "A", 16, 0.0, 1, None),
            _row("x", "B", 4, 0.0, 0, None), _row("x", "C", 4, 0.0, 0, 1.1)]
    cfg = fresh.select_config(rows, "x")
    assert cfg["corrector"] == "A" and cfg["speedup_mean"] == pytest.approx(1.2) and cfg["pays"] is False
    assert fresh.select_config(rows, "nothing") is None


def test_selection_ties_go_to_the_first_group_in_row_order(fresh):
    rows = [_row("x", "B", 4, 0.0, 0, 1.3), _row("x", "A", 4, 0.0, 0, 1.3)]
    assert fresh.select_config(rows, "x")["corrector"] == "B"


def test_selection_reproduces_the_committed_validation_choice(fresh):
    """On the committed ode.json the rule picks what the README table quoted before this suite."""
    ode = json.loads((ROOT / "benchmarks/results/ode.json").read_text())
    for case in ode["cases"]:
        cfg = fresh.select_config(ode["rows"], case)
        agg = max((a for a in ode["aggregates"] if a["case"] == case and a["speedup_best"] is not None),
                  key=lambda a: a["speedup_best"])
        assert (cfg["corrector"], cfg["n_train"], cfg["noise"]) == (agg["corrector"], agg["n_train"], agg["noise"])
        assert cfg["speedup_mean"] == pytest.approx(agg["speedup_best"], rel=1e-12)


def _seed(point, low, high, outcome="inconclusive"):
    return {"speedup_best": point, "low": low, "high": high, "outcome": outcome}


def test_pooled_interval_is_the_geometric_mean_and_narrows_with_seeds(fresh):
    one = [_seed(2.0, 1.0, 4.0)]
    p1 = fresh.pooled_interval(one)
    # one seed: its own interval (a normal in log with that 95 % half-width), up to Monte Carlo error
    assert p1["point"] == pytest.approx(2.0)
    assert p1["low"] == pytest.approx(1.0, rel=0.08) and p1["high"] == pytest.approx(4.0, rel=0.08)
    # four identical seeds: the same interval, since the seeds share the test set their
    # measurement errors are not averaged away
    p4 = fresh.pooled_interval(one * 4)
    assert p4["point"] == pytest.approx(2.0)
    assert math.log(p4["high"] / p4["low"]) == pytest.approx(math.log(4.0), rel=0.08)
    # the geometric mean, and the spread between seeds widens the interval
    spread = fresh.pooled_interval([_seed(1.0, 0.99, 1.01), _seed(4.0, 3.96, 4.04)])
    assert spread["point"] == pytest.approx(2.0)
    assert spread["low"] < 1.1 and spread["high"] > 3.6
    # a seed without an interval cannot be pooled
    assert fresh.pooled_interval([_seed(2.0, None, None), _seed(2.0, 1.5, 2.5)])["point"] is None


def test_fresh_verdict_reads_the_pooled_interval_and_every_seed(fresh):
    above, below, across = {"low": 1.1, "high": 1.6}, {"low": 0.4, "high": 0.9}, {"low": 0.9, "high": 1.4}
    assert fresh.fresh_verdict(["pays", "inconclusive"], above) == "pays"
    # a seed whose own interval lies below 1x vetoes a pooled win
    assert fresh.fresh_verdict(["pays", "does not pay"], above) == "not confirmed"
    assert fresh.fresh_verdict(["pays", "pays"], across) == "not confirmed"
    assert fresh.fresh_verdict(["does not pay", "inconclusive"], below) == "does not pay"
    # every seed below 1x on its own: does not pay, even when the pooled interval reaches 1x
    assert fresh.fresh_verdict(["does not pay"] * 3, across) == "does not pay"
    assert fresh.fresh_verdict(["does not pay", "inconclusive"], across) == "not confirmed"
    assert fresh.fresh_verdict(["pays"], {"low": None, "high": None}) == "not confirmed"
    assert fresh.fresh_verdict([], above) == "not confirmed"


# --------------------------------------------------------------------------- mixing runs


def test_a_case_time_budget_changes_only_that_cases_resume_key(fresh):
    """--case-time-budget re-measures some cases and leaves the others' resume keys (and so their
    seeds in the progress log) as they were."""
    timing = {"time_budget": 40.0, "max_rounds": 40, "ci_width": 0.1}
    args = SimpleNamespace(timing=timing, case_time_budget=fresh._case_budgets(["lorenz63=90"]))
    assert fresh.case_timing(args, "lorenz63") == {**timing, "time_budget": 90.0}
    assert fresh.case_timing(args, "lorenz96") == timing
    assert fresh.fingerprint(fresh.case_timing(args, "lorenz96")) == fresh.fingerprint(dict(timing))
    assert fresh.fingerprint(fresh.case_timing(args, "lorenz63")) != fresh.fingerprint(timing)
    for bad in ("lorenz63", "nosuchcase=90", "lorenz63=-1"):
        with pytest.raises(SystemExit, match="--case-time-budget"):
            fresh._case_budgets([bad])


def test_a_report_names_each_cases_budget_and_the_code_of_each_seed(fresh):
    report = {"timing": {"time_budget": 40.0}, "cases": {"a": {"timing": {"time_budget": 90.0}}, "b": {}}}
    assert fresh._budgets(report) == "a budget per case (a 90 s, b 40 s)"
    assert fresh._budgets({"timing": {"time_budget": 40.0}, "cases": {"b": {}}}) == "40 s"
    seeds = [{"code_commit": "abc1234"}, {"code_commit": "abc1234"}, {}]
    assert fresh._commits(seeds) == "`abc1234` (2 of 3 seeds), a commit not recorded (an earlier run) (1 of 3 seeds)"


def test_the_committed_report_says_which_code_measured_each_seed():
    """Every seed of a case re-measured after the suite recorded commits names its commit; the cases
    whose seeds all come from the earlier run say so."""
    report = json.loads((ROOT / "benchmarks/results/ode_fresh.json").read_text())
    md = (ROOT / "benchmarks/results/ode_fresh.md").read_text()
    for name, case in report["cases"].items():
        commits = {s.get("code_commit") for s in case["fresh"]["seeds"]}
        assert len(commits) == 1, (name, commits)  # one code per case: a case is never measured by two
        if commits == {None}:
            assert "a commit not recorded (an earlier run)" in md
        else:
            assert f"`{commits.pop()}` ({len(case['fresh']['seeds'])} of" in md


# --------------------------------------------------------------------------- fresh seeds


def _seeds_used_elsewhere() -> set[int]:
    """Every data seed the project's other benchmarks and the demo draw with (up to 100 seeds
    per configurable range)."""
    ode = load_script("benchmarks/ode.py")
    ablation = load_script("benchmarks/ablation.py")
    pde = load_script("benchmarks/pde.py")
    kolmogorov = load_script("benchmarks/kolmogorov.py")
    stability = load_script("benchmarks/verdict_stability.py")
    used = {ode.TEST_SEED, pde.TRAIN_SEED, ablation.TEST_SEED, kolmogorov.TEST_SEED, kolmogorov.TRAIN_SEED,
            DEMO["train_seed"], DEMO["test_seed"]}
    used |= {ode.TRAIN_SEED + s for s in range(100)} | {ablation.TRAIN_SEED + s for s in range(100)}
    used |= {ablation.NOISE_SEED + s for s in range(100)} | {pde.TEST_SEED + i for i in range(100)}
    # the demo case names its own seeds; the Lorenz-63 winner draws with the ODE benchmark's (covered above)
    used |= {c[k] for c in stability.CASES.values() for k in ("train_seed", "test_seed") if k in c}
    return used


def test_fresh_seeds_never_overlap_the_validation_or_other_seeds(fresh):
    ode = load_script("benchmarks/ode.py")
    train = set(fresh.fresh_train_seeds(100))
    assert len(train) == 100 and fresh.FRESH_TEST_SEED not in train
    validation = {ode.TRAIN_SEED + s for s in range(100)} | {ode.TEST_SEED}
    assert not (train | {fresh.FRESH_TEST_SEED}) & validation
    assert not (train | {fresh.FRESH_TEST_SEED}) & _seeds_used_elsewhere()


def test_fresh_seed_literals_appear_nowhere_else():
    """No other source file draws with a fresh seed (a literal 71000-71099 or 77003)."""
    pattern = re.compile(r"(?<![\d.])(71_?0\d\d|77_?003)(?![\d.])")
    mine = {ROOT / "benchmarks/ode_fresh.py", Path(__file__).resolve()}
    hits = [f"{p.relative_to(ROOT)}: {m.group(0)}" for folder in ("attsolver", "benchmarks", "examples", "tests")
            for p in (ROOT / folder).rglob("*.py") if p.resolve() not in mine
            for m in pattern.finditer(p.read_text(errors="replace"))]
    assert not hits, hits


# --------------------------------------------------------------------------- the README table


def _fresh_case(verdict_outcomes, points, validation_pays, validation_mean=1.5, pooled=None):
    seeds = [{"train_seed": 71_000 + i, "speedup_best": p, "low": p * 0.9, "high": p * 1.1, "outcome": o,
              "best_classical_reaching": "rk4 h/4" if i else "dopri8 rtol=1e-05", "err_match": 0.01}
             for i, (p, o) in enumerate(zip(points, verdict_outcomes))]
    return {"config": {"corrector": "Hypersolver", "n_train": 64, "noise": 0.0},
            "validation": {"pays": validation_pays, "speedup_mean": validation_mean, "speedup_std": 0.25},
            "fresh": {"seeds": seeds, "outcomes": {o: verdict_outcomes.count(o)
                                                   for o in ("pays", "inconclusive", "does not pay")},
                      "pooled": pooled, "verdict": load_script("benchmarks/ode_fresh.py").fresh_verdict(
                          verdict_outcomes, pooled)}}


@pytest.fixture
def reports():
    ode = {"cases": {c: {"definition": {"method": "rk4", "step": 0.1}} for c in ("good", "lucky", "never", "missing")},
           "constants": {"train_seed_base": 1000, "test_seed": 10007}, "grid": {"seeds": [0, 1, 2]}}
    fresh = {"fresh_train_seed": 71_000, "fresh_test_seed": 77_003, "n_seeds": 3, "cases": {
        "good": _fresh_case(["pays", "inconclusive", "pays"], [1.4, 1.5, 1.6], True,
                            pooled={"point": 1.49, "low": 1.2, "high": 1.8}),
        "lucky": _fresh_case(["pays", "inconclusive", "does not pay"], [1.3, 1.0, 0.8], True, 1.54,
                             pooled={"point": 1.01, "low": 0.7, "high": 1.4}),
        "never": _fresh_case(["does not pay"] * 3, [0.5, 0.6, 0.55], False, 0.6,
                             pooled={"point": 0.55, "low": 0.45, "high": 0.65})}}
    return {"ode": ode, "ode_fresh": fresh}


def test_readme_table_quotes_the_fresh_figures_and_their_rule(readme, reports):
    text = readme.verdict_text(reports)
    rows = {ln.split(" | ")[0].lstrip("| "): ln for ln in text.splitlines() if ln.startswith("| ") and "---" not in ln}
    # pays only where the pooled interval is above 1x and no seed's below
    assert "**yes**" in rows["good"] and "**yes**" not in rows["lucky"] and "**yes**" not in rows["never"]
    # the pooled figure with its interval, then each fresh seed with its own
    assert "**pooled 1.49× (1.2×–1.8×)**; per seed 1.4× (1.26×–1.54×), 1.5× (1.35×–1.65×), 1.6× (1.44×–1.76×)" \
        in rows["good"]
    assert "rk4 h/4 (2 of 3), dopri8 rtol=1e-05 (1 of 3)" in rows["good"]
    # a validation win that fresh data do not confirm is reported as such, with its (validation) figure
    assert "not confirmed: paid on validation (1.54 ± 0.25×); on fresh data 1 of 3 seeds pay" in rows["lucky"]
    assert rows["never"].endswith("| no (0 of 3 seeds pay, 0 inconclusive, 3 below 1×) |")
    assert "**yes** (2 of 3 seeds pay, 1 inconclusive, 0 below 1×)" in rows["good"]
    assert "paid on validation" not in rows["never"]
    # a case without a fresh run is never called a win
    assert "not re-run" in rows["missing"] and "not confirmed" in rows["missing"]
    # the headline counts the fresh wins and names the lost one; the rule and seeds are stated
    assert "a corrector pays in 1 of 4 problems (good)" in text
    assert "Paid on the validation run but not confirmed on the fresh data: lucky." in text
    assert "Their pooled fresh point estimates stay above 1× (lucky 1.01×)" in text
    assert "A problem pays when the pooled interval lies above 1× and no seed's own interval lies below 1×" in text
    assert "training seeds 1000–1002, test seed 10007" in text and "(71000–71002)" in text and "seed 77003" in text


def test_readme_headline_without_a_fresh_win(readme, reports):
    del reports["ode_fresh"]["cases"]["good"]
    text = readme.verdict_text(reports)
    assert "**yes**" not in text
    assert "no corrector pays against the strongest classical solver" in text


def test_readme_headline_names_a_validation_win_that_fresh_data_refute(readme, reports):
    """A validation win whose fresh seeds all lie below 1x is called "does not pay", not merely
    "not confirmed"."""
    lucky = reports["ode_fresh"]["cases"]["lucky"]["fresh"]
    lucky["verdict"] = "does not pay"
    lucky["pooled"] = {"point": 0.7, "low": 0.6, "high": 0.8}
    text = readme.verdict_text(reports)
    assert "Paid on the validation run but does not pay on the fresh data: lucky." in text
    assert "not confirmed on the fresh data" not in text and "stay above 1×" not in text
