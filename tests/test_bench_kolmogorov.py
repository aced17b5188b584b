"""``attsolver bench kolmogorov``: Kochkov's equal-accuracy arithmetic, and the tiny run end to end."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from _scripts import load_script


def _suite():
    return load_script("benchmarks/kolmogorov.py")


def test_time_until_threshold_is_the_shared_rule():
    """The suite reads t95 with :func:`attsolver.evaluate.ladder.time_until` (tests/test_ladder.py
    holds the rules), the learned-interpolation example too."""
    k = _suite()
    from attsolver.evaluate import ladder

    assert k.time_until is ladder.time_until and k.place_on_ladder is ladder.place_on_ladder
    t = np.array([0.0, 1.0, 2.0, 3.0])
    assert k.time_until(t, np.array([1.0, 0.97, 0.93, 0.5])) == pytest.approx((1.5, False))
    assert k.time_until(t, np.array([1.0, 0.99, 0.98, 0.96])) == (3.0, True)  # censored at the horizon
    ex = load_script("examples/kolmogorov_learned_interpolation.py")
    assert ex.time_until is ladder.time_until and ex.place_on_ladder is ladder.place_on_ladder


def test_scoring_bands():
    """t95 on the full 32^2 band and on |k| <= 10: an error only in modes 11-15 leaves the
    |k| <= 10 correlation at 1 while the full band's drops."""
    k = _suite()
    n, t = 32, np.array([0.0, 1.0])
    x = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
    X, Y = torch.meshgrid(x, x, indexing="xy")
    ref = torch.cos(4 * Y)[None, None].repeat(1, 2, 1, 1)
    pred = ref.clone()
    pred[:, 1] += 0.5 * torch.cos(12 * X)  # |k| = 12: outside the low band
    s = k.score(pred, ref, t, [])
    assert s["mean_corr"]["k10"] == pytest.approx([1.0, 1.0])
    assert s["mean_corr"]["full"][1] == pytest.approx(1 / math.sqrt(1 + 0.25))  # <a, a+b>/(|a||a+b|), b _|_ a
    assert s["censored"]["k10"] and not s["censored"]["full"]


def test_correlation_and_restriction_round_trip():
    k = _suite()
    a = torch.randn(3, 32, 32)
    assert torch.allclose(k.correlation(a, a), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(k.correlation(a, -a), -torch.ones(3, dtype=torch.float64))
    nan = a.clone()
    nan[0, 0, 0] = float("nan")
    assert float(k.correlation(nan, a)[0]) == 0.0  # a blown-up field counts as decorrelated
    # prolong then restrict is the identity on a band-limited field
    from attsolver.systems.grid import restrict_2d as spectral_restrict

    w = spectral_restrict(torch.randn(2, 64, 64, dtype=torch.float64), 32)
    assert torch.allclose(spectral_restrict(k.prolong(w, 128), 32), w, atol=1e-12)


def test_equal_accuracy_arithmetic_and_halving_ratios():
    """A ladder fd-32 / fd-64 with t95 1.5 / 3.5 at costs 1 / 100 reads n = 48 and cost 10 at
    t95 = 2.5 (half-way: n linear, log cost linear); a corrected solver there costing 2 is worth
    0.585 halvings and a 5x speed-up, for every bootstrap resample (all ICs alike).  Scaling
    every cost by one factor (batched vs per trajectory) leaves the speed-up unchanged; a
    censored rung above is never the bracket."""
    k = _suite()
    t = np.arange(5.0)
    curves = {"fd-32": [1, 0.97, 0.93, 0.9, 0.9], "fd-64": [1, 1, 1, 0.97, 0.93], "c": [1, 1, 0.97, 0.93, 0.9],
              "fd-128": [1, 1, 1, 1, 1]}
    scores = {n: {"corr": {b: np.tile(np.array(v, dtype=float), (4, 1)) for b in k.BANDS}} for n, v in curves.items()}
    contenders = {"fd-32": {"n": 32}, "fd-64": {"n": 64}, "fd-128": {"n": 128}, "c": {"n": 32}}
    costs = {"fd-32": 1.0, "fd-64": 100.0, "fd-128": 1000.0, "c": 2.0}
    for scale in (1.0, 16.0):
        ea = k.equal_accuracy(scores, contenders, {"x": {n: scale * c for n, c in costs.items()}}, t,
                              {"fd": ["fd-32", "fd-64", "fd-128"]}, ["c"], n_boot=20, seed=0)
        for band in k.BANDS:
            e = ea[band]["x"]["c"]["fd"]
            assert e["how"] == "interpolated" and e["n"] == pytest.approx(48.0)
            assert e["halvings"] == pytest.approx(math.log2(1.5))
            assert e["speedup"] == pytest.approx(5.0) and e["p05"] == pytest.approx(5.0) == e["p95"]
    ratios = k.halving_ratios({"fd-32": 1.0, "fd-64": 3.0, "fd-128": 24.0, "fd-192": 24.0 * 1.5 ** 2},
                              ["fd-32", "fd-64", "fd-128", "fd-192"])
    assert ratios == pytest.approx([3.0, 8.0, 4.0])  # per halving: (2.25)^(1/log2 1.5) = 4


def test_timing_separates_setup_and_checks_batches():
    """The timing solves every contender at every batch size, short and long; the per-step cost
    is the difference over the extra steps and the set-up the rest (their sum is the short
    call); the batched end states equal the per-trajectory ones; per unit time per trajectory
    is the step cost / batch / dt."""
    k = _suite()
    torch.set_num_threads(1)
    from attsolver.systems import NavierStokes2D

    w = 0.2 * NavierStokes2D(n=32, **k.PHYSICS).sample_initial(3, generator=torch.Generator().manual_seed(0),
                                                                 dtype=torch.float32)
    contenders = {"fd-32": {"base": "fd", "n": 32}, "spectral-32": {"base": "spectral", "n": 32}}
    r = k.time_costs(contenders, {}, w, [1, 4], rounds=1, steps=(1, 3))
    assert set(r["relative_difference_batched_vs_single"]) == set(contenders)
    assert max(r["relative_difference_batched_vs_single"].values()) < 1e-4
    for b in ("1", "4"):
        for name in contenders:
            assert r["per_time_per_trajectory"][b][name] == pytest.approx(r["per_step"][b][name] / int(b) / k.dt_for(32))
            q1, q3 = r["per_step_q1_q3"][b][name]
            assert q1 == q3 == pytest.approx(r["per_step"][b][name])  # one round: the single value


def test_each_ladder_steps_at_its_scale_with_whole_frames():
    """``--step-scale``: a rung's step is the largest ``h <= scale * dt_for(n)`` that divides the
    frame; scale 1 is dt_for itself at every rung of both regimes (the earlier protocol), and the
    default scales buy up to 1.2x (FD, Re = 1000) and up to 2x (spectral)."""
    k = _suite()
    for name, frame, ladder in (("re500", 0.1, [32, 40, 48, 56, 64, 80, 96, 128]),
                                ("re1000", 0.2, [64, 80, 96, 112, 128, 160, 192, 256])):
        with k.regime(name):
            for n in ladder:
                assert k.step_for(n, 1.0, frame) == pytest.approx(k.dt_for(n), rel=1e-12)
                for base, scale in k.STEP_SCALE[name].items():
                    h = k.step_for(n, scale, frame)
                    steps = frame / h
                    assert abs(steps - round(steps)) < 1e-9  # a whole number of steps per frame
                    assert k.dt_for(n) <= h <= scale * k.dt_for(n) * (1 + 1e-12)
                    assert frame / (round(steps) - 1) > scale * k.dt_for(n)  # one step fewer would exceed the scale
            if name == "re1000":  # a multiple of 16: 1.25 divides every frame exactly
                assert all(k.step_for(n, 1.25, frame) == pytest.approx(1.25 * k.dt_for(n)) for n in ladder)
    assert k.step_of({"n": 64, "step": 0.5}) == 0.5 and k.step_of({"n": 64, "step": None}) == k.dt_for(64)
    with pytest.raises(ValueError, match="must be > 0"):
        k.step_for(64, 0.0, 0.2)


def test_step_scale_option_names_the_base_and_the_fix():
    k = _suite()
    assert k.parse_args(["--kinds", "li"]).step_scale == {"fd": 1.1, "spectral": 2.0}
    assert k.parse_args(["--regime", "re1000"]).step_scale == {"fd": 1.2, "spectral": 2.0}
    assert k.parse_args(["--kinds", "li", "--step-scale", "fd=1,spectral=1"]).step_scale == {"fd": 1.0, "spectral": 1.0}
    assert k.parse_args(["--regime", "re1000", "--step-scale", "spectral=1.5"]).step_scale == {"fd": 1.2, "spectral": 1.5}
    for bad, msg in (("fv=2", "must be one of"), ("fd=fast", "must be a number"), ("fd=0", "finite and > 0"),
                     ("fd=nan", "finite and > 0")):
        with pytest.raises(argparse.ArgumentTypeError, match=msg):
            k._step_scales(bad)


def test_step_audit_reads_the_largest_scale_that_changes_nothing():
    """``bench kolmogorov_steps``: the largest scale is the last of an unbroken run of scales whose
    t95 (both bands) stays within 0.02 of scale 1's; a refused step or a degraded one ends it, and a
    later scale that happens to recover does not count; the scales must include 1."""
    st = load_script("benchmarks/kolmogorov_steps.py")

    def e(full, k10=None):
        return {"t95": {"full": full, "k10": full if k10 is None else k10}, "censored": {"full": False, "k10": False}}
    rows = {"fd-64": {"1": e(0.35), "1.25": e(0.36), "1.5": e(0.34), "1.65": {"refused": "CFL"}},
            "spectral-128": {"1": e(6.11), "2": e(6.11), "3": e(4.07), "4": e(6.11)},  # 4 recovers: still 2
            "spectral-64": {"1": e(1.86, 3.44), "2": e(1.87, 3.44), "3": e(1.88, 3.10)},  # k10 moves at 3
            "li": {"1": e(2.74), "1.25": e(2.80)}}
    assert st.largest_unchanged(rows) == {"fd-64": 1.5, "spectral-128": 2.0, "spectral-64": 2.0, "li": 1.0}
    with pytest.raises(SystemExit):
        st.parse_args(["--test", "x.h5", "--fd-scales", "1.25,1.5"])  # no scale 1 to compare with
    with pytest.raises(SystemExit):
        st.parse_args(["--test", "x.h5", "--spectral-scales", "1,-2"])
    assert st.parse_args(["--test", "x.h5", "--li-arch", "8,2,stage"]).li_arch == (8, 2, "stage")
    for bad in ("4,1", "4,one,step", "4,1,both"):
        with pytest.raises(SystemExit):
            st.parse_args(["--test", "x.h5", "--li-arch", bad])


@pytest.mark.slow  # about 30 s alone, minutes on the shared machine
def test_tiny_kolmogorov_benchmark_end_to_end(tmp_path):
    k = _suite()
    out = tmp_path / "out"
    assert k.main(["--tiny", "--out", str(out), "--cache", str(tmp_path / "cache"), "--kinds", "attsolver", "li"]) == 0
    r = json.loads((out / "kolmogorov.json").read_text())
    md = (out / "kolmogorov.md").read_text()
    assert {p.name for p in out.glob("*.png")} == {"kolmogorov_snapshots.png", "kolmogorov_correlation.png",
                                                   "kolmogorov_cost_accuracy.png", "kolmogorov_spectra.png",
                                                   "kolmogorov_li_validation.png"}
    v = r["training"]["fd-32+learned-interp"]["validation"]  # early stopping on validation t95
    assert v["seed"] == r["setup"]["val_seed"] not in (r["setup"]["test_seed"], r["setup"]["train_seed"])
    assert [e for e, _ in v["curve"]] == list(range(1, len(v["curve"]) + 1)) and v["best_score"] > 0
    assert "## Learned interpolation: early stopping on validation t95" in md
    assert r["setup"]["n_test"] >= 16
    assert set(r["corrected"]) == {"fd-32+attsolver", "spectral-32+attsolver", "fd-32+attsolver(noise 0.01)",
                                   "fd-32+learned-interp"}
    for band in ("full", "k10"):
        for b in ("1", "16"):
            for name in r["corrected"]:
                for ladder in ("fd", "spectral"):
                    e = r["equal_accuracy"][band][b][name][ladder]
                    assert e["speedup"] > 0 and e["p05"] <= e["p95"] and e["n"] >= 32
    for name in r["corrected"]:
        assert r["cost_multiples"]["1"][name] > 0
    assert max(r["timing"]["relative_difference_batched_vs_single"].values()) < 1e-4
    assert len(r["halving_cost_ratios"]["fd"]["16"]) == len(r["ladders"]["fd"]) - 1
    # finer classical grids are more accurate (on the common coarse grid)
    assert r["scores"]["fd-64"]["nrmse"]["0.5"] < r["scores"]["fd-32"]["nrmse"]["0.5"]
    assert r["scores"]["spectral-64"]["nrmse"]["0.5"] < r["scores"]["spectral-32"]["nrmse"]["0.5"]
    assert all(b["blown_up"] == 0 for b in r["blowups"].values())
    # the learned interpolation's long rollout again under its guard (fit recorded the domain)
    g = r["blowups"]["fd-32+learned-interp"]["guarded"]
    assert g["blown_up"] == 0 and g["flagged"] == len(g["first_flag_times"]) >= g["flagged_before_t_eval"]
    assert "max |omega|" in g["domain"] and "with its guard" in md
    assert r["reference_check"]["corr_at_end"]["full"] > 0.9
    assert "## Equivalent grid and speed-up" in md and "attsolver bench kolmogorov --tiny" in md
    assert "Skipped" in md  # the tiny run never times exponax
    # every ladder rung and the learned interpolation at its --step-scale step, post-step correctors at dt_for;
    # the step check re-solved each scaled one at dt_for, and X is the cost per unit time over the base's
    sc = r["setup"]["step_scale"]
    for name, c in r["contenders"].items():
        if "model" in c and "learned-interp" not in name:
            assert "step" not in c
        else:
            assert c["step"] == pytest.approx(k.step_for(c["n"], sc[c["base"]], r["setup"]["frame"]))
    scaled = {n for n, c in r["contenders"].items() if c.get("step") and abs(c["step"] - k.dt_for(c["n"])) > 1e-12}
    assert scaled and set(r["step_check"]["contenders"]) == scaled
    assert "## Step check" in md
    per_time = r["timing"]["per_time_per_trajectory"]
    for b in ("1", "16"):
        for name in r["corrected"]:
            base = f"{r['contenders'][name]['base']}-32"
            assert r["cost_multiples"][b][name] == pytest.approx(per_time[b][name] / per_time[b][base])
    # the step audit on the run's cached test set: at the suite's own step it reads the suite's t95 (the same
    # solve), and a test set of another regime is refused
    st = load_script("benchmarks/kolmogorov_steps.py")
    test_h5 = next((tmp_path / "cache").glob("test_*.h5"))
    assert st.main(["--regime", "re500", "--test", str(test_h5), "--fd", "32", "--spectral", "32", "--fd-scales", "1,1.5",
                    "--spectral-scales", "1,2", "--out", str(tmp_path / "steps")]) == 0
    sr = json.loads((tmp_path / "steps" / "kolmogorov_steps.json").read_text())
    for name in ("fd-32", "spectral-32"):
        same = [v for v in sr["rows"][name].values() if v["step"] == pytest.approx(r["contenders"][name]["step"])]
        assert same and same[0]["t95"]["full"] == pytest.approx(r["scores"][name]["t95"]["full"], abs=1e-6)
    assert "largest unchanged" in (tmp_path / "steps" / "kolmogorov_steps.md").read_text()
    with pytest.raises(SystemExit, match="viscosity"):
        st.main(["--regime", "re1000", "--test", str(test_h5), "--out", str(tmp_path / "steps2")])
    # the guard suite on the run's cache: its model, the domain from its training set, the run's blow-up count
    gd = load_script("benchmarks/kolmogorov_li_guard.py")
    assert gd.main(["--cache", str(tmp_path / "cache"), "--size", "tiny", "--t-long", str(r["setup"]["t_long"]), "--rounds", "1",
                    "--out", str(tmp_path / "guard")]) == 0
    rg = json.loads((tmp_path / "guard" / "kolmogorov_li_guard.json").read_text())
    (row,) = rg["models"].values()
    assert row["blown_up"] == r["blowups"]["fd-32+learned-interp"]["blown_up"]
    assert row["guarded_blown_up"] == g["blown_up"] and row["flagged"] == g["flagged"]
    assert row["scored_rollouts_unchanged"] == row["n"] - row["flagged_in_scored_horizon"]
    assert row["cost"]["ratio"] > 0 and "| guard cost |" in (tmp_path / "guard" / "kolmogorov_li_guard.md").read_text()


@pytest.mark.slow  # imports jax (seconds)
def test_exponax_comparison_runs_and_agrees():
    """The full run's last stage (the tiny run skips it): our 2-D ETDRK4 step equals exponax's
    (float32) on a 16^2 grid, or the comparison is skipped with a reason when exponax is absent."""
    k = _suite()
    torch.set_num_threads(1)
    r = k.exponax_comparison([16], steps=2, rounds=1, log=lambda m: None)
    if "skipped" in r:
        pytest.skip(r["skipped"])
    assert r["sizes"]["16"]["relative_difference"] < 1e-4


def test_learned_interpolation_summary_reads_the_committed_runs(tmp_path):
    """The summary's figures are the runs' own: the speed-up at batch 16 is r^h / X with r, h and
    X read back from its row, and the batch-16 interval is the run's bootstrap interval."""
    summary = load_script("benchmarks/kolmogorov_li_summary.py")
    path = Path(__file__).resolve().parents[1] / "benchmarks/results/kolmogorov_li/step_h8l3/kolmogorov.json"
    r = json.loads(path.read_text())
    line, prov = summary.row(path)
    cells = [c.strip() for c in line.strip("|").split("|")]
    e = r["equal_accuracy"]["full"]["16"][summary.LI]["fd"]
    assert cells[5] == f"{e['speedup']:.2f}× [{e['p05']:.2f}, {e['p95']:.2f}]"
    rate, rest = cells[7].split("^")
    h, x = (float(v) for v in rest.split(" = ")[0].split(" / "))
    assert math.isclose(float(rate) ** h / x, e["speedup"], rel_tol=2e-2)
    assert r["command"] in prov


def test_fresh_seeds_change_every_cache_name_and_defaults_keep_theirs():
    """--test-seed / --train-seed draw a fresh test set and fresh training data: a non-default seed
    gets its own cache names (never the default run's files), the default keeps the names it had."""
    kol = _suite()
    assert kol._seed_tag(kol.TEST_SEED, kol.TEST_SEED) == "" and kol._seed_tag(kol.TRAIN_SEED, kol.TRAIN_SEED) == ""
    assert kol._seed_tag(91_000, kol.TEST_SEED) == "_seed91000"
    args = kol.parse_args(["--test-seed", "91000", "--train-seed", "91500", "--kinds", "li"])
    assert (args.test_seed, args.train_seed) == (91_000, 91_500)
    defaults = kol.parse_args(["--kinds", "li"])
    assert (defaults.test_seed, defaults.train_seed) == (kol.TEST_SEED, kol.TRAIN_SEED)
    # the committed fresh run used seeds no other run of the suite uses
    fresh = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/kolmogorov_li_fresh/kolmogorov.json")
                       .read_text())["setup"]
    assert {fresh["test_seed"], fresh["train_seed"], fresh["train_seed"] + 1}.isdisjoint(
        {kol.TEST_SEED, kol.TRAIN_SEED, kol.TRAIN_SEED + 1})
    # the early-stopped fresh run: the same fresh sets, and validation initial conditions of a seed of their own
    es = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/kolmogorov_li_fresh_es/kolmogorov.json")
                    .read_text())
    s = es["setup"]
    assert (s["test_seed"], s["train_seed"]) == (fresh["test_seed"], fresh["train_seed"])
    assert s["val_seed"] not in {s["test_seed"], s["train_seed"], s["train_seed"] + 1, kol.TEST_SEED, kol.TRAIN_SEED,
                                 kol.TRAIN_SEED + 1, kol.VAL_SEED}
    v = es["training"]["fd-32+learned-interp"]["validation"]
    assert v["seed"] == s["val_seed"] and v["best_score"] == max(x for _, x in v["curve"])


def test_learned_interpolation_summary_takes_the_re1000_runs(tmp_path):
    """At Re = 1000 the summary reads the 64² contender, counts halvings over 64² (the committed
    run: 116² is log2(116/64) = 0.86 halvings, as its own JSON says), quotes the spectral ladder's
    equivalent grid, and refuses to mix regimes in one table."""
    summary = load_script("benchmarks/kolmogorov_li_summary.py")
    root = Path(__file__).resolve().parents[1] / "benchmarks/results"
    path = root / "kolmogorov_re1000/kolmogorov.json"
    r = json.loads(path.read_text())
    assert summary.li_name(r) == "fd-64+learned-interp"
    e = r["equal_accuracy"]["full"]["16"]["fd-64+learned-interp"]["fd"]
    line, _ = summary.row(path)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2].startswith(f"{e['n']:.0f}² ") and f"; {math.log2(e['n'] / 64):.2f} [" in cells[2]
    assert math.isclose(math.log2(e["n"] / 64), e["halvings"], abs_tol=1e-9)
    ea = r["equal_accuracy"]["full"]
    spectral = [ea[b]["fd-64+learned-interp"]["spectral"] for b in ("1", "16", "64")]
    assert cells[9].split("; ", 1)[1].split(" / ") == [
        f"{s['speedup']:.2f}× [{s['p05']:.2f}, {s['p95']:.2f}]" for s in spectral]  # batches 1, 16, 64
    assert cells[10] == f"{r['training']['fd-64+learned-interp']['seconds']:.0f}"
    out = tmp_path / "s.md"
    summary.main(["--out", str(out), str(path)])
    assert out.read_text().startswith("# Learned interpolation at Re = 1000")
    with pytest.raises(SystemExit, match="one regime"):
        summary.main(["--out", str(out), str(path), str(root / "kolmogorov.json")])


def test_summary_table_may_mix_test_set_sizes_of_one_seed(tmp_path):
    """Runs that differ only in their number of test initial conditions (one seed draws them in
    order, so 16 hold the 8) share a table, each row naming its size; a table of one size names
    none, and another test seed is still refused."""
    summary = load_script("benchmarks/kolmogorov_li_summary.py")
    path = Path(__file__).resolve().parents[1] / "benchmarks/results/kolmogorov_re1000_levers/l1_t16_es/kolmogorov.json"
    r = json.loads(path.read_text())
    assert r["setup"]["n_test"] == 8
    r["setup"]["n_test"] = 16
    (tmp_path / "n16.json").write_text(json.dumps(r))
    out = tmp_path / "s.md"
    summary.main(["--out", str(out), str(path), str(tmp_path / "n16.json")])
    text = out.read_text()
    assert "fixed protocol: 8 or 16 (" in text
    rows = [line for line in text.splitlines() if line.startswith("| 1 layer")]
    assert [row.split(" | ")[0].rsplit("; ", 1)[1] for row in rows] == ["scored on 8 test ICs", "scored on 16 test ICs"]
    summary.main(["--out", str(out), str(path)])
    assert "fixed protocol: 8 held-out" in out.read_text() and "scored on" not in out.read_text()
    r["setup"]["test_seed"] = 91_000
    (tmp_path / "seed.json").write_text(json.dumps(r))
    with pytest.raises(SystemExit, match="one regime"):
        summary.main(["--out", str(out), str(path), str(tmp_path / "seed.json")])


def test_summary_yardstick_is_the_galerkin_truncation_on_the_fd_ladder():
    """The yardstick line places spectral-(1.5 n) on the run's FD ladder by linear interpolation
    in t95 between the two measured FD rungs that bracket it: n = n_a + (t - t_a) / (t_b - t_a) (n_b - n_a)."""
    summary = load_script("benchmarks/kolmogorov_li_summary.py")
    path = Path(__file__).resolve().parents[1] / "benchmarks/results/kolmogorov_li_fresh/kolmogorov.json"
    r = json.loads(path.read_text())
    t95 = {k: v["t95"]["full"] for k, v in r["scores"].items()}
    g = t95["spectral-48"]
    rungs = [(int(k.split("-")[1]), t95[k]) for k in r["ladders"]["fd"] if not r["scores"][k]["censored"]["full"]]
    (na, ta), (nb, tb) = next((a, b) for a, b in zip(rungs, rungs[1:]) if a[1] <= g <= b[1])
    n = na + (g - ta) / (tb - ta) * (nb - na)
    line = summary.galerkin_line(path)
    assert f"has t95 {g:.2f}, {n:.0f}² on the FD ladder, {math.log2(n / 32):.2f} halvings" in line
    assert summary.galerkin_line(Path(__file__).resolve().parents[1] / "benchmarks/results/kolmogorov_li_fresh_es"
                                 / "kolmogorov.json").startswith("Yardstick: the Galerkin truncation of the 32² grid")


def test_learned_interpolation_defaults_early_stopping_and_the_earlier_builds():
    """The default learned interpolation is the lever table's best build (weights once per step, a
    linear 3x3 map, 32 trajectories) trained with early stopping on validation t95 (cap 32 epochs);
    the earlier builds stay reachable by flags under the cache names they had; Re = 1000 keeps its
    defaults; a validation seed equal to a test or training seed is refused."""
    kol = _suite()
    a = kol.parse_args(["--kinds", "li"])
    assert (a.li_weights_per, a.li_hidden, a.li_layers, a.li_train, a.li_epochs) == ("step", 4, 1, 32, 32)
    assert a.li_patience > 0 and a.val_seed == kol.VAL_SEED and a.li_val_t >= 3.0
    assert kol._li_cache_name(a, "re500_f") == "li_re500_f_32x3_e32_h4l1_step_es4e1r12v8x4"
    old = kol.parse_args(["--kinds", "li", "--li-weights-per", "stage", "--li-hidden", "16", "--li-layers", "3",
                          "--li-train", "16", "--li-epochs", "12", "--li-patience", "0"])
    assert kol._li_cache_name(old, "re500_f") == "li_re500_f_16x3_e12_h16"  # the committed default run's file
    fixed = kol.parse_args(["--kinds", "li", "--li-epochs", "12", "--li-patience", "0", "--train-seed", "91500"])
    assert kol._li_cache_name(fixed, "re500_f") == "li_re500_f_32x3_e12_h4l1_step_seed91500"  # the earlier fresh run
    fresh = kol.parse_args(["--kinds", "li", "--val-seed", "91700"])
    assert kol._li_cache_name(fresh, "re500_f").endswith("_es4e1r12v8x4_vseed91700")
    assert a.li_loss == "mse"  # a model trained on another loss is another file, never reused silently
    corr = kol.parse_args(["--kinds", "li", "--val-seed", "91700", "--li-loss", "correlation"])
    assert kol._li_cache_name(corr, "re500_f") == kol._li_cache_name(fresh, "re500_f").replace(
        "_es4e1r12v8x4", "_correlation_es4e1r12v8x4")
    with pytest.raises(SystemExit):
        kol.parse_args(["--kinds", "li", "--li-loss", "relative"])
    r1000 = kol.parse_args(["--regime", "re1000"])
    assert (r1000.li_weights_per, r1000.li_hidden, r1000.li_layers, r1000.li_train, r1000.li_epochs,
            r1000.li_patience) == ("stage", 16, 3, 8, 4, 0)
    for clash in (["--val-seed", str(kol.TEST_SEED)], ["--val-seed", str(kol.TRAIN_SEED + 1)],
                  ["--val-seed", "5", "--test-seed", "5"]):
        with pytest.raises(SystemExit):
            kol.parse_args(["--kinds", "li", *clash])
    with pytest.raises(SystemExit):
        kol.parse_args(["--li-patience", "-1"])


def _tiny_fd_data(kol, n_traj=5, frames=4):
    """A few spun-up 32² FD trajectories (frames every 0.1) standing in for the reference data."""
    from attsolver import solve
    from attsolver.data import TrajectoryDataset
    system = kol.system_for("fd", kol.COARSE_N)
    w0 = system.sample_initial(n_traj, generator=torch.Generator().manual_seed(4), dtype=torch.float32)
    w0 = solve(system, w0, torch.tensor([0.0, 1.0], dtype=torch.float64), method="ssprk3",
               step_size=kol.dt_for(kol.COARSE_N))[-1]
    t = torch.arange(frames, dtype=torch.float64) * 0.1
    y = solve(system, w0, t, method="ssprk3", step_size=kol.dt_for(kol.COARSE_N) / 4).transpose(0, 1).contiguous()
    return TrajectoryDataset(t=t, y=y, system=system.config())


def test_learned_interpolation_trains_on_the_correlation_loss_and_records_it():
    """``--li-loss correlation`` reaches fit: the fit's loss is 1 - the rolled-out vorticity's
    correlation per frame (between 0 and 2; fit's own tests check it against numpy), and the
    training record names it."""
    kol = _suite()
    data = _tiny_fd_data(kol)
    host, info = kol.train_learned_interpolation(data, epochs=1, hidden=4, layers=1, weights_per="step", unroll=2,
                                                 log=lambda *_: None, loss="correlation")
    assert info["loss"] == "correlation" and info["epochs_run"] == 1 and info["diverged"] is None
    assert 0.0 < info["val_loss"][0] < 2.0


def test_learned_interpolation_keeps_its_best_weights_when_a_rollout_blows_up(monkeypatch):
    """With early stopping, a rollout that becomes non-finite in epoch 2 ends the training without
    losing epoch 1: the best validation-t95 weights (epoch 1's) are kept and the record says where
    and why it stopped; with no epoch to keep, the error propagates."""
    kol = _suite()
    data = _tiny_fd_data(kol)
    made, hooks = [], []
    real = kol.build_learned_interpolation
    monkeypatch.setattr(kol, "build_learned_interpolation", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    snapshot = {}

    def log(msg):  # after epoch 1's validation score: remember the weights, then poison the CNN
        if "validation t95" in msg and not hooks:
            snapshot.update({k: v.clone() for k, v in made[-1].state_dict().items()})
            hooks.append(made[-1].interpolation.net.register_forward_hook(lambda m, i, o: o + 1e3))

    val = {"w": data.y[:2], "t": data.t, "every": 1, "patience": 3, "seed": 1}
    host, info = kol.train_learned_interpolation(data, epochs=3, hidden=4, layers=1, weights_per="step", unroll=2,
                                                 log=log, validation=val)
    hooks[0].remove()
    assert info["diverged"]["epoch"] == 2 and "non-finite" in info["diverged"]["message"]
    assert info["epochs_run"] == 1 and info["validation"]["best_epoch"] == 1
    assert all(torch.equal(v, snapshot[k]) for k, v in host.state_dict().items())
    md = "\n".join(kol._validation_lines({"setup": {"coarse_n": kol.COARSE_N}, "training": {kol.LI: info}}))
    assert "stopped in epoch 2, where a training or validation rollout became non-finite" in md
    hooks.clear()

    def poisoned(*a, **k):  # a CNN that blows every rollout up from the first batch: nothing to keep
        host = real(*a, **k)
        hooks.append(host.interpolation.net.register_forward_hook(lambda m, i, o: o + 1e3))
        return host

    monkeypatch.setattr(kol, "build_learned_interpolation", poisoned)
    with pytest.raises(kol.NonFiniteLossError):
        kol.train_learned_interpolation(data, epochs=1, hidden=4, layers=1, weights_per="step", unroll=2,
                                        log=lambda *_: None, validation=val)
