"""``attsolver bench ood_kolmogorov``: the OOD rows' arithmetic on a small 32^2 problem (fast), and
the tiny run end to end (slow)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from _scripts import load_script


def _suite():
    return load_script("benchmarks/ood_kolmogorov.py")


def test_rms_error_is_rms_over_time_of_the_field_norm():
    """Per rollout: sqrt(mean_t |w_hat(t) - w(t)|^2), the norm over the whole 32^2 field."""
    k = _suite()
    truth = torch.randn(3, 2, 32, 32)
    pred = truth.clone()
    pred[1, 0] += 0.5  # rollout 0 off by 0.5 everywhere at the second time only
    pred[:, 1] += 0.25  # rollout 1 off by 0.25 everywhere at every time
    err = k.rms_error(pred, truth)
    assert err[0] == pytest.approx(math.sqrt((0.5 * 32) ** 2 / 3), rel=1e-6)
    assert err[1] == pytest.approx(0.25 * 32, rel=1e-6)
    pred[2, 0, 0, 0] = float("nan")  # a blown-up rollout counts as infinitely wrong
    assert math.isinf(k.rms_error(pred, truth)[0])


@pytest.fixture(scope="module")
def small_case():
    """An untrained AttSolver corrector with its domain recorded from 32^2 host trajectories at Re = 500,
    and 32^2 "reference" test sets (restriction to 32^2 is then the identity)."""
    k = _suite()
    from attsolver import solve
    from attsolver.data import TrajectoryDataset
    from attsolver.training import record_domain

    def data(re, n, seed, t_final=0.2, frame=0.1):
        f = k.coarse_system(re)
        w0 = f.sample_initial(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
        w0 = solve(f, w0, torch.tensor([0.0, 0.5], dtype=torch.float64), method=k.METHOD, step_size=k.H)[-1]
        t = torch.arange(int(round(t_final / frame)) + 1, dtype=torch.float64) * frame
        y = solve(f, w0, t, method=k.METHOD, step_size=k.H / 8).transpose(0, 1).contiguous()
        return TrajectoryDataset(t=t, y=y, system=f.config())

    model = k.kol.build_corrector("attsolver", k.HOST, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the head starts at zero: perturb every weight, so corrected != classical
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    model.eval()
    record_domain(model, data(500, 3, 0, t_final=0.1, frame=k.H), f=k.coarse_system(500))
    cal = data(500, 9, 1)
    bounds = k.calibrate(model, cal, 0.9, f=k.coarse_system(500))
    return k, model, bounds, data(1000, 4, 2)


def _with_thresholds(model, distance, ratio):
    m = type(model).__new__(type(model))
    m.__dict__.update(model.__dict__)
    m.domain = dataclasses.replace(model.domain, distance_threshold=distance, ratio_threshold=ratio, _cache={})
    return m


def test_nothing_flagged_fallback_is_the_corrected_solve(small_case):
    """A domain that accepts every step: no rollout flagged, and every guarded solve returns the
    unguarded corrected solve bit for bit (errors equal, detection of nothing)."""
    k, model, bounds, test = small_case
    r = k.evaluate(_with_thresholds(model, math.inf, math.inf), 1000, test, bounds)
    assert r["flagged"] == 0 and r["flagged_steps_fraction"] == 0.0 and r["checked16"]["flagged"] == 0
    e = r["errors"]
    assert e["warn"] == e["corrected"] and e["fallback"] == e["corrected"]
    assert r["worse_flagged"] == 0 and (r["detection"] == 0.0 if r["worse"] else r["detection"] is None)
    ratio = np.array(e["fallback"]) / np.array(e["classical"])
    assert r["fallback_over_classical_max"] == pytest.approx(ratio.max())
    assert r["fallback_rollouts_over_1_5x"] == int((ratio > 1.5).sum())
    assert all(0.0 <= c <= 1.0 for c in r["coverage_per_time"])


def test_everything_flagged_fallback_is_the_classical_solve_at_h_over_4(small_case):
    """A domain that rejects every step: every rollout is flagged on every step, the warn solve is
    still the corrected one, and the fallback solve is the classical solve with steps h/4 (what a
    flagged step is recomputed with); detection is then every worse rollout."""
    k, model, bounds, test = small_case
    strict = _with_thresholds(model, 0.0, 0.0)
    r = k.evaluate(strict, 1000, test, bounds)
    e = r["errors"]
    assert r["flagged"] == r["n"] == 4 and r["flagged_steps_fraction"] == 1.0
    assert e["warn"] == e["corrected"]
    assert r["worse_flagged"] == r["worse"]
    assert r["distance2"]["d2_beyond"] == 1.0
    s = k.solves(strict, 1000, test.y[:, 0], test.t)  # the fields themselves (float32)
    size = float(s["classical_h/4"].abs().max())
    gap = float((s["fallback"] - s["classical_h/4"]).abs().max())
    assert gap <= 1e-5 * size
    assert float((s["corrected"] - s["classical_h/4"]).abs().max()) > 100 * max(gap, 1e-7 * size)  # not vacuous


@pytest.mark.slow  # two tiny runs (the second from the cache): about 25 s on the shared machine
def test_tiny_ood_kolmogorov_end_to_end(tmp_path):
    k = _suite()
    out = tmp_path / "out"
    assert k.main(["--tiny", "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    r = json.loads((out / "ood_kolmogorov.json").read_text())
    md = (out / "ood_kolmogorov.md").read_text()
    assert (out / "ood_kolmogorov.png").exists()
    assert [row["re"] for row in r["rows"]] == [500, 1000, 250]
    assert r["domain"]["per_feature_scaling"]  # 2 x 32^2 features > MAX_FULL_COVARIANCE
    for row in r["rows"]:
        e = row["errors"]
        assert all(np.isfinite(v).all() for v in e.values())
        flagged = np.array(row["flagged_rollouts"])
        # an unflagged rollout's fallback solve is its corrected solve
        assert np.array_equal(np.array(e["fallback"])[~flagged], np.array(e["corrected"])[~flagged])
        assert 0 <= row["worse_flagged"] <= min(row["worse"], row["flagged"]) <= row["n"]
        assert 0.0 <= row["coverage_mean"] <= 1.0
    for v in r["reference_check"].values():
        assert v["corr_end_min"] > 0.99
    # a rerun resumes from the cache: same data, same model, same errors
    assert k.main(["--tiny", "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    r2 = json.loads((out / "ood_kolmogorov.json").read_text())
    assert r2["rows"][1]["errors"] == r["rows"][1]["errors"]
    assert "attsolver bench ood_kolmogorov --tiny" in md and "## Reference check" in md
