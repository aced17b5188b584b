"""benchmarks/ode.py: the equal-accuracy interpolation, blow-up counting, the valid
prediction time it reports, and a tiny configuration end to end (with resume)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from _scripts import load_script
from attsolver.evaluate.metrics import cost_at_accuracy


@pytest.fixture(scope="module")
def ode():
    return load_script("benchmarks/ode.py")


# --------------------------------------------------------------------------- equal accuracy


def test_cost_at_accuracy_is_exact_for_a_power_law(ode):
    # a fourth-order method: error = k^-4 at cost = k; equal accuracy with error 3^-4 is k = 3
    ks = [1, 2, 4, 8, 16]
    errors = [k ** -4.0 for k in ks]
    cost, kind = cost_at_accuracy(errors, ks, 3.0 ** -4)
    assert kind == "interpolated"
    assert math.isclose(cost, 3.0, rel_tol=1e-12)


def test_cost_at_accuracy_bounds_and_extrapolation(ode):
    ks = [1, 2, 4]
    errors = [1.0, 0.5, 0.25]  # first order
    # less accurate than the cheapest run: no equal-accuracy point, the cheapest cost is an upper bound
    assert cost_at_accuracy(errors, ks, 2.0) == (1, "cheapest")
    # beyond the most accurate run: the last segment's slope is extended, error 1/16 -> k = 16
    cost, kind = cost_at_accuracy(errors, ks, 1 / 16)
    assert kind == "extrapolated" and math.isclose(cost, 16.0, rel_tol=1e-12)
    assert cost_at_accuracy([1.0], [1.0], 0.1) == (None, "unreached")
    assert cost_at_accuracy([float("nan")], [1.0], 0.1) == (None, "unreached")


def test_cost_at_accuracy_uses_the_pareto_front(ode):
    # a dominated point (slower and less accurate) must not bend the interpolation
    errors = [1.0, 2.0, 0.01]
    costs = [1.0, 5.0, 100.0]
    cost, kind = cost_at_accuracy(errors, costs, 0.1)
    assert kind == "interpolated" and math.isclose(cost, 10.0, rel_tol=1e-12)


def _sweep(errors, times, family="same", key="err_full"):
    return {"entries": [{"family": family, "label": f"h/{k}", "k": k, key: e, "time_s": t}
                        for k, e, t in zip([1, 2, 4, 8], errors, times)],
            "coarse_time_s": times[0]}


def test_speedup_at_equal_accuracy(ode):
    case = ode.Case("x", "linear", "euler", 0.1, t_test=1.0, t_train=1.0, spin_up=0.0, fine_ks=(1, 2, 4, 8))
    sweep = _sweep([0.8, 0.4, 0.2, 0.1], [1.0, 2.0, 4.0, 8.0])
    # corrected error 0.2 = the k = 4 run, which takes 4 s; the corrected run takes 0.5 s
    s = ode.speedups(case, sweep, 0.2, 0.5)
    assert s["speedup_same_kind"] == "interpolated"
    assert math.isclose(s["speedup_same"], 8.0, rel_tol=1e-12)
    assert math.isclose(s["k_equiv"], 4.0, rel_tol=1e-12)
    assert s["best_classical_reaching"] == "h/4"
    # worse than the classical coarse run: an upper bound, flagged
    worse = ode.speedups(case, sweep, 1.5, 2.0)
    assert worse["speedup_same_kind"] == "cheapest" and math.isclose(worse["speedup_same"], 0.5)


# --------------------------------------------------------------------------- scoring


def _tiny_test_set(ode, n=4, nt=11):
    t = torch.linspace(0, 1, nt, dtype=torch.float64)
    y = torch.ones(n, nt, 3, dtype=torch.float64) + 0.1 * torch.arange(nt, dtype=torch.float64)[None, :, None]
    data = ode.TrajectoryDataset(t=t, y=y, system={"name": "lorenz63", "params": {}})
    return ode.TestSet(data, std=torch.ones(3, dtype=torch.float64), limit=100.0, lyapunov=0.9)


def test_score_counts_blow_ups_and_never_returns_nan(ode):
    case = ode.Case("x", "lorenz63", "rk4", 0.1, t_test=1.0, t_train=1.0, spin_up=0.0, fine_ks=(1,))
    test = _tiny_test_set(ode)
    pred = test.true.clone()
    pred[1, 5:] = float("nan")   # non-finite
    pred[2, 7, 0] = 1e6          # beyond the bound
    s = ode.score(case, test, pred)
    assert s["blowup_rate"] == 0.5
    for k in ("err_q1", "err_q2", "err_full", "mape", "vpt"):
        assert math.isfinite(s[k]), k
    assert s["err_full"] > 1.0  # the clipped blow-ups dominate, visibly
    exact = ode.score(case, test, test.true.clone())
    assert exact["err_full"] == 0.0 and exact["blowup_rate"] == 0.0
    # a perfect prediction is valid over the whole horizon: 1 time unit x lambda 0.9
    assert math.isclose(exact["vpt"], 0.9, rel_tol=1e-12)


# --------------------------------------------------------------------------- end to end


def test_tiny_configuration_end_to_end_and_resume(ode, tmp_path, monkeypatch):
    tiny = ode.Case("tiny", "lorenz63", "rk4", 0.1, t_test=1.0, t_train=1.0, spin_up=1.0, fine_ks=(1, 2, 4),
                    dopri_rtols=(1e-3, 1e-5), match="err_q1")
    monkeypatch.setitem(ode.CASES, "tiny", tiny)
    monkeypatch.setattr(ode, "REFERENCE_REFINE", 32)
    argv = ["--systems", "tiny", "--sizes", "3", "--noise", "0", "0.01", "--seeds", "1", "--n-test", "4",
            "--correctors", "NeurVec", "AttSolver-add", "--train-steps", "10", "--rounds", "1", "--out", str(tmp_path)]
    assert ode.main(argv) == 0
    report = json.loads((tmp_path / "ode.json").read_text())
    assert report["command"].startswith("attsolver bench ode --systems tiny")
    assert len(report["rows"]) == 4 and report["rows_computed"] == 4
    for row in report["rows"]:
        assert row["case"] == "tiny" and row["n_train"] == 3
        assert math.isfinite(row["err_match"]) and 0.0 <= row["blowup_rate"] <= 1.0
        assert row["rollout_time_s"] > 0 and row["train_time_s"] > 0
        assert row["speedup_same_kind"] in ("interpolated", "extrapolated", "cheapest", "unreached")
    md = (tmp_path / "ode.md").read_text()
    assert "## Targets" in md and "AttSolver-add" in md and "tiny" in md
    for png in ("ode_error_vs_size.png", "ode_pareto.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"

    # an interrupted run leaves a cut-off line: it is dropped, that row recomputed, the rest resumed
    progress = tmp_path / ode.PROGRESS
    lines = progress.read_text().splitlines()
    progress.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    assert ode.main(argv) == 0
    again = json.loads((tmp_path / "ode.json").read_text())
    assert again["rows_computed"] == 1 and again["rows_resumed"] == 3
    assert all(json.loads(line) for line in progress.read_text().splitlines())


def test_probe_table_reports_the_recipe_change_and_the_ratios(ode, tmp_path):
    probe = tmp_path / "ode_probes" / "rollout4"
    probe.mkdir(parents=True)
    recipe = {**ode.asdict(ode.Recipe()), "rollout_steps": 4}
    verdict = [{"case": "lorenz63", "n_train": 4, "neurvec_err": 0.1, "AttSolver-add": {"ratio": 0.5}, "holds": True}]
    (probe / "ode.json").write_text(json.dumps({"suite": "ode", "command": "attsolver bench ode --rollout-steps 4",
                                                "recipe": recipe, "verdicts": {"att_vs_neurvec": verdict}}))
    (tmp_path / "ode_probes" / "broken").mkdir()
    (tmp_path / "ode_probes" / "broken" / "ode.json").write_text("{not json")
    probes = ode.load_probes(tmp_path / "ode_probes")
    assert [p["name"] for p in probes] == ["rollout4"]
    table = "\n".join(ode.probe_table(probes))
    assert "rollout_steps=4" in table and "| lorenz63 | 4 | 0.1 | add 0.50 |" in table

    # a corrector-design probe: the variants' ratios are listed, and named in the change column
    wide = tmp_path / "ode_probes" / "wide"
    wide.mkdir()
    verdict = [{"case": "lorenz63", "n_train": 16, "neurvec_err": 0.2, "AttSolver-add": {"ratio": 1.25},
                "AttSolver-wide-mul": {"ratio": 0.75}, "holds": False}]
    (wide / "ode.json").write_text(json.dumps({"suite": "ode", "command": "attsolver bench ode --correctors ...",
                                               "recipe": ode.asdict(ode.Recipe()),
                                               "verdicts": {"att_vs_neurvec": verdict}}))
    table = "\n".join(ode.probe_table(ode.load_probes(tmp_path / "ode_probes")))
    assert "design variants AttSolver-wide-mul" in table and "| 16 | 0.2 | add 1.25, wide-mul 0.75 |" in table


def test_recipe_fingerprint_ignores_later_fields_at_their_default(ode):
    # rows committed before a field existed keep their key; a changed value changes it
    base = ode.Recipe()
    old = {k: v for k, v in ode.asdict(base).items() if k != "restore_best"}
    assert ode.recipe_fingerprint(base) == ode._fingerprint(old)
    assert ode.recipe_fingerprint(ode.Recipe(restore_best=False)) != ode.recipe_fingerprint(base)


def test_target_snr_is_clean_residual_over_added_noise(ode):
    # the noise's share of a target is linear in sigma, so the ratio scales as 1/sigma
    snr = ode.target_snr(ode.CASES["elastic_pendulum"], [0.0, 1e-3, 1e-2], n=4)
    assert set(snr) == {"0.001", "0.01"}  # no ratio at noise 0
    assert snr["0.001"] / snr["0.01"] == pytest.approx(10, rel=0.1)
    assert 1 < snr["0.01"] < 10  # the documented regime: targets about half noise at 1e-2


def test_a_speed_up_counts_when_every_seed_is_on_the_classical_front(ode):
    assert ode._measured_kind("interpolated") and ode._measured_kind("extrapolated")
    assert ode._measured_kind("mixed:extrapolated/interpolated")
    assert not ode._measured_kind("mixed:cheapest/interpolated") and not ode._measured_kind("cheapest")
    assert not ode._measured_kind("unreached")
