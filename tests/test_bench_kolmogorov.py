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
    from attsolver.systems.navier_stokes import spectral_restrict

    w = spectral_restrict(torch.randn(2, 64, 64, dtype=torch.float64), 32)
    assert torch.allclose(spectral_restrict(k.prolong(w, 128), 32), w, atol=1e-12)


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
    # finer classical grids are more accurate (on the common coarse grid)
    assert r["scores"]["fd-64"]["nrmse"]["0.5"] < r["scores"]["fd-32"]["nrmse"]["0.5"]
    assert r["scores"]["spectral-64"]["nrmse"]["0.5"] < r["scores"]["spectral-32"]["nrmse"]["0.5"]
    assert all(b["blown_up"] == 0 for b in r["blowups"].values())
    assert math.isfinite(r["reference_check"]["corr_at_end"]) and r["reference_check"]["corr_at_end"] > 0.9
    assert "## Headline" in md and "attsolver bench kolmogorov --tiny" in md
    assert "Skipped" in md  # the tiny run never times exponax
