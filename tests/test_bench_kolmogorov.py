"""``attsolver bench kolmogorov``: Kochkov's equal-accuracy arithmetic, and the tiny run end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from _scripts import load_script


def _suite():
    return load_script("benchmarks/kolmogorov.py")


def test_time_until_threshold_and_log_cost_interpolation():
    k = _suite()
    t = np.array([0.0, 1.0, 2.0, 3.0])
    # falls from 0.97 to 0.93 between t=1 and t=2: crosses 0.95 half-way
    assert k.time_until(t, np.array([1.0, 0.97, 0.93, 0.5])) == pytest.approx((1.5, False))
    assert k.time_until(t, np.array([1.0, 0.99, 0.98, 0.96])) == (3.0, True)  # censored at the horizon
    # Kochkov: log(cost) linear in t95 between the bracketing rungs
    ladder = [(1.0, 1.0), (3.0, 100.0)]
    cost, how = k.interpolate_cost(ladder, 2.0)
    assert how == "interpolated" and cost == pytest.approx(10.0)
    assert k.interpolate_cost(ladder, 5.0) == (100.0, "above")
    assert k.interpolate_cost(ladder, 0.5) == (1.0, "below")


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


def test_batched_cost_arithmetic_and_halving_ratios():
    """Kochkov's speed-up under another cost model: only the costs change. A ladder whose t95
    values are 1.5 and 3.5 at costs 1 and 100 reads cost 10 at t95 = 2.5 (log-linear half-way);
    a corrected solver there costing 2 is a 5x speed-up, for every bootstrap resample (all ICs
    alike). Scaling every cost by one factor (batched cost per batch vs per trajectory) leaves
    the speed-up unchanged; the halving ratios are consecutive rungs' cost ratios."""
    k = _suite()
    t = np.arange(5.0)
    curves = {"a": [1, 0.97, 0.93, 0.9, 0.9], "b": [1, 1, 1, 0.97, 0.93], "c": [1, 1, 0.97, 0.93, 0.9]}
    scores = {n: {"corr": np.tile(np.array(v, dtype=float), (4, 1))} for n, v in curves.items()}
    costs = {"a": 1.0, "b": 100.0, "c": 2.0}
    for scale in (1.0, 16.0):
        sp = k.speedups(scores, {}, {n: scale * c for n, c in costs.items()}, t, {"l": ["a", "b"]}, ["c"],
                        n_boot=20, seed=0)["c"]["l"]
        assert sp["how"] == "interpolated"
        assert sp["speedup"] == pytest.approx(5.0) and sp["p05"] == pytest.approx(5.0) == sp["p95"]
    assert k.halving_ratios({"a": 1.0, "b": 3.0, "c": 24.0}, ["a", "b", "c"]) == pytest.approx([3.0, 8.0])


def test_batched_timing_checks_equality_and_normalises_per_trajectory():
    """The batched timing solves all ICs in one call, checks the end states equal to the
    per-trajectory solves, and reports the cost per trajectory as the batch's cost / batch."""
    k = _suite()
    torch.set_num_threads(1)
    from attsolver.systems import NavierStokes2D

    w = 0.2 * NavierStokes2D(n=32, **k.PHYSICS).sample_initial(3, generator=torch.Generator().manual_seed(0),
                                                                 dtype=torch.float32)
    contenders = {"fd-32": {"base": "fd", "n": 32}, "spectral-32": {"base": "spectral", "n": 32}}
    r = k.time_contenders(contenders, w, {}, span=0.05, rounds=1, batched=True)
    b = r["batched"]
    assert b["batch"] == 3 and set(b["relative_difference_vs_per_trajectory"]) == set(contenders)
    assert max(b["relative_difference_vs_per_trajectory"].values()) < 1e-4
    for name in contenders:
        assert b["seconds_per_time_per_trajectory"][name] == pytest.approx(b["seconds_per_time"][name] / 3)
        assert r["seconds_per_time_per_trajectory"][name] == r["seconds_per_time"][name]  # batch of one
        assert b["seconds_per_step"][name] == pytest.approx(b["seconds_per_time"][name] * 0.05 / 2)


@pytest.mark.slow  # about 30 s alone, minutes on the shared machine
def test_tiny_kolmogorov_benchmark_end_to_end(tmp_path):
    k = _suite()
    out = tmp_path / "out"
    assert k.main(["--tiny", "--out", str(out), "--cache", str(tmp_path / "cache"), "--kinds", "attsolver"]) == 0
    r = json.loads((out / "kolmogorov.json").read_text())
    md = (out / "kolmogorov.md").read_text()
    assert {p.name for p in out.glob("*.png")} == {"kolmogorov_snapshots.png", "kolmogorov_correlation.png",
                                                   "kolmogorov_cost_accuracy.png", "kolmogorov_spectra.png"}
    assert r["setup"]["n_test"] >= 16
    assert set(r["corrected"]) == {"fd-32+attsolver", "spectral-32+attsolver", "fd-32+attsolver(noise 0.01)"}
    for name in r["corrected"]:
        for ladder in ("fd", "spectral"):
            s = r["speedups"][name][ladder]
            assert s["speedup"] is not None and s["speedup"] > 0 and s["p05"] <= s["p95"]
        assert r["cost_multiples"][name]["corrector_over_base"] > 0
        s = r["speedups_batched"][name]["fd"]
        assert s["speedup"] is not None and s["speedup"] > 0 and s["p05"] <= s["p95"]
    assert max(r["timing"]["batched"]["relative_difference_vs_per_trajectory"].values()) < 1e-4
    assert len(r["halving_cost_ratios"]["batched"]["fd"]) == len(r["ladders"]["fd"]) - 1
    # finer classical grids are more accurate (on the common coarse grid)
    assert r["scores"]["fd-64"]["nrmse"]["0.5"] < r["scores"]["fd-32"]["nrmse"]["0.5"]
    assert r["scores"]["spectral-64"]["nrmse"]["0.5"] < r["scores"]["spectral-32"]["nrmse"]["0.5"]
    assert all(b["blown_up"] == 0 for b in r["blowups"].values())
    assert math.isfinite(r["reference_check"]["corr_at_end"]) and r["reference_check"]["corr_at_end"] > 0.9
    assert "## Headline with batched costs" in md
    assert "## Headline" in md and "attsolver bench kolmogorov --tiny" in md
    assert "Skipped" in md  # the tiny run never times exponax
